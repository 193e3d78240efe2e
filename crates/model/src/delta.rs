//! The delta rules: which `available` changes a WOS transaction asks of Shopify.
//!
//! This module owns CONTRACT §3.2's table as one pure function, [`plan_adjustments`]. It
//! decides *what* to change and *why nothing* when nothing; it knows nothing about inventory
//! items (the pusher resolves the SKU to an inventory item, and parks the transaction while
//! there is none), batching or Shopify calls. Every delta is an `available` delta: Shopify is
//! never told an absolute quantity (see the seed document on why inventory is not "synced").

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::LocationId;
use crate::transaction::{InventoryTransaction, TransactionKind};
use crate::validate::quote_untrusted;

/// A shop's WOS warehouse code → Shopify location map (`[shops.locations]`).
///
/// Warehouse codes match exactly (case-sensitive, no trimming): they are WOS identifiers.
/// Several warehouses may map to one location; moves between them change nothing in Shopify.
pub type LocationMap = BTreeMap<String, LocationId>;

/// What [`plan_adjustments`] decided for one transaction.
///
/// Both lists may be non-empty at once (a `move` out of an unmapped warehouse into a mapped
/// one), and both empty never happens: a transaction always yields a change or a skip.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AdjustmentPlan {
    /// The `available` deltas to push, in order (for a `move`: source, then destination).
    pub changes: Vec<PlannedChange>,
    /// Why (parts of) the transaction produced nothing.
    pub skipped: Vec<Skip>,
}

impl AdjustmentPlan {
    /// Whether there is nothing to push.
    pub fn has_no_changes(&self) -> bool {
        self.changes.is_empty()
    }

    /// Adds `delta` at the location of `warehouse`, or an unmapped-warehouse skip.
    fn change_at(
        &mut self,
        locations: &LocationMap,
        warehouse: &str,
        delta: i64,
        reason: AdjustmentReason,
    ) {
        match locations.get(warehouse) {
            Some(&location) => self.changes.push(PlannedChange {
                location,
                delta,
                reason,
            }),
            None => self.skipped.push(Skip::UnmappedWarehouse {
                warehouse: warehouse.to_owned(),
            }),
        }
    }
}

/// One `available` delta at one Shopify location, for the transaction's SKU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedChange {
    /// Where the stock changes.
    pub location: LocationId,
    /// Signed change of `available`; never zero.
    pub delta: i64,
    /// Shopify's reason for the adjustment.
    pub reason: AdjustmentReason,
}

/// Shopify's `reason` for an inventory adjustment, one per transaction type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdjustmentReason {
    /// `put` → `received`.
    Received,
    /// `pull` → `correction`.
    Correction,
    /// `cycle_count` → `cycle_count_available`.
    CycleCountAvailable,
    /// `move` → `movement_updated`.
    MovementUpdated,
    /// `pick` for a non-Shopify order → `other`.
    Other,
}

impl AdjustmentReason {
    /// The string Shopify's `inventoryAdjustQuantities` expects in `reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::Correction => "correction",
            Self::CycleCountAvailable => "cycle_count_available",
            Self::MovementUpdated => "movement_updated",
            Self::Other => "other",
        }
    }
}

impl fmt::Display for AdjustmentReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a transaction, or one side of a `move`, produced no change. Counted and logged by the
/// pusher, never an error.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Skip {
    /// A cycle count that found what WOS expected.
    ZeroCycleCount,
    /// A pick for a Shopify order: Shopify already decremented when the order was placed.
    ShopifyOrderPick,
    /// A move that stays within one Shopify location (both warehouses map to it, or it is
    /// a bin-to-bin move inside one warehouse).
    SameShopifyLocation,
    /// The warehouse has no Shopify location in the shop's configuration.
    UnmappedWarehouse {
        /// The WOS warehouse code that is not mapped.
        warehouse: String,
    },
}

impl Skip {
    /// Every label [`Skip::as_str`] can return (for pre-registering metrics).
    pub const LABELS: [&'static str; 4] = [
        "zero_cycle_count",
        "shopify_order_pick",
        "same_shopify_location",
        "unmapped_warehouse",
    ];

    /// A bounded, stable label for metrics and logs (no warehouse code in it).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::ZeroCycleCount => "zero_cycle_count",
            Self::ShopifyOrderPick => "shopify_order_pick",
            Self::SameShopifyLocation => "same_shopify_location",
            Self::UnmappedWarehouse { .. } => "unmapped_warehouse",
        }
    }
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroCycleCount => f.write_str("cycle count found no difference"),
            Self::ShopifyOrderPick => {
                f.write_str("pick for a Shopify order (Shopify already decremented it)")
            }
            Self::SameShopifyLocation => f.write_str("move within one Shopify location"),
            Self::UnmappedWarehouse { warehouse } => write!(
                f,
                "warehouse {} has no Shopify location configured",
                quote_untrusted(warehouse)
            ),
        }
    }
}

/// The `order_source` value of picks that Shopify has already accounted for.
pub const SHOPIFY_ORDER_SOURCE: &str = "shopify";

/// Whether a pick's `order_source` names Shopify.
///
/// Compared ASCII-case-insensitively: WOS channel names are free text typed by people and
/// integrations (`Shopify`, `SHOPIFY`), and the cost of the two mistakes differs. Treating a
/// Shopify pick as foreign double-decrements stock Shopify already removed (undersell); the
/// reverse needs a channel literally named "shopify" in another case, which does not exist.
pub fn is_shopify_order_source(order_source: &str) -> bool {
    order_source.eq_ignore_ascii_case(SHOPIFY_ORDER_SOURCE)
}

/// Applies the delta rules of CONTRACT §3.2 to one transaction.
///
/// | type | change | reason |
/// |---|---|---|
/// | `put` | `+quantity` at the warehouse's location | `received` |
/// | `pull` | `-quantity` | `correction` |
/// | `cycle_count` | `counted - previous` (may be negative); [`Skip::ZeroCycleCount`] when 0 | `cycle_count_available` |
/// | `move` | `-quantity` at source, `+quantity` at destination; [`Skip::SameShopifyLocation`] when both map to one location | `movement_updated` |
/// | `pick`, Shopify order | [`Skip::ShopifyOrderPick`] | — |
/// | `pick`, other source | `-quantity` | `other` |
///
/// Rules that skip whatever the mapping says (zero count, Shopify pick, move inside one
/// warehouse) are decided before the warehouse is looked up, so
/// [`Skip::UnmappedWarehouse`] counts only transactions that really lost a change. A move
/// whose `warehouse` equals its `to_warehouse` is a bin-to-bin move and is
/// [`Skip::SameShopifyLocation`] even when that warehouse is unmapped. In a move between two
/// different warehouses each unmapped side is skipped on its own and the other side still
/// yields its change (the stock left or entered what Shopify sells from).
pub fn plan_adjustments(tx: &InventoryTransaction, locations: &LocationMap) -> AdjustmentPlan {
    let mut plan = AdjustmentPlan::default();
    let warehouse = tx.warehouse.as_str();
    match &tx.kind {
        TransactionKind::Put { quantity } => {
            plan.change_at(
                locations,
                warehouse,
                i64::from(*quantity),
                AdjustmentReason::Received,
            );
        }
        TransactionKind::Pull { quantity } => {
            plan.change_at(
                locations,
                warehouse,
                -i64::from(*quantity),
                AdjustmentReason::Correction,
            );
        }
        TransactionKind::CycleCount {
            previous_quantity,
            counted_quantity,
        } => {
            let delta = i64::from(*counted_quantity) - i64::from(*previous_quantity);
            if delta == 0 {
                plan.skipped.push(Skip::ZeroCycleCount);
            } else {
                plan.change_at(
                    locations,
                    warehouse,
                    delta,
                    AdjustmentReason::CycleCountAvailable,
                );
            }
        }
        TransactionKind::Move {
            quantity,
            to_warehouse,
            ..
        } => {
            let same_location = warehouse == to_warehouse
                || matches!(
                    (locations.get(warehouse), locations.get(to_warehouse)),
                    (Some(from), Some(to)) if from == to
                );
            if same_location {
                plan.skipped.push(Skip::SameShopifyLocation);
            } else {
                let quantity = i64::from(*quantity);
                plan.change_at(
                    locations,
                    warehouse,
                    -quantity,
                    AdjustmentReason::MovementUpdated,
                );
                plan.change_at(
                    locations,
                    to_warehouse,
                    quantity,
                    AdjustmentReason::MovementUpdated,
                );
            }
        }
        TransactionKind::Pick {
            quantity,
            order_source,
            ..
        } => {
            if is_shopify_order_source(order_source) {
                plan.skipped.push(Skip::ShopifyOrderPick);
            } else {
                plan.change_at(
                    locations,
                    warehouse,
                    -i64::from(*quantity),
                    AdjustmentReason::Other,
                );
            }
        }
    }
    plan
}

#[cfg(test)]
mod tests;
