//! adjustment-pusher against the real RabbitMQ and PostgreSQL and the Shopify sandbox. Every test
//! keeps its own ledger of what Shopify must end up with and asserts the sandbox's quantities
//! equal it exactly: each transaction counted once, whatever was injected on the way.
#![allow(clippy::unwrap_used)]

mod chaos;
mod delivery;
mod faults;
mod harness;
mod parking;
mod rules;
mod shops;
