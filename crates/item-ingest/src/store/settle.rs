//! Settling one SKU: its mapping under the shop's policy and its fields, written only when
//! something changed (an absent item inserted only if still absent), and an announcement for
//! every change of its `inventory_item_id`.

use chrono::Utc;
use deadpool_postgres::{GenericClient, Transaction};
use model::{
    announcement::{MappingAnnouncement, MappingChange},
    catalog::{
        Candidate, CurrentMapping, ItemFields, MappingDecision, MirroredVariant, conflict_reasons,
        item_fields, merge_item_fields, resolve_mapping, resolve_mapping_under,
    },
    config::ShopSettings,
    ids::InventoryItemId,
};
use platform::outbox::{OutboxMessage, enqueue};

use super::{
    IngestError, IngestReport, ItemOutcome, VARIANT_COLUMNS, db_id, from_db, variant_from_row,
};

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
pub(super) async fn settle_item(
    tx: &Transaction<'_>,
    shop: &ShopSettings,
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
    shop: &ShopSettings,
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
    shop: &ShopSettings,
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
