//! The consumer runtime in a real process (the probe) against the real RabbitMQ and PostgreSQL:
//! crashes between commit and ack, SIGTERM drains, readiness at shutdown, the ops server during
//! migrations.
//!
//! Each test gets a fresh database and a unique queue prefix (`testkit::TestEnv`).
#![allow(clippy::unwrap_used)]

mod process;
