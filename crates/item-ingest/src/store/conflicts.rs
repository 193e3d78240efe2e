//! SKU conflicts: written per settled SKU under the shop's conflicts lock, rebuilt from the
//! mirror, listed and counted for the operator CLI and `wos_sync_sku_conflicts`.

use deadpool_postgres::{GenericClient, Pool, Transaction};
use model::{catalog::MirroredVariant, ids::InventoryItemId};

use super::{IngestError, VARIANT_COLUMNS, from_db, variant_from_row};

/// The advisory lock that orders writers of `sku_conflicts` against a rebuild: settles hold it
/// shared, [`rebuild_conflicts`] exclusively (it is always taken last, after any product or SKU
/// lock, and the rebuild takes no other: no deadlock).
pub(super) async fn lock_conflicts(
    tx: &Transaction<'_>,
    shop: &str,
    exclusive: bool,
) -> Result<(), tokio_postgres::Error> {
    let function = if exclusive {
        "pg_advisory_xact_lock"
    } else {
        "pg_advisory_xact_lock_shared"
    };
    tx.execute(
        &format!("SELECT {function}(hashtextextended($1, 0))"),
        &[&format!("conflicts:{shop}")],
    )
    .await?;
    Ok(())
}

/// Records the conflicts of the SKUs just settled (a SKU without reasons loses its rows), in
/// three statements whatever their number.
pub(super) async fn write_conflicts(
    tx: &Transaction<'_>,
    shop: &str,
    settled: &[(String, Vec<ConflictReason>)],
) -> Result<(), tokio_postgres::Error> {
    if settled.is_empty() {
        return Ok(());
    }
    lock_conflicts(tx, shop, false).await?;
    let skus: Vec<&str> = settled.iter().map(|(sku, _)| sku.as_str()).collect();
    tx.execute(
        "DELETE FROM sku_conflicts WHERE shop_domain = $1 AND sku = ANY($2)",
        &[&shop, &skus],
    )
    .await?;
    let (skus, reasons): (Vec<&str>, Vec<&str>) = settled
        .iter()
        .flat_map(|(sku, reasons)| reasons.iter().map(move |r| (sku.as_str(), r.as_str())))
        .unzip();
    if !skus.is_empty() {
        tx.execute(
            "INSERT INTO sku_conflicts (shop_domain, sku, reason) \
             SELECT $1, sku, reason FROM unnest($2::text[], $3::text[]) AS c (sku, reason) \
             ON CONFLICT DO NOTHING",
            &[&shop, &skus, &reasons],
        )
        .await?;
    }
    Ok(())
}

pub use model::catalog::ConflictReason;

/// A SKU whose mapping an operator should look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkuConflict {
    pub sku: String,
    /// Why it is listed (at least one).
    pub reasons: Vec<ConflictReason>,
    /// The inventory item the WOS item points at.
    pub mapped_inventory_item_id: Option<InventoryItemId>,
    /// Every live variant carrying the SKU, oldest first.
    pub variants: Vec<MirroredVariant>,
}

/// Every conflicted SKU of shop `$1` with one row per reason, computed from the mirror and
/// `items` ([`rebuild_conflicts`]; settling a SKU computes the same for that SKU with
/// `model::catalog::conflict_reasons`). The parts scan the shop's live variants and its mirror
/// (index lookups into `items`), never the whole `items` table.
const CONFLICTED_SKUS: &str = "\
    WITH live AS MATERIALIZED ( \
        SELECT sku, inventory_item_id FROM shopify_variants \
        WHERE shop_domain = $1 AND NOT deleted AND sku IS NOT NULL \
            AND inventory_item_id IS NOT NULL) \
    SELECT sku, 'shared_sku' AS reason FROM live GROUP BY sku HAVING count(*) > 1 \
    UNION \
    SELECT i.sku, 'unverified' FROM live \
        JOIN items i ON i.shop_domain = $1 AND i.sku = live.sku \
        WHERE i.inventory_item_id IS NOT NULL AND NOT EXISTS ( \
            SELECT 1 FROM shopify_variants m \
            WHERE m.shop_domain = $1 AND m.inventory_item_id = i.inventory_item_id) \
    UNION \
    SELECT i.sku, 'not_carried' FROM shopify_variants m \
        JOIN items i ON i.shop_domain = $1 AND i.inventory_item_id = m.inventory_item_id \
        WHERE m.shop_domain = $1 AND m.inventory_item_id IS NOT NULL AND NOT EXISTS ( \
            SELECT 1 FROM live \
            WHERE live.inventory_item_id = i.inventory_item_id AND live.sku = i.sku) \
    UNION \
    SELECT v.sku, 'awaiting_shopify' FROM variant_refreshes r \
        JOIN shopify_variants v ON v.shop_domain = r.shop_domain AND v.variant_id = r.variant_id \
        WHERE r.shop_domain = $1 AND r.attempts > 0 AND NOT v.deleted AND v.sku IS NOT NULL";

/// Recomputes `shop`'s conflicts from the mirror and `items` (at start and periodically: this
/// also catches mappings WOS wrote since their SKU was last settled). Holds the conflicts lock
/// exclusively, so no settle writes in between; returns how many SKUs are in conflict.
pub async fn rebuild_conflicts(pool: &Pool, shop: &str) -> Result<i64, IngestError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    lock_conflicts(&tx, shop, true).await?;
    tx.execute("DELETE FROM sku_conflicts WHERE shop_domain = $1", &[&shop])
        .await?;
    tx.execute(
        &format!(
            "INSERT INTO sku_conflicts (shop_domain, sku, reason) \
             SELECT $1, sku, reason FROM ({CONFLICTED_SKUS}) c"
        ),
        &[&shop],
    )
    .await?;
    let count = count_conflicts(&tx, shop).await?;
    tx.commit().await?;
    Ok(count)
}

/// Every SKU conflict of `shop`, for operators (`wos-sync conflicts`), by SKU: computed from
/// the mirror and `items` as they are now (so a mapping WOS just wrote is listed even before
/// `sku_conflicts`, and the gauge, catch up with it).
pub async fn list_conflicts(pool: &Pool, shop: &str) -> Result<Vec<SkuConflict>, IngestError> {
    let client = pool.get().await?;
    let mut conflicts: Vec<SkuConflict> = Vec::new();
    let rows = client
        .query(
            &format!("SELECT sku, reason FROM ({CONFLICTED_SKUS}) c ORDER BY sku, reason"),
            &[&shop],
        )
        .await?;
    for row in rows {
        let sku: String = row.get(0);
        let reason = ConflictReason::parse(row.get(1));
        match conflicts.last_mut() {
            Some(last) if last.sku == sku => last.reasons.extend(reason),
            _ => conflicts.push(SkuConflict {
                sku,
                reasons: reason.into_iter().collect(),
                mapped_inventory_item_id: None,
                variants: Vec::new(),
            }),
        }
    }
    let variants_sql = format!(
        "SELECT {VARIANT_COLUMNS} FROM shopify_variants v \
         WHERE v.shop_domain = $1 AND v.sku = $2 AND NOT v.deleted \
             AND v.inventory_item_id IS NOT NULL \
         ORDER BY v.created_at NULLS LAST, v.variant_id"
    );
    for conflict in &mut conflicts {
        conflict.reasons.sort();
        conflict.variants = client
            .query(&variants_sql, &[&shop, &conflict.sku])
            .await?
            .iter()
            .map(variant_from_row)
            .collect();
        conflict.mapped_inventory_item_id = client
            .query_opt(
                "SELECT inventory_item_id FROM items WHERE shop_domain = $1 AND sku = $2",
                &[&shop, &conflict.sku],
            )
            .await?
            .and_then(|row| row.get::<_, Option<i64>>(0))
            .map(|id| InventoryItemId(from_db(id)));
    }
    Ok(conflicts)
}

/// How many SKUs of `shop` are in conflict (`wos_sync_sku_conflicts`).
pub async fn count_conflicts<C: GenericClient>(
    client: &C,
    shop: &str,
) -> Result<i64, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT count(DISTINCT sku) FROM sku_conflicts WHERE shop_domain = $1",
            &[&shop],
        )
        .await?;
    Ok(row.get(0))
}
