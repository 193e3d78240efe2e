//! RabbitMQ: the contract's topology, confirmed publishing and the consumer runtime.
//!
//! - [`endpoint`]: the broker an AMQP URL names and the TLS it asks for (`amqps://`);
//! - [`topology`]: exchange and queue names of the contract, and idempotent declaration of a
//!   work queue with its `Q.retry.<n>` tiers and `Q.dlq`;
//! - [`publisher`]: the cloneable, self-reconnecting confirmed publisher services hold (the
//!   relay, outboxes, the consumer runtime's retry and dead-letter copies), and the primitives
//!   under it (the persistent delivery mode, confirm-mode channels);
//! - [`copies`]: what the copies of a delivered message carry (retry copies, dead letters,
//!   replays): the headers they drop, the contract's dead-letter headers, the attempt count;
//! - [`consumer`]: the runtime every service's consumer runs in (dispositions, retries,
//!   dead letters, reconnects, graceful shutdown);
//! - [`headers`]: reading and writing header tables.

pub mod consumer;
pub mod copies;
pub mod endpoint;
pub mod headers;
pub mod publisher;
pub mod topology;

use lapin::{Connection, ConnectionProperties};

pub use lapin::{BasicProperties, Channel, types::FieldTable};

/// Opens a connection named `name` (shown in the management UI and by `rabbitmqctl
/// list_connections`, which is how operators and tests find a service's connection):
/// plaintext for `amqp://`, TLS with certificate verification for `amqps://`
/// ([`endpoint::Endpoint`]).
pub async fn connect(url: &str, name: &str) -> Result<Connection, lapin::Error> {
    let endpoint = endpoint::Endpoint::parse(url).map_err(|err| {
        lapin::Error::from(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("AMQP URL: {err}"),
        ))
    })?;
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    endpoint.connect(properties).await
}
