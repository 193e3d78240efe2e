//! The RabbitMQ topology of the contract, declared idempotently.
//!
//! Every work queue `Q` comes with:
//! - `Q.dlq`: where messages end that must not be retried (malformed, rejected, exhausted,
//!   unmapped), each with the contract's `x-error-*` headers. Declared first, so nothing can be
//!   dead-lettered before it exists.
//! - `Q.retry.1` .. `Q.retry.n`: holding queues with a message TTL that grows per tier; an
//!   expired message is dead-lettered back to `Q`. This is how a transient failure waits
//!   without a `nack(requeue)` loop and without blocking the consumer.
//! - `Q` itself: a quorum queue with `x-delivery-limit` as the backstop against crash loops (a
//!   message that kills the process on every delivery), dead-lettering to `Q.dlq`.
//!
//! All queues are quorum queues with at-least-once dead-lettering (`x-dead-letter-strategy`,
//! which requires `x-overflow: reject-publish`), so a message moving between them is never lost,
//! even if a broker node fails in the middle.
//!
//! Queue arguments cannot be changed by redeclaring: a changed retry delay or delivery limit
//! makes the declaration fail with PRECONDITION_FAILED, named in the error. Delete the retry
//! queues (they only hold messages waiting for their next attempt: drain them first) to apply
//! new delays.

use std::time::Duration;

use lapin::{
    Channel, ExchangeKind,
    options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable, LongString},
};
use serde::Deserialize;

/// Exchange of Shopify webhooks, published by the relay (CONTRACT 3).
pub const SHOPIFY_EVENTS: &str = "shopify.events";
/// Exchange of WOS inventory transactions (CONTRACT 3).
pub const WOS_TRANSACTIONS: &str = "wos.transactions";
/// Exchange of item mapping announcements, published by item-ingest whenever an item's
/// `inventory_item_id` is set, changed or cleared (routing keys `mapping.set`, `mapping.changed`,
/// `mapping.cleared`; see docs/item-mappings.md).
pub const ITEM_MAPPINGS: &str = "wos-sync.item-mappings";
/// adjustment-pusher's queue of mapping announcements.
pub const PUSHER_MAPPINGS_QUEUE: &str = "adjustment-pusher.item-mappings";
/// item-ingest's work queue.
pub const ITEM_INGEST_QUEUE: &str = "item-ingest.shopify-products";
/// adjustment-pusher's work queue.
pub const ADJUSTMENT_PUSHER_QUEUE: &str = "adjustment-pusher.wos-transactions";

/// Applies a name prefix to every exchange and queue.
///
/// Production uses the empty prefix (the contract's names exactly). Tests use a unique prefix
/// each, so they can share one broker and run in parallel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    prefix: String,
}

impl Names {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// The prefix itself.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The full name of a contract exchange or queue.
    pub fn name(&self, contract_name: &str) -> String {
        format!("{}{}", self.prefix, contract_name)
    }

    /// item-ingest's queue, bound to `shopify.events` for `products.*`.
    pub fn item_ingest_queue(&self) -> WorkQueue {
        WorkQueue {
            name: self.name(ITEM_INGEST_QUEUE),
            bindings: vec![Binding {
                exchange: self.name(SHOPIFY_EVENTS),
                routing_key: "products.*".to_owned(),
            }],
        }
    }

    /// adjustment-pusher's queue, bound to `wos.transactions` for `inventory.*`.
    pub fn adjustment_pusher_queue(&self) -> WorkQueue {
        WorkQueue {
            name: self.name(ADJUSTMENT_PUSHER_QUEUE),
            bindings: vec![Binding {
                exchange: self.name(WOS_TRANSACTIONS),
                routing_key: "inventory.*".to_owned(),
            }],
        }
    }

    /// adjustment-pusher's queue of mapping announcements, bound to `wos-sync.item-mappings`
    /// for `mapping.*`: a mapping that appears releases the adjustments parked for it.
    pub fn item_mappings_queue(&self) -> WorkQueue {
        WorkQueue {
            name: self.name(PUSHER_MAPPINGS_QUEUE),
            bindings: vec![Binding {
                exchange: self.name(ITEM_MAPPINGS),
                routing_key: "mapping.*".to_owned(),
            }],
        }
    }

    /// Every work queue of the system (with its retry tiers and DLQ): what `wos-sync topology`
    /// declares and `wos-sync dlq` / `status` look at.
    pub fn work_queues(&self) -> Vec<WorkQueue> {
        vec![
            self.item_ingest_queue(),
            self.adjustment_pusher_queue(),
            self.item_mappings_queue(),
        ]
    }

    /// Every exchange of the contract.
    pub fn exchanges(&self) -> Vec<String> {
        vec![
            self.name(SHOPIFY_EVENTS),
            self.name(WOS_TRANSACTIONS),
            self.name(ITEM_MAPPINGS),
        ]
    }
}

/// A binding of a work queue to a topic exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub exchange: String,
    pub routing_key: String,
}

/// A work queue and its bindings; its retry tiers and dead-letter queue are named after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkQueue {
    pub name: String,
    pub bindings: Vec<Binding>,
}

impl WorkQueue {
    /// `Q.retry.<tier>`, tiers counted from 1.
    pub fn retry_queue(&self, tier: usize) -> String {
        format!("{}.retry.{tier}", self.name)
    }

    /// `Q.dlq`.
    pub fn dead_letter_queue(&self) -> String {
        format!("{}.dlq", self.name)
    }
}

/// How failed messages are retried (`[retry]` in the configuration file).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySettings {
    /// Delay of the first retry tier.
    pub base_delay_ms: u64,
    /// Each tier waits this many times longer than the previous one.
    pub multiplier: u32,
    /// Number of `Q.retry.<n>` queues; attempts beyond the last tier reuse it.
    pub tiers: usize,
    /// Each delay is drawn from `delay * (1 ± jitter)`, so messages that failed together (an
    /// outage) do not all come back in the same instant.
    pub jitter: f64,
    /// Handler attempts before a message is dead-lettered as `exhausted`.
    pub max_attempts: u32,
    /// Quorum `x-delivery-limit`, meaning what RabbitMQ means by it: how many deliveries of one
    /// message may fail (the process crashed, the connection was lost, the message was returned)
    /// before it is dead-lettered. The runtime dead-letters such a message itself, with the
    /// contract's headers, at its next delivery; the handler never runs more than
    /// `delivery_limit` times on one delivery chain.
    pub delivery_limit: u32,
}

impl Default for RetrySettings {
    fn default() -> Self {
        // 1 s, 5 s, 25 s, ~2 min, ~10 min: covers a database failover and a short broker or
        // Shopify outage before a message is given up on. 8 attempts wait 7 times: tiers 1 to 5
        // and then the last tier twice more, 1 + 5 + 25 + 125 + 3 x 625 s = about 34 minutes.
        Self {
            base_delay_ms: 1_000,
            multiplier: 5,
            tiers: 5,
            jitter: 0.2,
            max_attempts: 8,
            delivery_limit: 20,
        }
    }
}

impl RetrySettings {
    /// Checks the values; the error names the key and says why.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let fail = |key: &str, why: &str| Err((format!("retry.{key}"), why.to_owned()));
        if self.base_delay_ms == 0 {
            return fail("base_delay_ms", "must be at least 1");
        }
        if self.multiplier == 0 {
            return fail("multiplier", "must be at least 1");
        }
        if self.tiers == 0 || self.tiers > 20 {
            return fail("tiers", "must be between 1 and 20");
        }
        if !(0.0..1.0).contains(&self.jitter) {
            return fail("jitter", "must be at least 0 and below 1");
        }
        if self.max_attempts == 0 {
            return fail("max_attempts", "must be at least 1");
        }
        if self.delivery_limit == 0 {
            // 0 failed deliveries allowed: the runtime would dead-letter every message unhandled.
            return fail(
                "delivery_limit",
                "must be at least 1 (the failed deliveries of one message allowed before it is \
                 dead-lettered; with 0 no message would be handled)",
            );
        }
        if self.tier_delay(self.tiers) > Duration::from_secs(24 * 3600) {
            return fail("tiers", "the last tier would wait more than a day");
        }
        Ok(())
    }

    /// The nominal (jitter-free) delay of tier `tier` (1-based).
    pub fn tier_delay(&self, tier: usize) -> Duration {
        let exponent = u32::try_from(tier.saturating_sub(1)).unwrap_or(u32::MAX);
        let factor = u64::from(self.multiplier).saturating_pow(exponent);
        Duration::from_millis(self.base_delay_ms.saturating_mul(factor))
    }

    /// The tier a message goes to after its `attempt`-th failure (1-based).
    pub fn tier_for_attempt(&self, attempt: u32) -> usize {
        usize::try_from(attempt)
            .unwrap_or(usize::MAX)
            .clamp(1, self.tiers)
    }

    /// The queue-level TTL of a tier: the longest jittered delay, so the per-message expiration
    /// always decides.
    fn tier_ttl(&self, tier: usize) -> Duration {
        self.tier_delay(tier).mul_f64(1.0 + self.jitter)
    }

    /// The delay of one message in `tier`, with jitter drawn from `unit` in `[0, 1)`.
    pub fn jittered_delay(&self, tier: usize, unit: f64) -> Duration {
        let spread = self.jitter * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        self.tier_delay(tier)
            .mul_f64(1.0 + spread)
            .max(Duration::from_millis(1))
    }
}

/// Declares every exchange and `queue` with its retry tiers and dead-letter queue, on a channel
/// of its own (closed afterwards): what a consumer does at every (re)connect, and again when a
/// copy finds one of its queues gone.
pub async fn declare_topology(
    connection: &lapin::Connection,
    names: &Names,
    queue: &WorkQueue,
    retry: &RetrySettings,
) -> Result<(), lapin::Error> {
    let channel = connection.create_channel().await?;
    declare_exchanges(&channel, names).await?;
    declare_work_queue(&channel, queue, retry).await?;
    let _ = channel.close(200, "topology declared".into()).await;
    Ok(())
}

/// Declares every exchange of the contract and the mapping announcements (durable, topic).
pub async fn declare_exchanges(channel: &Channel, names: &Names) -> Result<(), lapin::Error> {
    for exchange in names.exchanges() {
        channel
            .exchange_declare(
                exchange.as_str().into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
    }
    Ok(())
}

/// Declares `queue`'s dead-letter queue, retry tiers, the queue itself and its bindings.
/// The exchanges it binds to must exist ([`declare_exchanges`]).
pub async fn declare_work_queue(
    channel: &Channel,
    queue: &WorkQueue,
    retry: &RetrySettings,
) -> Result<(), lapin::Error> {
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };

    channel
        .queue_declare(
            queue.dead_letter_queue().as_str().into(),
            durable,
            quorum_args(),
        )
        .await?;

    for tier in 1..=retry.tiers {
        let mut args = dead_lettering_to(&queue.name);
        let ttl_ms = i64::try_from(retry.tier_ttl(tier).as_millis()).unwrap_or(i64::MAX);
        args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl_ms));
        channel
            .queue_declare(queue.retry_queue(tier).as_str().into(), durable, args)
            .await?;
    }

    let mut args = dead_lettering_to(&queue.dead_letter_queue());
    args.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongLongInt(i64::from(retry.delivery_limit)),
    );
    channel
        .queue_declare(queue.name.as_str().into(), durable, args)
        .await?;

    for binding in &queue.bindings {
        channel
            .queue_bind(
                queue.name.as_str().into(),
                binding.exchange.as_str().into(),
                binding.routing_key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    Ok(())
}

fn quorum_args() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from("quorum")),
    );
    args
}

/// Quorum queue arguments that dead-letter, at least once, to `target` via the default exchange.
fn dead_lettering_to(target: &str) -> FieldTable {
    let mut args = quorum_args();
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(LongString::from("")),
    );
    args.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(LongString::from(target)),
    );
    args.insert(
        "x-dead-letter-strategy".into(),
        AMQPValue::LongString(LongString::from("at-least-once")),
    );
    // Required by at-least-once dead-lettering.
    args.insert(
        "x-overflow".into(),
        AMQPValue::LongString(LongString::from("reject-publish")),
    );
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_contract() {
        let names = Names::default();
        let ingest = names.item_ingest_queue();
        assert_eq!(ingest.name, "item-ingest.shopify-products");
        assert_eq!(
            ingest.retry_queue(2),
            "item-ingest.shopify-products.retry.2"
        );
        assert_eq!(
            ingest.dead_letter_queue(),
            "item-ingest.shopify-products.dlq"
        );
        assert_eq!(ingest.bindings[0].exchange, "shopify.events");
        assert_eq!(ingest.bindings[0].routing_key, "products.*");
        let pusher = names.adjustment_pusher_queue();
        assert_eq!(pusher.name, "adjustment-pusher.wos-transactions");
        assert_eq!(pusher.bindings[0].exchange, "wos.transactions");
        assert_eq!(pusher.bindings[0].routing_key, "inventory.*");
        assert_eq!(
            names.exchanges(),
            [
                "shopify.events",
                "wos.transactions",
                "wos-sync.item-mappings"
            ]
        );
    }

    #[test]
    fn a_prefix_applies_to_every_name() {
        let names = Names::new("t1.");
        assert_eq!(
            names.item_ingest_queue().name,
            "t1.item-ingest.shopify-products"
        );
        assert_eq!(
            names.item_ingest_queue().bindings[0].exchange,
            "t1.shopify.events"
        );
        assert_eq!(
            names.exchanges(),
            [
                "t1.shopify.events",
                "t1.wos.transactions",
                "t1.wos-sync.item-mappings"
            ]
        );
    }

    #[test]
    fn tier_delays_grow_exponentially_and_attempts_beyond_the_last_tier_reuse_it() {
        let policy = RetrySettings::default();
        let delays: Vec<_> = (1..=5).map(|t| policy.tier_delay(t).as_millis()).collect();
        assert_eq!(delays, [1_000, 5_000, 25_000, 125_000, 625_000]);
        assert_eq!(policy.tier_for_attempt(1), 1);
        assert_eq!(policy.tier_for_attempt(5), 5);
        assert_eq!(policy.tier_for_attempt(7), 5);
        assert_eq!(policy.tier_for_attempt(0), 1);
    }

    #[test]
    fn jitter_spreads_delays_within_bounds_and_the_queue_ttl_covers_the_longest() {
        let policy = RetrySettings {
            jitter: 0.2,
            ..RetrySettings::default()
        };
        assert_eq!(policy.jittered_delay(1, 0.0).as_millis(), 800);
        assert_eq!(policy.jittered_delay(1, 0.5).as_millis(), 1_000);
        assert!(policy.jittered_delay(1, 0.999_999).as_millis() <= 1_200);
        assert_eq!(policy.tier_ttl(1).as_millis(), 1_200);
        let no_jitter = RetrySettings {
            jitter: 0.0,
            ..RetrySettings::default()
        };
        assert_eq!(no_jitter.jittered_delay(2, 0.9).as_millis(), 5_000);
    }

    #[test]
    fn invalid_policies_are_refused_with_the_key() {
        let cases = [
            (
                RetrySettings {
                    base_delay_ms: 0,
                    ..RetrySettings::default()
                },
                "retry.base_delay_ms",
            ),
            (
                RetrySettings {
                    multiplier: 0,
                    ..RetrySettings::default()
                },
                "retry.multiplier",
            ),
            (
                RetrySettings {
                    tiers: 0,
                    ..RetrySettings::default()
                },
                "retry.tiers",
            ),
            (
                RetrySettings {
                    jitter: 1.0,
                    ..RetrySettings::default()
                },
                "retry.jitter",
            ),
            (
                RetrySettings {
                    jitter: -0.1,
                    ..RetrySettings::default()
                },
                "retry.jitter",
            ),
            (
                RetrySettings {
                    max_attempts: 0,
                    ..RetrySettings::default()
                },
                "retry.max_attempts",
            ),
            (
                RetrySettings {
                    delivery_limit: 0,
                    ..RetrySettings::default()
                },
                "retry.delivery_limit",
            ),
            (
                RetrySettings {
                    tiers: 12,
                    ..RetrySettings::default()
                },
                "retry.tiers",
            ),
        ];
        for (policy, key) in cases {
            assert_eq!(
                policy.validate().map_err(|(k, _)| k),
                Err(key.to_owned()),
                "{policy:?}"
            );
        }
        assert_eq!(RetrySettings::default().validate(), Ok(()));
    }
}
