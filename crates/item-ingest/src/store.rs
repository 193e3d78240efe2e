//! The ingest transaction: inbox, catalog mirror, SKU mapping, items, conflicts,
//! announcements; and the same for variants read from the Admin API.
//!
//! One webhook is one PostgreSQL transaction:
//! 1. the inbox row (a redelivered webhook stops here as a duplicate);
//! 2. an advisory lock on the product, then on every SKU to settle in sorted order, so replicas
//!    (and concurrent deliveries) working on the same product or SKU take turns and a SKU's
//!    candidates are never read while another transaction is changing them. Locks are always
//!    taken product first, SKUs after, SKUs sorted, the shop's conflicts lock last: no
//!    deadlock cycle is possible. The SKUs to settle: those the change affects, those of the
//!    variants it writes, and every other item on an inventory item it writes (stale mappings
//!    heal);
//! 3. the mirror rows the event changes (`model::catalog::apply_product_event`), and the
//!    variant reads it asks for or completes (`variant_refreshes`);
//! 4. for every SKU to settle, the mapping (`model::catalog::resolve_mapping_under`, the shop's
//!    policy for `inventory_item_id`) and the item's fields under the shop's policies, written
//!    only when something changed (an absent item is inserted only if still absent: a row WOS
//!    inserted meanwhile is settled, never overwritten), and its conflicts (`sku_conflicts`);
//! 5. an outbox row for every change of an item's `inventory_item_id`.
//!
//! [`apply_refreshes`] applies Shopify's answers for variants read by `crate::refresh` in the
//! same way, one transaction per product.

use std::collections::{BTreeMap, BTreeSet};

use chrono::Utc;
use deadpool_postgres::{GenericClient, Pool, Transaction};
use model::{
    announcement::{MappingAnnouncement, MappingChange},
    catalog::{
        Candidate, CatalogChange, CurrentMapping, EventClock, EventKind, FetchedVariant,
        ItemFields, MappingDecision, MirroredVariant, ProductRecord, RefreshRequest, Version,
        apply_fetched, apply_product_event, conflict_reasons, item_fields, merge_item_fields,
        resolve_mapping, resolve_mapping_under,
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
    /// Variants beyond the detailed ones this event asked to read from Shopify.
    pub refreshes_requested: usize,
    /// The conflicts of the SKUs settled so far in the transaction, written together.
    settled_conflicts: Vec<(String, Vec<ConflictReason>)>,
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
    /// Another writer kept inserting and removing an item we were settling: transient.
    #[error("{0}")]
    Contended(String),
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
    let pending = load_pending_refreshes(&tx, shop, product_key).await?;
    let clock = EventClock {
        event_time: webhook.event_time,
        triggered_at: webhook.triggered_at,
        kind: webhook.kind,
    };
    let change = apply_product_event(&webhook.event, &clock, &known, record.as_ref(), &pending);

    let mut report = IngestReport {
        stale: change.stale.clone(),
        without_sku: change.without_sku.clone(),
        unreadable: match &webhook.event {
            ProductEvent::Upsert(payload) => payload.unreadable.clone(),
            ProductEvent::Delete { .. } => Vec::new(),
        },
        refreshes_requested: change.refresh.len(),
        ..IngestReport::default()
    };
    apply_change(&tx, webhook.shop, &change, announce_exchange, &mut report).await?;
    tx.commit().await?;
    Ok(report)
}

/// Writes `change` to the mirror and settles every item it may have moved or that it can
/// vouch for: the SKUs the change affects, the SKU of every variant it writes (even with
/// unchanged content: a mapping WOS emptied is filled again), and every other item on an
/// inventory item it writes (a stale mapping left by WOS or an earlier integration heals as
/// soon as the variant that owns the inventory item is seen). The caller holds the product's
/// lock.
async fn apply_change(
    tx: &Transaction<'_>,
    shop: &ShopConfig,
    change: &CatalogChange,
    announce_exchange: &str,
    report: &mut IngestReport,
) -> Result<(), IngestError> {
    let domain = shop.domain.as_str();
    let mut skus = change.affected_skus.clone();
    skus.extend(
        change
            .upserts
            .iter()
            .filter(|variant| !variant.deleted)
            .filter_map(|variant| variant.sku.clone()),
    );
    skus.extend(items_elsewhere_on(tx, domain, &change.upserts).await?);
    // Sorted (BTreeSet) after the product lock: see the module header on deadlocks.
    for sku in &skus {
        lock(tx, &format!("sku:{domain}/{sku}")).await?;
    }
    write_mirror(tx, domain, change).await?;
    write_refreshes(tx, domain, change).await?;
    for sku in &skus {
        if let Some(outcome) = settle_item(tx, shop, sku, announce_exchange, report).await? {
            report.items.push((sku.clone(), outcome));
        }
    }
    write_conflicts(tx, domain, &report.settled_conflicts).await?;
    report.settled_conflicts.clear();
    Ok(())
}

/// The items of `shop` on an inventory item one of `written` has, other than the SKU that
/// variant carries (for a deleted variant: every item on its inventory item).
async fn items_elsewhere_on(
    tx: &Transaction<'_>,
    shop: &str,
    written: &[MirroredVariant],
) -> Result<BTreeSet<String>, IngestError> {
    let mut inventory_items = Vec::new();
    let mut carried = Vec::new();
    for variant in written {
        if let Some(item) = variant.inventory_item_id {
            inventory_items.push(db_id(item.0, "inventory item id")?);
            carried.push(if variant.deleted {
                None
            } else {
                variant.sku.clone()
            });
        }
    }
    if inventory_items.is_empty() {
        return Ok(BTreeSet::new());
    }
    let rows = tx
        .query(
            "SELECT DISTINCT i.sku FROM items i \
             JOIN unnest($2::bigint[], $3::text[]) AS written (inventory_item_id, sku) \
                 ON i.inventory_item_id = written.inventory_item_id \
             WHERE i.shop_domain = $1 AND i.sku IS DISTINCT FROM written.sku",
            &[&shop, &inventory_items, &carried],
        )
        .await?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
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

/// A mirror row's columns, read from `shopify_variants v`, and whether a refresh of the variant
/// is pending.
const VARIANT_COLUMNS: &str = "v.variant_id, v.product_id, v.sku, v.inventory_item_id, \
     v.product_title, v.variant_title, v.barcode, v.price, v.vendor, v.product_type, \
     v.created_at, v.version, v.deleted, v.version_triggered_at, v.version_kind, \
     v.listed_updated_at, EXISTS (SELECT 1 FROM variant_refreshes r \
         WHERE r.shop_domain = v.shop_domain AND r.variant_id = v.variant_id)";

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
        listed_at: row.get(15),
        deleted: row.get(12),
        awaiting_refresh: row.get(16),
    }
}

async fn load_product_variants(
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

/// The product's refreshes not done yet.
async fn load_pending_refreshes(
    tx: &Transaction<'_>,
    shop: &str,
    product: i64,
) -> Result<Vec<RefreshRequest>, tokio_postgres::Error> {
    Ok(tx
        .query(
            "SELECT variant_id, listed_at FROM variant_refreshes \
             WHERE shop_domain = $1 AND product_id = $2",
            &[&shop, &product],
        )
        .await?
        .iter()
        .map(|row| RefreshRequest {
            variant_id: VariantId(from_db(row.get(0))),
            product_id: ProductId(from_db(product)),
            listed_at: row.get(1),
        })
        .collect())
}

/// Records the refreshes `change` asks for (a newer listing asks again: a new generation) and
/// removes the ones it completes.
async fn write_refreshes(
    tx: &Transaction<'_>,
    shop: &str,
    change: &CatalogChange,
) -> Result<(), IngestError> {
    if !change.refreshed.is_empty() {
        let done = change
            .refreshed
            .iter()
            .map(|id| db_id(id.0, "variant id"))
            .collect::<Result<Vec<_>, _>>()?;
        tx.execute(
            "DELETE FROM variant_refreshes WHERE shop_domain = $1 AND variant_id = ANY($2)",
            &[&shop, &done],
        )
        .await?;
    }
    for request in &change.refresh {
        tx.execute(
            "INSERT INTO variant_refreshes (shop_domain, variant_id, product_id, listed_at) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (shop_domain, variant_id) DO UPDATE SET \
                 listed_at = GREATEST(variant_refreshes.listed_at, EXCLUDED.listed_at), \
                 generation = EXCLUDED.generation, requested_at = now(), \
                 next_attempt_at = now()",
            &[
                &shop,
                &db_id(request.variant_id.0, "variant id")?,
                &db_id(request.product_id.0, "product id")?,
                &request.listed_at,
            ],
        )
        .await?;
    }
    Ok(())
}

/// A refresh claimed by this process (leased until it is done or fails).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimedRefresh {
    pub request: RefreshRequest,
    generation: i64,
}

/// Claims up to `limit` due refreshes of `shop` for `lease` (replicas claim disjoint rows; a
/// claim left by a crash is taken again once its lease ends).
pub async fn claim_refreshes(
    pool: &Pool,
    shop: &str,
    limit: i64,
    lease: std::time::Duration,
) -> Result<Vec<ClaimedRefresh>, IngestError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "UPDATE variant_refreshes r SET leased_until = now() + make_interval(secs => $3) \
             WHERE (r.shop_domain, r.variant_id) IN ( \
                 SELECT shop_domain, variant_id FROM variant_refreshes \
                 WHERE shop_domain = $1 AND next_attempt_at <= now() \
                     AND (leased_until IS NULL OR leased_until < now()) \
                 ORDER BY next_attempt_at, variant_id LIMIT $2 FOR UPDATE SKIP LOCKED) \
             RETURNING r.variant_id, r.product_id, r.listed_at, r.generation",
            &[&shop, &limit, &lease.as_secs_f64()],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| ClaimedRefresh {
            request: RefreshRequest {
                variant_id: VariantId(from_db(row.get(0))),
                product_id: ProductId(from_db(row.get(1))),
                listed_at: row.get(2),
            },
            generation: row.get(3),
        })
        .collect())
}

/// Records a failed read of `claimed`: retried later, with a backoff doubling per attempt up to
/// five minutes; the SKUs they hold are listed as conflicts meanwhile.
pub async fn refresh_failed(
    pool: &Pool,
    shop: &str,
    claimed: &[ClaimedRefresh],
    error: &str,
) -> Result<(), IngestError> {
    let ids = claimed_ids(claimed)?;
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    tx.execute(
        "UPDATE variant_refreshes SET attempts = attempts + 1, last_error = $3, \
             leased_until = NULL, \
             next_attempt_at = now() + make_interval(secs => least(300, 2 ^ least(attempts, 9))) \
         WHERE shop_domain = $1 AND variant_id = ANY($2)",
        &[&shop, &ids, &error],
    )
    .await?;
    lock_conflicts(&tx, shop, false).await?;
    tx.execute(
        "INSERT INTO sku_conflicts (shop_domain, sku, reason) \
         SELECT v.shop_domain, v.sku, 'awaiting_shopify' FROM shopify_variants v \
         WHERE v.shop_domain = $1 AND v.variant_id = ANY($2) AND NOT v.deleted \
             AND v.sku IS NOT NULL \
         ON CONFLICT DO NOTHING",
        &[&shop, &ids],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

fn claimed_ids(claimed: &[ClaimedRefresh]) -> Result<Vec<i64>, IngestError> {
    claimed
        .iter()
        .map(|c| db_id(c.request.variant_id.0, "variant id"))
        .collect()
}

/// What applying Shopify's answers did.
#[derive(Debug, Clone, Default)]
pub struct RefreshReport {
    /// Requests completed (read, found gone, or covered by newer state meanwhile).
    pub done: usize,
    /// Requests asked again by a newer listing while they were read: read again.
    pub superseded: usize,
    pub items: IngestReport,
}

/// Applies Shopify's answers for `claimed` (`answers[id]`: `None` when Shopify has no such
/// variant), one transaction per product under the same locks as a webhook: the mirror, the
/// SKUs the variants carried and carry, the items, the announcements. A request asked again
/// since it was claimed (a newer generation) is left for the next read.
pub async fn apply_refreshes(
    pool: &Pool,
    shop: &ShopConfig,
    claimed: &[ClaimedRefresh],
    answers: &BTreeMap<VariantId, Option<FetchedVariant>>,
    announce_exchange: &str,
) -> Result<RefreshReport, IngestError> {
    let domain = shop.domain.as_str();
    let mut by_product: BTreeMap<ProductId, Vec<ClaimedRefresh>> = BTreeMap::new();
    for claim in claimed {
        by_product
            .entry(claim.request.product_id)
            .or_default()
            .push(*claim);
    }
    let mut report = RefreshReport::default();
    for (product_id, claims) in by_product {
        let product_key = db_id(product_id.0, "product id")?;
        let mut client = pool.get().await?;
        let tx = client.transaction().await?;
        lock(&tx, &format!("product:{domain}/{product_key}")).await?;
        let generations: BTreeMap<VariantId, i64> = tx
            .query(
                "SELECT variant_id, generation FROM variant_refreshes \
                 WHERE shop_domain = $1 AND product_id = $2",
                &[&domain, &product_key],
            )
            .await?
            .iter()
            .map(|row| (VariantId(from_db(row.get(0))), row.get(1)))
            .collect();
        let (current, superseded): (Vec<ClaimedRefresh>, Vec<ClaimedRefresh>) =
            claims.into_iter().partition(|claim| {
                generations
                    .get(&claim.request.variant_id)
                    .is_none_or(|generation| *generation == claim.generation)
            });
        if !superseded.is_empty() {
            tx.execute(
                "UPDATE variant_refreshes SET leased_until = NULL \
                 WHERE shop_domain = $1 AND variant_id = ANY($2)",
                &[&domain, &claimed_ids(&superseded)?],
            )
            .await?;
        }
        // A request whose row is gone was completed by a webhook's details meanwhile.
        let requests: Vec<RefreshRequest> = current
            .iter()
            .filter(|claim| generations.contains_key(&claim.request.variant_id))
            .map(|claim| claim.request)
            .collect();
        let known = load_product_variants(&tx, domain, product_key).await?;
        let change = apply_fetched(&requests, answers, &known, Utc::now());
        report.done += current.len();
        report.superseded += superseded.len();
        report
            .items
            .without_sku
            .extend(change.without_sku.iter().copied());
        apply_change(&tx, shop, &change, announce_exchange, &mut report.items).await?;
        tx.commit().await?;
    }
    Ok(report)
}

/// An item row as read for update.
struct ItemRow {
    fields: ItemFields,
    inventory_item_id: Option<InventoryItemId>,
}

/// How often an item is settled again when WOS inserts it between our read and our insert.
const SETTLE_ATTEMPTS: usize = 3;

/// Resolves `sku`'s mapping and writes the item if anything changed; announces a changed
/// mapping. `None` when there is no item and nothing to create.
///
/// An absent item is inserted only if still absent (`ON CONFLICT DO NOTHING`): WOS may insert
/// it between our read and our insert, and then its row is settled like any existing one
/// (its fields under the policies, its mapping under the rules), never overwritten as new.
async fn settle_item(
    tx: &Transaction<'_>,
    shop: &ShopConfig,
    sku: &str,
    announce_exchange: &str,
    report: &mut IngestReport,
) -> Result<Option<ItemOutcome>, IngestError> {
    for _ in 0..SETTLE_ATTEMPTS {
        if let Some(settled) = settle_item_once(tx, shop, sku, announce_exchange, report).await? {
            return Ok(settled);
        }
    }
    Err(IngestError::Contended(format!(
        "item {sku:?} was inserted and removed concurrently {SETTLE_ATTEMPTS} times"
    )))
}

/// One attempt of [`settle_item`]: `None` when the item appeared between the read and the
/// insert (settle again).
async fn settle_item_once(
    tx: &Transaction<'_>,
    shop: &ShopConfig,
    sku: &str,
    announce_exchange: &str,
    report: &mut IngestReport,
) -> Result<Option<Option<ItemOutcome>>, IngestError> {
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
        "SELECT {VARIANT_COLUMNS} FROM shopify_variants v \
         WHERE v.shop_domain = $1 AND v.sku = $2 AND NOT v.deleted"
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
    let awaiting = carriers.iter().any(|v| v.awaiting_refresh);
    let previous = existing.as_ref().and_then(|i| i.inventory_item_id);
    let current = current_mapping(tx, domain, previous).await?;
    let policy = shop.fields.mapping();
    let decision = resolve_mapping_under(policy, current, &candidates, awaiting);

    // Fields come from the variant the item is mapped to; a new item whose mapping is left to
    // WOS takes them from the variant the rules would choose.
    let source = decision.variant_id.or_else(|| {
        existing
            .is_none()
            .then(|| resolve_mapping(current, &candidates).variant_id)
            .flatten()
    });
    let source = source.and_then(|id| carriers.iter().find(|v| v.variant_id == id));
    let fields = match (source, &existing) {
        (Some(variant), existing) => merge_item_fields(
            existing.as_ref().map(|i| &i.fields),
            &item_fields(variant),
            &shop.fields,
        ),
        (None, Some(existing)) => existing.fields.clone(),
        // No item and nothing that carries the SKU: nothing to create.
        (None, None) => {
            report.settled_conflicts.push((sku.to_owned(), Vec::new()));
            return Ok(Some(None));
        }
    };
    if decision.conflict {
        tracing::warn!(
            shop = domain,
            sku,
            basis = decision.basis.as_str(),
            candidates = candidates.len(),
            inventory_item_id = ?decision.inventory_item_id,
            "SKU mapping conflict: several live variants carry the SKU, or the item is kept on \
             an inventory item no live variant carrying the SKU has"
        );
    }

    let outcome = match &existing {
        None => {
            let inserted = tx
                .query_opt(
                    "INSERT INTO items (shop_domain, sku, description, barcode, price, vendor, \
                         product_type, inventory_item_id) \
                     VALUES ($1, $2, $3, $4, $5::text::numeric, $6, $7, $8) \
                     ON CONFLICT (shop_domain, sku) DO NOTHING RETURNING 1",
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
            if inserted.is_none() {
                // WOS inserted it since our read (we waited for its commit): settle its row.
                tracing::info!(
                    shop = domain,
                    sku,
                    "item inserted concurrently by another writer: settling it again"
                );
                return Ok(None);
            }
            ItemOutcome::Created
        }
        Some(item)
            if item.fields == fields && item.inventory_item_id == decision.inventory_item_id =>
        {
            ItemOutcome::Unchanged
        }
        Some(_) => {
            // The row is locked (FOR UPDATE above).
            tx.execute(
                "UPDATE items SET description = $3, barcode = $4, price = $5::text::numeric, \
                     vendor = $6, product_type = $7, inventory_item_id = $8, updated_at = now() \
                 WHERE shop_domain = $1 AND sku = $2",
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
            ItemOutcome::Updated
        }
    };
    let read_failed = awaiting && read_failed_for(tx, domain, sku).await?;
    let reasons = conflict_reasons(current, decision.inventory_item_id, &carriers, read_failed);
    report.settled_conflicts.push((sku.to_owned(), reasons));
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
    Ok(Some(Some(outcome)))
}

fn inventory_item_param(id: Option<InventoryItemId>) -> Result<Option<i64>, IngestError> {
    id.map(|id| db_id(id.0, "inventory item id")).transpose()
}

/// Whether a read of a variant carrying `sku` has failed (a refresh with attempts).
async fn read_failed_for(
    tx: &Transaction<'_>,
    shop: &str,
    sku: &str,
) -> Result<bool, tokio_postgres::Error> {
    Ok(tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM variant_refreshes r \
                 JOIN shopify_variants v \
                     ON v.shop_domain = r.shop_domain AND v.variant_id = r.variant_id \
                 WHERE r.shop_domain = $1 AND v.sku = $2 AND r.attempts > 0 AND NOT v.deleted)",
            &[&shop, &sku],
        )
        .await?
        .get(0))
}

/// The advisory lock that orders writers of `sku_conflicts` against a rebuild: settles hold it
/// shared, [`rebuild_conflicts`] exclusively (it is always taken last, after any product or SKU
/// lock, and the rebuild takes no other: no deadlock).
async fn lock_conflicts(
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
async fn write_conflicts(
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
