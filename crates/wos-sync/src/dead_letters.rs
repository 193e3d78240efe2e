//! Reading a dead-letter queue without losing anything, and the copy a replay publishes.
//!
//! RabbitMQ has no "peek": a DLQ is read with `basic.get` and manual acknowledgement. Every
//! message taken is held (unacknowledged) until the command decides: acknowledged once it was
//! replayed (after the copy was confirmed, or the database recorded the replay) or purged; every
//! other one is given back with `basic.nack(requeue)` at the end. A crash or a lost connection
//! gives every unacknowledged message back too, so a DLQ command can stop at any point without
//! losing a dead letter. While one command holds messages, another sees the queue without them.

use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use lapin::{
    BasicProperties, Channel, Connection,
    message::BasicGetMessage,
    options::{BasicAckOptions, BasicGetOptions, BasicNackOptions, QueueDeclareOptions},
    types::FieldTable,
};
use platform::amqp::{
    copies::{copied_headers, republished},
    headers::{header_str, header_u64, set_str, to_json},
};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::{cli::DlqFilterArgs, context::Context, output::progress};

/// One dead letter as the CLI sees it.
#[derive(Debug)]
pub struct DeadLetter {
    /// The `message_id` property, or `body:<sha256 prefix>` for a message without one.
    pub id: String,
    pub body: Vec<u8>,
    pub properties: BasicProperties,
    /// `x-error-kind`.
    pub kind: Option<String>,
    /// `x-error`.
    pub error: Option<String>,
    /// `x-attempts`.
    pub attempts: Option<u64>,
    /// `x-failed-at`, as written (it identifies one dead-lettering of a message).
    pub failed_at: Option<String>,
    /// `x-service`.
    pub service: Option<String>,
    /// The shop: `x-shop-domain` (pusher), `x-shopify-shop-domain` (relay) or the body's
    /// `shop_domain` (a WOS transaction).
    pub shop: Option<String>,
    message: BasicGetMessage,
}

impl DeadLetter {
    fn new(message: BasicGetMessage) -> Self {
        let delivery = &message.delivery;
        let properties = delivery.properties.clone();
        let headers = properties.headers().as_ref();
        let text = |name: &str| header_str(headers, name).map(str::to_owned);
        let body_shop = || {
            serde_json::from_slice::<serde_json::Value>(&delivery.data)
                .ok()?
                .get("shop_domain")?
                .as_str()
                .map(str::to_owned)
        };
        let id = properties.message_id().as_ref().map_or_else(
            || {
                let digest = Sha256::digest(&delivery.data);
                let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
                format!("body:{hex}")
            },
            |id| id.to_string(),
        );
        Self {
            id,
            body: delivery.data.clone(),
            kind: text("x-error-kind"),
            error: text("x-error"),
            attempts: header_u64(headers, "x-attempts"),
            failed_at: text("x-failed-at"),
            service: text("x-service"),
            shop: text("x-shop-domain")
                .or_else(|| text("x-shopify-shop-domain"))
                .or_else(body_shop),
            properties,
            message,
        }
    }

    /// A string header of the message.
    pub fn header(&self, name: &str) -> Option<&str> {
        header_str(self.properties.headers().as_ref(), name)
    }

    /// When it was dead-lettered (`x-failed-at`), if it says.
    pub fn failed_at_time(&self) -> Option<DateTime<Utc>> {
        let text = self.failed_at.as_deref()?;
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// Whether the filters (and the ids, when given) select it.
    pub fn selected(&self, filter: &DlqFilterArgs, ids: &[String], now: DateTime<Utc>) -> bool {
        if !ids.is_empty() && !ids.contains(&self.id) {
            return false;
        }
        if let Some(kind) = filter.kind
            && self.kind.as_deref() != Some(kind.as_str())
        {
            return false;
        }
        if let Some(shop) = &filter.shop
            && self.shop.as_deref() != Some(shop.as_str())
        {
            return false;
        }
        let age = self
            .failed_at_time()
            .map(|at| (now - at).to_std().unwrap_or_default());
        if let Some(older_than) = filter.older_than
            && age.is_none_or(|age| age < older_than)
        {
            return false;
        }
        if let Some(newer_than) = filter.newer_than
            && age.is_none_or(|age| age > newer_than)
        {
            return false;
        }
        true
    }

    /// The summary `dlq list` prints.
    pub fn summary(&self, queue: &str, now: DateTime<Utc>) -> Summary {
        Summary {
            queue: queue.to_owned(),
            message_id: self.id.clone(),
            kind: self.kind.clone(),
            shop: self.shop.clone(),
            service: self.service.clone(),
            attempts: self.attempts,
            failed_at: self.failed_at.clone(),
            age_seconds: self
                .failed_at_time()
                .map(|at| (now - at).num_seconds().max(0)),
            error: self.error.clone(),
            body_bytes: self.body.len(),
        }
    }

    /// Everything `dlq show` prints: the properties, every header, the body.
    pub fn details(&self, queue: &str) -> serde_json::Value {
        let p = &self.properties;
        let text = |v: &Option<lapin::types::ShortString>| v.as_ref().map(|s| s.to_string());
        let body = match serde_json::from_slice::<serde_json::Value>(&self.body) {
            Ok(json) => json,
            Err(_) => serde_json::Value::String(String::from_utf8_lossy(&self.body).into_owned()),
        };
        serde_json::json!({
            "queue": queue,
            "message_id": self.id,
            "properties": {
                "content_type": text(p.content_type()),
                "correlation_id": text(p.correlation_id()),
                "app_id": text(p.app_id()),
                "type": text(p.kind()),
                "timestamp": p.timestamp(),
                "delivery_mode": p.delivery_mode(),
            },
            "headers": to_json(p.headers().as_ref()),
            "body": body,
        })
    }

    /// The copy a replay publishes on the work queue: the original body, properties and headers
    /// with a fresh attempt count. What every copy drops is dropped (`platform::amqp::copies`:
    /// the broker's `x-delivery-count`, `x-acquired-count`, `x-death`, `x-first-death-*`,
    /// `x-last-death-*`, and our `x-error-*`, `x-attempts`, `x-failed-at`, `x-service`,
    /// `x-last-error`, `x-shop-domain`), so the consumer runtime counts from the first attempt
    /// again; `x-replayed-at` says when.
    pub fn replay_copy(&self, now: DateTime<Utc>) -> BasicProperties {
        let mut headers = copied_headers(self.properties.headers().as_ref());
        set_str(
            &mut headers,
            "x-replayed-at",
            now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        );
        republished(&self.properties, headers)
    }
}

/// One line of `dlq list`.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub queue: String,
    pub message_id: String,
    pub kind: Option<String>,
    pub shop: Option<String>,
    pub service: Option<String>,
    pub attempts: Option<u64>,
    pub failed_at: Option<String>,
    pub age_seconds: Option<i64>,
    pub error: Option<String>,
    pub body_bytes: usize,
}

/// The messages taken from one DLQ, held until each is removed or given back.
pub struct DeadLetterQueue {
    /// The DLQ's name.
    pub name: String,
    connection: Connection,
    channel: Channel,
    /// Taken and not decided yet, in queue order.
    pub held: Vec<DeadLetter>,
}

impl std::fmt::Debug for DeadLetterQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetterQueue")
            .field("name", &self.name)
            .field("held", &self.held.len())
            .finish_non_exhaustive()
    }
}

impl DeadLetterQueue {
    /// Takes up to `limit` messages of `name` (every message ready in it), showing progress
    /// on a terminal. A DLQ that does not exist is an error naming it.
    pub async fn take(context: &Context, name: &str, limit: usize) -> anyhow::Result<Self> {
        let connection = context.broker("dlq").await?;
        let channel = connection.create_channel().await?;
        let declared = channel
            .queue_declare(
                name.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .with_context(|| {
                format!("queue {name} does not exist (run `wos-sync topology` to declare it)")
            })?;
        // The depth only sizes the progress bar: reading goes on until the queue has nothing
        // ready, so messages another command just gave back are included too.
        let depth = usize::try_from(declared.message_count()).unwrap_or(usize::MAX);
        let bar = progress(depth.min(limit) as u64, &format!("reading {name}"));
        let mut held = Vec::new();
        while held.len() < limit {
            let got = channel
                .basic_get(name.into(), BasicGetOptions { no_ack: false })
                .await
                .with_context(|| format!("reading {name}"))?;
            let Some(message) = got else { break };
            held.push(DeadLetter::new(message));
            bar.inc(1);
        }
        bar.finish_and_clear();
        Ok(Self {
            name: name.to_owned(),
            connection,
            channel,
            held,
        })
    }

    /// The message's depth as the broker counts it (ready messages), for status lines.
    pub async fn depth(channel: &Channel, name: &str) -> Option<(u32, u32)> {
        channel
            .queue_declare(
                name.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .ok()
            .map(|q| (q.message_count(), q.consumer_count()))
    }

    /// Removes a held message for good (it was replayed or purged).
    pub async fn remove(&self, letter: &DeadLetter) -> anyhow::Result<()> {
        let acked = letter
            .message
            .delivery
            .acker
            .ack(BasicAckOptions::default())
            .await
            .with_context(|| format!("removing {} from {}", letter.id, self.name))?;
        anyhow::ensure!(
            acked,
            "the broker did not take the removal of {} from {} (channel closed); it is still there",
            letter.id,
            self.name
        );
        Ok(())
    }

    /// Gives every message still held back to the queue and closes the connection.
    pub async fn give_back(self, letters: Vec<DeadLetter>) {
        for letter in letters {
            let _ = letter
                .message
                .delivery
                .acker
                .nack(BasicNackOptions {
                    multiple: false,
                    requeue: true,
                })
                .await;
        }
        // Closing returns anything not acknowledged, should a nack above have failed.
        let close = async {
            let _ = self.channel.close(200, "done".into()).await;
            let _ = self.connection.close(200, "done".into()).await;
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), close).await;
    }
}
