//! The transactional outbox: publish a message if and only if a state change committed.
//!
//! A service writes the message with [`enqueue`] in the same transaction as the change it
//! announces. After the commit, [`run_outbox_relay`] publishes pending rows (confirmed,
//! persistent) and deletes them. A crash between commit and publish leaves the row, which is
//! published when the service is back, so no announcement is lost; a crash between the
//! broker's confirm and the delete publishes it again, so consumers must treat announcements
//! as at-least-once (they are hints, not state). Several replicas can relay at once: each
//! batch is claimed with `FOR UPDATE SKIP LOCKED`.
//!
//! One bad row never holds up the others. The table is shared by the services (item-ingest's
//! mapping announcements, the pusher's dead letters), and every service's relay publishes every
//! row, so a row the broker cannot take (a dead letter whose queue does not exist, a message
//! the broker refuses) is put aside with its own backoff (`attempts`, `next_attempt_at`,
//! `last_error`), counted in `wos_sync_outbox_publish_failures_total{service,reason}` and shown
//! in `wos_sync_outbox_deferred_messages`, and the rows after it are published. Only a broker
//! that cannot be reached at all (every row would fail alike) stops a batch.
//!
//! Published rows are deleted. A dead letter that cannot be published stays until its queue
//! exists; an announcement that cannot be is dropped by item-ingest's retention job after
//! `[retention] undelivered_announcements_days` ([`prune_undelivered_chunk`]).

use std::{sync::Arc, time::Duration};

use deadpool_postgres::{GenericClient, Pool};
use lapin::{BasicProperties, protocol::AMQPErrorKind};
use prometheus::{IntCounterVec, IntGauge};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{
    amqp::publisher::{Confirmed, Publisher, PublisherError},
    db::DbError,
    metrics::Metrics,
};

/// One message to publish after commit.
#[derive(Debug, Clone)]
pub struct OutboxMessage<'a> {
    pub exchange: &'a str,
    pub routing_key: &'a str,
    pub message_id: &'a str,
    /// The body, as the message will carry it.
    pub body: &'a [u8],
    /// AMQP headers: a JSON object of string or integer values (empty for none).
    pub headers: serde_json::Value,
    /// `content_type` property.
    pub content_type: &'a str,
}

impl<'a> OutboxMessage<'a> {
    /// A JSON message without headers.
    pub fn json(
        exchange: &'a str,
        routing_key: &'a str,
        message_id: &'a str,
        body: &'a [u8],
    ) -> Self {
        Self {
            exchange,
            routing_key,
            message_id,
            body,
            headers: serde_json::Value::Object(serde_json::Map::new()),
            content_type: "application/json",
        }
    }
}

/// Writes `message` in the caller's transaction. Written while handling a delivery, it carries
/// the delivery's trace (a child of it) unless its headers bring their own `traceparent`.
pub async fn enqueue<C: GenericClient>(
    client: &C,
    message: &OutboxMessage<'_>,
) -> Result<(), tokio_postgres::Error> {
    enqueue_all(client, std::slice::from_ref(message)).await
}

/// Writes `messages` in the caller's transaction with one statement, as [`enqueue`] writes one.
pub async fn enqueue_all<'a, C: GenericClient>(
    client: &C,
    messages: &[OutboxMessage<'a>],
) -> Result<(), tokio_postgres::Error> {
    if messages.is_empty() {
        return Ok(());
    }
    let column = |f: fn(&OutboxMessage<'a>) -> &'a str| messages.iter().map(f).collect::<Vec<_>>();
    let headers: Vec<serde_json::Value> = messages
        .iter()
        .map(|message| {
            let mut headers = message.headers.clone();
            crate::trace::stamp_json(&mut headers);
            headers
        })
        .collect();
    let bodies: Vec<&[u8]> = messages.iter().map(|message| message.body).collect();
    client
        .execute(
            "INSERT INTO outbox (exchange, routing_key, message_id, body, headers, content_type) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::jsonb[], \
                 $6::text[])",
            &[
                &column(|m| m.exchange),
                &column(|m| m.routing_key),
                &column(|m| m.message_id),
                &bodies,
                &headers,
                &column(|m| m.content_type),
            ],
        )
        .await?;
    Ok(())
}

/// Rows published per claim.
const BATCH: i64 = 200;

/// Longest wait before a row whose publish failed is tried again.
const MAX_ROW_BACKOFF_SECS: f64 = 300.0;

/// What a relay reports, under its service's name.
#[derive(Debug, Clone)]
pub struct OutboxMetrics {
    service: String,
    failures: IntCounterVec,
    deferred: IntGauge,
}

impl OutboxMetrics {
    /// The relay's metrics in `metrics`, labelled `service`.
    pub fn new(metrics: &Metrics, service: &str) -> Self {
        Self {
            service: service.to_owned(),
            failures: metrics.outbox_publish_failures_total.clone(),
            deferred: metrics
                .outbox_deferred_messages
                .with_label_values(&[service]),
        }
    }

    fn failed(&self, reason: FailureReason) {
        self.failures
            .with_label_values(&[self.service.as_str(), reason.as_str()])
            .inc();
    }
}

/// Why a row was not published (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    /// A message addressed to a queue directly (a dead letter) whose queue does not exist.
    Unroutable,
    /// The broker refused this message: a nack, or a channel error such as a missing exchange.
    Refused,
    /// The broker could not be reached or did not answer: every row would fail alike.
    Unavailable,
}

impl FailureReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unroutable => "unroutable",
            Self::Refused => "refused",
            Self::Unavailable => "unavailable",
        }
    }
}

/// Publishes pending outbox rows until `shutdown`: at once when `wake` is notified (after a
/// commit that enqueued something), and every second otherwise (rows left by a crash or a
/// broker outage, rows whose retry is due).
pub async fn run_outbox_relay(
    pool: Pool,
    publisher: Publisher,
    metrics: OutboxMetrics,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let mut failures: u32 = 0;
    loop {
        let pause = if failures == 0 {
            Duration::from_secs(1)
        } else {
            Duration::from_millis(250 * (1 << failures.min(7))).min(Duration::from_secs(30))
        };
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = wake.notified(), if failures == 0 => {}
            _ = tokio::time::sleep(pause) => {}
        }
        loop {
            match publish_batch(&pool, &publisher, &metrics).await {
                Ok(relayed) if relayed.published == 0 && relayed.deferred == 0 => {
                    failures = 0;
                    break;
                }
                Ok(relayed) => {
                    failures = 0;
                    tracing::debug!(
                        published = relayed.published,
                        deferred = relayed.deferred,
                        "outbox batch relayed"
                    );
                    if relayed.published == 0 {
                        // Only rows put aside: nothing more is due until their backoff ends.
                        break;
                    }
                }
                Err(err) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(error = %err, "outbox relay cannot publish; will retry");
                    break;
                }
            }
        }
        match deferred_count(&pool).await {
            Ok(count) => metrics.deferred.set(count),
            Err(err) => tracing::debug!(error = %err, "cannot count deferred outbox rows"),
        }
    }
}

/// Why a batch stopped (its remaining rows stay in the outbox, unchanged).
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Database(#[from] DbError),
    /// The broker cannot be reached: every row would fail the same way.
    #[error("publish: {0}")]
    Publish(#[from] PublisherError),
}

impl From<tokio_postgres::Error> for RelayError {
    fn from(err: tokio_postgres::Error) -> Self {
        Self::Database(DbError::Postgres(err))
    }
}

impl From<deadpool_postgres::PoolError> for RelayError {
    fn from(err: deadpool_postgres::PoolError) -> Self {
        Self::Database(DbError::Pool(err))
    }
}

/// What one batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Relayed {
    /// Rows the broker confirmed (deleted).
    pub published: usize,
    /// Rows whose own publish failed: put aside with a backoff, the batch went on.
    pub deferred: usize,
}

/// How one row's publish ended.
enum RowOutcome {
    Published,
    /// This row failed; the next rows may still go.
    Deferred(FailureReason, String),
    /// The broker is out of reach: stop the batch.
    Stop(PublisherError),
}

fn row_outcome(
    exchange: &str,
    routing_key: &str,
    confirmed: Result<Confirmed, PublisherError>,
) -> RowOutcome {
    match confirmed {
        // A message addressed to a queue directly (a dead letter) must reach it: it stays
        // until the queue exists.
        Ok(Confirmed::Unroutable) if exchange.is_empty() => RowOutcome::Deferred(
            FailureReason::Unroutable,
            format!("queue `{routing_key}` does not exist"),
        ),
        // An announcement nobody is bound to yet is still "published": consumers that start
        // later re-read the state they need, and the outbox must not grow forever.
        Ok(_) => RowOutcome::Published,
        Err(err @ PublisherError::Nacked) => {
            RowOutcome::Deferred(FailureReason::Refused, err.to_string())
        }
        // A channel-level error (a missing exchange, access refused) concerns this message;
        // the publisher replaces its connection and the next row goes on a fresh one.
        Err(PublisherError::Broker(err)) if is_channel_error(&err) => {
            RowOutcome::Deferred(FailureReason::Refused, format!("broker: {err}"))
        }
        Err(err) => RowOutcome::Stop(err),
    }
}

/// A soft (channel-level) AMQP error: about one operation, not the connection.
fn is_channel_error(err: &lapin::Error) -> bool {
    matches!(err.kind(), lapin::ErrorKind::ProtocolError(amqp) if matches!(amqp.kind(), AMQPErrorKind::Soft(_)))
}

/// Claims up to [`BATCH`] due rows, publishes them in order and deletes what the broker
/// confirmed. A row the broker does not take is put aside with a backoff and the batch goes on;
/// a broker out of reach ends the batch with an error (what was confirmed before is deleted).
pub async fn publish_batch(
    pool: &Pool,
    publisher: &Publisher,
    metrics: &OutboxMetrics,
) -> Result<Relayed, RelayError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let rows = tx
        .query(
            "SELECT id, exchange, routing_key, message_id, body, headers, content_type, attempts \
             FROM outbox WHERE next_attempt_at IS NULL OR next_attempt_at <= now() \
             ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
            &[&BATCH],
        )
        .await?;
    let mut published = Vec::with_capacity(rows.len());
    let mut deferred = 0;
    let mut stopped = None;
    for row in &rows {
        let id: i64 = row.get(0);
        let (exchange, routing_key): (&str, &str) = (row.get(1), row.get(2));
        let message_id: &str = row.get(3);
        let body: &[u8] = row.get(4);
        let headers: serde_json::Value = row.get(5);
        let content_type: &str = row.get(6);
        let attempts: i32 = row.get(7);
        let mut properties = BasicProperties::default()
            .with_message_id(message_id.into())
            .with_content_type(content_type.into());
        let table = crate::amqp::headers::from_json(&headers);
        if !table.inner().is_empty() {
            properties = properties.with_headers(table);
        }
        let confirmed = publisher
            .publish(
                exchange,
                routing_key,
                body,
                properties,
                Duration::from_secs(10),
            )
            .await;
        match row_outcome(exchange, routing_key, confirmed) {
            RowOutcome::Published => published.push(id),
            RowOutcome::Deferred(reason, error) => {
                metrics.failed(reason);
                deferred += 1;
                let attempts = attempts.saturating_add(1);
                // Logged at its first failures and then every tenth, not at every backoff.
                if attempts <= 3 || attempts % 10 == 0 {
                    tracing::warn!(
                        exchange,
                        routing_key,
                        message_id,
                        attempts,
                        reason = reason.as_str(),
                        error = %error,
                        "outbox row cannot be published; tried again later, the rows after it go on"
                    );
                }
                tx.execute(
                    "UPDATE outbox SET attempts = $2, last_error = $3, \
                         next_attempt_at = now() + make_interval(secs => least($4, 2 ^ least($2, 9))) \
                     WHERE id = $1",
                    &[&id, &attempts, &error, &MAX_ROW_BACKOFF_SECS],
                )
                .await?;
            }
            RowOutcome::Stop(err) => {
                metrics.failed(FailureReason::Unavailable);
                stopped = Some(err);
                break;
            }
        }
    }
    // What the broker confirmed is deleted even when a later row failed, so it is not
    // published again.
    if !published.is_empty() {
        tx.execute("DELETE FROM outbox WHERE id = ANY($1)", &[&published])
            .await?;
    }
    tx.commit().await?;
    match stopped {
        Some(err) => Err(err.into()),
        None => Ok(Relayed {
            published: published.len(),
            deferred,
        }),
    }
}

/// Rows waiting for a retry after their own publish failed.
pub async fn deferred_count(pool: &Pool) -> Result<i64, DbError> {
    let row = pool
        .get()
        .await?
        .query_one("SELECT count(*) FROM outbox WHERE attempts > 0", &[])
        .await?;
    Ok(row.get(0))
}

/// Deletes up to `chunk` rows for `exchange` (announcements, never dead letters: those have
/// the empty exchange) enqueued longer than `window` ago and still not published, in one
/// transaction; returns how many. Each is logged: an announcement lost is a hint lost, which
/// the consumer's own sweep makes up for.
pub async fn prune_undelivered_chunk(
    pool: &Pool,
    exchange: &str,
    window: Duration,
    chunk: i64,
) -> Result<u64, DbError> {
    if exchange.is_empty() {
        return Err(DbError::Config(
            "dead letters (the empty exchange) are never pruned from the outbox".into(),
        ));
    }
    let rows = pool
        .get()
        .await?
        .query(
            "DELETE FROM outbox WHERE id IN ( \
                 SELECT id FROM outbox \
                 WHERE exchange = $1 AND created_at < now() - make_interval(secs => $2) \
                 ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED) \
             RETURNING routing_key, message_id, attempts, last_error",
            &[&exchange, &window.as_secs_f64(), &chunk],
        )
        .await?;
    for row in &rows {
        let (routing_key, message_id, attempts, error): (&str, &str, i32, Option<&str>) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        tracing::warn!(
            exchange,
            routing_key,
            message_id,
            attempts,
            last_error = error.unwrap_or("-"),
            "outbox message never published within the retention window: dropped"
        );
    }
    Ok(rows.len() as u64)
}
