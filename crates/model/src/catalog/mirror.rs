//! How one product webhook changes the variant mirror ([`apply_product_event`]): newer state
//! replaces older, a variant missing from a newer complete listing is gone, a deleted product
//! stays deleted, and an unreadable descriptive field keeps what the mirror had.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use super::refresh::{RefreshRequest, request_refreshes};
use super::{EventClock, MAX_DETAILED_VARIANTS, Version};
use crate::ids::{InventoryItemId, ProductId, VariantId};
use crate::webhook::{DescriptiveField, ProductEvent, ProductPayload, VariantPayload};

/// What the mirror remembers of one Shopify variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirroredVariant {
    pub variant_id: VariantId,
    pub product_id: ProductId,
    /// `None`: the variant has no SKU (it maps to no WOS item).
    pub sku: Option<String>,
    pub inventory_item_id: Option<InventoryItemId>,
    /// `None` only when no event has given a readable title yet.
    pub product_title: Option<String>,
    pub variant_title: Option<String>,
    pub barcode: Option<String>,
    pub price: Option<String>,
    pub vendor: Option<String>,
    pub product_type: Option<String>,
    /// Shopify's creation time of the variant: "oldest candidate" compares it.
    pub created_at: Option<DateTime<Utc>>,
    /// The version of the newest event applied to this variant.
    pub version: Version,
    /// The newest `variant_gids` `updated_at` of this variant whose state the mirror holds
    /// (a listing entry newer than this means the variant changed since).
    pub listed_at: Option<DateTime<Utc>>,
    /// Deleted in Shopify (explicitly, or missing from a newer complete listing).
    pub deleted: bool,
    /// Not part of the mirrored state: a read of this variant from Shopify is pending (it was
    /// listed as changed beyond the detailed 100), so it is no mapping candidate meanwhile.
    pub awaiting_refresh: bool,
}

impl MirroredVariant {
    /// Whether two rows describe the same variant content (versions and bookkeeping aside).
    fn same_content(&self, other: &Self) -> bool {
        let normalized = |v: &Self| Self {
            version: other.version,
            listed_at: None,
            awaiting_refresh: false,
            ..v.clone()
        };
        normalized(self) == normalized(other)
    }
}

/// What the mirror remembers of one product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductRecord {
    pub product_id: ProductId,
    /// The version of the newest event applied to the product.
    pub version: Version,
    /// Every variant id of the product as of `version`, when an event told us all of them.
    pub listed_variants: Option<Vec<VariantId>>,
    /// `products/delete` arrived: nothing may bring the product back.
    pub deleted: bool,
}

/// How one product event changes the mirror.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatalogChange {
    /// Variant rows to write (new, changed or now deleted).
    pub upserts: Vec<MirroredVariant>,
    /// The product row to write, if it changed.
    pub product: Option<ProductRecord>,
    /// Variants of the event that were not applied because newer state is already mirrored.
    pub stale: Vec<VariantId>,
    /// Variants of the event without a SKU (counted and logged, never failed).
    pub without_sku: Vec<VariantId>,
    /// SKUs whose mapping must be resolved again: every SKU a changed variant carried before or
    /// carries now, and the SKU of a variant that starts or stops awaiting a refresh.
    pub affected_skus: BTreeSet<String>,
    /// Variants to read from Shopify (new requests, or newer than a pending one).
    pub refresh: Vec<RefreshRequest>,
    /// Pending refreshes this change satisfies (the variant's state is now known as of the
    /// request, or it is gone).
    pub refreshed: Vec<VariantId>,
}

/// Applies `event` to the mirrored state of its product.
///
/// `known` holds every mirrored variant of the product (live or deleted); `product` its record;
/// `pending` the product's refreshes not done yet; `clock` what orders the event besides its
/// payload (see [`EventClock`]).
pub fn apply_product_event(
    event: &ProductEvent,
    clock: &EventClock,
    known: &[MirroredVariant],
    product: Option<&ProductRecord>,
    pending: &[RefreshRequest],
) -> CatalogChange {
    match event {
        ProductEvent::Upsert(payload) => apply_upsert(payload, clock, known, product, pending),
        ProductEvent::Delete { product_id } => {
            let mut change =
                apply_delete(*product_id, clock.version(clock.event_time), known, product);
            change.refreshed = pending.iter().map(|r| r.variant_id).collect();
            change
        }
    }
}

fn apply_delete(
    product_id: ProductId,
    event_time: Version,
    known: &[MirroredVariant],
    product: Option<&ProductRecord>,
) -> CatalogChange {
    let mut change = CatalogChange::default();
    for variant in known.iter().filter(|v| !v.deleted) {
        change.affected_skus.extend(variant.sku.clone());
        change.upserts.push(MirroredVariant {
            deleted: true,
            version: variant.version.max(event_time),
            ..variant.clone()
        });
    }
    // A delete is terminal whatever its timestamp: Shopify never reuses a product id.
    if !product.is_some_and(|p| p.deleted) {
        change.product = Some(ProductRecord {
            product_id,
            version: product.map_or(event_time, |p| p.version.max(event_time)),
            listed_variants: product.and_then(|p| p.listed_variants.clone()),
            deleted: true,
        });
    }
    change
}

fn apply_upsert(
    payload: &ProductPayload,
    clock: &EventClock,
    known: &[MirroredVariant],
    product: Option<&ProductRecord>,
    pending: &[RefreshRequest],
) -> CatalogChange {
    let mut change = CatalogChange::default();
    if product.is_some_and(|p| p.deleted) {
        change.stale = payload.variants.iter().map(|v| v.id).collect();
        return change;
    }
    let product_updated = payload
        .updated_at
        .map_or(clock.event_time, |t| t.with_timezone(&Utc));
    let product_version = clock.version(product_updated);
    let newest_for_product = product.is_none_or(|p| product_version >= p.version);
    let known_by_id: BTreeMap<VariantId, &MirroredVariant> =
        known.iter().map(|v| (v.variant_id, v)).collect();
    let pending_by_id: BTreeMap<VariantId, &RefreshRequest> =
        pending.iter().map(|r| (r.variant_id, r)).collect();

    for variant in &payload.variants {
        if variant.sku.is_none() {
            change.without_sku.push(variant.id);
        }
        let updated = variant.updated_at.map_or(product_updated, |t| {
            t.with_timezone(&Utc).max(product_updated)
        });
        let version = clock.version(updated);
        let old = known_by_id.get(&variant.id).copied();
        let fresh = mirrored_from(payload, variant, version, old);
        let covers_pending = |row: &MirroredVariant| {
            pending_by_id.get(&variant.id).is_some_and(|request| {
                request.listed_at.is_none_or(|asked| {
                    row.listed_at.is_some_and(|seen| seen >= asked)
                        || row.version.updated_at >= asked
                })
            })
        };
        match old {
            Some(old) if version < old.version => change.stale.push(variant.id),
            Some(old) => {
                let updated = MirroredVariant {
                    // Shopify's created_at never changes; keep the first one we learned.
                    created_at: old.created_at.or(fresh.created_at),
                    listed_at: old.listed_at.max(fresh.listed_at),
                    ..fresh
                };
                // A newer version alone is written (later events compare against it); changed
                // content re-resolves the old and the new SKU.
                let content_changed = !updated.same_content(old);
                if content_changed {
                    change.affected_skus.extend(old.sku.clone());
                    change.affected_skus.extend(updated.sku.clone());
                }
                if covers_pending(&updated) {
                    change.refreshed.push(variant.id);
                    change.affected_skus.extend(old.sku.clone());
                    change.affected_skus.extend(updated.sku.clone());
                }
                if content_changed
                    || updated.version != old.version
                    || updated.listed_at != old.listed_at
                {
                    change.upserts.push(updated);
                }
            }
            None => {
                // Unknown variant in an older event: if a newer complete listing of the product
                // lacks it, it was deleted in between and must not come back to life.
                let gone_since = !newest_for_product
                    && product
                        .and_then(|p| p.listed_variants.as_ref())
                        .is_some_and(|listed| !listed.contains(&variant.id));
                if gone_since {
                    change.stale.push(variant.id);
                } else {
                    if covers_pending(&fresh) {
                        change.refreshed.push(variant.id);
                    }
                    change.affected_skus.extend(fresh.sku.clone());
                    change.upserts.push(fresh);
                }
            }
        }
    }
    request_refreshes(
        payload,
        newest_for_product,
        &known_by_id,
        product,
        &pending_by_id,
        &mut change,
    );

    if newest_for_product {
        let listing = complete_listing(payload);
        if let Some(listing) = &listing {
            let in_event: BTreeSet<VariantId> = listing.iter().copied().collect();
            for old in known
                .iter()
                .filter(|v| !v.deleted && !in_event.contains(&v.variant_id))
            {
                // Strictly newer only: two updates of the same second without
                // `X-Shopify-Triggered-At` cannot tell which is later (an update is later
                // than the product's create).
                if product_version > old.version {
                    change.affected_skus.extend(old.sku.clone());
                    if pending_by_id.contains_key(&old.variant_id) {
                        change.refreshed.push(old.variant_id);
                    }
                    change.upserts.push(MirroredVariant {
                        deleted: true,
                        version: product_version,
                        ..old.clone()
                    });
                }
            }
        }
        change.product = Some(ProductRecord {
            product_id: payload.id,
            version: product_version,
            listed_variants: listing.or_else(|| product.and_then(|p| p.listed_variants.clone())),
            deleted: false,
        });
    }
    change
}

/// Every variant id of the product, when the payload tells: `variant_gids`/`variant_ids`, or
/// the `variants` array itself when it is below Shopify's 100-detail limit (then it is whole).
fn complete_listing(payload: &ProductPayload) -> Option<Vec<VariantId>> {
    match &payload.listed_variant_ids {
        Some(listed) => {
            let mut all = listed.clone();
            all.extend(
                payload
                    .variants
                    .iter()
                    .map(|v| v.id)
                    .filter(|id| !listed.contains(id)),
            );
            Some(all)
        }
        None if payload.variants.len() < MAX_DETAILED_VARIANTS => {
            Some(payload.variants.iter().map(|v| v.id).collect())
        }
        None => None,
    }
}

/// The mirror row an event's variant makes. A descriptive field the payload could not read
/// keeps the value `old` had (unknown for a variant seen for the first time).
fn mirrored_from(
    product: &ProductPayload,
    variant: &VariantPayload,
    version: Version,
    old: Option<&MirroredVariant>,
) -> MirroredVariant {
    let product_unreadable = |field| product.unreadable.iter().any(|u| u.field == field);
    let variant_unreadable = |field| variant.unreadable.contains(&field);
    let keep = |unreadable: bool,
                fresh: &Option<String>,
                kept: fn(&MirroredVariant) -> &Option<String>| {
        if unreadable {
            old.and_then(|old| kept(old).clone())
        } else {
            fresh.clone()
        }
    };
    MirroredVariant {
        variant_id: variant.id,
        product_id: product.id,
        sku: variant.sku.clone(),
        inventory_item_id: variant.inventory_item_id,
        product_title: keep(
            product_unreadable(DescriptiveField::ProductTitle),
            &product.title,
            |v| &v.product_title,
        ),
        variant_title: keep(
            variant_unreadable(DescriptiveField::VariantTitle),
            &variant.title,
            |v| &v.variant_title,
        ),
        barcode: keep(
            variant_unreadable(DescriptiveField::Barcode),
            &variant.barcode,
            |v| &v.barcode,
        ),
        price: keep(
            variant_unreadable(DescriptiveField::Price),
            &variant.price,
            |v| &v.price,
        ),
        vendor: keep(
            product_unreadable(DescriptiveField::Vendor),
            &product.vendor,
            |v| &v.vendor,
        ),
        product_type: keep(
            product_unreadable(DescriptiveField::ProductType),
            &product.product_type,
            |v| &v.product_type,
        ),
        created_at: variant.created_at.map(|t| t.with_timezone(&Utc)),
        version,
        listed_at: product.listed_updated_at.get(&variant.id).copied(),
        deleted: false,
        awaiting_refresh: false,
    }
}
