//! The Shopify catalog mirror and the SKU mapping rules (CONTRACT 5), as pure functions.
//!
//! item-ingest keeps a mirror of every Shopify variant it has seen ([`MirroredVariant`]) and
//! derives each WOS item's `inventory_item_id` from it. The decisions that live here:
//!
//! - [`apply_product_event`]: how one product webhook changes the mirror, given what the mirror
//!   already holds for that product. Delivery is at least once and unordered, so every variant
//!   carries the version ([`Version`]: timestamp, trigger time, event kind) of the newest event
//!   applied to it, and an older event changes nothing for it (stale). A variant missing from a
//!   newer event's complete listing is gone; a deleted product stays deleted. A variant listed
//!   beyond the 100 Shopify details keeps its state, unless the listing says it changed or it
//!   is unknown: then it must be read from Shopify ([`RefreshRequest`]), and
//!   [`apply_fetched`] applies what Shopify answers.
//! - [`resolve_mapping`]: which variant a SKU's item points at when zero, one or several live
//!   variants carry the SKU (a cloned product): keep the current one while it still carries the
//!   SKU, else the only candidate, else the oldest. This makes the seed's clone walkthrough come
//!   out right without anyone touching the original product. [`resolve_mapping_under`] applies
//!   the shop's policy for `inventory_item_id` (pinning) and holds a SKU while a variant that
//!   carried it is being read; [`conflict_reasons`] says what an operator should look at.
//! - [`item_fields`] / [`merge_item_fields`]: the item columns a variant supplies, and how the
//!   shop's field policies combine them with what WOS already has.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use crate::{
    config::{FieldPolicies, FieldPolicy, ItemField},
    ids::{InventoryItemId, ProductId, VariantId},
    webhook::{DescriptiveField, ProductEvent, ProductPayload, ProductTopic, VariantPayload},
};

/// Shopify's title of the only variant of a product without options.
pub const DEFAULT_VARIANT_TITLE: &str = "Default Title";

/// Shopify puts full details of at most this many variants in a product webhook.
pub const MAX_DETAILED_VARIANTS: usize = 100;

/// When an event happened, as far as ordering events goes: the payload's `updated_at` (whole
/// seconds in Shopify's payloads), then `X-Shopify-Triggered-At` (finer, and the same on every
/// redelivery of one webhook) to order events of the same second, then the topic: a product's
/// `products/create` is its first event, so it sorts before any `products/update` of the same
/// instant. An event without the header sorts before one with it in the same second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub updated_at: DateTime<Utc>,
    pub triggered_at: Option<DateTime<Utc>>,
    pub kind: EventKind,
}

impl Version {
    /// The version of an update (or of state read from Shopify).
    pub fn at(updated_at: DateTime<Utc>, triggered_at: Option<DateTime<Utc>>) -> Self {
        Self::of(updated_at, triggered_at, EventKind::Update)
    }

    pub fn of(
        updated_at: DateTime<Utc>,
        triggered_at: Option<DateTime<Utc>>,
        kind: EventKind,
    ) -> Self {
        Self {
            updated_at,
            triggered_at,
            kind,
        }
    }
}

/// Which kind of event a version comes from; orders events that agree on everything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKind {
    /// `products/create`: the product's first event.
    Create,
    /// `products/update`, `products/delete`, or state read from Shopify.
    Update,
}

impl EventKind {
    /// The kind of a product topic's events.
    pub fn of_topic(topic: ProductTopic) -> Self {
        match topic {
            ProductTopic::Create => Self::Create,
            ProductTopic::Update | ProductTopic::Delete => Self::Update,
        }
    }

    /// Stored as a smallint (`version_kind`).
    pub fn as_i16(self) -> i16 {
        match self {
            Self::Create => 0,
            Self::Update => 1,
        }
    }

    /// Reads the stored smallint; anything but 0 is an update.
    pub fn from_i16(value: i16) -> Self {
        if value == 0 {
            Self::Create
        } else {
            Self::Update
        }
    }
}

/// What orders one event against the others, besides its payload's `updated_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventClock {
    /// Stands in for a missing `updated_at` (deletes, payloads without it): the webhook's
    /// `X-Shopify-Triggered-At`, or the time of receipt.
    pub event_time: DateTime<Utc>,
    /// `X-Shopify-Triggered-At`, when present: it orders events of the same second.
    pub triggered_at: Option<DateTime<Utc>>,
    /// Create or update.
    pub kind: EventKind,
}

impl EventClock {
    fn version(&self, updated_at: DateTime<Utc>) -> Version {
        Version::of(updated_at, self.triggered_at, self.kind)
    }
}

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

/// A variant item-ingest must read from Shopify's Admin API: listed in a product event beyond
/// the variants it details, and newer than the mirror or unknown to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshRequest {
    pub variant_id: VariantId,
    pub product_id: ProductId,
    /// The listing's `updated_at` that asked for it, when the listing had one.
    pub listed_at: Option<DateTime<Utc>>,
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

/// Variants the payload lists without detailing them (beyond Shopify's 100) that must be read
/// from Shopify: a known live variant whose listed `updated_at` is newer than the state the
/// mirror holds (its SKU is then held until the read), and a variant the mirror has never
/// seen (unless a newer listing of the product shows it gone since). A listed entry without
/// `updated_at` (older payloads) cannot say a known variant changed: it keeps its state.
fn request_refreshes(
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

/// A live variant carrying a SKU, as a mapping candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub variant_id: VariantId,
    pub inventory_item_id: InventoryItemId,
    pub created_at: Option<DateTime<Utc>>,
}

impl Candidate {
    /// The candidate a live mirrored variant makes, if it has an inventory item (one without
    /// cannot take adjustments, so it cannot be a mapping target) and is not awaiting a read
    /// from Shopify (its SKU may have changed).
    pub fn from_variant(variant: &MirroredVariant) -> Option<Self> {
        (!variant.deleted && !variant.awaiting_refresh).then_some(())?;
        Some(Self {
            variant_id: variant.variant_id,
            inventory_item_id: variant.inventory_item_id?,
            created_at: variant.created_at,
        })
    }
}

/// What the item currently points at, as far as the mirror knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CurrentMapping {
    /// `inventory_item_id` is NULL.
    None,
    /// It points at an inventory item of a variant the mirror knows (live or deleted).
    Known(InventoryItemId),
    /// It points at an inventory item no mirrored variant has: set by WOS or a backfill
    /// before item-ingest saw the variant.
    Unverified(InventoryItemId),
}

/// Why a mapping came out as it did (logged, and listed with conflicts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MappingBasis {
    /// The item already pointed at a live variant carrying the SKU.
    Kept,
    /// The item's inventory item is unknown to the mirror; it is kept rather than replaced by
    /// a variant that may be a clone.
    KeptUnverified,
    /// Exactly one live variant carries the SKU.
    OnlyCandidate,
    /// Several do; the oldest wins.
    Oldest,
    /// None does: the item has no mapping.
    NoCandidate,
    /// The shop pins `inventory_item_id` (`shopify_initial` once filled, or `wos`) and the
    /// pinned inventory item is not a live variant carrying the SKU (or is empty under `wos`):
    /// it stays as WOS has it.
    Pinned,
    /// A variant that carried the SKU is being read from Shopify (it changed beyond the
    /// detailed 100): no variant is chosen until Shopify says what it carries now.
    AwaitingShopify,
}

impl MappingBasis {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kept => "kept",
            Self::KeptUnverified => "kept_unverified",
            Self::OnlyCandidate => "only_candidate",
            Self::Oldest => "oldest",
            Self::NoCandidate => "no_candidate",
            Self::Pinned => "pinned",
            Self::AwaitingShopify => "awaiting_shopify",
        }
    }
}

/// The outcome of [`resolve_mapping`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MappingDecision {
    pub inventory_item_id: Option<InventoryItemId>,
    /// The variant chosen (`None` when kept unverified or no candidate).
    pub variant_id: Option<VariantId>,
    pub basis: MappingBasis,
    /// More than one live variant carries the SKU (or an unverified mapping competes with
    /// one): an operator should look (`wos_sync_sku_conflicts`).
    pub conflict: bool,
}

/// CONTRACT 5: keep the variant the item points at while it still carries the SKU; otherwise
/// the only candidate; otherwise the oldest candidate (Shopify's `created_at`, then the lower
/// id, since Shopify ids grow over time); none -> no mapping.
pub fn resolve_mapping(current: CurrentMapping, candidates: &[Candidate]) -> MappingDecision {
    let conflict = candidates.len() > 1;
    if let CurrentMapping::Known(item) | CurrentMapping::Unverified(item) = current
        && let Some(kept) = candidates.iter().find(|c| c.inventory_item_id == item)
    {
        return MappingDecision {
            inventory_item_id: Some(item),
            variant_id: Some(kept.variant_id),
            basis: MappingBasis::Kept,
            conflict,
        };
    }
    if let CurrentMapping::Unverified(item) = current {
        return MappingDecision {
            inventory_item_id: Some(item),
            variant_id: None,
            basis: MappingBasis::KeptUnverified,
            conflict: !candidates.is_empty(),
        };
    }
    // Shopify's creation times when every candidate has one; otherwise the ids alone (Shopify
    // ids grow over time), so a variant whose time we never learned is not taken for younger.
    let all_dated = candidates.iter().all(|c| c.created_at.is_some());
    let oldest = candidates
        .iter()
        .min_by_key(|c| (if all_dated { c.created_at } else { None }, c.variant_id));
    match (oldest, candidates.len()) {
        (None, _) => MappingDecision {
            inventory_item_id: None,
            variant_id: None,
            basis: MappingBasis::NoCandidate,
            conflict: false,
        },
        (Some(chosen), n) => MappingDecision {
            inventory_item_id: Some(chosen.inventory_item_id),
            variant_id: Some(chosen.variant_id),
            basis: if n == 1 {
                MappingBasis::OnlyCandidate
            } else {
                MappingBasis::Oldest
            },
            conflict,
        },
    }
}

/// [`resolve_mapping`] under the shop's policy for `inventory_item_id`
/// ([`FieldPolicies::mapping`]): `shopify` follows the rules; `shopify_initial` follows them
/// while the item has no inventory item, then keeps the one it has; `wos` always keeps what
/// the item has. A kept (pinned) inventory item that no live variant carrying the SKU has (its
/// variant was renamed, deleted, or never seen while another variant carries the SKU) is a
/// conflict: reported, never repointed.
///
/// `awaiting`: a variant that carried the SKU is being read from Shopify. The rules then keep
/// only what rule 1 keeps (or an unverified mapping) and choose nothing else until the read:
/// the variant being read may still carry the SKU and be the rightful (oldest) one, so
/// choosing another now could hand the SKU to a clone for good.
pub fn resolve_mapping_under(
    policy: FieldPolicy,
    current: CurrentMapping,
    candidates: &[Candidate],
    awaiting: bool,
) -> MappingDecision {
    let pinned = match (policy, current) {
        (FieldPolicy::Shopify, _) | (FieldPolicy::ShopifyInitial, CurrentMapping::None) => {
            let decision = resolve_mapping(current, candidates);
            return match decision.basis {
                MappingBasis::Kept | MappingBasis::KeptUnverified => decision,
                _ if awaiting => MappingDecision {
                    inventory_item_id: None,
                    variant_id: None,
                    basis: MappingBasis::AwaitingShopify,
                    conflict: false,
                },
                _ => decision,
            };
        }
        (_, CurrentMapping::None) => None,
        (_, CurrentMapping::Known(item) | CurrentMapping::Unverified(item)) => Some(item),
    };
    let carrier = pinned.and_then(|item| candidates.iter().find(|c| c.inventory_item_id == item));
    match carrier {
        Some(kept) => MappingDecision {
            inventory_item_id: pinned,
            variant_id: Some(kept.variant_id),
            basis: MappingBasis::Kept,
            conflict: candidates.len() > 1,
        },
        None => MappingDecision {
            inventory_item_id: pinned,
            variant_id: None,
            basis: MappingBasis::Pinned,
            conflict: match current {
                CurrentMapping::None => false,
                CurrentMapping::Known(_) => true,
                CurrentMapping::Unverified(_) => !candidates.is_empty(),
            },
        },
    }
}

/// Why a SKU is a conflict an operator should look at (`wos_sync_sku_conflicts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConflictReason {
    /// Several live variants (with an inventory item) carry the SKU: a clone, or a
    /// duplicated SKU.
    SharedSku,
    /// The item points at an inventory item the mirror has never seen (set by WOS or a
    /// backfill; kept as it is) while a live variant carries the SKU.
    Unverified,
    /// The item points at an inventory item the mirror knows, but no live variant with it
    /// carries the SKU any more (renamed or deleted): a pinned mapping, or one WOS wrote.
    NotCarried,
    /// A variant that carried the SKU must be read from Shopify (it changed beyond the 100
    /// variants a webhook details) and the read has failed at least once (Shopify
    /// unavailable, or no access token): the SKU is held, unmapped, until it succeeds.
    AwaitingShopify,
}

impl ConflictReason {
    pub const ALL: [ConflictReason; 4] = [
        Self::SharedSku,
        Self::Unverified,
        Self::NotCarried,
        Self::AwaitingShopify,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SharedSku => "shared_sku",
            Self::Unverified => "unverified",
            Self::NotCarried => "not_carried",
            Self::AwaitingShopify => "awaiting_shopify",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|reason| reason.as_str() == text)
    }
}

/// The conflicts of one SKU once settled: `current` is what the item pointed at, `mapped` what
/// it points at now, `carriers` the live variants carrying the SKU (awaiting a read or not),
/// `read_failed` whether a read of one of them has failed.
pub fn conflict_reasons(
    current: CurrentMapping,
    mapped: Option<InventoryItemId>,
    carriers: &[MirroredVariant],
    read_failed: bool,
) -> Vec<ConflictReason> {
    let with_item: Vec<InventoryItemId> = carriers
        .iter()
        .filter(|v| !v.deleted)
        .filter_map(|v| v.inventory_item_id)
        .collect();
    let mut reasons = Vec::new();
    if with_item.len() > 1 {
        reasons.push(ConflictReason::SharedSku);
    }
    match current {
        CurrentMapping::Unverified(item) if mapped == Some(item) && !with_item.is_empty() => {
            reasons.push(ConflictReason::Unverified);
        }
        CurrentMapping::Known(item) if mapped == Some(item) && !with_item.contains(&item) => {
            reasons.push(ConflictReason::NotCarried);
        }
        _ => {}
    }
    if read_failed {
        reasons.push(ConflictReason::AwaitingShopify);
    }
    reasons
}

/// The policy-governed columns of a WOS item.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemFields {
    pub description: Option<String>,
    pub barcode: Option<String>,
    /// Decimal text, stored as `numeric`.
    pub price: Option<String>,
    pub vendor: Option<String>,
    pub product_type: Option<String>,
}

impl ItemFields {
    fn slot(&mut self, field: ItemField) -> &mut Option<String> {
        match field {
            ItemField::Description => &mut self.description,
            ItemField::Barcode => &mut self.barcode,
            ItemField::Price => &mut self.price,
            ItemField::Vendor => &mut self.vendor,
            ItemField::ProductType => &mut self.product_type,
        }
    }
}

/// The item columns a variant supplies: the description is the product title, plus the variant
/// title unless it is Shopify's "Default Title" (none while the product title is unknown).
pub fn item_fields(variant: &MirroredVariant) -> ItemFields {
    let description = variant.product_title.as_ref().map(|product_title| {
        match variant.variant_title.as_deref().map(str::trim) {
            Some(title) if !title.is_empty() && title != DEFAULT_VARIANT_TITLE => {
                format!("{product_title} - {title}")
            }
            _ => product_title.clone(),
        }
    });
    ItemFields {
        description,
        barcode: variant.barcode.clone(),
        price: variant.price.clone(),
        vendor: variant.vendor.clone(),
        product_type: variant.product_type.clone(),
    }
}

/// The item's columns after a Shopify update: each field is Shopify's value where its policy
/// lets Shopify write (`shopify` always, `shopify_initial` only when creating the item), and
/// what the item already has otherwise (`None` for a new item under `wos`).
pub fn merge_item_fields(
    existing: Option<&ItemFields>,
    from_shopify: &ItemFields,
    policies: &FieldPolicies,
) -> ItemFields {
    let mut merged = existing.cloned().unwrap_or_default();
    let mut shopify = from_shopify.clone();
    for field in ItemField::ALL {
        if policies.policy(field).shopify_may_write(existing.is_none()) {
            *merged.slot(field) = shopify.slot(field).take();
        }
    }
    merged
}

#[cfg(test)]
mod tests;
