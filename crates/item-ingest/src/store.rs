//! The ingest transaction: inbox, catalog mirror, SKU mapping, items, conflicts,
//! announcements; and the same for variants read from the Admin API.
//!
//! A group of webhooks (one or more: the consumer runtime's grouped commits) is one PostgreSQL
//! transaction ([`ingest`]):
//! 1. the inbox rows (a redelivered webhook stops here as a duplicate);
//! 2. an advisory lock on every product of the group, sorted;
//! 3. per webhook, in the order received, the mirror rows its event changes
//!    (`model::catalog::apply_product_event`, on the mirror as the webhooks before it left it),
//!    and the variant reads it asks for or completes (`variant_refreshes`); the SKUs to settle:
//!    those the change affects, those of the variants it writes, and every other item on an
//!    inventory item it writes (stale mappings heal);
//! 4. the locks of the SKUs to settle (striped: [`SKU_LOCK_STRIPES`] per shop), sorted, so
//!    replicas and concurrent deliveries working on the same SKU take turns and a SKU is never
//!    settled while another transaction settles it. Locks are always taken products first,
//!    SKU stripes after, each sorted, the shops' conflicts locks last: no deadlock cycle is
//!    possible;
//! 5. for every SKU to settle, set-based (`settle`), the mapping
//!    (`model::catalog::resolve_mapping_under`, the shop's policy for `inventory_item_id`) and
//!    the item's fields under the shop's policies, written only when something changed (an
//!    absent item is inserted only if still absent: a row WOS inserted meanwhile is settled,
//!    never overwritten), its conflicts (`sku_conflicts`), and an outbox row for every change
//!    of an item's `inventory_item_id`.
//!
//! [`apply_refreshes`] applies Shopify's answers for variants read by `crate::refresh` in the
//! same way, one transaction per product.
//!
//! This module runs the transaction; its parts are `mirror` (reading and writing the mirror
//! rows), `settle` (the SKUs' mappings, fields and announcements), `conflicts` (`sku_conflicts`)
//! and `refreshes` (the variant reads).

use std::collections::{BTreeMap, BTreeSet};

use deadpool_postgres::{GenericClient, Pool, Transaction};
use model::{
    catalog::{CatalogChange, EventClock, MirroredVariant, apply_product_event},
    config::ShopSettings,
    ids::VariantId,
    webhook::{ProductEvent, UnreadableField},
};
use platform::{
    db::DbError,
    inbox::{InboxEntry, record_messages},
};

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

/// Ingests a group of webhooks (one or more) in one transaction; one report per webhook, in
/// order.
///
/// Locks are taken in one order across the group: every product first, sorted, then every SKU
/// to settle, sorted, then each shop's conflicts lock (see the module header). Webhooks of one
/// product apply in the order given, each to the mirror as the one before left it; the SKUs
/// they touch are settled once, after all of them, and their item rows, conflicts and
/// announcements are reported with the shop's last webhook of the group.
pub async fn ingest(
    pool: &Pool,
    webhooks: &[WebhookEvent<'_>],
    announce_exchange: &str,
) -> Result<Vec<IngestReport>, IngestError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let inbox_ids: Vec<String> = webhooks
        .iter()
        .map(|w| format!("{}/{}", w.shop.domain, w.webhook_id))
        .collect();
    let ids: Vec<&str> = inbox_ids.iter().map(String::as_str).collect();
    let entries = record_messages(&tx, CONSUMER, &ids).await?;
    let mut reports: Vec<IngestReport> = entries
        .iter()
        .map(|entry| IngestReport {
            duplicate: *entry == InboxEntry::AlreadyProcessed,
            ..IngestReport::default()
        })
        .collect();
    let new: Vec<usize> = (0..webhooks.len())
        .filter(|i| !reports[*i].duplicate)
        .collect();
    if new.is_empty() {
        tx.rollback().await?;
        return Ok(reports);
    }

    let mut products = BTreeSet::new();
    for i in &new {
        let webhook = &webhooks[*i];
        let product = db_id(webhook.event.product_id().0, "product id")?;
        products.insert(format!("product:{}/{product}", webhook.shop.domain));
    }
    lock_all(&tx, products).await?;

    // Per shop: the SKUs to settle, and the webhook that reports them (the shop's last).
    let mut to_settle: BTreeMap<&str, (&ShopSettings, BTreeSet<String>, usize)> = BTreeMap::new();
    for i in new {
        let webhook = &webhooks[i];
        let change = change_of(&tx, webhook).await?;
        reports[i] = IngestReport {
            stale: change.stale.clone(),
            without_sku: change.without_sku.clone(),
            unreadable: match &webhook.event {
                ProductEvent::Upsert(payload) => payload.unreadable.clone(),
                ProductEvent::Delete { .. } => Vec::new(),
            },
            refreshes_requested: change.refresh.len(),
            ..IngestReport::default()
        };
        let domain = webhook.shop.domain.as_str();
        let skus = skus_to_settle(&tx, domain, &change).await?;
        write_mirror(&tx, domain, &change).await?;
        write_refreshes(&tx, domain, &change).await?;
        let entry = to_settle
            .entry(domain)
            .or_insert_with(|| (webhook.shop, BTreeSet::new(), i));
        entry.1.extend(skus);
        entry.2 = i;
    }

    let sku_keys = to_settle
        .iter()
        .flat_map(|(domain, (_, skus, _))| skus.iter().map(move |sku| sku_key(domain, sku)))
        .collect();
    lock_all(&tx, sku_keys).await?;
    for (shop, skus, reporter) in to_settle.into_values() {
        let report = &mut reports[reporter];
        settle_items(&tx, shop, &skus, announce_exchange, report).await?;
        write_conflicts(&tx, &shop.domain, &report.settled_conflicts).await?;
        report.settled_conflicts.clear();
    }
    tx.commit().await?;
    Ok(reports)
}

/// What a webhook changes in the mirror as it is now (the caller holds the product's lock).
async fn change_of(
    tx: &Transaction<'_>,
    webhook: &WebhookEvent<'_>,
) -> Result<CatalogChange, IngestError> {
    let shop = webhook.shop.domain.as_str();
    let product_key = db_id(webhook.event.product_id().0, "product id")?;
    let known = load_product_variants(tx, shop, product_key).await?;
    let record = load_product(tx, shop, product_key).await?;
    let pending = load_pending_refreshes(tx, shop, product_key).await?;
    let clock = EventClock {
        event_time: webhook.event_time,
        triggered_at: webhook.triggered_at,
        kind: webhook.kind,
    };
    Ok(apply_product_event(
        &webhook.event,
        &clock,
        &known,
        record.as_ref(),
        &pending,
    ))
}

/// Writes `change` to the mirror and settles every item it may have moved or that it can
/// vouch for (`skus_to_settle`). The caller holds the product's lock.
async fn apply_change(
    tx: &Transaction<'_>,
    shop: &ShopSettings,
    change: &CatalogChange,
    announce_exchange: &str,
    report: &mut IngestReport,
) -> Result<(), IngestError> {
    let domain = shop.domain.as_str();
    let skus = skus_to_settle(tx, domain, change).await?;
    let sku_keys = skus.iter().map(|sku| sku_key(domain, sku)).collect();
    lock_all(tx, sku_keys).await?;
    write_mirror(tx, domain, change).await?;
    write_refreshes(tx, domain, change).await?;
    settle_items(tx, shop, &skus, announce_exchange, report).await?;
    write_conflicts(tx, domain, &report.settled_conflicts).await?;
    report.settled_conflicts.clear();
    Ok(())
}

/// The SKUs a change makes to settle: those it affects, the SKU of every variant it writes
/// (even with unchanged content: a mapping WOS emptied is filled again), and every other item
/// on an inventory item it writes (a stale mapping left by WOS or an earlier integration heals
/// as soon as the variant that owns the inventory item is seen).
async fn skus_to_settle(
    tx: &Transaction<'_>,
    shop: &str,
    change: &CatalogChange,
) -> Result<BTreeSet<String>, IngestError> {
    let mut skus = change.affected_skus.clone();
    skus.extend(
        change
            .upserts
            .iter()
            .filter(|variant| !variant.deleted)
            .filter_map(|variant| variant.sku.clone()),
    );
    skus.extend(items_elsewhere_on(tx, shop, &change.upserts).await?);
    Ok(skus)
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
    lock_all(tx, BTreeSet::from([key.to_owned()])).await
}

/// SKU lock stripes per shop. A lock per SKU would make a 2,000-variant product take 2,000
/// advisory locks in one transaction, and a few such transactions at once exhaust PostgreSQL's
/// shared lock table (`max_locks_per_transaction` x `max_connections`, 6,400 by default: "out
/// of shared memory"). With stripes a transaction holds at most this many SKU locks; two SKUs
/// of one stripe take turns though they need not, which is correct, only less concurrent.
const SKU_LOCK_STRIPES: u64 = 256;

/// The advisory lock key of a SKU: its shop and stripe (FNV-1a of the SKU, stable across
/// replicas and releases: every version must lock a SKU under the same key).
fn sku_key(shop: &str, sku: &str) -> String {
    let hash = sku.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("sku:{shop}/{:03}", hash % SKU_LOCK_STRIPES)
}

/// Transaction-scoped advisory locks on text keys, taken in one statement in the keys' sorted
/// (byte) order, the order every transaction takes them in.
async fn lock_all(
    tx: &Transaction<'_>,
    sorted: BTreeSet<String>,
) -> Result<(), tokio_postgres::Error> {
    if sorted.is_empty() {
        return Ok(());
    }
    let keys: Vec<&str> = sorted.iter().map(String::as_str).collect();
    // Evaluated row by row in the order of the sorted subquery.
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(key, 0)) \
         FROM (SELECT key FROM unnest($1::text[]) WITH ORDINALITY AS k (key, n) ORDER BY n \
             OFFSET 0) AS sorted",
        &[&keys],
    )
    .await?;
    Ok(())
}

mod conflicts;
mod mirror;
mod refreshes;
mod settle;

pub use conflicts::*;
pub use refreshes::*;

use conflicts::{lock_conflicts, write_conflicts};
use mirror::{
    VARIANT_COLUMNS, load_product, load_product_variants, variant_from_row, write_mirror,
};
use refreshes::{load_pending_refreshes, write_refreshes};
use settle::settle_items;

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn sku_locks_are_striped_with_a_key_that_never_changes() {
        let keys: BTreeSet<String> = (0..10_000)
            .map(|n| sku_key("acme.myshopify.com", &format!("SKU-{n}")))
            .collect();
        assert_eq!(
            keys.len() as u64,
            SKU_LOCK_STRIPES,
            "every stripe used, no more"
        );
        // Replicas of different releases must lock a SKU under the same key.
        assert_eq!(
            sku_key("acme.myshopify.com", ""),
            "sku:acme.myshopify.com/037"
        );
        assert_eq!(
            sku_key("acme.myshopify.com", "TEE-S"),
            "sku:acme.myshopify.com/161"
        );
    }
}
