//! Integration tests of the `wos-sync` binary, run as a process against the real RabbitMQ,
//! PostgreSQL and the Shopify sandbox; each test has its own database and queue prefix.

#![allow(clippy::unwrap_used)]

mod backfill;
mod check;
mod commands;
mod harness;
mod replay;
mod up;
