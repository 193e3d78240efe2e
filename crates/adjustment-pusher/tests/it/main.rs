//! adjustment-pusher against the real RabbitMQ and PostgreSQL and the Shopify sandbox. Every test
//! keeps its own ledger of what Shopify must end up with and asserts the sandbox's quantities
//! equal it exactly: each transaction counted once, whatever was injected on the way.
#![allow(clippy::unwrap_used)]

mod batching;
mod chaos;
mod delivery;
mod faults;
mod forming;
mod harness;
mod in_flight;
mod intake;
mod keys;
mod loops;
mod mappings;
mod parking;
mod pools;
mod retention;
mod rules;
mod shops;
mod traces;
