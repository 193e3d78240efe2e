//! Storing the copy a delivery turns into (a retry copy in `Q.retry.<tier>`, a dead letter in
//! `Q.dlq`) before the original is acknowledged.
//!
//! A copy counts only once the broker confirmed it stored it. Until then the original stays
//! unacknowledged in the consumer's hands and the copy is published again, with backoff (0.5 s
//! doubling to 5 s), for as long as it takes: a memory or disk alarm, stalled confirms, a
//! broker restart. While any copy waits, the runtime starts no new message
//! ([`Forwarder::stalled`]). The original is never requeued for this: a requeue loop would only
//! count towards the queue's `x-delivery-limit` until the broker dead-lettered the message
//! itself, without the contract's `x-error-*` headers. Only shutdown ends the wait
//! ([`Stopped`]); the runtime then returns the original to its queue.
//!
//! A copy the broker returns as unroutable means its queue is gone (an operator deleted a retry
//! queue): the topology is declared again before the next try.

use std::time::Duration;

use lapin::BasicProperties;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{ConsumerConfig, backoff};
use crate::amqp::{
    publisher::{Confirmed, Publisher},
    topology::declare_topology,
};

/// Longest pause between two tries of one copy: short, so messages flow again soon after a
/// broker incident; a try costs one publish.
const MAX_FORWARD_BACKOFF: Duration = Duration::from_secs(5);
/// Longest a redeclare of the topology may take (a fresh connection).
const REDECLARE_TIMEOUT: Duration = Duration::from_secs(30);

/// Shutdown came before the broker stored the copy.
#[derive(Debug)]
pub(super) struct Stopped;

/// Publishes the runtime's copies, each until it is stored.
pub(super) struct Forwarder {
    config: ConsumerConfig,
    // A publisher of its own: one publish in flight per confirm channel, so a returned
    // (unroutable) copy is never mistaken for another's confirm, and consuming is not slowed by
    // publishing flow control.
    publisher: Publisher,
    /// Copies currently waiting for the broker.
    waiting: watch::Sender<usize>,
}

impl Forwarder {
    pub(super) fn new(config: &ConsumerConfig) -> Self {
        Self {
            publisher: Publisher::new(
                config.amqp_url.clone(),
                format!("{}/forward", config.connection_name()),
            ),
            config: config.clone(),
            waiting: watch::Sender::new(0),
        }
    }

    /// How many copies are waiting for the broker; consumption pauses while it is not 0.
    pub(super) fn stalled(&self) -> watch::Receiver<usize> {
        self.waiting.subscribe()
    }

    pub(super) async fn close(&self) {
        self.publisher.close().await;
    }

    /// Publishes a copy straight into `queue` (default exchange) until the broker confirmed it
    /// stored it there, or until `shutdown`.
    pub(super) async fn store(
        &self,
        queue: &str,
        body: &[u8],
        properties: BasicProperties,
        shutdown: &CancellationToken,
    ) -> Result<(), Stopped> {
        let timeout = Duration::from_millis(self.config.settings.publish_timeout_ms);
        let mut failures: u32 = 0;
        let mut waiting = None;
        loop {
            let publish = self
                .publisher
                .publish("", queue, body, properties.clone(), timeout);
            let error = tokio::select! {
                _ = shutdown.cancelled() => return Err(Stopped),
                result = publish => match result {
                    Ok(Confirmed::Routed) => {
                        if failures > 0 {
                            tracing::info!(queue, failures, "copy stored after all");
                        }
                        return Ok(());
                    }
                    Ok(Confirmed::Unroutable) => {
                        self.redeclare().await;
                        format!("queue `{queue}` does not exist; declared the topology again")
                    }
                    Err(err) => err.to_string(),
                },
            };
            failures = failures.saturating_add(1);
            waiting.get_or_insert_with(|| Waiting::new(&self.waiting));
            let delay = backoff(failures, MAX_FORWARD_BACKOFF, rand::random());
            // One line when it starts and one every 30 tries, not one per try.
            if failures == 1 || failures.is_multiple_of(30) {
                tracing::error!(
                    queue,
                    error = %error,
                    failures,
                    retry_in_ms = delay.as_millis() as u64,
                    "cannot store the copy; keeping the message and pausing consumption"
                );
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Err(Stopped),
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// Declares the exchanges and this consumer's queues again, on a connection of its own.
    async fn redeclare(&self) {
        let config = &self.config;
        let declare = async {
            let connection = crate::amqp::connect(
                &config.amqp_url,
                &format!("{}/declare", config.connection_name()),
            )
            .await?;
            let declared =
                declare_topology(&connection, &config.names, &config.queue, &config.retry).await;
            let _ = connection.close(200, "topology declared".into()).await;
            declared
        };
        match tokio::time::timeout(REDECLARE_TIMEOUT, declare).await {
            Ok(Ok(())) => tracing::warn!(queue = %config.queue.name, "topology declared again"),
            Ok(Err(err)) => tracing::error!(error = %err, "cannot declare the topology again"),
            Err(_) => tracing::error!("declaring the topology again timed out"),
        }
    }
}

/// Counts one copy as waiting while it lives.
struct Waiting<'a>(&'a watch::Sender<usize>);

impl<'a> Waiting<'a> {
    fn new(waiting: &'a watch::Sender<usize>) -> Self {
        waiting.send_modify(|n| *n += 1);
        Self(waiting)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}
