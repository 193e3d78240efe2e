//! The catalog mirror in PostgreSQL: a product and its variants read for an event, and the
//! mirror rows an event changes written back.

use deadpool_postgres::{GenericClient, Transaction};
use model::{
    catalog::{CatalogChange, EventKind, MirroredVariant, ProductRecord, Version},
    ids::{InventoryItemId, ProductId, VariantId},
};
use tokio_postgres::Row;

use super::{IngestError, db_id, from_db};

/// A mirror row's columns, read from `shopify_variants v`, and whether a refresh of the variant
/// is pending.
pub(super) const VARIANT_COLUMNS: &str = "v.variant_id, v.product_id, v.sku, v.inventory_item_id, \
     v.product_title, v.variant_title, v.barcode, v.price, v.vendor, v.product_type, \
     v.created_at, v.version, v.deleted, v.version_triggered_at, v.version_kind, \
     v.listed_updated_at, EXISTS (SELECT 1 FROM variant_refreshes r \
         WHERE r.shop_domain = v.shop_domain AND r.variant_id = v.variant_id)";

pub(super) fn variant_from_row(row: &Row) -> MirroredVariant {
    MirroredVariant {
        variant_id: VariantId(from_db(row.get(0))),
        product_id: ProductId(from_db(row.get(1))),
        sku: row.get(2),
        inventory_item_id: row
            .get::<_, Option<i64>>(3)
            .map(|id| InventoryItemId(from_db(id))),
        product_title: row.get(4),
        variant_title: row.get(5),
        barcode: row.get(6),
        price: row.get(7),
        vendor: row.get(8),
        product_type: row.get(9),
        created_at: row.get(10),
        version: Version::of(row.get(11), row.get(13), EventKind::from_i16(row.get(14))),
        listed_at: row.get(15),
        deleted: row.get(12),
        awaiting_refresh: row.get(16),
    }
}

pub(super) async fn load_product_variants(
    tx: &Transaction<'_>,
    shop: &str,
    product: i64,
) -> Result<Vec<MirroredVariant>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT {VARIANT_COLUMNS} FROM shopify_variants v \
         WHERE v.shop_domain = $1 AND v.product_id = $2"
    );
    Ok(tx
        .query(&sql, &[&shop, &product])
        .await?
        .iter()
        .map(variant_from_row)
        .collect())
}

pub(super) async fn load_product(
    tx: &Transaction<'_>,
    shop: &str,
    product: i64,
) -> Result<Option<ProductRecord>, tokio_postgres::Error> {
    let row = tx
        .query_opt(
            "SELECT version, listed_variants, deleted, version_triggered_at, version_kind \
             FROM shopify_products \
             WHERE shop_domain = $1 AND product_id = $2",
            &[&shop, &product],
        )
        .await?;
    Ok(row.map(|row| ProductRecord {
        product_id: ProductId(from_db(product)),
        version: Version::of(row.get(0), row.get(3), EventKind::from_i16(row.get(4))),
        listed_variants: row
            .get::<_, Option<Vec<i64>>>(1)
            .map(|ids| ids.into_iter().map(|id| VariantId(from_db(id))).collect()),
        deleted: row.get(2),
    }))
}

pub(super) async fn write_mirror(
    tx: &Transaction<'_>,
    shop: &str,
    change: &CatalogChange,
) -> Result<(), IngestError> {
    let upsert = tx
        .prepare_cached(
            "INSERT INTO shopify_variants (shop_domain, variant_id, product_id, sku, \
                 inventory_item_id, product_title, variant_title, barcode, price, vendor, \
                 product_type, created_at, version, deleted, version_triggered_at, version_kind, \
                 listed_updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
                 $17) \
             ON CONFLICT (shop_domain, variant_id) DO UPDATE SET \
                 product_id = EXCLUDED.product_id, sku = EXCLUDED.sku, \
                 inventory_item_id = EXCLUDED.inventory_item_id, \
                 product_title = EXCLUDED.product_title, variant_title = EXCLUDED.variant_title, \
                 barcode = EXCLUDED.barcode, price = EXCLUDED.price, vendor = EXCLUDED.vendor, \
                 product_type = EXCLUDED.product_type, created_at = EXCLUDED.created_at, \
                 version = EXCLUDED.version, deleted = EXCLUDED.deleted, \
                 version_triggered_at = EXCLUDED.version_triggered_at, \
                 version_kind = EXCLUDED.version_kind, \
                 listed_updated_at = EXCLUDED.listed_updated_at, mirrored_at = now()",
        )
        .await?;
    for v in &change.upserts {
        let inventory_item = v
            .inventory_item_id
            .map(|id| db_id(id.0, "inventory item id"))
            .transpose()?;
        tx.execute(
            &upsert,
            &[
                &shop,
                &db_id(v.variant_id.0, "variant id")?,
                &db_id(v.product_id.0, "product id")?,
                &v.sku,
                &inventory_item,
                &v.product_title,
                &v.variant_title,
                &v.barcode,
                &v.price,
                &v.vendor,
                &v.product_type,
                &v.created_at,
                &v.version.updated_at,
                &v.deleted,
                &v.version.triggered_at,
                &v.version.kind.as_i16(),
                &v.listed_at,
            ],
        )
        .await?;
    }
    if let Some(record) = &change.product {
        let listed = record
            .listed_variants
            .as_ref()
            .map(|ids| {
                ids.iter()
                    .map(|id| db_id(id.0, "variant id"))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        tx.execute(
            "INSERT INTO shopify_products (shop_domain, product_id, version, listed_variants, \
                 deleted, version_triggered_at, version_kind) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (shop_domain, product_id) DO UPDATE SET version = EXCLUDED.version, \
                 listed_variants = EXCLUDED.listed_variants, deleted = EXCLUDED.deleted, \
                 version_triggered_at = EXCLUDED.version_triggered_at, \
                 version_kind = EXCLUDED.version_kind",
            &[
                &shop,
                &db_id(record.product_id.0, "product id")?,
                &record.version.updated_at,
                &listed,
                &record.deleted,
                &record.version.triggered_at,
                &record.version.kind.as_i16(),
            ],
        )
        .await?;
    }
    Ok(())
}
