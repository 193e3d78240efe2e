//! The pusher's PostgreSQL state: transactions, adjustments, push batches, and the dead letters
//! the push loop produces. Every function is one transaction; the push loop and the handlers
//! only decide, this module records.
//!
//! Life of an adjustment: `parked` (no mapping yet) or `pending` at intake; `batched` when a
//! batch claims it (the batch row, with its idempotency key and exact variables, is committed
//! before anything is sent); `pushed` when Shopify applied its batch; `dead` when it was
//! dead-lettered. Several replicas share the tables: batches are formed from rows claimed with
//! `FOR UPDATE SKIP LOCKED`, and a batch is sent by whoever holds its lease.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Pool, Transaction};
use model::{
    delta::AdjustmentPlan,
    ids::{InventoryItemId, LocationId},
    transaction::InventoryTransaction,
};
use platform::{
    amqp::consumer::{ErrorKind, dead_letter_fields},
    db::DbError,
    outbox::{OutboxMessage, enqueue},
};
use serde_json::{Value, json};

use crate::SERVICE;

/// Database errors; every one is transient for the caller.
pub type DbResult<T> = Result<T, DbError>;

fn db(err: tokio_postgres::Error) -> DbError {
    DbError::Postgres(err)
}

/// What recording a transaction found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// New: its changes are `pending` (mapped item) or `parked` (no mapping yet).
    Accepted { pending: usize, parked: usize },
    /// The `(shop, transaction_id)` was recorded before. `same_content` false: WOS reused the
    /// id for a different transaction; the first one wins.
    Duplicate { same_content: bool },
}

/// Records a transaction once and its planned changes, in one transaction.
pub async fn record_transaction(
    pool: &Pool,
    transaction: &InventoryTransaction,
    digest: &str,
    body: &[u8],
    headers: &Value,
    plan: &AdjustmentPlan,
) -> DbResult<Recorded> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await.map_err(db)?;
    let shop = transaction.shop_domain.as_str();
    let inserted = tx
        .execute(
            "INSERT INTO wos_transactions (shop_domain, transaction_id, kind, sku, occurred_at, \
                 content_digest, body, headers) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
            &[
                &shop,
                &transaction.transaction_id,
                &transaction.kind.type_name(),
                &transaction.sku,
                &transaction.occurred_at.to_utc(),
                &digest,
                &body,
                headers,
            ],
        )
        .await
        .map_err(db)?;
    if inserted == 0 {
        let row = tx
            .query_one(
                "SELECT content_digest FROM wos_transactions WHERE shop_domain = $1 AND transaction_id = $2",
                &[&shop, &transaction.transaction_id],
            )
            .await
            .map_err(db)?;
        let first: &str = row.get(0);
        let same_content = first == digest;
        tx.rollback().await.map_err(db)?;
        return Ok(Recorded::Duplicate { same_content });
    }
    let mapped = current_mapping(&tx, shop, &transaction.sku).await?;
    let (mut pending, mut parked) = (0, 0);
    for change in &plan.changes {
        let state = if mapped.is_some() {
            "pending"
        } else {
            "parked"
        };
        tx.execute(
            "INSERT INTO adjustments (shop_domain, transaction_id, kind, sku, location_id, delta, \
                 reason, occurred_at, state, inventory_item_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            &[
                &shop,
                &transaction.transaction_id,
                &transaction.kind.type_name(),
                &transaction.sku,
                &id_param(change.location.0)?,
                &change.delta,
                &change.reason.as_str(),
                &transaction.occurred_at.to_utc(),
                &state,
                &mapped,
            ],
        )
        .await
        .map_err(db)?;
        if mapped.is_some() {
            pending += 1
        } else {
            parked += 1
        }
    }
    tx.commit().await.map_err(db)?;
    Ok(Recorded::Accepted { pending, parked })
}

fn id_param(id: u64) -> DbResult<i64> {
    i64::try_from(id).map_err(|_| DbError::Config(format!("id {id} does not fit a bigint")))
}

/// The item's current `inventory_item_id`, if the item exists and is mapped.
async fn current_mapping<C: GenericClient>(
    client: &C,
    shop: &str,
    sku: &str,
) -> DbResult<Option<i64>> {
    Ok(client
        .query_opt(
            "SELECT inventory_item_id FROM items WHERE shop_domain = $1 AND sku = $2",
            &[&shop, &sku],
        )
        .await
        .map_err(db)?
        .and_then(|row| row.get(0)))
}

/// Releases the parked adjustments of `(shop, sku)` to the inventory item mapped now.
/// Returns how many were released (0 while the item is still unmapped).
pub async fn release_parked(pool: &Pool, shop: &str, sku: &str) -> DbResult<u64> {
    let client = pool.get().await?;
    client
        .execute(
            "UPDATE adjustments a SET state = 'pending', inventory_item_id = i.inventory_item_id, \
                 updated_at = now() \
             FROM items i \
             WHERE a.shop_domain = $1 AND a.sku = $2 AND a.state = 'parked' \
               AND i.shop_domain = a.shop_domain AND i.sku = a.sku AND i.inventory_item_id IS NOT NULL",
            &[&shop, &sku],
        )
        .await
        .map_err(db)
}

/// Releases every parked adjustment whose item has a mapping now (announcements that were
/// missed: the pusher was down, or no queue was bound yet). Returns the shops with released work.
pub async fn release_all_mapped(pool: &Pool) -> DbResult<BTreeSet<String>> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "UPDATE adjustments a SET state = 'pending', inventory_item_id = i.inventory_item_id, \
                 updated_at = now() \
             FROM items i \
             WHERE a.state = 'parked' AND i.shop_domain = a.shop_domain AND i.sku = a.sku \
               AND i.inventory_item_id IS NOT NULL \
             RETURNING a.shop_domain",
            &[],
        )
        .await
        .map_err(db)?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// Dead-letters (as `unmapped`) every adjustment parked longer than `max_age`. Returns the
/// dead-lettered transactions as `(shop, type)`.
pub async fn expire_parked(
    pool: &Pool,
    max_age: std::time::Duration,
    dlq: &str,
) -> DbResult<Vec<(String, String)>> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await.map_err(db)?;
    let seconds = max_age.as_secs_f64();
    let rows = tx
        .query(
            "UPDATE adjustments SET state = 'dead', updated_at = now(), \
                 error = 'no Shopify inventory item mapped within the parking age' \
             WHERE state = 'parked' AND created_at < now() - make_interval(secs => $1) \
             RETURNING shop_domain, transaction_id",
            &[&seconds],
        )
        .await
        .map_err(db)?;
    let transactions: BTreeSet<(String, String)> =
        rows.iter().map(|row| (row.get(0), row.get(1))).collect();
    let days = max_age.as_secs_f64() / 86_400.0;
    let mut dead = Vec::new();
    for (shop, transaction_id) in &transactions {
        let reason =
            format!("item has no Shopify inventory item mapping after {days:.2} days parked");
        let kind = dead_letter(
            &tx,
            shop,
            transaction_id,
            ErrorKind::Unmapped,
            &reason,
            1,
            dlq,
        )
        .await?;
        dead.push((shop.clone(), kind));
    }
    tx.commit().await.map_err(db)?;
    Ok(dead)
}

/// Parked adjustments per shop (`wos_sync_parked_adjustments`).
pub async fn parked_counts(pool: &Pool) -> DbResult<BTreeMap<String, i64>> {
    let client = pool.get().await?;
    let rows = client
        .query("SELECT shop_domain, count(*) FROM adjustments WHERE state = 'parked' GROUP BY shop_domain", &[])
        .await
        .map_err(db)?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

/// A batch as persisted, ready to (re)send.
#[derive(Debug, Clone)]
pub struct Batch {
    pub id: i64,
    /// The key this claim sends with; outcome writes are fenced on it (a replica acting on a
    /// stale claim changes nothing).
    pub idempotency_key: String,
    /// The mutation's `input`, exactly as first sent.
    pub input: Value,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    /// When the batch was first sent under its key (this claim's time for a fresh batch).
    pub first_sent_at: DateTime<Utc>,
    /// Earlier attempts that may have been applied (sent without a definite answer).
    pub uncertain_before: i32,
}

/// The change `(inventory item, location)` of each entry of `input.changes`, in order.
pub fn batch_change_keys(input: &Value) -> Vec<(i64, i64)> {
    input["changes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|change| {
            let item =
                model::ids::InventoryItemId::parse_gid(change["inventoryItemId"].as_str()?).ok()?;
            let location =
                model::ids::LocationId::parse_gid(change["locationId"].as_str()?).ok()?;
            Some((i64::try_from(item.0).ok()?, i64::try_from(location.0).ok()?))
        })
        .collect()
}

/// Whether the shop has a batch that is not finished (then new pending work waits and coalesces).
pub async fn has_open_batch(pool: &Pool, shop: &str) -> DbResult<bool> {
    let client = pool.get().await?;
    Ok(client
        .query_opt(
            "SELECT 1 FROM push_batches WHERE shop_domain = $1 AND state = 'open' LIMIT 1",
            &[&shop],
        )
        .await
        .map_err(db)?
        .is_some())
}

/// Claims the shop's oldest open batch that is due and not leased by another sender.
pub async fn claim_open_batch(
    pool: &Pool,
    shop: &str,
    lease: std::time::Duration,
) -> DbResult<Option<Batch>> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            // Counted as uncertain before it is sent: a crash after sending must not let the
            // batch pass for never sent. A definite "not applied" answer takes it back.
            "UPDATE push_batches SET lease_until = now() + make_interval(secs => $2), \
                 attempts = attempts + 1, uncertain_attempts = uncertain_attempts + 1, \
                 first_sent_at = coalesce(first_sent_at, now()) \
             WHERE id = (SELECT id FROM push_batches \
                         WHERE shop_domain = $1 AND state = 'open' AND not_before <= now() \
                           AND (lease_until IS NULL OR lease_until < now()) \
                         ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) \
             RETURNING id, idempotency_key, variables, attempts, created_at, first_sent_at, \
                 uncertain_attempts - 1",
            &[&shop, &lease.as_secs_f64()],
        )
        .await
        .map_err(db)?;
    Ok(row.map(|row| Batch {
        id: row.get(0),
        idempotency_key: row.get(1),
        input: row.get(2),
        attempts: row.get(3),
        created_at: row.get(4),
        first_sent_at: row.get(5),
        uncertain_before: row.get(6),
    }))
}

/// Settles the batch row if it is still open under the key `batch` was claimed with; `false`
/// when another replica (or a later claim) has already moved on: the caller then does nothing.
async fn settle(
    tx: &Transaction<'_>,
    batch: &Batch,
    state: &str,
    group_id: Option<&str>,
    error: Option<&str>,
) -> DbResult<bool> {
    let updated = tx
        .execute(
            "UPDATE push_batches SET state = $3, adjustment_group_id = $4, \
                 last_error = coalesce($5, last_error), completed_at = now(), lease_until = NULL \
             WHERE id = $1 AND state = 'open' AND idempotency_key = $2",
            &[&batch.id, &batch.idempotency_key, &state, &group_id, &error],
        )
        .await
        .map_err(db)?;
    Ok(updated == 1)
}

/// How batches are cut from pending adjustments.
#[derive(Debug, Clone, Copy)]
pub struct BatchRules {
    /// Shopify's limit is 250 changes per call.
    pub max_changes: usize,
    /// `false`: one call per transaction (the comparison mode of the benchmark).
    pub coalesce_transactions: bool,
}

/// Forms one batch from the shop's pending adjustments, if there are any: one reason per call,
/// at most `max_changes` distinct `(item, location)` changes, several adjustments of one
/// `(item, location)` summed into one change. Returns the batch id and its change count (a
/// batch whose deltas all cancel out is recorded as applied without a call: `None` id).
pub async fn form_batch(
    pool: &Pool,
    shop: &str,
    rules: BatchRules,
) -> DbResult<Option<FormedBatch>> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await.map_err(db)?;
    let rows = tx
        .query(
            "SELECT id, inventory_item_id, location_id, delta, reason, transaction_id \
             FROM adjustments WHERE shop_domain = $1 AND state = 'pending' \
             ORDER BY id LIMIT 5000 FOR UPDATE SKIP LOCKED",
            &[&shop],
        )
        .await
        .map_err(db)?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let reason: String = first.get(4);
    let first_transaction: String = first.get(5);
    let mut sums: BTreeMap<(i64, i64), i64> = BTreeMap::new();
    let mut order: Vec<(i64, i64)> = Vec::new();
    let mut taken: Vec<i64> = Vec::new();
    for row in &rows {
        let (id, item, location, delta): (i64, i64, i64, i64) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        let (row_reason, transaction): (&str, &str) = (row.get(4), row.get(5));
        if row_reason != reason
            || (!rules.coalesce_transactions && transaction != first_transaction)
        {
            continue;
        }
        let key = (item, location);
        if !sums.contains_key(&key) {
            if order.len() == rules.max_changes {
                continue;
            }
            order.push(key);
        }
        *sums.entry(key).or_default() += delta;
        taken.push(id);
    }
    let changes: Vec<Value> = order
        .iter()
        .filter(|key| sums[key] != 0)
        .map(|(item, location)| {
            json!({
                "delta": sums[&(*item, *location)],
                "inventoryItemId": InventoryItemId(u64::try_from(*item).unwrap_or_default()).gid(),
                "locationId": LocationId(u64::try_from(*location).unwrap_or_default()).gid(),
                // Always present and explicitly null: required from 2026-04, and we push deltas,
                // never compare-and-set (CONTRACT 4).
                "changeFromQuantity": Value::Null,
            })
        })
        .collect();
    let state = if changes.is_empty() {
        "applied"
    } else {
        "open"
    };
    let key = uuid::Uuid::new_v4().to_string();
    let change_count = i32::try_from(changes.len()).unwrap_or(i32::MAX);
    let row = tx
        .query_one(
            "INSERT INTO push_batches (shop_domain, reason, idempotency_key, variables, change_count, state, completed_at) \
             VALUES ($1, $2, $3, '{}'::jsonb, $4, $5, CASE WHEN $5 = 'applied' THEN now() END) RETURNING id",
            &[&shop, &reason, &key, &change_count, &state],
        )
        .await
        .map_err(db)?;
    let batch_id: i64 = row.get(0);
    let input = json!({
        "name": "available",
        "reason": reason,
        // Names our batch, so a Shopify adjustment group leads back to it (and through it to
        // every source transaction).
        "referenceDocumentUri": format!("wos-sync://push-batch/{shop}/{batch_id}"),
        "changes": changes,
    });
    tx.execute(
        "UPDATE push_batches SET variables = $2 WHERE id = $1",
        &[&batch_id, &input],
    )
    .await
    .map_err(db)?;
    let new_state = if changes.is_empty() {
        "pushed"
    } else {
        "batched"
    };
    tx.execute(
        "UPDATE adjustments SET state = $2, batch_id = $3, updated_at = now() WHERE id = ANY($1)",
        &[&taken, &new_state, &batch_id],
    )
    .await
    .map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok(Some(FormedBatch {
        id: batch_id,
        changes: changes.len(),
        adjustments: taken.len(),
    }))
}

/// A batch just formed.
#[derive(Debug, Clone, Copy)]
pub struct FormedBatch {
    pub id: i64,
    pub changes: usize,
    pub adjustments: usize,
}

/// An adjustment Shopify acknowledged, for metrics.
#[derive(Debug, Clone)]
pub struct Acknowledged {
    pub kind: String,
    pub occurred_at: DateTime<Utc>,
}

/// Shopify applied the batch: it and its adjustments are done. Empty when the batch was
/// already settled by someone else (nothing is written then).
pub async fn mark_applied(
    pool: &Pool,
    batch: &Batch,
    group_id: Option<&str>,
) -> DbResult<Vec<Acknowledged>> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await.map_err(db)?;
    if !settle(&tx, batch, "applied", group_id, None).await? {
        return Ok(Vec::new());
    }
    let rows = tx
        .query(
            "UPDATE adjustments SET state = 'pushed', updated_at = now() \
             WHERE batch_id = $1 AND state = 'batched' RETURNING kind, occurred_at",
            &[&batch.id],
        )
        .await
        .map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok(rows
        .iter()
        .map(|row| Acknowledged {
            kind: row.get(0),
            occurred_at: row.get(1),
        })
        .collect())
}

/// Shopify refused the batch (nothing applied). The adjustments behind `rejected` changes
/// (indexes into `input.changes`; all of them when `None`) are dead-lettered as `rejected` with
/// `reason`; the rest go back to pending, to be sent in a new batch under a new key.
/// Returns `(types of the dead-lettered transactions, adjustments returned to pending)`.
pub async fn mark_rejected(
    pool: &Pool,
    batch: &Batch,
    rejected: Option<&BTreeMap<usize, String>>,
    fallback_reason: &str,
    dlq: &str,
) -> DbResult<(Vec<String>, u64)> {
    let keys = batch_change_keys(&batch.input);
    let mut client = pool.get().await?;
    let tx = client.transaction().await.map_err(db)?;
    if !settle(&tx, batch, "failed", None, Some(fallback_reason)).await? {
        return Ok((Vec::new(), 0));
    }
    let rows = tx
        .query(
            "SELECT id, shop_domain, transaction_id, inventory_item_id, location_id FROM adjustments \
             WHERE batch_id = $1 AND state = 'batched'",
            &[&batch.id],
        )
        .await
        .map_err(db)?;
    let reason_for = |item: i64, location: i64| -> Option<String> {
        match rejected {
            None => Some(fallback_reason.to_owned()),
            Some(by_index) => keys
                .iter()
                .enumerate()
                .find(|(_, key)| **key == (item, location))
                .and_then(|(index, _)| by_index.get(&index).cloned()),
        }
    };
    let mut dead: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut retry_ids = Vec::new();
    for row in &rows {
        let (id, shop, transaction): (i64, String, String) = (row.get(0), row.get(1), row.get(2));
        match reason_for(row.get(3), row.get(4)) {
            Some(reason) => {
                tx.execute(
                    "UPDATE adjustments SET state = 'dead', error = $2, updated_at = now() WHERE id = $1",
                    &[&id, &reason],
                )
                .await
                .map_err(db)?;
                dead.entry((shop, transaction)).or_insert(reason);
            }
            None => retry_ids.push(id),
        }
    }
    let returned = tx
        .execute(
            "UPDATE adjustments SET state = 'pending', batch_id = NULL, updated_at = now() WHERE id = ANY($1)",
            &[&retry_ids],
        )
        .await
        .map_err(db)?;
    let attempts = u32::try_from(batch.attempts).unwrap_or(1);
    let mut kinds = Vec::new();
    for ((shop, transaction), reason) in &dead {
        kinds.push(
            dead_letter(
                &tx,
                shop,
                transaction,
                ErrorKind::Rejected,
                reason,
                attempts,
                dlq,
            )
            .await?,
        );
    }
    tx.commit().await.map_err(db)?;
    Ok((kinds, returned))
}

/// The batch's outcome is unknown and it will not be retried any more: its adjustments are
/// dead-lettered as `exhausted`.
/// Returns the types of the dead-lettered transactions.
pub async fn mark_exhausted(
    pool: &Pool,
    batch: &Batch,
    reason: &str,
    dlq: &str,
) -> DbResult<Vec<String>> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await.map_err(db)?;
    if !settle(&tx, batch, "failed", None, Some(reason)).await? {
        return Ok(Vec::new());
    }
    let rows = tx
        .query(
            "UPDATE adjustments SET state = 'dead', error = $2, updated_at = now() \
             WHERE batch_id = $1 AND state = 'batched' RETURNING shop_domain, transaction_id",
            &[&batch.id, &reason],
        )
        .await
        .map_err(db)?;
    let transactions: BTreeSet<(String, String)> =
        rows.iter().map(|row| (row.get(0), row.get(1))).collect();
    let attempts = u32::try_from(batch.attempts).unwrap_or(1);
    let mut kinds = Vec::new();
    for (shop, transaction) in &transactions {
        kinds.push(
            dead_letter(
                &tx,
                shop,
                transaction,
                ErrorKind::Exhausted,
                reason,
                attempts,
                dlq,
            )
            .await?,
        );
    }
    tx.commit().await.map_err(db)?;
    Ok(kinds)
}

/// The batch will be resent unchanged (same key) no earlier than `delay` from now.
/// `applied_maybe` false: Shopify refused this attempt before running it, so it no longer
/// counts as uncertain.
pub async fn schedule_resend(
    pool: &Pool,
    batch: &Batch,
    delay: std::time::Duration,
    error: &str,
    applied_maybe: bool,
) -> DbResult<()> {
    let client = pool.get().await?;
    let settled = i32::from(!applied_maybe);
    client
        .execute(
            "UPDATE push_batches SET not_before = now() + make_interval(secs => $3), \
                 lease_until = NULL, last_error = $4, uncertain_attempts = uncertain_attempts - $5 \
             WHERE id = $1 AND state = 'open' AND idempotency_key = $2",
            &[
                &batch.id,
                &batch.idempotency_key,
                &delay.as_secs_f64(),
                &error,
                &settled,
            ],
        )
        .await
        .map_err(db)?;
    Ok(())
}

/// Shopify said an earlier attempt under this key failed without applying anything: the same
/// variables go again under a new key. Fenced on the failed key, so replicas acting on the same
/// answer renew once; nothing sent under the old key counts as uncertain any more.
pub async fn renew_key(pool: &Pool, batch: &Batch, error: &str) -> DbResult<()> {
    let client = pool.get().await?;
    client
        .execute(
            "UPDATE push_batches SET idempotency_key = $3, lease_until = NULL, last_error = $4, \
                 uncertain_attempts = 0, first_sent_at = NULL \
             WHERE id = $1 AND state = 'open' AND idempotency_key = $2",
            &[
                &batch.id,
                &batch.idempotency_key,
                &uuid::Uuid::new_v4().to_string(),
                &error,
            ],
        )
        .await
        .map_err(db)?;
    Ok(())
}

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
    let mut headers: Value = row.get(1);
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
