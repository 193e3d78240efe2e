//! The relay's own configuration: the `[webhook_relay]` table of the configuration file.
//!
//! The budgets nest: connecting to the broker fits in the publish budget, the publish budget in
//! the request budget, and the request budget in the 5 seconds Shopify waits for an answer
//! before it counts the delivery as failed. A file that breaks that order is refused at start.

use std::time::Duration;

use serde::Deserialize;

/// Shopify's limit for answering a webhook delivery.
pub const SHOPIFY_ANSWER_LIMIT: Duration = Duration::from_secs(5);

/// `[webhook_relay]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
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
}

/// Five MiB: far above any product webhook, small enough that a flood of large bodies cannot
/// exhaust memory.
pub const DEFAULT_MAX_BODY_BYTES: usize = 5 * 1024 * 1024;

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            request_timeout_ms: 4_500,
            publish_timeout_ms: 4_000,
            connect_timeout_ms: 2_000,
            max_in_flight_publishes: 64,
        }
    }
}

impl RelayConfig {
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
        Ok(())
    }

    /// [`RelayConfig::request_timeout_ms`] as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// [`RelayConfig::publish_timeout_ms`] as a duration.
    pub fn publish_timeout(&self) -> Duration {
        Duration::from_millis(self.publish_timeout_ms)
    }

    /// [`RelayConfig::connect_timeout_ms`] as a duration.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use platform::settings::Settings;

    use super::*;

    fn parse(text: &str) -> Result<RelayConfig, String> {
        let settings = Settings::from_toml_str(text, "test.toml").map_err(|e| e.to_string())?;
        let config: RelayConfig = settings
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
        assert_eq!(config, RelayConfig::default());
        assert_eq!(config.max_body_bytes, 5 * 1024 * 1024);
        assert!(config.request_timeout() < SHOPIFY_ANSWER_LIMIT);
        assert!(config.publish_timeout() < config.request_timeout());
        assert!(config.connect_timeout() <= config.publish_timeout());
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
            ("[webhook_relay]\nmax_body = 1", "`webhook_relay`"),
        ] {
            let err = parse(text).expect_err(text);
            assert!(err.contains(key), "{text}: {err}");
        }
    }
}
