//! Integration tests of the webhook relay against the real RabbitMQ.
//!
//! Each test starts its own relay in-process on 127.0.0.1:0 with its own exchange/queue prefix
//! (`testkit::TestEnv`), declares the contract topology under it, and asserts on the
//! `item-ingest.shopify-products` queue. Broker outages go through a `testkit::proxy::Proxy`
//! between the relay and the shared broker; the broker itself is never stopped.
#![allow(clippy::unwrap_used)]

mod exposure;
mod harness;
mod outage;
mod process;
mod publishing;
mod refusals;
mod signatures;
