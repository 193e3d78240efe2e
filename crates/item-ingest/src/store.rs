//! The ingest transaction: inbox, catalog mirror, SKU mapping, items, announcements.
//!
//! One webhook is one PostgreSQL transaction:
//! 1. the inbox row (a redelivered webhook stops here as a duplicate);
//! 2. an advisory lock on the product, then on every affected SKU in sorted order, so replicas
//!    (and concurrent deliveries) working on the same product or SKU take turns and a SKU's
//!    candidates are never read while another transaction is changing them. Locks are always
//!    taken product first, SKUs after, SKUs sorted: no deadlock cycle is possible;
//! 3. the mirror rows the event changes (`model::catalog::apply_product_event`);
//! 4. for every affected SKU, the mapping (`model::catalog::resolve_mapping`) and the item's
//!    fields under the shop's policies, written only when something changed;
//! 5. an outbox row for every change of an item's `inventory_item_id`.

use chrono::Utc;
use deadpool_postgres::{GenericClient, Pool, Transaction};
use model::{
    announcement::{MappingAnnouncement, MappingChange},
    catalog::{
        Candidate, CatalogChange, CurrentMapping, EventClock, EventKind, ItemFields,
        MappingDecision, MirroredVariant, ProductRecord, Version, apply_product_event, item_fields,
        merge_item_fields, resolve_mapping,
    },
    config::ShopConfig,
    ids::{InventoryItemId, ProductId, VariantId},
    webhook::{ProductEvent, UnreadableField},
};
use platform::{
    db::DbError,
    inbox::{InboxEntry, record_message},
    outbox::{OutboxMessage, enqueue},
};
use tokio_postgres::Row;

use crate::event::WebhookEvent;

/// Inbox consumer name.
pub const CONSUMER: &str = "item-ingest";

/// What happened to one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemOutcome {
    Created,
    Updated,
    Unchanged,
}

impl ItemOutcome {
    /// `wos_sync_items_total{outcome}`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Unchanged => "unchanged",
        }
    }
}

/// What one webhook did.
#[derive(Debug, Clone, Default)]
pub struct IngestReport {
    pub duplicate: bool,
    pub items: Vec<(String, ItemOutcome)>,
    pub stale: Vec<VariantId>,
    pub without_sku: Vec<VariantId>,
    /// Descriptive fields of the payload that did not parse (kept as they were).
    pub unreadable: Vec<UnreadableField>,
    pub announcements: usize,
}

/// Why a webhook could not be ingested.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The database is unavailable or failed: transient.
    #[error(transparent)]
    Database(#[from] DbError),
    /// The payload carries something the database cannot hold (an id beyond bigint).
    #[error("{0}")]
    Unstorable(String),
}

impl From<tokio_postgres::Error> for IngestError {
    fn from(err: tokio_postgres::Error) -> Self {
        Self::Database(DbError::Postgres(err))
    }
}

impl From<deadpool_postgres::PoolError> for IngestError {
    fn from(err: deadpool_postgres::PoolError) -> Self {
        Self::Database(DbError::Pool(err))
    }
}

/// Shopify ids are below 2^63 in practice; one that is not cannot be stored as bigint.
fn db_id(id: u64, what: &str) -> Result<i64, IngestError> {
    i64::try_from(id)
        .map_err(|_| IngestError::Unstorable(format!("{what} {id} does not fit a bigint")))
}

fn from_db(id: i64) -> u64 {
    // Stored from u64 values that fit i64 (db_id), so never negative.
    u64::try_from(id).unwrap_or_default()
}

/// Ingests one webhook in one transaction.
pub async fn ingest(
    pool: &Pool,
    webhook: &WebhookEvent<'_>,
    announce_exchange: &str,
) -> Result<IngestReport, IngestError> {
    let shop = &webhook.shop.domain;
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let inbox_id = format!("{shop}/{}", webhook.webhook_id);
    if record_message(&tx, CONSUMER, &inbox_id).await? == InboxEntry::AlreadyProcessed {
        tx.rollback().await?;
        return Ok(IngestReport {
            duplicate: true,
            ..IngestReport::default()
        });
    }

    let product_id = webhook.event.product_id();
    let product_key = db_id(product_id.0, "product id")?;
    lock(&tx, &format!("product:{shop}/{product_key}")).await?;
    let known = load_product_variants(&tx, shop, product_key).await?;
    let record = load_product(&tx, shop, product_key).await?;
    let clock = EventClock {
        event_time: webhook.event_time,
        triggered_at: webhook.triggered_at,
        kind: webhook.kind,
    };
    let change = apply_product_event(&webhook.event, &clock, &known, record.as_ref());

    // Sorted (BTreeSet) after the product lock: see the module header on deadlocks.
    for sku in &change.affected_skus {
        lock(&tx, &format!("sku:{shop}/{sku}")).await?;
    }
    write_mirror(&tx, shop, &change).await?;

    let mut report = IngestReport {
        stale: change.stale.clone(),
        without_sku: change.without_sku.clone(),
        unreadable: match &webhook.event {
            ProductEvent::Upsert(payload) => payload.unreadable.clone(),
            ProductEvent::Delete { .. } => Vec::new(),
        },
        ..IngestReport::default()
    };
    for sku in &change.affected_skus {
        if let Some(outcome) =
            settle_item(&tx, webhook.shop, sku, announce_exchange, &mut report).await?
        {
            report.items.push((sku.clone(), outcome));
        }
    }
    tx.commit().await?;
    Ok(report)
}

/// Transaction-scoped advisory lock on a text key.
async fn lock(tx: &Transaction<'_>, key: &str) -> Result<(), tokio_postgres::Error> {
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        &[&key],
    )
    .await?;
    Ok(())
}

const VARIANT_COLUMNS: &str = "variant_id, product_id, sku, inventory_item_id, product_title, \
     variant_title, barcode, price, vendor, product_type, created_at, version, deleted, \
     version_triggered_at, version_kind";

fn variant_from_row(row: &Row) -> MirroredVariant {
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
        deleted: row.get(12),
    }
}

async fn load_product_variants(
    tx: &Transaction<'_>,
    shop: &str,
    product: i64,
) -> Result<Vec<MirroredVariant>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT {VARIANT_COLUMNS} FROM shopify_variants WHERE shop_domain = $1 AND product_id = $2"
    );
    Ok(tx
        .query(&sql, &[&shop, &product])
        .await?
        .iter()
        .map(variant_from_row)
        .collect())
}

async fn load_product(
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

async fn write_mirror(
    tx: &Transaction<'_>,
    shop: &str,
    change: &CatalogChange,
) -> Result<(), IngestError> {
    let upsert = tx
        .prepare_cached(
            "INSERT INTO shopify_variants (shop_domain, variant_id, product_id, sku, \
                 inventory_item_id, product_title, variant_title, barcode, price, vendor, \
                 product_type, created_at, version, deleted, version_triggered_at, version_kind) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
             ON CONFLICT (shop_domain, variant_id) DO UPDATE SET \
                 product_id = EXCLUDED.product_id, sku = EXCLUDED.sku, \
                 inventory_item_id = EXCLUDED.inventory_item_id, \
                 product_title = EXCLUDED.product_title, variant_title = EXCLUDED.variant_title, \
                 barcode = EXCLUDED.barcode, price = EXCLUDED.price, vendor = EXCLUDED.vendor, \
                 product_type = EXCLUDED.product_type, created_at = EXCLUDED.created_at, \
                 version = EXCLUDED.version, deleted = EXCLUDED.deleted, \
                 version_triggered_at = EXCLUDED.version_triggered_at, \
                 version_kind = EXCLUDED.version_kind, mirrored_at = now()",
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

/// An item row as read for update.
struct ItemRow {
    fields: ItemFields,
    inventory_item_id: Option<InventoryItemId>,
}

/// Resolves `sku`'s mapping and writes the item if anything changed; announces a changed
/// mapping. `None` when there is no item and nothing to create.
async fn settle_item(
    tx: &Transaction<'_>,
    shop: &ShopConfig,
    sku: &str,
    announce_exchange: &str,
    report: &mut IngestReport,
) -> Result<Option<ItemOutcome>, IngestError> {
    let domain = shop.domain.as_str();
    let existing = tx
        .query_opt(
            "SELECT description, barcode, price::text, vendor, product_type, inventory_item_id \
             FROM items WHERE shop_domain = $1 AND sku = $2 FOR UPDATE",
            &[&domain, &sku],
        )
        .await?
        .map(|row| ItemRow {
            fields: ItemFields {
                description: row.get(0),
                barcode: row.get(1),
                price: row.get(2),
                vendor: row.get(3),
                product_type: row.get(4),
            },
            inventory_item_id: row
                .get::<_, Option<i64>>(5)
                .map(|id| InventoryItemId(from_db(id))),
        });

    let sql = format!(
        "SELECT {VARIANT_COLUMNS} FROM shopify_variants \
         WHERE shop_domain = $1 AND sku = $2 AND NOT deleted"
    );
    let carriers: Vec<MirroredVariant> = tx
        .query(&sql, &[&domain, &sku])
        .await?
        .iter()
        .map(variant_from_row)
        .collect();
    let candidates: Vec<Candidate> = carriers
        .iter()
        .filter_map(Candidate::from_variant)
        .collect();
    let current = current_mapping(
        tx,
        domain,
        existing.as_ref().and_then(|i| i.inventory_item_id),
    )
    .await?;
    let decision = resolve_mapping(current, &candidates);

    let mapped = decision
        .variant_id
        .and_then(|id| carriers.iter().find(|v| v.variant_id == id));
    let fields = match (mapped, &existing) {
        (Some(variant), existing) => merge_item_fields(
            existing.as_ref().map(|i| &i.fields),
            &item_fields(variant),
            &shop.fields,
        ),
        (None, Some(existing)) => existing.fields.clone(),
        // No item and nothing that carries the SKU: nothing to create.
        (None, None) => return Ok(None),
    };
    if decision.conflict {
        tracing::warn!(
            shop = domain,
            sku,
            basis = decision.basis.as_str(),
            candidates = candidates.len(),
            "SKU carried by several live variants"
        );
    }

    let previous = existing.as_ref().and_then(|i| i.inventory_item_id);
    let outcome = match &existing {
        None => ItemOutcome::Created,
        Some(item)
            if item.fields == fields && item.inventory_item_id == decision.inventory_item_id =>
        {
            ItemOutcome::Unchanged
        }
        Some(_) => ItemOutcome::Updated,
    };
    if outcome != ItemOutcome::Unchanged {
        // One statement for both: the row is locked (FOR UPDATE above) or known absent under the
        // SKU's advisory lock, so the conflict arm runs exactly when the item exists.
        tx.execute(
            "INSERT INTO items (shop_domain, sku, description, barcode, price, vendor, \
                 product_type, inventory_item_id) \
             VALUES ($1, $2, $3, $4, $5::text::numeric, $6, $7, $8) \
             ON CONFLICT (shop_domain, sku) DO UPDATE SET description = EXCLUDED.description, \
                 barcode = EXCLUDED.barcode, price = EXCLUDED.price, vendor = EXCLUDED.vendor, \
                 product_type = EXCLUDED.product_type, \
                 inventory_item_id = EXCLUDED.inventory_item_id, updated_at = now()",
            &[
                &domain,
                &sku,
                &fields.description,
                &fields.barcode,
                &fields.price,
                &fields.vendor,
                &fields.product_type,
                &inventory_item_param(decision.inventory_item_id)?,
            ],
        )
        .await?;
    }
    if let Some(change) = MappingChange::between(previous, decision.inventory_item_id) {
        announce(
            tx,
            shop,
            sku,
            change,
            previous,
            &decision,
            announce_exchange,
        )
        .await?;
        report.announcements += 1;
    }
    Ok(Some(outcome))
}

fn inventory_item_param(id: Option<InventoryItemId>) -> Result<Option<i64>, IngestError> {
    id.map(|id| db_id(id.0, "inventory item id")).transpose()
}

/// Whether the item's current inventory item belongs to a variant the mirror knows.
async fn current_mapping(
    tx: &Transaction<'_>,
    shop: &str,
    current: Option<InventoryItemId>,
) -> Result<CurrentMapping, IngestError> {
    let Some(item) = current else {
        return Ok(CurrentMapping::None);
    };
    let known = tx
        .query_opt(
            "SELECT 1 FROM shopify_variants WHERE shop_domain = $1 AND inventory_item_id = $2 LIMIT 1",
            &[&shop, &db_id(item.0, "inventory item id")?],
        )
        .await?
        .is_some();
    Ok(if known {
        CurrentMapping::Known(item)
    } else {
        CurrentMapping::Unverified(item)
    })
}

async fn announce(
    tx: &Transaction<'_>,
    shop: &ShopConfig,
    sku: &str,
    change: MappingChange,
    previous: Option<InventoryItemId>,
    decision: &MappingDecision,
    exchange: &str,
) -> Result<(), IngestError> {
    let announcement = MappingAnnouncement {
        shop_domain: shop.domain.clone(),
        sku: sku.to_owned(),
        change,
        inventory_item_id: decision.inventory_item_id,
        previous_inventory_item_id: previous,
        variant_id: decision.variant_id,
        basis: decision.basis.as_str().to_owned(),
        changed_at: Utc::now(),
    };
    let body = serde_json::to_vec(&announcement)
        .map_err(|err| IngestError::Unstorable(format!("announcement: {err}")))?;
    let message_id = uuid::Uuid::new_v4().to_string();
    enqueue(
        tx,
        &OutboxMessage::json(exchange, &change.routing_key(), &message_id, &body),
    )
    .await?;
    tracing::info!(shop = %shop.domain, sku, change = change.as_str(), ?previous, current = ?decision.inventory_item_id, basis = decision.basis.as_str(), "item mapping changed");
    Ok(())
}

/// A SKU that more than one live variant carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkuConflict {
    pub sku: String,
    /// The inventory item the WOS item points at.
    pub mapped_inventory_item_id: Option<InventoryItemId>,
    /// Every live variant carrying the SKU, oldest first.
    pub variants: Vec<MirroredVariant>,
}

/// Every SKU conflict of `shop`, for operators (`wos-sync conflicts`).
pub async fn list_conflicts(pool: &Pool, shop: &str) -> Result<Vec<SkuConflict>, IngestError> {
    let client = pool.get().await?;
    let sql = format!(
        "SELECT {VARIANT_COLUMNS}, (SELECT inventory_item_id FROM items i \
                 WHERE i.shop_domain = v.shop_domain AND i.sku = v.sku) \
         FROM shopify_variants v \
         WHERE shop_domain = $1 AND NOT deleted AND inventory_item_id IS NOT NULL AND sku IN ( \
             SELECT sku FROM shopify_variants WHERE shop_domain = $1 AND NOT deleted \
                 AND sku IS NOT NULL AND inventory_item_id IS NOT NULL \
             GROUP BY sku HAVING count(*) > 1) \
         ORDER BY sku, created_at NULLS LAST, variant_id"
    );
    let mut conflicts: Vec<SkuConflict> = Vec::new();
    for row in client.query(&sql, &[&shop]).await? {
        let variant = variant_from_row(&row);
        let mapped = row
            .get::<_, Option<i64>>(15)
            .map(|id| InventoryItemId(from_db(id)));
        let sku = variant.sku.clone().unwrap_or_default();
        match conflicts.last_mut() {
            Some(last) if last.sku == sku => last.variants.push(variant),
            _ => conflicts.push(SkuConflict {
                sku,
                mapped_inventory_item_id: mapped,
                variants: vec![variant],
            }),
        }
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
            "SELECT count(*) FROM (SELECT sku FROM shopify_variants \
                 WHERE shop_domain = $1 AND NOT deleted AND sku IS NOT NULL \
                     AND inventory_item_id IS NOT NULL \
                 GROUP BY sku HAVING count(*) > 1) conflicts",
            &[&shop],
        )
        .await?;
    Ok(row.get(0))
}
