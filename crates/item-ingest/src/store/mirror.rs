//! The catalog mirror in PostgreSQL: a product and its variants read for an event, and the
//! mirror rows an event changes written back.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
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
    // One statement for all of them. A variant listed twice is written once, as it was last
    // (a row may not be upserted twice by one statement).
    let mut latest: BTreeMap<u64, &MirroredVariant> = BTreeMap::new();
    for v in &change.upserts {
        latest.insert(v.variant_id.0, v);
    }
    let mut rows = VariantRows::default();
    for v in latest.values() {
        rows.variant_ids.push(db_id(v.variant_id.0, "variant id")?);
        rows.product_ids.push(db_id(v.product_id.0, "product id")?);
        rows.skus.push(v.sku.as_deref());
        rows.inventory_items.push(
            v.inventory_item_id
                .map(|id| db_id(id.0, "inventory item id"))
                .transpose()?,
        );
        rows.product_titles.push(v.product_title.as_deref());
        rows.variant_titles.push(v.variant_title.as_deref());
        rows.barcodes.push(v.barcode.as_deref());
        rows.prices.push(v.price.as_deref());
        rows.vendors.push(v.vendor.as_deref());
        rows.product_types.push(v.product_type.as_deref());
        rows.created.push(v.created_at);
        rows.versions.push(v.version.updated_at);
        rows.deleted.push(v.deleted);
        rows.triggered.push(v.version.triggered_at);
        rows.kinds.push(v.version.kind.as_i16());
        rows.listed.push(v.listed_at);
    }
    if !rows.variant_ids.is_empty() {
        tx.execute(
            "INSERT INTO shopify_variants (shop_domain, variant_id, product_id, sku, \
                 inventory_item_id, product_title, variant_title, barcode, price, vendor, \
                 product_type, created_at, version, deleted, version_triggered_at, version_kind, \
                 listed_updated_at) \
             SELECT $1, * FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::bigint[], \
                 $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], \
                 $12::timestamptz[], $13::timestamptz[], $14::boolean[], $15::timestamptz[], \
                 $16::smallint[], $17::timestamptz[]) \
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
            &[
                &shop,
                &rows.variant_ids,
                &rows.product_ids,
                &rows.skus,
                &rows.inventory_items,
                &rows.product_titles,
                &rows.variant_titles,
                &rows.barcodes,
                &rows.prices,
                &rows.vendors,
                &rows.product_types,
                &rows.created,
                &rows.versions,
                &rows.deleted,
                &rows.triggered,
                &rows.kinds,
                &rows.listed,
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

/// The columns of the variants to write, one array per column (for `unnest`).
#[derive(Default)]
struct VariantRows<'a> {
    variant_ids: Vec<i64>,
    product_ids: Vec<i64>,
    skus: Vec<Option<&'a str>>,
    inventory_items: Vec<Option<i64>>,
    product_titles: Vec<Option<&'a str>>,
    variant_titles: Vec<Option<&'a str>>,
    barcodes: Vec<Option<&'a str>>,
    prices: Vec<Option<&'a str>>,
    vendors: Vec<Option<&'a str>>,
    product_types: Vec<Option<&'a str>>,
    created: Vec<Option<DateTime<Utc>>>,
    versions: Vec<DateTime<Utc>>,
    deleted: Vec<bool>,
    triggered: Vec<Option<DateTime<Utc>>>,
    kinds: Vec<i16>,
    listed: Vec<Option<DateTime<Utc>>>,
}
