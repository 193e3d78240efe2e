//! The transactional outbox: publish a message if and only if a state change committed.
//!
//! A service writes the message with [`enqueue`] in the same transaction as the change it
//! announces. After the commit, [`run_outbox_relay`] publishes pending rows (confirmed,
//! persistent) and deletes them. A crash between commit and publish leaves the row, which is
//! published when the service is back, so no announcement is lost; a crash between the
//! broker's confirm and the delete publishes it again, so consumers must treat announcements
//! as at-least-once (they are hints, not state). Several replicas can relay at once: each
//! batch is claimed with `FOR UPDATE SKIP LOCKED`.

use std::{sync::Arc, time::Duration};

use deadpool_postgres::{GenericClient, Pool};
use lapin::BasicProperties;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{
    amqp::publisher::{Confirmed, Publisher},
    db::DbError,
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

/// Writes `message` in the caller's transaction.
pub async fn enqueue<C: GenericClient>(
    client: &C,
    message: &OutboxMessage<'_>,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO outbox (exchange, routing_key, message_id, body, headers, content_type) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &message.exchange,
                &message.routing_key,
                &message.message_id,
                &message.body,
                &message.headers,
                &message.content_type,
            ],
        )
        .await?;
    Ok(())
}

/// Rows published per claim.
const BATCH: i64 = 200;

/// Publishes pending outbox rows until `shutdown`: at once when `wake` is notified (after a
/// commit that enqueued something), and every second otherwise (rows left by a crash or a
/// broker outage).
pub async fn run_outbox_relay(
    pool: Pool,
    publisher: Publisher,
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
            match publish_batch(&pool, &publisher).await {
                Ok(0) => {
                    failures = 0;
                    break;
                }
                Ok(published) => {
                    failures = 0;
                    tracing::debug!(published, "outbox batch published");
                }
                Err(err) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(error = %err, "outbox relay cannot publish; will retry");
                    break;
                }
            }
        }
    }
}

/// Why a batch was not published (it stays in the outbox).
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Database(#[from] DbError),
    #[error("publish: {0}")]
    Publish(#[from] crate::amqp::publisher::PublisherError),
    #[error("queue `{0}` does not exist; the message stays in the outbox")]
    Unroutable(String),
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

/// Claims up to [`BATCH`] rows, publishes them in order, deletes them; returns how many.
pub async fn publish_batch(pool: &Pool, publisher: &Publisher) -> Result<usize, RelayError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let rows = tx
        .query(
            "SELECT id, exchange, routing_key, message_id, body, headers, content_type FROM outbox \
             ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
            &[&BATCH],
        )
        .await?;
    let mut published = Vec::with_capacity(rows.len());
    let mut failure = None;
    for row in &rows {
        let (exchange, routing_key): (&str, &str) = (row.get(1), row.get(2));
        let message_id: &str = row.get(3);
        let body: &[u8] = row.get(4);
        let headers: serde_json::Value = row.get(5);
        let content_type: &str = row.get(6);
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
        match confirmed {
            // A message addressed to a queue directly (a dead letter) must reach it: it stays
            // until the queue exists.
            Ok(Confirmed::Unroutable) if exchange.is_empty() => {
                failure = Some(RelayError::Unroutable(routing_key.to_owned()));
                break;
            }
            // An announcement nobody is bound to yet is still "published": consumers that start
            // later re-read the state they need, and the outbox must not grow forever.
            Ok(_) => published.push(row.get::<_, i64>(0)),
            Err(err) => {
                failure = Some(err.into());
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
    match failure {
        Some(err) => Err(err),
        None => Ok(published.len()),
    }
}
