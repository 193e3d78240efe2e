//! Variants read from Shopify: which variants a product event lists beyond the 100 it details
//! must be read ([`RefreshRequest`]), and how Shopify's answer changes the mirror
//! ([`apply_fetched`]).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use super::{CatalogChange, MirroredVariant, ProductRecord, Version};
use crate::ids::{InventoryItemId, ProductId, VariantId};
use crate::webhook::ProductPayload;

/// A variant item-ingest must read from Shopify's Admin API: listed in a product event beyond
/// the variants it details, and newer than the mirror or unknown to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshRequest {
    pub variant_id: VariantId,
    pub product_id: ProductId,
    /// The listing's `updated_at` that asked for it, when the listing had one.
    pub listed_at: Option<DateTime<Utc>>,
}

/// Variants the payload lists without detailing them (beyond Shopify's 100) that must be read
/// from Shopify: a known live variant whose listed `updated_at` is newer than the state the
/// mirror holds (its SKU is then held until the read), and a variant the mirror has never
/// seen (unless a newer listing of the product shows it gone since). A listed entry without
/// `updated_at` (older payloads) cannot say a known variant changed: it keeps its state.
pub(super) fn request_refreshes(
    payload: &ProductPayload,
    newest_for_product: bool,
    known_by_id: &BTreeMap<VariantId, &MirroredVariant>,
    product: Option<&ProductRecord>,
    pending_by_id: &BTreeMap<VariantId, &RefreshRequest>,
    change: &mut CatalogChange,
) {
    let Some(listed) = &payload.listed_variant_ids else {
        return;
    };
    let detailed: BTreeSet<VariantId> = payload.variants.iter().map(|v| v.id).collect();
    let mut seen = BTreeSet::new();
    for &id in listed {
        if detailed.contains(&id) || !seen.insert(id) {
            continue;
        }
        let listed_at = payload.listed_updated_at.get(&id).copied();
        // A pending request already covers this listing unless the listing is newer.
        let already_pending =
            pending_by_id
                .get(&id)
                .is_some_and(|request| match (request.listed_at, listed_at) {
                    (Some(asked), Some(listed)) => asked >= listed,
                    (_, None) => true,
                    (None, Some(_)) => false,
                });
        let request = RefreshRequest {
            variant_id: id,
            product_id: payload.id,
            listed_at,
        };
        match known_by_id.get(&id) {
            // Shopify never brings a variant back.
            Some(old) if old.deleted => {}
            Some(old) => {
                let Some(listed) = listed_at else { continue };
                let mirrored = old.listed_at.unwrap_or(old.version.updated_at);
                if listed > mirrored && !already_pending {
                    change.affected_skus.extend(old.sku.clone());
                    change.refresh.push(request);
                }
            }
            None => {
                let gone_since = !newest_for_product
                    && product
                        .and_then(|p| p.listed_variants.as_ref())
                        .is_some_and(|all| !all.contains(&id));
                if !gone_since && !already_pending {
                    change.refresh.push(request);
                }
            }
        }
    }
}

/// A variant as Shopify's Admin API answers it (`nodes(ids:)`): the current state, read after
/// the event that asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedVariant {
    pub variant_id: VariantId,
    pub product_id: ProductId,
    pub sku: Option<String>,
    pub inventory_item_id: Option<InventoryItemId>,
    pub product_title: Option<String>,
    pub variant_title: Option<String>,
    pub barcode: Option<String>,
    pub price: Option<String>,
    pub vendor: Option<String>,
    pub product_type: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    pub product_updated_at: Option<DateTime<Utc>>,
}

/// Applies what Shopify answered for claimed refresh `requests` (all of one product):
/// `fetched[id]` is `Some(None)` when Shopify has no such variant any more, absent when it was
/// not read. A read variant is mirrored with the version an event of the same state would have
/// (the later of its and its product's `updated_at`), unless the mirror already holds newer
/// state; a variant Shopify no longer has is deleted. Either way the request is done and the
/// SKUs involved are settled again (their hold is lifted).
pub fn apply_fetched(
    requests: &[RefreshRequest],
    fetched: &BTreeMap<VariantId, Option<FetchedVariant>>,
    known: &[MirroredVariant],
    now: DateTime<Utc>,
) -> CatalogChange {
    let mut change = CatalogChange::default();
    let known_by_id: BTreeMap<VariantId, &MirroredVariant> =
        known.iter().map(|v| (v.variant_id, v)).collect();
    for request in requests {
        let Some(answer) = fetched.get(&request.variant_id) else {
            continue;
        };
        let old = known_by_id.get(&request.variant_id).copied();
        change.refreshed.push(request.variant_id);
        if let Some(old) = old {
            change.affected_skus.extend(old.sku.clone());
        }
        match answer {
            None => {
                if let Some(old) = old.filter(|old| !old.deleted) {
                    change.upserts.push(MirroredVariant {
                        deleted: true,
                        version: old.version.max(Version::at(now, None)),
                        ..old.clone()
                    });
                }
            }
            Some(variant) => {
                let updated_at = variant
                    .product_updated_at
                    .map_or(variant.updated_at, |p| p.max(variant.updated_at));
                let version = match old {
                    Some(old) if updated_at < old.version.updated_at => {
                        // The mirror already holds newer state than this read.
                        continue;
                    }
                    // The same second as the mirrored state: keep its finer ordering.
                    Some(old) if updated_at == old.version.updated_at => old.version,
                    _ => Version::at(updated_at, None),
                };
                if variant.sku.is_none() {
                    change.without_sku.push(variant.variant_id);
                }
                change.affected_skus.extend(variant.sku.clone());
                change.upserts.push(MirroredVariant {
                    variant_id: variant.variant_id,
                    product_id: variant.product_id,
                    sku: variant.sku.clone(),
                    inventory_item_id: variant.inventory_item_id,
                    product_title: variant.product_title.clone(),
                    variant_title: variant.variant_title.clone(),
                    barcode: variant.barcode.clone(),
                    price: variant.price.clone(),
                    vendor: variant.vendor.clone(),
                    product_type: variant.product_type.clone(),
                    created_at: old.and_then(|o| o.created_at).or(variant.created_at),
                    version,
                    listed_at: old.and_then(|o| o.listed_at).max(request.listed_at),
                    deleted: false,
                    awaiting_refresh: false,
                });
            }
        }
    }
    change
}
