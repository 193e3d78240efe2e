//! Shared I/O plumbing of the wos-shopify-sync services.
//!
//! Every service is a thin layer over the pieces here:
//! - [`entry`]: the binaries' shared `main` (settings, tracing, runtime, signals);
//! - [`settings`]: the TOML configuration file, environment overrides and command-line flags;
//! - [`telemetry`]: tracing (JSON in production, readable in a terminal);
//! - [`trace`]: the W3C `traceparent` that follows one piece of work across the services;
//! - `otlp` (feature `otlp`): export of the spans to an OpenTelemetry collector, in the trace of
//!   that `traceparent`;
//! - [`metrics`]: every Prometheus family of CONTRACT section 6, registered in one place;
//! - [`http`]: the `/metrics`, `/healthz` and `/readyz` server;
//! - [`db`]: the PostgreSQL pool (with timeouts) and the migrations in `migrations/`;
//! - [`inbox`]: exactly-once effects for at-least-once deliveries;
//! - [`outbox`]: messages published if and only if their transaction committed;
//! - [`amqp`]: the RabbitMQ topology of the contract, confirmed publishing and the consumer
//!   runtime (retry tiers, dead letters, reconnects, graceful shutdown);
//! - [`tls`]: the rustls configuration of every `amqps://` and PostgreSQL TLS connection;
//! - [`retention`]: each service's background job that prunes old rows in committed chunks;
//! - [`startup`]: a service's start: ops server, database, migrations, in that order;
//! - [`shutdown`]: SIGTERM/SIGINT as a cancellation token every task can watch, and the
//!   pre-stop delay (readiness fails first, the service keeps serving, then drains);
//! - [`supervise`]: background loops that are restarted with backoff and counted when they fail.

pub mod amqp;
pub mod db;
pub mod entry;
pub mod http;
pub mod inbox;
pub mod metrics;
#[cfg(feature = "otlp")]
pub mod otlp;
pub mod outbox;
pub mod retention;
pub mod settings;
pub mod shutdown;
pub mod startup;
pub mod supervise;
pub mod telemetry;
pub mod tls;
pub mod trace;
