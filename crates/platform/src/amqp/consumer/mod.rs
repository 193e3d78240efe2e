//! The consumer runtime every service runs its queue in.
//!
//! A service supplies a [`Handler`]: given a message, it does its work (committing its database
//! transaction, inbox row included) and returns a [`Disposition`]. The runtime owns everything
//! else:
//!
//! - **Ack after commit.** The message is acknowledged only after the handler returned, i.e.
//!   after its transaction committed. A crash in between causes a redelivery, which the handler's
//!   inbox recognises as a duplicate.
//! - **Retries without loops.** A transient failure is republished (confirmed) to
//!   `Q.retry.<tier>` with a jittered, per-tier growing expiration, and only then acknowledged;
//!   the broker dead-letters it back to `Q` when it expires. After `max_attempts` it goes to
//!   `Q.dlq` as `exhausted`. Nothing is requeued in a loop: a copy the broker cannot store yet
//!   is tried again in process while the original stays unacknowledged and consumption pauses
//!   (`forward`).
//! - **Dead letters** keep the original body, properties and headers and add the contract's
//!   `x-error-kind`, `x-error`, `x-attempts`, `x-failed-at`, `x-service`; copies drop what the
//!   broker and earlier failures wrote on the original (`crate::amqp::copies`).
//! - **Crash loops:** a message whose deliveries failed `delivery_limit` times (RabbitMQ's
//!   `x-delivery-limit`) is dead-lettered with those headers at its next delivery, where the
//!   broker would dead-letter it without them at its next failure.
//! - **Bounded concurrency:** `prefetch` messages in flight from the broker, at most
//!   `concurrency` handlers running.
//! - **Reconnects:** a supervisor reconnects with backoff after any broker failure (restart,
//!   closed connection, network) and redeclares the topology; handlers of the dead session are
//!   aborted.
//! - **Graceful shutdown:** on cancellation it stops consuming, lets running handlers finish
//!   (up to a grace period), and closes the channel so every message not acknowledged goes back
//!   to the queue.
//! - **Metrics:** `wos_sync_messages_total{service,queue,outcome}` and
//!   `wos_sync_message_processing_seconds{service,queue}`.
//!
//! Modules: [`handler`] (the API a service implements), [`settings`] (`[consumer]` and the
//! runtime's configuration), `runtime` (sessions, deliveries, dispositions), `forward` (storing
//! the retry and dead-letter copies).

mod acks;
mod forward;
pub mod handler;
mod runtime;
pub mod settings;

use std::time::Duration;

pub use handler::{Disposition, GroupOutcome, Handler, Incoming};
pub use runtime::run_consumer;
pub use settings::{ConsumerConfig, ConsumerSettings};

pub use crate::amqp::copies::{
    ATTEMPTS_HEADER, ErrorKind, dead_letter_fields, dead_letter_headers, one_line, republished,
};

/// Backoff after the `failures`-th consecutive failure (reconnecting, storing a copy): 0.5 s
/// doubling up to `cap`, with ±25% jitter (`unit` in `[0, 1)`) so replicas that failed together
/// do not try again in lockstep.
fn backoff(failures: u32, cap: Duration, unit: f64) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    let base = Duration::from_millis(500 * (1u64 << exponent)).min(cap);
    base.mul_f64(0.75 + 0.5 * unit.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap_with_bounded_jitter() {
        let cap = Duration::from_secs(30);
        let middle: Vec<_> = (1..=9).map(|n| backoff(n, cap, 0.5).as_millis()).collect();
        assert_eq!(
            middle,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        assert_eq!(backoff(1, cap, 0.0).as_millis(), 375);
        assert_eq!(backoff(1, cap, 1.0).as_millis(), 625);
        assert_eq!(backoff(40, Duration::from_secs(5), 0.5).as_millis(), 5000);
    }
}
