//! Integration tests of the platform against the real RabbitMQ and PostgreSQL.
//!
//! Each test gets a fresh database and a unique queue prefix (`testkit::TestEnv`), so tests run
//! in parallel on the shared servers.
#![allow(clippy::unwrap_used)]

mod amqp_tls;
mod database;
mod deploy_files;
mod groups;
mod outbox;
mod pg_tls;
mod runtime;
mod runtime_copies;
mod topology;
