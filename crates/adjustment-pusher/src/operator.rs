//! The pusher's tables as the operator CLI (`wos-sync`) reads and changes them: replaying a
//! push-loop dead letter, listing and releasing parked adjustments, and each shop's push state
//! for `wos-sync status`.
//!
//! Replaying a dead letter of the push loop (rejected, exhausted, unmapped) cannot go through
//! the work queue: intake knows the transaction id and would ack the copy as a duplicate. The
//! transaction's `dead` adjustments are returned to `pending` with the item's **current**
//! mapping (or to `parked` when it has no valid one), and the replay is recorded in
//! `dead_letter_replays`, keyed by the dead letter's `x-failed-at`, in the same transaction. A
//! second replay of the same dead letter finds that row and changes nothing, so a crash between
//! the commit and removing the DLQ message, or a duplicate copy of the dead letter, can never
//! push the transaction twice. Purging such a dead letter discards the transaction's dead
//! adjustments ([`discard_dead_letter`]), so the retention job can prune them in time. Every
//! function is one database transaction.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use platform::db::DbError;

use crate::store::DbResult;

fn db(err: tokio_postgres::Error) -> DbError {
    DbError::Postgres(err)
}

/// What replaying one dead letter did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayOutcome {
    /// The transaction was never recorded (it was dead-lettered before intake committed it, e.g.
    /// `exhausted` through a database outage): republish the message to the work queue, where
    /// intake takes it in once.
    NotRecorded,
    /// This dead letter was replayed before: nothing changed.
    AlreadyReplayed { replayed_at: DateTime<Utc> },
    /// The transaction's dead adjustments are pending again (`pending`, with the item's current
    /// inventory item) or parked (`parked`, the item has no valid mapping); both 0 when none
    /// was dead any more (pushed after an earlier replay of another dead letter of it).
    Replayed {
        pending: u64,
        parked: u64,
        inventory_item_id: Option<i64>,
    },
}

/// Replays the dead letter of `(shop, transaction_id)` written at `failed_at` (its
/// `x-failed-at` header, which identifies one dead-lettering), once.
pub async fn replay_dead_letter(
    pool: &Pool,
    shop: &str,
    transaction_id: &str,
    failed_at: &str,
    kind: &str,
) -> DbResult<ReplayOutcome> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await.map_err(db)?;
    let Some(recorded) = tx
        .query_opt(
            "SELECT sku FROM wos_transactions WHERE shop_domain = $1 AND transaction_id = $2",
            &[&shop, &transaction_id],
        )
        .await
        .map_err(db)?
    else {
        tx.rollback().await.map_err(db)?;
        return Ok(ReplayOutcome::NotRecorded);
    };
    let sku: String = recorded.get(0);
    let inserted = tx
        .execute(
            "INSERT INTO dead_letter_replays (shop_domain, transaction_id, failed_at, kind, \
                 pending, parked) VALUES ($1, $2, $3, $4, 0, 0) ON CONFLICT DO NOTHING",
            &[&shop, &transaction_id, &failed_at, &kind],
        )
        .await
        .map_err(db)?;
    if inserted == 0 {
        let row = tx
            .query_one(
                "SELECT replayed_at FROM dead_letter_replays \
                 WHERE shop_domain = $1 AND transaction_id = $2 AND failed_at = $3",
                &[&shop, &transaction_id, &failed_at],
            )
            .await
            .map_err(db)?;
        tx.rollback().await.map_err(db)?;
        return Ok(ReplayOutcome::AlreadyReplayed {
            replayed_at: row.get(0),
        });
    }
    // The item row is held until commit, so item-ingest cannot change the mapping between this
    // read and the adjustments taking it (its change would then release or re-point nothing).
    let inventory_item_id = valid_mapping(
        tx.query_opt(
            "SELECT inventory_item_id FROM items WHERE shop_domain = $1 AND sku = $2 FOR SHARE",
            &[&shop, &sku],
        )
        .await
        .map_err(db)?
        .and_then(|row| row.get::<_, Option<i64>>(0)),
    );
    let state = if inventory_item_id.is_some() {
        "pending"
    } else {
        "parked"
    };
    // A parked adjustment starts a new parking period: the sweep expires parked rows by
    // `created_at`, and one just replayed must not be dead-lettered again at the next sweep.
    let returned = tx
        .execute(
            "UPDATE adjustments SET state = $3, inventory_item_id = $4, batch_id = NULL, \
                 error = NULL, updated_at = now(), \
                 created_at = CASE WHEN $3 = 'parked' THEN now() ELSE created_at END \
             WHERE shop_domain = $1 AND transaction_id = $2 AND state = 'dead'",
            &[&shop, &transaction_id, &state, &inventory_item_id],
        )
        .await
        .map_err(db)?;
    let (pending, parked) = if inventory_item_id.is_some() {
        (returned, 0)
    } else {
        (0, returned)
    };
    tx.execute(
        "UPDATE dead_letter_replays SET pending = $4, parked = $5 \
         WHERE shop_domain = $1 AND transaction_id = $2 AND failed_at = $3",
        &[
            &shop,
            &transaction_id,
            &failed_at,
            &i32::try_from(pending).unwrap_or(i32::MAX),
            &i32::try_from(parked).unwrap_or(i32::MAX),
        ],
    )
    .await
    .map_err(db)?;
    tx.commit().await.map_err(db)?;
    tracing::info!(
        shop,
        transaction_id,
        kind,
        pending,
        parked,
        "dead letter replayed"
    );
    Ok(ReplayOutcome::Replayed {
        pending,
        parked,
        inventory_item_id,
    })
}

/// Purging the dead letter of `(shop, transaction_id)` written at `failed_at` (`wos-sync dlq
/// purge`): the operator gave up on it, so the transaction's dead adjustments become
/// `discarded` (never pushed, and pruned with the transaction once the retention window has
/// passed; until then the transaction id is still recognised). Nothing changes when this dead
/// letter was replayed before (its adjustments moved on) or the transaction is not recorded.
/// Returns how many adjustments were discarded.
pub async fn discard_dead_letter(
    pool: &Pool,
    shop: &str,
    transaction_id: &str,
    failed_at: &str,
) -> DbResult<u64> {
    let client = pool.get().await?;
    let discarded = client
        .execute(
            "UPDATE adjustments SET state = 'discarded', updated_at = now(), \
                 error = coalesce(error || '; ', '') || 'dead letter purged by an operator' \
             WHERE shop_domain = $1 AND transaction_id = $2 AND state = 'dead' \
               AND NOT EXISTS (SELECT 1 FROM dead_letter_replays \
                               WHERE shop_domain = $1 AND transaction_id = $2 AND failed_at = $3)",
            &[&shop, &transaction_id, &failed_at],
        )
        .await
        .map_err(db)?;
    if discarded > 0 {
        tracing::info!(
            shop,
            transaction_id,
            discarded,
            "dead letter purged: adjustments discarded"
        );
    }
    Ok(discarded)
}

/// Only a positive inventory item id is a mapping (WOS may write 0 or -1 for "none").
fn valid_mapping(id: Option<i64>) -> Option<i64> {
    id.filter(|id| *id > 0)
}

/// The parked adjustments of one SKU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedSku {
    pub shop: String,
    pub sku: String,
    pub adjustments: i64,
    pub transactions: i64,
    /// The sum of the parked deltas (what Shopify will see once the item is mapped).
    pub net_delta: i64,
    pub oldest: DateTime<Utc>,
    /// The item's mapping now, if valid: `parked release` pushes these at once.
    pub mapped_now: Option<i64>,
    /// Whether WOS has the item at all.
    pub item_exists: bool,
}

/// Parked adjustments by shop and SKU, oldest first; `shop` restricts to one shop.
pub async fn parked_adjustments(pool: &Pool, shop: Option<&str>) -> DbResult<Vec<ParkedSku>> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT a.shop_domain, a.sku, count(*), count(DISTINCT a.transaction_id), \
                 sum(a.delta)::bigint, min(a.created_at), \
                 (SELECT i.inventory_item_id FROM items i \
                  WHERE i.shop_domain = a.shop_domain AND i.sku = a.sku), \
                 EXISTS (SELECT 1 FROM items i WHERE i.shop_domain = a.shop_domain AND i.sku = a.sku) \
             FROM adjustments a \
             WHERE a.state = 'parked' AND ($1::text IS NULL OR a.shop_domain = $1) \
             GROUP BY a.shop_domain, a.sku ORDER BY min(a.created_at), a.shop_domain, a.sku",
            &[&shop],
        )
        .await
        .map_err(db)?;
    Ok(rows
        .iter()
        .map(|row| ParkedSku {
            shop: row.get(0),
            sku: row.get(1),
            adjustments: row.get(2),
            transactions: row.get(3),
            net_delta: row.get(4),
            oldest: row.get(5),
            mapped_now: valid_mapping(row.get(6)),
            item_exists: row.get(7),
        })
        .collect())
}

/// Adjustments of one SKU released by [`release_parked_now`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    pub shop: String,
    pub sku: String,
    pub adjustments: u64,
    pub inventory_item_id: i64,
}

/// Re-resolves the mapping of every parked adjustment now (of `shop`, or of every shop): those
/// whose item has a valid mapping become pending with it; the rest stay parked. The push loops
/// pick released work up at their next poll.
pub async fn release_parked_now(pool: &Pool, shop: Option<&str>) -> DbResult<Vec<Released>> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "UPDATE adjustments a SET state = 'pending', inventory_item_id = i.inventory_item_id, \
                 updated_at = now() \
             FROM items i \
             WHERE a.state = 'parked' AND ($1::text IS NULL OR a.shop_domain = $1) \
               AND i.shop_domain = a.shop_domain AND i.sku = a.sku AND i.inventory_item_id > 0 \
             RETURNING a.shop_domain, a.sku, i.inventory_item_id",
            &[&shop],
        )
        .await
        .map_err(db)?;
    let mut released: BTreeMap<(String, String), Released> = BTreeMap::new();
    for row in &rows {
        let (shop, sku, item): (String, String, i64) = (row.get(0), row.get(1), row.get(2));
        released
            .entry((shop.clone(), sku.clone()))
            .or_insert(Released {
                shop,
                sku,
                adjustments: 0,
                inventory_item_id: item,
            })
            .adjustments += 1;
    }
    Ok(released.into_values().collect())
}

/// The batch a shop's push loop is working on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenBatch {
    pub id: i64,
    pub created_at: DateTime<Utc>,
    pub change_count: i32,
    pub attempts: i32,
    /// Shopify's last answer to it (or the transport failure), when it was not final.
    pub last_error: Option<String>,
    /// When it will be sent again.
    pub not_before: DateTime<Utc>,
}

/// The last batch Shopify answered definitely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettledBatch {
    pub id: i64,
    /// `applied` or `failed`.
    pub state: String,
    pub completed_at: Option<DateTime<Utc>>,
    pub adjustment_group_id: Option<String>,
    pub last_error: Option<String>,
}

/// One shop's push state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShopPushStatus {
    pub pending: i64,
    pub parked: i64,
    pub open_batch: Option<OpenBatch>,
    pub last_settled: Option<SettledBatch>,
}

/// The push state of `shops`, of every shop WOS has items for, and of every other shop with
/// pending, parked or open work.
pub async fn shop_status(
    pool: &Pool,
    shops: &[String],
) -> DbResult<BTreeMap<String, ShopPushStatus>> {
    let client = pool.get().await?;
    let mut status: BTreeMap<String, ShopPushStatus> = shops
        .iter()
        .map(|shop| (shop.clone(), ShopPushStatus::default()))
        .collect();
    // The distinct shops of `items`, one index probe per shop (a loose index scan).
    let with_items = client
        .query(
            "WITH RECURSIVE shops(shop) AS ( \
                 SELECT min(shop_domain) FROM items \
                 UNION ALL \
                 SELECT (SELECT min(shop_domain) FROM items WHERE shop_domain > shop) \
                 FROM shops WHERE shop IS NOT NULL) \
             SELECT shop FROM shops WHERE shop IS NOT NULL",
            &[],
        )
        .await
        .map_err(db)?;
    for row in &with_items {
        status.entry(row.get(0)).or_default();
    }
    // Two queries on the partial indexes of pending and parked rows, not a scan of the log.
    for (state, parked) in [("pending", false), ("parked", true)] {
        let rows = client
            .query(
                "SELECT shop_domain, count(*) FROM adjustments WHERE state = $1 GROUP BY shop_domain",
                &[&state],
            )
            .await
            .map_err(db)?;
        for row in &rows {
            let entry = status.entry(row.get(0)).or_default();
            if parked {
                entry.parked = row.get(1);
            } else {
                entry.pending = row.get(1);
            }
        }
    }
    let open = client
        .query(
            "SELECT shop_domain, id, created_at, change_count, attempts, last_error, not_before \
             FROM push_batches WHERE state = 'open' ORDER BY id",
            &[],
        )
        .await
        .map_err(db)?;
    for row in &open {
        let entry = status.entry(row.get(0)).or_default();
        entry.open_batch.get_or_insert(OpenBatch {
            id: row.get(1),
            created_at: row.get(2),
            change_count: row.get(3),
            attempts: row.get(4),
            last_error: row.get(5),
            not_before: row.get(6),
        });
    }
    for (shop, entry) in status.iter_mut() {
        // Batches that summed to nothing were never sent: they are no answer from Shopify.
        let row = client
            .query_opt(
                "SELECT id, state, completed_at, adjustment_group_id, last_error FROM push_batches \
                 WHERE shop_domain = $1 AND state <> 'open' AND change_count > 0 \
                 ORDER BY id DESC LIMIT 1",
                &[shop],
            )
            .await
            .map_err(db)?;
        entry.last_settled = row.map(|row| SettledBatch {
            id: row.get(0),
            state: row.get(1),
            completed_at: row.get(2),
            adjustment_group_id: row.get(3),
            last_error: row.get(4),
        });
    }
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_positive_ids_are_mappings() {
        assert_eq!(valid_mapping(Some(42)), Some(42));
        assert_eq!(valid_mapping(Some(0)), None);
        assert_eq!(valid_mapping(Some(-1)), None);
        assert_eq!(valid_mapping(None), None);
    }
}
