//! The relay's own configuration: the `[webhook_relay]` table of the configuration file.
//!
//! The budgets nest: connecting to the broker fits in the publish budget, the publish budget in
//! the request budget, and the request budget in the 5 seconds Shopify waits for an answer
//! before it counts the delivery as failed. A file that breaks that order is refused at start.
//!
//! The limits keep an endpoint on the internet up under slow and greedy clients: a connection
//! must deliver its request head within `header_read_timeout_ms` and is closed after
//! `idle_timeout_ms` without a byte either way; at most `max_connections` are open and
//! `max_concurrent_requests` handled (more get 503 with `Retry-After` at once); bodies over
//! [`LARGE_BODY_BYTES`] (or of unknown length) are read by at most
//! `max_concurrent_large_bodies` requests at a time, so memory stays bounded by
//! `max_concurrent_large_bodies * max_body_bytes` plus small change.

use std::time::Duration;

use serde::Deserialize;

/// Shopify's limit for answering a webhook delivery.
pub const SHOPIFY_ANSWER_LIMIT: Duration = Duration::from_secs(5);

/// `[webhook_relay]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelaySettings {
    /// Largest webhook body accepted; a larger one is answered 413 without being read.
    pub max_body_bytes: usize,
    /// Everything one request may take (reading, verifying, publishing); past it the relay
    /// answers 503 so Shopify redelivers. At most 5000 (Shopify's own limit).
    pub request_timeout_ms: u64,
    /// How long one publish may wait for the broker (a reconnect and the confirm included).
    pub publish_timeout_ms: u64,
    /// How long opening a broker connection may take.
    pub connect_timeout_ms: u64,
    /// Publishes waiting for their broker confirm at once (one confirm channel each); more
    /// concurrent webhooks wait for a slot within their publish budget.
    pub max_in_flight_publishes: usize,
    /// A connection must deliver a complete request head within this, counted from when the
    /// relay starts waiting for one (a new connection, or the previous answer on a kept-alive
    /// one); otherwise it is closed. Defeats clients that trickle headers.
    pub header_read_timeout_ms: u64,
    /// A connection on which no byte moves either way for this long is closed, whatever it is
    /// doing. Above `request_timeout_ms` (a request waiting for the broker moves no byte).
    pub idle_timeout_ms: u64,
    /// Open connections at most; beyond it new ones wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Requests handled at once; more are answered 503 with `Retry-After` at once (Shopify
    /// retries), without reading their body.
    pub max_concurrent_requests: usize,
    /// Requests reading a body over [`LARGE_BODY_BYTES`] (or of unknown length) at once; more
    /// are answered 503 with `Retry-After`. Bounds the memory large bodies take.
    pub max_concurrent_large_bodies: usize,
    /// The topics published, exactly as Shopify spells them (`products/update`). Other
    /// authentic webhooks are answered 200 and dropped (counted under the topic `other`).
    pub topics: Vec<String>,
}

/// Two MiB: Shopify's largest product payloads stay under it (see docs/webhook-relay.md,
/// "Limits"), and no more, so a flood of maximum-size bodies cannot exhaust memory.
pub const DEFAULT_MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// Bodies up to this size (most product webhooks: a few KiB; one with 100 full variants is
/// about 100 KiB) only count against `max_concurrent_requests`; larger ones also need a slot of
/// `max_concurrent_large_bodies`. Small bodies of all requests together stay under
/// `max_concurrent_requests * 64 KiB` (32 MiB by default).
pub const LARGE_BODY_BYTES: u64 = 64 * 1024;

/// The topics item-ingest consumes (CONTRACT 3).
pub const DEFAULT_TOPICS: [&str; 3] = ["products/create", "products/update", "products/delete"];

impl Default for RelaySettings {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            request_timeout_ms: 4_500,
            publish_timeout_ms: 4_000,
            connect_timeout_ms: 2_000,
            max_in_flight_publishes: 64,
            header_read_timeout_ms: 5_000,
            idle_timeout_ms: 30_000,
            max_connections: 2_048,
            max_concurrent_requests: 512,
            max_concurrent_large_bodies: 16,
            topics: DEFAULT_TOPICS.iter().map(|t| (*t).to_owned()).collect(),
        }
    }
}

impl RelaySettings {
    /// Checks the values; the error names the key and says why.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let fail = |key: &str, why: String| Err((format!("webhook_relay.{key}"), why));
        let limit_ms = SHOPIFY_ANSWER_LIMIT.as_millis();
        if self.max_body_bytes == 0 {
            return fail("max_body_bytes", "must be at least 1".into());
        }
        if self.request_timeout_ms == 0 || u128::from(self.request_timeout_ms) > limit_ms {
            return fail(
                "request_timeout_ms",
                format!("must be between 1 and {limit_ms} (Shopify waits 5 s for an answer)"),
            );
        }
        if self.publish_timeout_ms == 0 || self.publish_timeout_ms >= self.request_timeout_ms {
            return fail(
                "publish_timeout_ms",
                "must be at least 1 and below request_timeout_ms".into(),
            );
        }
        if self.connect_timeout_ms == 0 || self.connect_timeout_ms > self.publish_timeout_ms {
            return fail(
                "connect_timeout_ms",
                "must be at least 1 and at most publish_timeout_ms".into(),
            );
        }
        if self.max_in_flight_publishes == 0 || self.max_in_flight_publishes > 1_000 {
            return fail(
                "max_in_flight_publishes",
                "must be between 1 and 1000".into(),
            );
        }
        if self.header_read_timeout_ms == 0 || u128::from(self.header_read_timeout_ms) > limit_ms {
            return fail(
                "header_read_timeout_ms",
                format!("must be between 1 and {limit_ms} (Shopify sends its headers at once)"),
            );
        }
        if self.idle_timeout_ms <= self.request_timeout_ms {
            return fail(
                "idle_timeout_ms",
                "must be above request_timeout_ms (a request waiting for the broker moves no \
                 byte)"
                    .into(),
            );
        }
        if self.max_concurrent_requests == 0 || self.max_concurrent_requests > self.max_connections
        {
            return fail(
                "max_concurrent_requests",
                "must be at least 1 and at most max_connections".into(),
            );
        }
        if self.max_concurrent_large_bodies == 0
            || self.max_concurrent_large_bodies > self.max_concurrent_requests
        {
            return fail(
                "max_concurrent_large_bodies",
                "must be at least 1 and at most max_concurrent_requests".into(),
            );
        }
        if self.topics.is_empty() {
            return fail("topics", "must name at least one topic".into());
        }
        if let Some(bad) = self.topics.iter().find(|topic| !is_topic(topic)) {
            return fail(
                "topics",
                format!(
                    "`{bad}` is not a Shopify topic (`resource/event`, lowercase, e.g. products/update)"
                ),
            );
        }
        Ok(())
    }

    /// Whether webhooks of `topic` are published.
    pub fn publishes(&self, topic: &str) -> bool {
        self.topics.iter().any(|allowed| allowed == topic)
    }

    /// [`RelaySettings::header_read_timeout_ms`] as a duration.
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }

    /// [`RelaySettings::idle_timeout_ms`] as a duration.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }

    /// [`RelaySettings::request_timeout_ms`] as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// [`RelaySettings::publish_timeout_ms`] as a duration.
    pub fn publish_timeout(&self) -> Duration {
        Duration::from_millis(self.publish_timeout_ms)
    }

    /// [`RelaySettings::connect_timeout_ms`] as a duration.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
}

/// Shaped like Shopify's topics: `resource/event`, lowercase letters and `_`, at most 64 bytes.
fn is_topic(topic: &str) -> bool {
    topic.len() <= 64
        && topic.split_once('/').is_some_and(|(resource, event)| {
            let part =
                |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
            part(resource) && part(event)
        })
}

#[cfg(test)]
mod tests {
    use platform::settings::Settings;

    use super::*;

    fn parse(text: &str) -> Result<RelaySettings, String> {
        let settings = Settings::from_toml_str(text, "test.toml").map_err(|e| e.to_string())?;
        let config: RelaySettings = settings
            .service_section("webhook_relay")
            .map_err(|e| e.to_string())?;
        config
            .validate()
            .map_err(|(key, why)| format!("{key}: {why}"))?;
        Ok(config)
    }

    #[test]
    fn defaults_answer_within_shopifys_limit() {
        let config = parse("").expect("defaults are valid");
        assert_eq!(config, RelaySettings::default());
        assert_eq!(config.max_body_bytes, 2 * 1024 * 1024);
        assert!(config.header_read_timeout() <= SHOPIFY_ANSWER_LIMIT);
        assert!(config.idle_timeout() > config.request_timeout());
        assert!(config.publishes("products/delete"));
        assert!(!config.publishes("orders/create"));
        assert!(config.request_timeout() < SHOPIFY_ANSWER_LIMIT);
        assert!(config.publish_timeout() < config.request_timeout());
        assert!(config.connect_timeout() <= config.publish_timeout());
    }

    #[test]
    fn the_documented_example_shows_the_defaults() {
        let text = include_str!("../../../docs/config.example.toml");
        let settings = Settings::from_toml_str(text, "config.example.toml").expect("valid");
        let documented: RelaySettings = settings
            .service_section("webhook_relay")
            .expect("a valid [webhook_relay]");
        assert_eq!(documented, RelaySettings::default());
    }

    #[test]
    fn keys_override_defaults() {
        let config = parse("[webhook_relay]\nmax_body_bytes = 1024\npublish_timeout_ms = 3000")
            .expect("valid");
        assert_eq!(config.max_body_bytes, 1024);
        assert_eq!(config.publish_timeout_ms, 3000);
        assert_eq!(config.request_timeout_ms, 4_500);
    }

    #[test]
    fn budgets_out_of_order_and_unknown_keys_are_refused_with_the_key() {
        for (text, key) in [
            (
                "[webhook_relay]\nrequest_timeout_ms = 6000",
                "webhook_relay.request_timeout_ms",
            ),
            (
                "[webhook_relay]\npublish_timeout_ms = 4500",
                "webhook_relay.publish_timeout_ms",
            ),
            (
                "[webhook_relay]\nconnect_timeout_ms = 4001",
                "webhook_relay.connect_timeout_ms",
            ),
            (
                "[webhook_relay]\nmax_body_bytes = 0",
                "webhook_relay.max_body_bytes",
            ),
            (
                "[webhook_relay]\nmax_in_flight_publishes = 0",
                "webhook_relay.max_in_flight_publishes",
            ),
            (
                "[webhook_relay]\nmax_body = 1",
                "`webhook_relay.max_body`: unknown field `max_body`",
            ),
            (
                "[webhook_relay]\nheader_read_timeout_ms = 0",
                "webhook_relay.header_read_timeout_ms",
            ),
            (
                "[webhook_relay]\nidle_timeout_ms = 4500",
                "webhook_relay.idle_timeout_ms",
            ),
            (
                "[webhook_relay]\nmax_concurrent_requests = 5000",
                "webhook_relay.max_concurrent_requests",
            ),
            (
                "[webhook_relay]\nmax_concurrent_large_bodies = 0",
                "webhook_relay.max_concurrent_large_bodies",
            ),
            ("[webhook_relay]\ntopics = []", "webhook_relay.topics"),
            (
                "[webhook_relay]\ntopics = [\"products.update\"]",
                "webhook_relay.topics",
            ),
        ] {
            let err = parse(text).expect_err(text);
            assert!(err.contains(key), "{text}: {err}");
        }
    }
}
