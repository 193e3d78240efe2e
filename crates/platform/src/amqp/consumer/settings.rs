//! The consumer's settings (`[consumer]` in the configuration file) and everything the runtime
//! is given to run one queue ([`ConsumerConfig`]).

use serde::Deserialize;

use crate::amqp::topology::{Names, RetrySettings, WorkQueue};

/// Consumer settings (`[consumer]` in the configuration file).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsumerSettings {
    /// Unacknowledged messages the broker may send ahead (`basic.qos`).
    pub prefetch: u16,
    /// Handlers running at once.
    pub concurrency: usize,
    /// How long running handlers may take to finish after SIGTERM.
    pub shutdown_grace_ms: u64,
    /// How long one attempt to store a retry or dead-letter copy may wait for the broker's
    /// confirm; a copy not stored is tried again (with backoff) until it is, or until shutdown.
    pub publish_timeout_ms: u64,
    /// Largest message body handed to the handler; a larger one goes to `Q.dlq` as `malformed`
    /// without being parsed. The default is the relay's body limit (a product webhook it
    /// accepted always fits); WOS transactions are far smaller.
    pub max_message_bytes: usize,
    /// Most messages a grouping handler (one that handles a group in one transaction) is given
    /// at once; 1 turns grouping off. A group counts as one of `concurrency` handlers, and is
    /// never larger than `prefetch`.
    pub group_size: usize,
    /// How long a group may keep gathering deliveries that keep arriving, before it starts. A
    /// group never waits for deliveries that have not arrived: when none is ready it starts at
    /// once, so light load gains no latency.
    pub group_linger_ms: u64,
    /// A group stops gathering once its bodies add up to this many bytes, so a burst of large
    /// messages (a catalogue import's product webhooks) is not held in memory, nor written in
    /// one transaction, all at once. A single larger message is a group by itself.
    pub group_max_bytes: usize,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        Self {
            prefetch: 128,
            concurrency: 4,
            shutdown_grace_ms: 20_000,
            publish_timeout_ms: 10_000,
            max_message_bytes: 2 * 1024 * 1024,
            group_size: 64,
            group_linger_ms: 5,
            group_max_bytes: 1024 * 1024,
        }
    }
}

impl ConsumerSettings {
    /// Checks the values; the error names the key and says why.
    pub fn validate(&self) -> Result<(), (String, String)> {
        for (key, value) in [
            ("publish_timeout_ms", self.publish_timeout_ms),
            ("shutdown_grace_ms", self.shutdown_grace_ms),
        ] {
            if value == 0 {
                return Err((format!("consumer.{key}"), "must be at least 1".into()));
            }
        }
        if self.prefetch == 0 {
            return Err(("consumer.prefetch".into(), "must be at least 1".into()));
        }
        if self.max_message_bytes == 0 {
            return Err((
                "consumer.max_message_bytes".into(),
                "must be at least 1".into(),
            ));
        }
        if self.group_size == 0 {
            return Err(("consumer.group_size".into(), "must be at least 1".into()));
        }
        if self.concurrency == 0 || self.concurrency > usize::from(self.prefetch) {
            return Err((
                "consumer.concurrency".into(),
                "must be at least 1 and at most consumer.prefetch".into(),
            ));
        }
        Ok(())
    }
}

/// Everything the runtime needs to know about one consumer.
#[derive(Clone)]
pub struct ConsumerConfig {
    /// The service's name: metric label, `x-service` header, connection name.
    pub service: String,
    pub amqp_url: String,
    pub names: Names,
    pub queue: WorkQueue,
    pub settings: ConsumerSettings,
    pub retry: RetrySettings,
}

impl std::fmt::Debug for ConsumerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerConfig")
            .field("service", &self.service)
            .field("amqp_url", &crate::settings::redact_url(&self.amqp_url))
            .field("names", &self.names)
            .field("queue", &self.queue)
            .field("settings", &self.settings)
            .field("retry", &self.retry)
            .finish()
    }
}

impl ConsumerConfig {
    /// The connection name shown by the broker: `<service>/<queue>`.
    pub fn connection_name(&self) -> String {
        format!("{}/{}", self.service, self.queue.name)
    }
}
