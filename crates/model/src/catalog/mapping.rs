//! The SKU mapping rules (CONTRACT 5): which variant's inventory item a SKU's WOS item points at
//! ([`resolve_mapping`]), under the shop's policy for `inventory_item_id`
//! ([`resolve_mapping_under`]), and what an operator should look at ([`conflict_reasons`]).

use chrono::{DateTime, Utc};

use super::MirroredVariant;
use crate::config::FieldPolicy;
use crate::ids::{InventoryItemId, VariantId};

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
/// ([`FieldPolicies::mapping`](crate::config::FieldPolicies::mapping)): `shopify` follows the
/// rules; `shopify_initial` follows them while the item has no inventory item, then keeps the
/// one it has; `wos` always keeps what the item has. A kept (pinned) inventory item that no
/// live variant carrying the SKU has (its variant was renamed, deleted, or never seen while
/// another variant carries the SKU) is a conflict: reported, never repointed.
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
