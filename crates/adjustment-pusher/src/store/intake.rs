//! Recording a WOS transaction once, with its planned adjustments: `pending` when the item is
//! mapped, `parked` when it is not, and a reused transaction id told apart from a redelivery.

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Pool};
use model::{delta::AdjustmentPlan, transaction::InventoryTransaction};
use platform::db::DbError;
use serde_json::Value;

use super::{DbResult, db, mapped};

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
