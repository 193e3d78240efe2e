//! Settling SKUs: each one's mapping under the shop's policy and its fields, written only when
//! something changed (an absent item inserted only if still absent), and an announcement for
//! every change of an `inventory_item_id`; set-based, a fixed number of statements for any
//! number of SKUs.

use std::collections::{BTreeMap, BTreeSet};

use chrono::Utc;
use deadpool_postgres::Transaction;
use model::{
    announcement::{MappingAnnouncement, MappingChange},
    catalog::{
        Candidate, CurrentMapping, ItemFields, MappingDecision, MirroredVariant, conflict_reasons,
        item_fields, merge_item_fields, resolve_mapping, resolve_mapping_under,
    },
    config::ShopSettings,
    ids::InventoryItemId,
};
use platform::outbox::{OutboxMessage, enqueue_all};
use tokio_postgres::types::ToSql;

use super::{
    ConflictReason, IngestError, IngestReport, ItemOutcome, VARIANT_COLUMNS, db_id, from_db,
    variant_from_row,
};

/// An item row as read for update.
struct ItemRow {
    fields: ItemFields,
    inventory_item_id: Option<InventoryItemId>,
}

/// How often an item is settled again when WOS inserts it between our read and our insert.
const SETTLE_ATTEMPTS: usize = 3;

/// Resolves each SKU's mapping and writes the items where anything changed; announces changed
/// mappings. Reads and writes are set-based: a fixed number of statements for all the SKUs.
/// The caller holds the SKUs' locks.
///
/// An absent item is inserted only if still absent (`ON CONFLICT DO NOTHING`): WOS may insert
/// it between our read and our insert, and then its row is settled like any existing one
/// (its fields under the policies, its mapping under the rules), never overwritten as new.
pub(super) async fn settle_items(
    tx: &Transaction<'_>,
    shop: &ShopSettings,
    skus: &BTreeSet<String>,
    announce_exchange: &str,
    report: &mut IngestReport,
) -> Result<(), IngestError> {
    let mut unsettled: Vec<&str> = skus.iter().map(String::as_str).collect();
    for _ in 0..SETTLE_ATTEMPTS {
        if unsettled.is_empty() {
            return Ok(());
        }
        unsettled = settle_items_once(tx, shop, &unsettled, announce_exchange, report).await?;
    }
    if unsettled.is_empty() {
        return Ok(());
    }
    Err(IngestError::Contended(format!(
        "items {unsettled:?} were inserted and removed concurrently {SETTLE_ATTEMPTS} times"
    )))
}

/// What settling decided for one SKU.
struct Decided<'a> {
    sku: &'a str,
    existing: Option<ItemRow>,
    fields: ItemFields,
    previous: Option<InventoryItemId>,
    decision: MappingDecision,
    reasons: Vec<ConflictReason>,
}

/// One attempt of [`settle_items`]; returns the SKUs whose item appeared between the read and
/// the insert (to settle again).
async fn settle_items_once<'a>(
    tx: &Transaction<'_>,
    shop: &ShopSettings,
    skus: &[&'a str],
    announce_exchange: &str,
    report: &mut IngestReport,
) -> Result<Vec<&'a str>, IngestError> {
    let domain = shop.domain.as_str();
    let mut existing = read_items(tx, domain, skus).await?;
    let mut carriers = read_carriers(tx, domain, skus).await?;
    let mapped: Vec<i64> = existing
        .values()
        .filter_map(|item| item.inventory_item_id)
        .map(|id| db_id(id.0, "inventory item id"))
        .collect::<Result<_, _>>()?;
    let known = mirrored_inventory_items(tx, domain, &mapped).await?;
    let awaiting_skus: Vec<&str> = skus
        .iter()
        .copied()
        .filter(|sku| {
            carriers
                .get(*sku)
                .is_some_and(|c| c.iter().any(|v| v.awaiting_refresh))
        })
        .collect();
    let read_failed = skus_with_failed_reads(tx, domain, &awaiting_skus).await?;

    let mut decided = Vec::with_capacity(skus.len());
    for sku in skus {
        let existing = existing.remove(*sku);
        let carriers = carriers.remove(*sku).unwrap_or_default();
        let candidates: Vec<Candidate> = carriers
            .iter()
            .filter_map(Candidate::from_variant)
            .collect();
        let awaiting = carriers.iter().any(|v| v.awaiting_refresh);
        let previous = existing.as_ref().and_then(|i| i.inventory_item_id);
        let current = match previous {
            None => CurrentMapping::None,
            Some(item) if known.contains(&item) => CurrentMapping::Known(item),
            Some(item) => CurrentMapping::Unverified(item),
        };
        let decision = resolve_mapping_under(shop.fields.mapping(), current, &candidates, awaiting);
        // Fields come from the variant the item is mapped to; a new item whose mapping is left
        // to WOS takes them from the variant the rules would choose.
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
                report
                    .settled_conflicts
                    .push(((*sku).to_owned(), Vec::new()));
                continue;
            }
        };
        if decision.conflict {
            tracing::warn!(
                shop = domain,
                sku,
                basis = decision.basis.as_str(),
                candidates = candidates.len(),
                inventory_item_id = ?decision.inventory_item_id,
                "SKU mapping conflict: several live variants carry the SKU, or the item is kept \
                 on an inventory item no live variant carrying the SKU has"
            );
        }
        let reasons = conflict_reasons(
            current,
            decision.inventory_item_id,
            &carriers,
            awaiting && read_failed.contains(*sku),
        );
        decided.push(Decided {
            sku,
            existing,
            fields,
            previous,
            decision,
            reasons,
        });
    }

    let (new, changed): (Vec<&Decided>, Vec<&Decided>) = decided
        .iter()
        .filter(|d| match &d.existing {
            None => true,
            Some(item) => {
                item.fields != d.fields || item.inventory_item_id != d.decision.inventory_item_id
            }
        })
        .partition(|d| d.existing.is_none());
    let inserted = insert_items(tx, domain, &new).await?;
    update_items(tx, domain, &changed).await?;

    let mut again = Vec::new();
    let mut announcements = Vec::new();
    for d in &decided {
        let outcome = match &d.existing {
            None if !inserted.contains(d.sku) => {
                // WOS inserted it since our read (we waited for its commit): settle its row.
                tracing::info!(
                    shop = domain,
                    sku = d.sku,
                    "item inserted concurrently by another writer: settling it again"
                );
                again.push(d.sku);
                continue;
            }
            None => ItemOutcome::Created,
            Some(item)
                if item.fields == d.fields
                    && item.inventory_item_id == d.decision.inventory_item_id =>
            {
                ItemOutcome::Unchanged
            }
            Some(_) => ItemOutcome::Updated,
        };
        report.items.push((d.sku.to_owned(), outcome));
        report
            .settled_conflicts
            .push((d.sku.to_owned(), d.reasons.clone()));
        if let Some(change) = MappingChange::between(d.previous, d.decision.inventory_item_id) {
            announcements.push(announcement(shop, d, change)?);
        }
    }
    announce(tx, &announcements, announce_exchange).await?;
    report.announcements += announcements.len();
    Ok(again)
}

/// The items of these SKUs, locked for update.
async fn read_items(
    tx: &Transaction<'_>,
    shop: &str,
    skus: &[&str],
) -> Result<BTreeMap<String, ItemRow>, tokio_postgres::Error> {
    Ok(tx
        .query(
            "SELECT sku, description, barcode, price::text, vendor, product_type, \
                 inventory_item_id \
             FROM items WHERE shop_domain = $1 AND sku = ANY($2) ORDER BY sku FOR UPDATE",
            &[&shop, &skus],
        )
        .await?
        .iter()
        .map(|row| {
            (
                row.get(0),
                ItemRow {
                    fields: ItemFields {
                        description: row.get(1),
                        barcode: row.get(2),
                        price: row.get(3),
                        vendor: row.get(4),
                        product_type: row.get(5),
                    },
                    inventory_item_id: row
                        .get::<_, Option<i64>>(6)
                        .map(|id| InventoryItemId(from_db(id))),
                },
            )
        })
        .collect())
}

/// The live mirrored variants carrying each of these SKUs.
async fn read_carriers(
    tx: &Transaction<'_>,
    shop: &str,
    skus: &[&str],
) -> Result<BTreeMap<String, Vec<MirroredVariant>>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT {VARIANT_COLUMNS} FROM shopify_variants v \
         WHERE v.shop_domain = $1 AND v.sku = ANY($2) AND NOT v.deleted"
    );
    let mut carriers: BTreeMap<String, Vec<MirroredVariant>> = BTreeMap::new();
    for row in tx.query(&sql, &[&shop, &skus]).await? {
        let variant = variant_from_row(&row);
        if let Some(sku) = variant.sku.clone() {
            carriers.entry(sku).or_default().push(variant);
        }
    }
    Ok(carriers)
}

/// Which of these inventory items a variant the mirror knows (live or deleted) has.
async fn mirrored_inventory_items(
    tx: &Transaction<'_>,
    shop: &str,
    inventory_items: &[i64],
) -> Result<BTreeSet<InventoryItemId>, tokio_postgres::Error> {
    if inventory_items.is_empty() {
        return Ok(BTreeSet::new());
    }
    Ok(tx
        .query(
            "SELECT DISTINCT inventory_item_id FROM shopify_variants \
             WHERE shop_domain = $1 AND inventory_item_id = ANY($2)",
            &[&shop, &inventory_items],
        )
        .await?
        .iter()
        .map(|row| InventoryItemId(from_db(row.get(0))))
        .collect())
}

/// Which of these SKUs a live variant carries whose read failed (a refresh with attempts).
async fn skus_with_failed_reads(
    tx: &Transaction<'_>,
    shop: &str,
    skus: &[&str],
) -> Result<BTreeSet<String>, tokio_postgres::Error> {
    if skus.is_empty() {
        return Ok(BTreeSet::new());
    }
    Ok(tx
        .query(
            "SELECT DISTINCT v.sku FROM variant_refreshes r \
             JOIN shopify_variants v \
                 ON v.shop_domain = r.shop_domain AND v.variant_id = r.variant_id \
             WHERE r.shop_domain = $1 AND v.sku = ANY($2) AND r.attempts > 0 AND NOT v.deleted",
            &[&shop, &skus],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect())
}

/// The columns of items to write, one array per column (for `unnest`).
#[derive(Default)]
struct ItemColumns<'a> {
    skus: Vec<&'a str>,
    descriptions: Vec<Option<&'a str>>,
    barcodes: Vec<Option<&'a str>>,
    prices: Vec<Option<&'a str>>,
    vendors: Vec<Option<&'a str>>,
    product_types: Vec<Option<&'a str>>,
    inventory_items: Vec<Option<i64>>,
}

impl<'a> ItemColumns<'a> {
    fn of(decided: &[&'a Decided<'a>]) -> Result<Self, IngestError> {
        let mut columns = Self::default();
        for d in decided {
            columns.skus.push(d.sku);
            columns.descriptions.push(d.fields.description.as_deref());
            columns.barcodes.push(d.fields.barcode.as_deref());
            columns.prices.push(d.fields.price.as_deref());
            columns.vendors.push(d.fields.vendor.as_deref());
            columns.product_types.push(d.fields.product_type.as_deref());
            columns
                .inventory_items
                .push(inventory_item_param(d.decision.inventory_item_id)?);
        }
        Ok(columns)
    }

    /// `$1` the shop, `$2`..`$8` the columns, in the order of the statements below.
    fn params<'p>(&'p self, shop: &'p &str) -> [&'p (dyn ToSql + Sync); 8] {
        [
            shop,
            &self.skus,
            &self.descriptions,
            &self.barcodes,
            &self.prices,
            &self.vendors,
            &self.product_types,
            &self.inventory_items,
        ]
    }
}

/// Inserts the new items that are still absent; returns the SKUs inserted.
async fn insert_items(
    tx: &Transaction<'_>,
    shop: &str,
    new: &[&Decided<'_>],
) -> Result<BTreeSet<String>, IngestError> {
    if new.is_empty() {
        return Ok(BTreeSet::new());
    }
    let c = ItemColumns::of(new)?;
    Ok(tx
        .query(
            "INSERT INTO items (shop_domain, sku, description, barcode, price, vendor, \
                 product_type, inventory_item_id) \
             SELECT $1, sku, description, barcode, price::numeric, vendor, product_type, \
                 inventory_item_id \
             FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
                 $7::text[], $8::bigint[]) \
                 AS n (sku, description, barcode, price, vendor, product_type, inventory_item_id) \
             ON CONFLICT (shop_domain, sku) DO NOTHING RETURNING sku",
            &c.params(&shop),
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect())
}

/// Writes the changed items (their rows are locked by [`read_items`]).
async fn update_items(
    tx: &Transaction<'_>,
    shop: &str,
    changed: &[&Decided<'_>],
) -> Result<(), IngestError> {
    if changed.is_empty() {
        return Ok(());
    }
    let c = ItemColumns::of(changed)?;
    tx.execute(
        "UPDATE items i SET description = u.description, barcode = u.barcode, \
             price = u.price::numeric, vendor = u.vendor, product_type = u.product_type, \
             inventory_item_id = u.inventory_item_id, updated_at = now() \
         FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
             $8::bigint[]) \
             AS u (sku, description, barcode, price, vendor, product_type, inventory_item_id) \
         WHERE i.shop_domain = $1 AND i.sku = u.sku",
        &c.params(&shop),
    )
    .await?;
    Ok(())
}

fn inventory_item_param(id: Option<InventoryItemId>) -> Result<Option<i64>, IngestError> {
    id.map(|id| db_id(id.0, "inventory item id")).transpose()
}

/// A changed mapping's announcement, logged.
fn announcement(
    shop: &ShopSettings,
    d: &Decided<'_>,
    change: MappingChange,
) -> Result<(MappingChange, Vec<u8>), IngestError> {
    let announcement = MappingAnnouncement {
        shop_domain: shop.domain.clone(),
        sku: d.sku.to_owned(),
        change,
        inventory_item_id: d.decision.inventory_item_id,
        previous_inventory_item_id: d.previous,
        variant_id: d.decision.variant_id,
        basis: d.decision.basis.as_str().to_owned(),
        changed_at: Utc::now(),
    };
    let body = serde_json::to_vec(&announcement)
        .map_err(|err| IngestError::Unstorable(format!("announcement: {err}")))?;
    tracing::info!(shop = %shop.domain, sku = d.sku, change = change.as_str(), previous = ?d.previous, current = ?d.decision.inventory_item_id, basis = d.decision.basis.as_str(), "item mapping changed");
    Ok((change, body))
}

/// Writes the announcements to the outbox, in one statement.
async fn announce(
    tx: &Transaction<'_>,
    announcements: &[(MappingChange, Vec<u8>)],
    exchange: &str,
) -> Result<(), IngestError> {
    let keys: Vec<(String, String)> = announcements
        .iter()
        .map(|(change, _)| (change.routing_key(), uuid::Uuid::new_v4().to_string()))
        .collect();
    let messages: Vec<OutboxMessage> = announcements
        .iter()
        .zip(&keys)
        .map(|((_, body), (routing_key, id))| OutboxMessage::json(exchange, routing_key, id, body))
        .collect();
    enqueue_all(tx, &messages).await?;
    Ok(())
}
