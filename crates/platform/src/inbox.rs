//! The inbox: exactly-once effects for at-least-once deliveries.
//!
//! A handler calls [`record_message`] inside the same transaction as its state change. If the
//! message was recorded before (a redelivery after a crash between commit and ack, a broker
//! redelivery, a publisher's duplicate), the insert finds the existing row and the handler
//! rolls back and reports a duplicate. Because the row and the effect commit together, there is
//! no window in which one exists without the other.

use deadpool_postgres::GenericClient;

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
    let inserted = client
        .execute(
            "INSERT INTO inbox (consumer, message_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&consumer, &message_id],
        )
        .await?;
    Ok(if inserted == 1 {
        InboxEntry::New
    } else {
        InboxEntry::AlreadyProcessed
    })
}
