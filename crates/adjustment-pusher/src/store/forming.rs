//! Forming a batch: the shop's pending adjustments, claimed `FOR UPDATE SKIP LOCKED`, mapped to
//! their inventory items now, cut by `model::batch`'s rule, and the batch row recorded (with its
//! key, exact variables and the adjustments behind each change) before anything is sent.
//!
//! A shop may have several batches in flight, one per *slot* (`0..slots`, the setting
//! `batches_in_flight`); the unique index `push_batches_one_open_per_slot` keeps one open batch
//! per slot whatever the replicas do, and `push_batches_slot_bounded` bounds the slots. The
//! batches in flight never share an `(item, location)` pair: a pair whose adjustments are in an
//! open batch waits, and its later adjustments coalesce into a batch formed once that one is
//! settled. So a pair's adjustments still go out in order and the refusal rules (one by one
//! after a refused sum, the `Int` bound) see what they saw with one batch in flight. Formers of
//! one shop take turns (a transaction-scoped advisory lock), so two replicas cannot both put
//! the same pair in flight from different rows; a turn fills every free slot at once (one
//! read, one commit), since the turns, not the calls, are what a busy shop waits for.

use std::collections::{BTreeMap, BTreeSet};

use deadpool_postgres::{GenericClient, Pool, Transaction};
use model::{
    batch::{FormedBatch, PendingAdjustment, form_disjoint_batches},
    ids::{InventoryItemId, LocationId},
};
use platform::{
    amqp::copies::ErrorKind,
    db::DbError,
    trace::{self, TraceParent},
};
use tokio_postgres::error::SqlState;

use crate::shopify;

use super::{Acknowledged, BatchRules, DbResult, db, dead_letter, mapped};

/// Most batches in flight per shop the database allows (`push_batches_slot_bounded`, `V10`).
pub const MAX_SLOTS: u16 = 16;

/// Pending adjustments one forming looks at, oldest first, at most (it looks at twice a
/// call's changes first, and at this many only when those do not make a full call).
const FORMING_WINDOW: i64 = 5000;

/// What forming one batch did.
#[derive(Debug, Clone, Default)]
pub struct Formed {
    /// The batch row (`None` when nothing was sendable: everything parked again).
    pub id: Option<i64>,
    /// Changes of the call (0: nothing to send; the cancelled adjustments are done).
    pub changes: usize,
    /// Adjustments in the call.
    pub adjustments: usize,
    /// Adjustments parked again: their item is not mapped any more (counted on the first of a
    /// turn's batches).
    pub parked: usize,
    /// Pending adjustments this turn read or could not read (the window was full) and left
    /// pending (set on the first of a turn's batches): the shop has more to form.
    pub rest: bool,
    /// Adjustments whose pair summed to zero: done without a call (counted as pushed).
    pub cancelled: Vec<Acknowledged>,
    /// Types of transactions dead-lettered because an adjustment could never be sent.
    pub dead: Vec<String>,
    /// The trace ids of the batch's transactions (empty without a batch row).
    pub source_trace_ids: Vec<String>,
}

/// Forms a batch for every free slot of `0..slots` it can, from the shop's pending adjustments,
/// by the rule of `model::batch::form_batch`, each adjustment going to the inventory item its
/// item is mapped to now; the batches never share a pair (`model::batch::form_disjoint_batches`).
/// One turn, one read, one commit for all of them: forming is what the formers of a shop queue
/// for, so a turn fills every free slot. Each batch row (idempotency key, exact variables, the
/// adjustments behind each change) is committed before anything is sent. Empty when there is
/// nothing pending that is not in flight already, or when every slot holds an open batch; an
/// entry without `id` when nothing was sendable (parked again, dead-lettered).
pub async fn form_batches(
    pool: &Pool,
    shop: &str,
    rules: BatchRules,
    slots: u16,
    dlq: &str,
) -> DbResult<Vec<Formed>> {
    let started = std::time::Instant::now();
    let mut client = pool.get().await?;
    let tx = client.transaction().await.map_err(db)?;
    // Formers of the shop take turns: what is in flight cannot change under this one. A former
    // waits for the turn holding a connection of the push pool; a shop has at most
    // `batches_in_flight` steps, so that wait is bounded by one turn (tens of milliseconds).
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('adjustment-pusher/forming/' || $1, 0))",
        &[&shop],
    )
    .await
    .map_err(db)?;
    let turn = std::time::Instant::now();
    let free = free_slots(&tx, shop, slots).await?;
    if free.is_empty() {
        return Ok(Vec::new());
    }
    // A first look at twice a call's changes for each free slot is enough when the first call
    // is full, or when a call carries one transaction; otherwise (few distinct pairs, each with
    // many adjustments) the whole window is read, so they coalesce.
    let per_call = i64::try_from(rules.max_changes).unwrap_or(FORMING_WINDOW) * 2;
    let mut window = per_call
        .saturating_mul(i64::try_from(free.len()).unwrap_or(1))
        .clamp(1, FORMING_WINDOW);
    let (window, read, batches) = loop {
        let read = read_window(&tx, shop, window).await?;
        let batches = form_disjoint_batches(&read.pending, rules, free.len());
        let full = |batch: &FormedBatch| batch.changes.len() >= rules.max_changes;
        let widen = rules.coalesce_transactions && read.rows == window && window < FORMING_WINDOW;
        if batches.first().is_some_and(full) || !widen {
            // Past the first, a batch goes now only if it is full or the window held everything
            // pending: one cut short by the window would only carry fewer sums than waiting.
            let complete = read.rows < window;
            let keep = batches
                .into_iter()
                .enumerate()
                .take_while(|(n, batch)| *n == 0 || complete || full(batch))
                .map(|(_, batch)| batch)
                .collect::<Vec<_>>();
            break (window, read, keep);
        }
        window = FORMING_WINDOW;
    };
    let read_ms = turn.elapsed().as_secs_f64() * 1000.0;
    let Window {
        pending,
        unmapped,
        unmapped_skus,
        rows: rows_read,
    } = read;
    if batches.is_empty() && unmapped.is_empty() {
        return Ok(Vec::new());
    }
    // The rows it takes, locked. Formers take turns, and only forming moves a row out of
    // pending; one locked or moved meanwhile means a former that does not take turns (a
    // replica of an older version) got there first: leave everything to it.
    let taken: Vec<i64> = batches
        .iter()
        .flat_map(|b| {
            b.changes
                .iter()
                .flat_map(|c| c.adjustments.iter().copied())
                .chain(b.cancelled.iter().copied())
                .chain(b.unsendable.iter().map(|(id, _)| *id))
        })
        .chain(unmapped.iter().copied())
        .collect();
    let locked = tx
        .query(
            "SELECT id FROM adjustments WHERE id = ANY($1) AND state = 'pending' \
             FOR UPDATE SKIP LOCKED",
            &[&taken],
        )
        .await
        .map_err(db)?;
    if locked.len() != taken.len() {
        tracing::info!(
            shop,
            window,
            "pending adjustments taken by another former meanwhile: forming again later"
        );
        tx.rollback().await.map_err(db)?;
        return Ok(Vec::new());
    }
    if !unmapped.is_empty() {
        tracing::info!(shop, skus = ?unmapped_skus, adjustments = unmapped.len(), "items not mapped any more: their pending adjustments are parked again");
        tx.execute(
            "UPDATE adjustments SET state = 'parked', updated_at = now() WHERE id = ANY($1)",
            &[&unmapped],
        )
        .await
        .map_err(db)?;
    }
    let item_of: BTreeMap<i64, i64> = pending
        .iter()
        .map(|p| (p.id, p.inventory_item_id.0 as i64))
        .collect();
    let mut all = Vec::with_capacity(batches.len().max(1));
    let mut free = free.into_iter();
    for batch in &batches {
        // A batch of only cancelled sums is recorded as applied: it takes no slot.
        let slot = if batch.has_changes() {
            free.next()
        } else {
            None
        };
        let Some(formed) = record_batch(&tx, shop, batch, slot, &item_of, dlq).await? else {
            // The slot was taken after all (a former that does not take turns): ours waits,
            // nothing was taken.
            tx.rollback().await.map_err(db)?;
            return Ok(Vec::new());
        };
        all.push(formed);
    }
    let recorded_ms = turn.elapsed().as_secs_f64() * 1000.0;
    tx.commit().await.map_err(db)?;
    if all.is_empty() {
        all.push(Formed::default());
    }
    all[0].parked = unmapped.len();
    all[0].rest = i64::try_from(taken.len()).unwrap_or(i64::MAX) < rows_read || rows_read == window;
    tracing::debug!(
        shop,
        batches = batches.len(),
        waited_ms = (started.elapsed() - turn.elapsed()).as_secs_f64() * 1000.0,
        read_ms,
        recorded_ms,
        turn_ms = turn.elapsed().as_secs_f64() * 1000.0,
        "formed in one turn"
    );
    Ok(all)
}

/// Records one formed batch in the forming transaction: its row in `slot` (a batch with changes
/// always has one), its adjustments `batched` (or `pushed`, the sums that cancelled out) with the
/// inventory item they go to, and those that can never be sent dead-lettered. `None` when the
/// slot is taken.
async fn record_batch(
    tx: &Transaction<'_>,
    shop: &str,
    batch: &FormedBatch,
    slot: Option<i16>,
    item_of: &BTreeMap<i64, i64>,
    dlq: &str,
) -> DbResult<Option<Formed>> {
    let mut formed = Formed::default();
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
        let (trace, source_trace_ids) = batch_traces(tx, batch).await?;
        let recorded = record_formed(
            tx,
            shop,
            batch_id,
            slot.unwrap_or_default(),
            batch,
            &trace,
            &source_trace_ids,
        )
        .await?;
        if !recorded {
            return Ok(None);
        }
        formed.source_trace_ids = source_trace_ids;
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
    if !batch.cancelled.is_empty() {
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
    }
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
            .push(dead_letter(tx, shop, transaction, ErrorKind::Rejected, reason, 1, dlq).await?);
    }
    Ok(Some(formed))
}

/// The trace a formed batch is pushed under and the trace ids of its transactions
/// (`trace::joined`), from the `traceparent` intake stored with each transaction's headers.
async fn batch_traces(
    tx: &Transaction<'_>,
    batch: &FormedBatch,
) -> DbResult<(TraceParent, Vec<String>)> {
    let ids: Vec<i64> = batch
        .changes
        .iter()
        .flat_map(|change| change.adjustments.iter().copied())
        .chain(batch.cancelled.iter().copied())
        .collect();
    let rows = tx
        .query(
            "SELECT DISTINCT w.headers->>$2 FROM adjustments a \
             JOIN wos_transactions w \
                 ON w.shop_domain = a.shop_domain AND w.transaction_id = a.transaction_id \
             WHERE a.id = ANY($1)",
            &[&ids, &trace::HEADER],
        )
        .await
        .map_err(db)?;
    let parents = rows
        .iter()
        .filter_map(|row| row.get::<_, Option<&str>>(0))
        .filter_map(|value| TraceParent::parse(value).ok());
    let (trace, trace_ids) = trace::joined(parents);
    Ok((trace, trace_ids.iter().map(ToString::to_string).collect()))
}

/// The oldest pending adjustments of a shop that are not in flight, as batching sees them.
struct Window {
    pending: Vec<PendingAdjustment>,
    /// Adjustments whose item is not mapped (any more): parked again.
    unmapped: Vec<i64>,
    unmapped_skus: BTreeSet<String>,
    /// Rows read.
    rows: i64,
}

/// Reads the shop's oldest `window` pending adjustments whose pair is not in flight (neither
/// their SKU nor the inventory item it is mapped to now is in an open batch at their location),
/// each with the inventory item its item is mapped to now. Not locked: the caller takes turns
/// with the other formers and locks what it takes.
///
/// Written so that its plan holds in a draining backlog, where the statistics still say what
/// was true before it (every row pending): the adjustments in flight are looked up by the open
/// batches' ids (not by merging the whole `adjustments_by_batch` index), and the shop is a
/// range ordered with the id, an order only `adjustments_pending` gives, so the scan never
/// walks the primary key past rows already batched or pushed (about 50 ms a read half-way
/// through a 50,000-row backlog, 5 ms this way; docs/adjustment-pusher.md).
async fn read_window(tx: &Transaction<'_>, shop: &str, window: i64) -> DbResult<Window> {
    let rows = tx
        .query(
            "WITH in_flight AS MATERIALIZED ( \
                 SELECT a.sku, a.inventory_item_id, a.location_id FROM adjustments a \
                 WHERE a.batch_id = ANY (ARRAY(SELECT b.id FROM push_batches b \
                                               WHERE b.shop_domain = $1 AND b.state = 'open')) \
                   AND a.state = 'batched') \
             SELECT a.id, a.sku, a.location_id, a.delta, a.reason, a.transaction_id, a.solo, \
                 i.inventory_item_id \
             FROM adjustments a \
             LEFT JOIN items i ON i.shop_domain = a.shop_domain AND i.sku = a.sku \
             WHERE a.shop_domain >= $1 AND a.shop_domain <= $1 AND a.state = 'pending' \
               AND (a.sku, a.location_id) NOT IN (SELECT sku, location_id FROM in_flight) \
               AND (coalesce(i.inventory_item_id, 0), a.location_id) NOT IN \
                   (SELECT inventory_item_id, location_id FROM in_flight) \
             ORDER BY a.shop_domain, a.id LIMIT $2",
            &[&shop, &window],
        )
        .await
        .map_err(db)?;
    let mut read = Window {
        pending: Vec::with_capacity(rows.len()),
        unmapped: Vec::new(),
        unmapped_skus: BTreeSet::new(),
        rows: i64::try_from(rows.len()).unwrap_or(i64::MAX),
    };
    for row in &rows {
        let (id, sku, location): (i64, String, i64) = (row.get(0), row.get(1), row.get(2));
        let item: Option<i64> = row.get(7);
        let item = if read.unmapped_skus.contains(&sku) {
            None
        } else {
            mapped(shop, &sku, item)
        };
        let Some(item) = item.and_then(|i| u64::try_from(i).ok()) else {
            read.unmapped.push(id);
            read.unmapped_skus.insert(sku);
            continue;
        };
        read.pending.push(PendingAdjustment {
            id,
            inventory_item_id: InventoryItemId(item),
            location_id: LocationId(u64::try_from(location).unwrap_or_default()),
            delta: row.get(3),
            reason: row.get(4),
            transaction_id: row.get(5),
            solo: row.get(6),
        });
    }
    Ok(read)
}

/// The shop's slots `0..slots` without an open batch, lowest first.
async fn free_slots(tx: &Transaction<'_>, shop: &str, slots: u16) -> DbResult<Vec<i16>> {
    let slots = i16::try_from(slots.min(MAX_SLOTS)).unwrap_or(1);
    let rows = tx
        .query(
            "SELECT s::smallint FROM generate_series(0, $2::smallint - 1) AS s \
             WHERE NOT EXISTS (SELECT 1 FROM push_batches \
                               WHERE shop_domain = $1 AND state = 'open' AND slot = s) \
             ORDER BY s",
            &[&shop, &slots],
        )
        .await
        .map_err(db)?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// Inserts the batch row of a formed batch: open in `slot` when it has changes, applied at once
/// when everything cancelled out. `false` when the slot is taken.
async fn record_formed(
    tx: &Transaction<'_>,
    shop: &str,
    batch_id: i64,
    slot: i16,
    batch: &FormedBatch,
    trace: &TraceParent,
    source_trace_ids: &[String],
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
                 changes, change_count, state, slot, completed_at, traceparent, source_trace_ids) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, CASE WHEN $8 = 'applied' THEN now() END, \
                 $10, $11)",
            &[
                &batch_id,
                &shop,
                &batch.reason,
                &uuid::Uuid::new_v4().to_string(),
                &input,
                &changes,
                &change_count,
                &state,
                &slot,
                &trace.to_string(),
                &source_trace_ids,
            ],
        )
        .await;
    match inserted {
        Ok(_) => Ok(true),
        Err(err) if err.code() == Some(&SqlState::UNIQUE_VIOLATION) => Ok(false),
        Err(err) => Err(db(err)),
    }
}
