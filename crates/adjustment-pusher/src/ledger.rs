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

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Pool, Transaction};
use model::{
    batch::{Change, FormedBatch, PendingAdjustment, Refusal, form_batch as form},
    delta::AdjustmentPlan,
    ids::{InventoryItemId, LocationId},
    transaction::InventoryTransaction,
};
use platform::{
    amqp::copies::{ErrorKind, copied_json_headers, dead_letter_fields},
    db::DbError,
    outbox::{OutboxMessage, enqueue},
};
use serde_json::Value;
use tokio_postgres::error::SqlState;

pub use model::batch::BatchRules;

use crate::{SERVICE, shopify};

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
    /// The `(shop, transaction_id)` was recorded before with this content: a redelivery.
    Duplicate,
    /// WOS reused the id for a different transaction: the one recorded first is the
    /// transaction; this one is not applied.
    Reused(FirstUse),
}

/// The transaction an id was first recorded for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstUse {
    pub kind: String,
    pub sku: String,
    pub received_at: DateTime<Utc>,
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
                "SELECT content_digest, kind, sku, received_at FROM wos_transactions \
                 WHERE shop_domain = $1 AND transaction_id = $2",
                &[&shop, &transaction.transaction_id],
            )
            .await
            .map_err(db)?;
        let first: &str = row.get(0);
        let recorded = if first == digest {
            Recorded::Duplicate
        } else {
            Recorded::Reused(FirstUse {
                kind: row.get(1),
                sku: row.get(2),
                received_at: row.get(3),
            })
        };
        tx.rollback().await.map_err(db)?;
        return Ok(recorded);
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

/// The item's current `inventory_item_id`, if the item exists and is mapped to a Shopify
/// inventory item.
async fn current_mapping<C: GenericClient>(
    client: &C,
    shop: &str,
    sku: &str,
) -> DbResult<Option<i64>> {
    let item: Option<i64> = client
        .query_opt(
            "SELECT inventory_item_id FROM items WHERE shop_domain = $1 AND sku = $2",
            &[&shop, &sku],
        )
        .await
        .map_err(db)?
        .and_then(|row| row.get(0));
    Ok(mapped(shop, sku, item))
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

/// Releases the parked adjustments of `(shop, sku)` to the inventory item mapped now, in
/// chunks of `chunk` rows that each commit. Returns how many were released (0 while the item is
/// still unmapped).
pub async fn release_parked(pool: &Pool, shop: &str, sku: &str, chunk: i64) -> DbResult<u64> {
    let mut released = 0;
    loop {
        let rows = release_chunk(pool, Some((shop, sku)), chunk).await?;
        released += rows.len() as u64;
        if (rows.len() as i64) < chunk {
            return Ok(released);
        }
    }
}

/// Releases every parked adjustment whose item has a mapping now (announcements that were
/// missed: the pusher was down, or no queue was bound yet), in chunks of `chunk` rows that each
/// commit, so a backlog of any size goes through without one statement holding it all.
/// Returns the shops with released work.
pub async fn release_all_mapped(pool: &Pool, chunk: i64) -> DbResult<BTreeSet<String>> {
    let mut shops = BTreeSet::new();
    loop {
        let rows = release_chunk(pool, None, chunk).await?;
        let full = rows.len() as i64 >= chunk;
        shops.extend(rows);
        if !full {
            return Ok(shops);
        }
    }
}

/// One chunk of [`release_all_mapped`] (or of one SKU's release): up to `chunk` parked rows
/// whose item is mapped, skipping rows another transaction holds. Returns their shops.
async fn release_chunk(
    pool: &Pool,
    sku: Option<(&str, &str)>,
    chunk: i64,
) -> DbResult<Vec<String>> {
    let client = pool.get().await?;
    let (shop, sku) = sku.unzip();
    let rows = client
        .query(
            &format!(
                "WITH chunk AS ( \
                     SELECT a.id, i.inventory_item_id AS item FROM adjustments a \
                     JOIN items i ON i.shop_domain = a.shop_domain AND i.sku = a.sku \
                     WHERE a.state = 'parked' AND {MAPPED} \
                       AND ($2::text IS NULL OR (a.shop_domain = $2 AND a.sku = $3)) \
                     LIMIT $1 FOR UPDATE OF a SKIP LOCKED) \
                 UPDATE adjustments a SET state = 'pending', inventory_item_id = chunk.item, \
                     updated_at = now() \
                 FROM chunk WHERE a.id = chunk.id RETURNING a.shop_domain"
            ),
            &[&chunk, &shop, &sku],
        )
        .await
        .map_err(db)?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// Dead-letters (as `unmapped`) every adjustment parked longer than `max_age`, a chunk of at
/// most `chunk` transactions per database transaction. Returns the dead-lettered transactions
/// as `(shop, type)`.
pub async fn expire_parked(
    pool: &Pool,
    max_age: std::time::Duration,
    dlq: &str,
    chunk: i64,
) -> DbResult<Vec<(String, String)>> {
    let mut dead = Vec::new();
    loop {
        let expired = expire_chunk(pool, max_age, dlq, chunk).await?;
        if expired.is_empty() {
            return Ok(dead);
        }
        dead.extend(expired);
    }
}

async fn expire_chunk(
    pool: &Pool,
    max_age: std::time::Duration,
    dlq: &str,
    chunk: i64,
) -> DbResult<Vec<(String, String)>> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await.map_err(db)?;
    let seconds = max_age.as_secs_f64();
    // Whole transactions (a move parks two adjustments): each is dead-lettered once.
    let rows = tx
        .query(
            "WITH doomed AS ( \
                 SELECT DISTINCT shop_domain, transaction_id FROM ( \
                     SELECT shop_domain, transaction_id FROM adjustments \
                     WHERE state = 'parked' AND created_at < now() - make_interval(secs => $1) \
                     ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED) oldest) \
             UPDATE adjustments a SET state = 'dead', updated_at = now(), \
                 error = 'no Shopify inventory item mapped within the parking age' \
             FROM doomed d \
             WHERE a.shop_domain = d.shop_domain AND a.transaction_id = d.transaction_id \
               AND a.state = 'parked' \
             RETURNING a.shop_domain, a.transaction_id",
            &[&seconds, &chunk],
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
    /// The adjustments behind each change of `input.changes`, by index.
    pub changes: Vec<Change>,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    /// When the batch was first sent under its key (this claim's time for a fresh batch).
    pub first_sent_at: DateTime<Utc>,
    /// Earlier attempts that may have been applied (sent without a definite answer).
    pub uncertain_before: i32,
    /// The key was first sent longer ago than the pusher may resend it (Shopify keeps keys
    /// 24 h), by PostgreSQL's clock, the one that stamped `first_sent_at`.
    pub key_expired: bool,
}

impl Batch {
    /// `wos-sync://push-batch/<shop>/<id>`, what its adjustment group is found by in Shopify.
    pub fn reference(&self) -> &str {
        self.input["referenceDocumentUri"].as_str().unwrap_or("")
    }
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

/// Claims the shop's oldest open batch that is due and not leased by another sender. `give_up`
/// is how long after its first send a key may still be sent.
pub async fn claim_open_batch(
    pool: &Pool,
    shop: &str,
    lease: std::time::Duration,
    give_up: std::time::Duration,
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
             RETURNING id, idempotency_key, variables, changes, attempts, created_at, \
                 first_sent_at, uncertain_attempts - 1, \
                 first_sent_at < now() - make_interval(secs => $3)",
            &[&shop, &lease.as_secs_f64(), &give_up.as_secs_f64()],
        )
        .await
        .map_err(db)?;
    Ok(row.map(|row| {
        let id: i64 = row.get(0);
        let changes: Value = row.get(3);
        Batch {
            id,
            idempotency_key: row.get(1),
            input: row.get(2),
            changes: serde_json::from_value(changes).unwrap_or_else(|err| {
                // Then no error Shopify gives can be attributed: a refusal condemns the batch.
                tracing::error!(batch = id, error = %err, "unreadable push_batches.changes");
                Vec::new()
            }),
            attempts: row.get(4),
            created_at: row.get(5),
            first_sent_at: row.get(6),
            uncertain_before: row.get(7),
            key_expired: row.get(8),
        }
    }))
}

/// Whether a claimed batch may go out now, checked right before the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sendable {
    Yes,
    /// Its key was first sent too long ago by now (the process was paused since the claim).
    KeyExpired,
    /// The claim is no longer ours (the lease ran out and another sender took it, or it was
    /// settled meanwhile): do nothing with it.
    NotOurs,
}

/// Checks, by PostgreSQL's clock, that the claim still holds and the key is still young
/// enough to send: a process paused between its claim and its call must not send a key Shopify
/// may have forgotten, nor a batch another replica is sending.
pub async fn sendable(
    pool: &Pool,
    batch: &Batch,
    give_up: std::time::Duration,
) -> DbResult<Sendable> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT lease_until > now(), first_sent_at < now() - make_interval(secs => $3) \
             FROM push_batches WHERE id = $1 AND state = 'open' AND idempotency_key = $2",
            &[&batch.id, &batch.idempotency_key, &give_up.as_secs_f64()],
        )
        .await
        .map_err(db)?;
    Ok(match row {
        None => Sendable::NotOurs,
        Some(row) if !row.get::<_, Option<bool>>(0).unwrap_or(false) => Sendable::NotOurs,
        Some(row) if row.get::<_, Option<bool>>(1).unwrap_or(true) => Sendable::KeyExpired,
        Some(_) => Sendable::Yes,
    })
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

/// The slot batches are formed in: one per shop, so a shop has at most one open batch (the
/// unique index `push_batches_one_open_per_slot` enforces it across replicas).
const SLOT: i16 = 0;

/// Pending adjustments one forming looks at, oldest first.
const FORMING_WINDOW: i64 = 5000;

/// What forming a batch did.
#[derive(Debug, Clone, Default)]
pub struct Formed {
    /// The batch row (`None` when nothing was sendable: everything parked again).
    pub id: Option<i64>,
    /// Changes of the call (0: nothing to send; the cancelled adjustments are done).
    pub changes: usize,
    /// Adjustments in the call.
    pub adjustments: usize,
    /// Adjustments parked again: their item is not mapped any more.
    pub parked: usize,
    /// Adjustments whose pair summed to zero: done without a call (counted as pushed).
    pub cancelled: Vec<Acknowledged>,
    /// Types of transactions dead-lettered because an adjustment could never be sent.
    pub dead: Vec<String>,
}

/// Forms one batch from the shop's pending adjustments, if there are any, by the rule of
/// `model::batch::form_batch`, each adjustment going to the inventory item its item is mapped
/// to now. The batch row (idempotency key, exact variables, the adjustments behind each
/// change) is committed before anything is sent. `None` when there is nothing pending, or when
/// the shop already has an open batch (another replica formed it first).
pub async fn form_batch(
    pool: &Pool,
    shop: &str,
    rules: BatchRules,
    dlq: &str,
) -> DbResult<Option<Formed>> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await.map_err(db)?;
    let rows = tx
        .query(
            "SELECT a.id, a.sku, a.location_id, a.delta, a.reason, a.transaction_id, a.solo, \
                 i.inventory_item_id \
             FROM adjustments a \
             LEFT JOIN items i ON i.shop_domain = a.shop_domain AND i.sku = a.sku \
             WHERE a.shop_domain = $1 AND a.state = 'pending' \
             ORDER BY a.id LIMIT $2 FOR UPDATE OF a SKIP LOCKED",
            &[&shop, &FORMING_WINDOW],
        )
        .await
        .map_err(db)?;
    if rows.is_empty() {
        return Ok(None);
    }
    let mut pending = Vec::with_capacity(rows.len());
    let mut unmapped: Vec<i64> = Vec::new();
    let mut unmapped_skus: BTreeSet<String> = BTreeSet::new();
    for row in &rows {
        let (id, sku, location): (i64, String, i64) = (row.get(0), row.get(1), row.get(2));
        let item: Option<i64> = row.get(7);
        let item = if unmapped_skus.contains(&sku) {
            None
        } else {
            mapped(shop, &sku, item)
        };
        let Some(item) = item.and_then(|i| u64::try_from(i).ok()) else {
            unmapped.push(id);
            unmapped_skus.insert(sku);
            continue;
        };
        pending.push(PendingAdjustment {
            id,
            inventory_item_id: InventoryItemId(item),
            location_id: LocationId(u64::try_from(location).unwrap_or_default()),
            delta: row.get(3),
            reason: row.get(4),
            transaction_id: row.get(5),
            solo: row.get(6),
        });
    }
    let mut formed = Formed {
        parked: unmapped.len(),
        ..Formed::default()
    };
    if !unmapped.is_empty() {
        tracing::info!(shop, skus = ?unmapped_skus, adjustments = unmapped.len(), "items not mapped any more: their pending adjustments are parked again");
        tx.execute(
            "UPDATE adjustments SET state = 'parked', updated_at = now() WHERE id = ANY($1)",
            &[&unmapped],
        )
        .await
        .map_err(db)?;
    }
    let Some(batch) = form(&pending, rules) else {
        tx.commit().await.map_err(db)?;
        return Ok(Some(formed));
    };
    // A batch row when there is a call to make or sums that cancelled out (their audit trail);
    // adjustments that can never be sent are only dead-lettered.
    let batch_id = if batch.has_changes() || !batch.cancelled.is_empty() {
        let batch_id: i64 = tx
            .query_one(
                "SELECT nextval(pg_get_serial_sequence('push_batches', 'id'))",
                &[],
            )
            .await
            .map_err(db)?
            .get(0);
        if !record_formed(&tx, shop, batch_id, &batch).await? {
            // Another replica's batch is open for the shop: ours waits (nothing was taken).
            tx.rollback().await.map_err(db)?;
            return Ok(None);
        }
        Some(batch_id)
    } else {
        None
    };
    formed.id = batch_id;
    formed.changes = batch.changes.len();
    formed.adjustments = batch.adjustment_count();
    let (ids, items): (Vec<i64>, Vec<i64>) = batch
        .changes
        .iter()
        .flat_map(|c| {
            c.adjustments
                .iter()
                .map(|id| (*id, c.inventory_item_id.0 as i64))
        })
        .unzip();
    tx.execute(
        "UPDATE adjustments a SET state = 'batched', batch_id = $1, inventory_item_id = u.item, \
             updated_at = now() \
         FROM unnest($2::bigint[], $3::bigint[]) AS u(id, item) WHERE a.id = u.id",
        &[&batch_id, &ids, &items],
    )
    .await
    .map_err(db)?;
    let item_of: BTreeMap<i64, i64> = pending
        .iter()
        .map(|p| (p.id, p.inventory_item_id.0 as i64))
        .collect();
    let cancelled_items: Vec<i64> = batch
        .cancelled
        .iter()
        .map(|id| item_of.get(id).copied().unwrap_or_default())
        .collect();
    let cancelled = tx
        .query(
            "UPDATE adjustments a SET state = 'pushed', batch_id = $1, \
                 inventory_item_id = u.item, updated_at = now() \
             FROM unnest($2::bigint[], $3::bigint[]) AS u(id, item) WHERE a.id = u.id \
             RETURNING a.kind, a.occurred_at",
            &[&batch_id, &batch.cancelled, &cancelled_items],
        )
        .await
        .map_err(db)?;
    formed.cancelled = cancelled
        .iter()
        .map(|row| Acknowledged {
            kind: row.get(0),
            occurred_at: row.get(1),
        })
        .collect();
    let mut dead: BTreeMap<(String, String), String> = BTreeMap::new();
    for (id, reason) in &batch.unsendable {
        let row = tx
            .query_one(
                "UPDATE adjustments SET state = 'dead', error = $2, updated_at = now() \
                 WHERE id = $1 RETURNING shop_domain, transaction_id",
                &[id, reason],
            )
            .await
            .map_err(db)?;
        dead.entry((row.get(0), row.get(1)))
            .or_insert_with(|| reason.clone());
    }
    for ((shop, transaction), reason) in &dead {
        formed
            .dead
            .push(dead_letter(&tx, shop, transaction, ErrorKind::Rejected, reason, 1, dlq).await?);
    }
    tx.commit().await.map_err(db)?;
    Ok(Some(formed))
}

/// Inserts the batch row of a formed batch: open (slot [`SLOT`]) when it has changes, applied
/// at once when everything cancelled out. `false` when the shop's slot is taken.
async fn record_formed(
    tx: &Transaction<'_>,
    shop: &str,
    batch_id: i64,
    batch: &FormedBatch,
) -> DbResult<bool> {
    let input = shopify::adjust_input(shop, batch_id, &batch.reason, &batch.changes);
    let changes = serde_json::to_value(&batch.changes)
        .map_err(|err| DbError::Config(format!("batch changes: {err}")))?;
    let state = if batch.has_changes() {
        "open"
    } else {
        "applied"
    };
    let change_count = i32::try_from(batch.changes.len()).unwrap_or(i32::MAX);
    let inserted = tx
        .execute(
            "INSERT INTO push_batches (id, shop_domain, reason, idempotency_key, variables, \
                 changes, change_count, state, slot, completed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, CASE WHEN $8 = 'applied' THEN now() END)",
            &[
                &batch_id,
                &shop,
                &batch.reason,
                &uuid::Uuid::new_v4().to_string(),
                &input,
                &changes,
                &change_count,
                &state,
                &SLOT,
            ],
        )
        .await;
    match inserted {
        Ok(_) => Ok(true),
        Err(err) if err.code() == Some(&SqlState::UNIQUE_VIOLATION) => Ok(false),
        Err(err) => Err(db(err)),
    }
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
    group_id: &str,
) -> DbResult<Vec<Acknowledged>> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await.map_err(db)?;
    if !settle(&tx, batch, "applied", Some(group_id), None).await? {
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

/// What a refusal did to a batch's adjustments.
#[derive(Debug, Clone, Default)]
pub struct Refused {
    /// Types of the dead-lettered transactions.
    pub dead: Vec<String>,
    /// Adjustments back to pending (a new batch, a new key).
    pub returned: usize,
    /// Of those, adjustments to be sent alone.
    pub isolated: usize,
}

/// Shopify refused the batch (nothing applied): each error goes to the adjustments behind the
/// change it names (`model::batch::settle_refusal`, on the list stored with the batch). Those
/// are dead-lettered as `rejected` with Shopify's reason, or sent alone when Shopify refused a
/// sum, or sent to their item's new inventory item when its mapping moved since the batch was
/// formed; the others go back to pending, to be sent in a new batch under a new key. With no
/// errors at all (a batch given up before its key expires, never applied) everything goes back.
pub async fn mark_refused(
    pool: &Pool,
    batch: &Batch,
    errors: &[Refusal],
    summary: &str,
    dlq: &str,
) -> DbResult<Refused> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await.map_err(db)?;
    if !settle(&tx, batch, "failed", None, Some(summary)).await? {
        return Ok(Refused::default());
    }
    // Adjustments whose item is mapped elsewhere (or nowhere) now than when the batch formed.
    let moved: BTreeSet<i64> = tx
        .query(
            &format!(
                "SELECT a.id FROM adjustments a \
                 LEFT JOIN items i ON i.shop_domain = a.shop_domain AND i.sku = a.sku \
                 WHERE a.batch_id = $1 AND a.state = 'batched' \
                   AND (NOT coalesce({MAPPED}, false) \
                        OR i.inventory_item_id IS DISTINCT FROM a.inventory_item_id)"
            ),
            &[&batch.id],
        )
        .await
        .map_err(db)?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut outcome = model::batch::settle_refusal(&batch.changes, errors, &moved);
    if let Some(reason) = outcome.condemned.take() {
        // Every adjustment of the batch, listed or not.
        let all: Vec<i64> = tx
            .query(
                "SELECT id FROM adjustments WHERE batch_id = $1 AND state = 'batched'",
                &[&batch.id],
            )
            .await
            .map_err(db)?
            .iter()
            .map(|row| row.get(0))
            .collect();
        outcome.dead = all.into_iter().map(|id| (id, reason.clone())).collect();
    }
    let (dead_ids, reasons): (Vec<i64>, Vec<String>) = outcome.dead.iter().cloned().unzip();
    let dead_rows = tx
        .query(
            "UPDATE adjustments a SET state = 'dead', error = u.reason, updated_at = now() \
             FROM unnest($2::bigint[], $3::text[]) AS u(id, reason) \
             WHERE a.id = u.id AND a.batch_id = $1 AND a.state = 'batched' \
             RETURNING a.shop_domain, a.transaction_id, u.reason",
            &[&batch.id, &dead_ids, &reasons],
        )
        .await
        .map_err(db)?;
    let isolated = tx
        .execute(
            "UPDATE adjustments SET state = 'pending', batch_id = NULL, solo = true, \
                 updated_at = now() \
             WHERE id = ANY($2) AND batch_id = $1 AND state = 'batched'",
            &[&batch.id, &outcome.isolate],
        )
        .await
        .map_err(db)?;
    // The rest of the batch, including adjustments no change lists (batches formed before
    // the lists were stored, sums that cancelled out there), goes back.
    let returned = tx
        .execute(
            "UPDATE adjustments SET state = 'pending', batch_id = NULL, updated_at = now() \
             WHERE batch_id = $1 AND state = 'batched'",
            &[&batch.id],
        )
        .await
        .map_err(db)?;
    let mut dead: BTreeMap<(String, String), String> = BTreeMap::new();
    for row in &dead_rows {
        dead.entry((row.get(0), row.get(1))).or_insert(row.get(2));
    }
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
    Ok(Refused {
        dead: kinds,
        returned: (returned + isolated) as usize,
        isolated: isolated as usize,
    })
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
