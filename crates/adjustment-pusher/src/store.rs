//! The pusher's PostgreSQL state: transactions, adjustments, push batches, and the dead letters
//! the push loop produces. Every function is one transaction (the sweeps: one per chunk); the
//! push loop and the handlers only decide, this module records. What goes into a batch is
//! decided by `model::batch` (pure); this module selects the rows and records the result.
//!
//! Life of an adjustment: `parked` (no mapping yet) or `pending` at intake; `batched` when a
//! batch claims it (the batch row, with its idempotency key, exact variables and the
//! adjustments behind each change, is committed before anything is sent); `pushed` when Shopify
//! applied its batch (or its sum cancelled out); `dead` when it was dead-lettered. A pending
//! adjustment goes to the inventory item its item is mapped to when its batch is formed (an
//! item unmapped by then parks it again). Several replicas share the tables: batches are formed
//! from rows claimed with `FOR UPDATE SKIP LOCKED`, a unique index keeps one open batch per
//! shop, and a batch is sent by whoever holds its lease.

use chrono::Utc;
use deadpool_postgres::{GenericClient, Transaction};
use platform::{
    amqp::copies::{ErrorKind, copied_json_headers, dead_letter_fields},
    db::DbError,
    outbox::{OutboxMessage, enqueue},
};
use serde_json::Value;

pub use model::batch::BatchRules;

use crate::SERVICE;

mod batches;
mod forming;
mod intake;
mod outcomes;
mod parking;

pub use batches::*;
pub use forming::*;
pub use intake::*;
pub use outcomes::*;
pub use parking::*;

/// Database errors; every one is transient for the caller.
pub type DbResult<T> = Result<T, DbError>;

fn db(err: tokio_postgres::Error) -> DbError {
    DbError::Postgres(err)
}

/// An `items.inventory_item_id` as a mapping: Shopify ids are positive, so anything else
/// (WOS may write 0 or a negative number) is no mapping, and says so in the log.
fn mapped(shop: &str, sku: &str, item: Option<i64>) -> Option<i64> {
    match item {
        Some(id) if id > 0 => Some(id),
        Some(id) => {
            tracing::warn!(
                shop,
                sku,
                inventory_item_id = id,
                "the item's inventory_item_id is not a Shopify id (not a positive integer): \
                 treated as unmapped, its adjustments wait parked"
            );
            None
        }
        None => None,
    }
}

/// The SQL condition "item `i` is mapped to a Shopify inventory item" (see [`mapped`]).
const MAPPED: &str = "i.inventory_item_id > 0";

/// Writes the dead letter of a source transaction to the outbox: its original body and headers
/// plus the contract's `x-error-*` headers, for `Q.dlq`.
async fn dead_letter(
    tx: &Transaction<'_>,
    shop: &str,
    transaction_id: &str,
    kind: ErrorKind,
    reason: &str,
    attempts: u32,
    dlq: &str,
) -> DbResult<String> {
    let row = tx
        .query_one(
            "SELECT body, headers, kind FROM wos_transactions WHERE shop_domain = $1 AND transaction_id = $2",
            &[&shop, &transaction_id],
        )
        .await
        .map_err(db)?;
    let body: Vec<u8> = row.get(0);
    // The stored headers are those of the delivery intake took in: what a retry tier or the
    // broker wrote on it is not part of the dead letter (platform::amqp::copies).
    let mut headers = copied_json_headers(&row.get::<_, Value>(1));
    let transaction_kind: String = row.get(2);
    let fields = dead_letter_fields(kind, reason, attempts, SERVICE, Utc::now());
    if let (Some(headers), Some(fields)) = (headers.as_object_mut(), fields.as_object()) {
        headers.extend(fields.clone());
        headers.insert("x-shop-domain".to_owned(), Value::from(shop));
    }
    let message = OutboxMessage {
        headers,
        ..OutboxMessage::json("", dlq, transaction_id, &body)
    };
    enqueue(tx, &message).await.map_err(db)?;
    tracing::error!(
        shop,
        transaction_id,
        kind = kind.as_str(),
        error = reason,
        "transaction dead-lettered"
    );
    Ok(transaction_kind)
}
