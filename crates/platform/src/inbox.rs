//! The inbox: exactly-once effects for at-least-once deliveries.
//!
//! A handler calls [`record_message`] inside the same transaction as its state change. If the
//! message was recorded before (a redelivery after a crash between commit and ack, a broker
//! redelivery, a publisher's duplicate), the insert finds the existing row and the handler
//! rolls back and reports a duplicate. Because the row and the effect commit together, there is
//! no window in which one exists without the other.
//!
//! Rows are kept for `[retention] inbox_days` and then pruned by the consumer's service
//! ([`prune_inbox_chunk`]): a copy arriving within that window is a duplicate, a copy arriving
//! later is new.

use std::time::Duration;

use deadpool_postgres::{GenericClient, Pool};

use crate::db::DbError;

/// Whether a message is new to this consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboxEntry {
    /// First time: go ahead and apply the effect in this transaction.
    New,
    /// Already applied earlier: roll back and acknowledge as a duplicate.
    AlreadyProcessed,
}

/// Records `message_id` for `consumer` in the caller's transaction.
///
/// `consumer` separates services sharing a database (a message id is only unique per stream).
pub async fn record_message<C: GenericClient>(
    client: &C,
    consumer: &str,
    message_id: &str,
) -> Result<InboxEntry, tokio_postgres::Error> {
    let entries = record_messages(client, consumer, &[message_id]).await?;
    Ok(entries
        .first()
        .copied()
        .unwrap_or(InboxEntry::AlreadyProcessed))
}

/// Records a group's message ids for `consumer` in the caller's transaction, with one
/// statement; says for each id, in order, whether it is new. An id given twice is new only the
/// first time.
pub async fn record_messages<C: GenericClient>(
    client: &C,
    consumer: &str,
    message_ids: &[&str],
) -> Result<Vec<InboxEntry>, tokio_postgres::Error> {
    let inserted = client
        .query(
            "INSERT INTO inbox (consumer, message_id) \
             SELECT $1, id FROM unnest($2::text[]) AS id \
             ON CONFLICT DO NOTHING RETURNING message_id",
            &[&consumer, &message_ids],
        )
        .await?;
    let mut new: std::collections::HashSet<String> =
        inserted.iter().map(|row| row.get::<_, String>(0)).collect();
    Ok(message_ids
        .iter()
        .map(|id| {
            if new.remove(*id) {
                InboxEntry::New
            } else {
                InboxEntry::AlreadyProcessed
            }
        })
        .collect())
}

/// Deletes up to `chunk` of `consumer`'s inbox rows recorded longer than `window` ago (by
/// PostgreSQL's clock, the one that stamped them), oldest first, in one transaction; returns
/// how many. Rows another transaction holds are skipped.
pub async fn prune_inbox_chunk(
    pool: &Pool,
    consumer: &str,
    window: Duration,
    chunk: i64,
) -> Result<u64, DbError> {
    let deleted = pool
        .get()
        .await?
        .execute(
            "DELETE FROM inbox WHERE (consumer, message_id) IN ( \
                 SELECT consumer, message_id FROM inbox \
                 WHERE consumer = $1 AND processed_at < now() - make_interval(secs => $2) \
                 ORDER BY processed_at LIMIT $3 FOR UPDATE SKIP LOCKED)",
            &[&consumer, &window.as_secs_f64(), &chunk],
        )
        .await?;
    Ok(deleted)
}
