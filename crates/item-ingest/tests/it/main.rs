//! item-ingest against the real RabbitMQ and PostgreSQL: the service runs in-process on a
//! fresh database and queue prefix; tests publish webhooks as the relay would and assert on the
//! `items` table, the mirror, the dead-letter queue and the metrics.
#![allow(clippy::unwrap_used)]

mod big_products;
mod clone_walkthrough;
mod delivery;
mod fields;
mod groups;
mod harness;
mod healing;
mod lifecycle;
mod mappings;
mod policies;
mod retention;
mod stack;
