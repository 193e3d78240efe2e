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
mod tests {
    use super::*;
    use chrono::DateTime;

    const MAIN: LocationId = LocationId(68845568042);
    const EAST: LocationId = LocationId(68845600810);

    fn locations() -> LocationMap {
        LocationMap::from([
            ("MAIN".to_owned(), MAIN),
            ("EAST".to_owned(), EAST),
            // A second WOS warehouse stocking the same Shopify location as MAIN.
            ("ANNEX".to_owned(), MAIN),
        ])
    }

    fn tx(warehouse: &str, kind: TransactionKind) -> InventoryTransaction {
        InventoryTransaction {
            transaction_id: "t-1".into(),
            shop_domain: "acme.myshopify.com".into(),
            kind,
            sku: "20A642-XL".into(),
            warehouse: warehouse.into(),
            location: None,
            occurred_at: DateTime::parse_from_rfc3339("2026-11-26T14:03:11Z").expect("ts"),
            user: None,
        }
    }

    fn change(location: LocationId, delta: i64, reason: AdjustmentReason) -> PlannedChange {
        PlannedChange {
            location,
            delta,
            reason,
        }
    }

    fn plan(changes: Vec<PlannedChange>, skipped: Vec<Skip>) -> AdjustmentPlan {
        AdjustmentPlan { changes, skipped }
    }

    fn unmapped(warehouse: &str) -> Skip {
        Skip::UnmappedWarehouse {
            warehouse: warehouse.into(),
        }
    }

    fn mv(from: &str, to: &str, quantity: u32) -> InventoryTransaction {
        tx(
            from,
            TransactionKind::Move {
                quantity,
                to_warehouse: to.into(),
                to_location: None,
            },
        )
    }

    fn pick(warehouse: &str, source: &str, quantity: u32) -> InventoryTransaction {
        tx(
            warehouse,
            TransactionKind::Pick {
                quantity,
                order_source: source.into(),
                order_id: Some("#1".into()),
            },
        )
    }

    fn cycle(warehouse: &str, previous: u32, counted: u32) -> InventoryTransaction {
        tx(
            warehouse,
            TransactionKind::CycleCount {
                previous_quantity: previous,
                counted_quantity: counted,
            },
        )
    }

    #[test]
    fn delta_rules_table() {
        use AdjustmentReason::*;
        let cases: Vec<(&str, InventoryTransaction, AdjustmentPlan)> = vec![
            (
                "put adds at the warehouse's location",
                tx("MAIN", TransactionKind::Put { quantity: 24 }),
                plan(vec![change(MAIN, 24, Received)], vec![]),
            ),
            (
                "pull removes",
                tx("EAST", TransactionKind::Pull { quantity: 5 }),
                plan(vec![change(EAST, -5, Correction)], vec![]),
            ),
            (
                "cycle count down",
                cycle("MAIN", 10, 8),
                plan(vec![change(MAIN, -2, CycleCountAvailable)], vec![]),
            ),
            (
                "cycle count up",
                cycle("MAIN", 3, 10),
                plan(vec![change(MAIN, 7, CycleCountAvailable)], vec![]),
            ),
            (
                "cycle count from zero",
                cycle("EAST", 0, 1_000_000_000),
                plan(
                    vec![change(EAST, 1_000_000_000, CycleCountAvailable)],
                    vec![],
                ),
            ),
            (
                "cycle count to zero",
                cycle("EAST", 1_000_000_000, 0),
                plan(
                    vec![change(EAST, -1_000_000_000, CycleCountAvailable)],
                    vec![],
                ),
            ),
            (
                "cycle count with no difference",
                cycle("MAIN", 8, 8),
                plan(vec![], vec![Skip::ZeroCycleCount]),
            ),
            (
                "cycle count of zero at zero",
                cycle("MAIN", 0, 0),
                plan(vec![], vec![Skip::ZeroCycleCount]),
            ),
            (
                "move between locations: source then destination",
                mv("MAIN", "EAST", 3),
                plan(
                    vec![
                        change(MAIN, -3, MovementUpdated),
                        change(EAST, 3, MovementUpdated),
                    ],
                    vec![],
                ),
            ),
            (
                "move back",
                mv("EAST", "ANNEX", 4),
                plan(
                    vec![
                        change(EAST, -4, MovementUpdated),
                        change(MAIN, 4, MovementUpdated),
                    ],
                    vec![],
                ),
            ),
            (
                "move between warehouses of one location",
                mv("MAIN", "ANNEX", 3),
                plan(vec![], vec![Skip::SameShopifyLocation]),
            ),
            (
                "bin-to-bin move inside a warehouse",
                mv("MAIN", "MAIN", 3),
                plan(vec![], vec![Skip::SameShopifyLocation]),
            ),
            (
                "bin-to-bin move inside an unmapped warehouse",
                mv("DOCK", "DOCK", 3),
                plan(vec![], vec![Skip::SameShopifyLocation]),
            ),
            (
                "move out of an unmapped warehouse still adds at the destination",
                mv("DOCK", "EAST", 6),
                plan(
                    vec![change(EAST, 6, MovementUpdated)],
                    vec![unmapped("DOCK")],
                ),
            ),
            (
                "move into an unmapped warehouse still removes at the source",
                mv("MAIN", "DOCK", 6),
                plan(
                    vec![change(MAIN, -6, MovementUpdated)],
                    vec![unmapped("DOCK")],
                ),
            ),
            (
                "move between two unmapped warehouses skips both sides",
                mv("DOCK", "YARD", 6),
                plan(vec![], vec![unmapped("DOCK"), unmapped("YARD")]),
            ),
            (
                "pick for a Shopify order changes nothing",
                pick("MAIN", "shopify", 1),
                plan(vec![], vec![Skip::ShopifyOrderPick]),
            ),
            (
                "pick for a Shopify order, other spelling",
                pick("MAIN", "Shopify", 1),
                plan(vec![], vec![Skip::ShopifyOrderPick]),
            ),
            (
                "pick for a Shopify order in an unmapped warehouse is still a Shopify pick",
                pick("DOCK", "SHOPIFY", 1),
                plan(vec![], vec![Skip::ShopifyOrderPick]),
            ),
            (
                "pick for another channel removes",
                pick("MAIN", "amazon", 2),
                plan(vec![change(MAIN, -2, Other)], vec![]),
            ),
            (
                "pick for a channel that merely contains shopify",
                pick("MAIN", "shopify-pos", 2),
                plan(vec![change(MAIN, -2, Other)], vec![]),
            ),
            (
                "put into an unmapped warehouse",
                tx("DOCK", TransactionKind::Put { quantity: 1 }),
                plan(vec![], vec![unmapped("DOCK")]),
            ),
            (
                "pull from an unmapped warehouse",
                tx("DOCK", TransactionKind::Pull { quantity: 1 }),
                plan(vec![], vec![unmapped("DOCK")]),
            ),
            (
                "cycle count in an unmapped warehouse",
                cycle("DOCK", 1, 2),
                plan(vec![], vec![unmapped("DOCK")]),
            ),
            (
                "zero cycle count in an unmapped warehouse is a zero count",
                cycle("DOCK", 2, 2),
                plan(vec![], vec![Skip::ZeroCycleCount]),
            ),
            (
                "other pick in an unmapped warehouse",
                pick("DOCK", "pos", 1),
                plan(vec![], vec![unmapped("DOCK")]),
            ),
            (
                "warehouse codes match case-sensitively",
                tx("main", TransactionKind::Put { quantity: 1 }),
                plan(vec![], vec![unmapped("main")]),
            ),
        ];
        for (name, transaction, expected) in cases {
            let actual = plan_adjustments(&transaction, &locations());
            assert_eq!(actual, expected, "{name}");
            assert!(
                !actual.changes.is_empty() || !actual.skipped.is_empty(),
                "{name}: a transaction always yields a change or a skip"
            );
            assert!(actual.changes.iter().all(|c| c.delta != 0), "{name}");
            assert_eq!(
                actual.has_no_changes(),
                expected.changes.is_empty(),
                "{name}"
            );
        }
    }

    #[test]
    fn empty_location_map_skips_everything_that_would_change() {
        let none = LocationMap::new();
        assert_eq!(
            plan_adjustments(&tx("MAIN", TransactionKind::Put { quantity: 1 }), &none),
            plan(vec![], vec![unmapped("MAIN")])
        );
        assert_eq!(
            plan_adjustments(&mv("MAIN", "EAST", 1), &none),
            plan(vec![], vec![unmapped("MAIN"), unmapped("EAST")])
        );
    }

    #[test]
    fn net_effect_of_a_move_is_zero_when_both_sides_are_mapped() {
        let p = plan_adjustments(&mv("MAIN", "EAST", 1_000_000_000), &locations());
        assert_eq!(p.changes.iter().map(|c| c.delta).sum::<i64>(), 0);
    }

    #[test]
    fn reasons_are_shopifys_strings() {
        let cases = [
            (AdjustmentReason::Received, "received"),
            (AdjustmentReason::Correction, "correction"),
            (
                AdjustmentReason::CycleCountAvailable,
                "cycle_count_available",
            ),
            (AdjustmentReason::MovementUpdated, "movement_updated"),
            (AdjustmentReason::Other, "other"),
        ];
        for (reason, s) in cases {
            assert_eq!(reason.as_str(), s);
            assert_eq!(reason.to_string(), s);
            assert_eq!(
                serde_json::to_value(reason).expect("ser"),
                serde_json::json!(s)
            );
            let back: AdjustmentReason = serde_json::from_value(serde_json::json!(s)).expect("de");
            assert_eq!(back, reason);
        }
    }

    #[test]
    fn skip_labels_and_messages() {
        let cases = [
            (
                Skip::ZeroCycleCount,
                "zero_cycle_count",
                "cycle count found no difference",
            ),
            (
                Skip::ShopifyOrderPick,
                "shopify_order_pick",
                "pick for a Shopify order (Shopify already decremented it)",
            ),
            (
                Skip::SameShopifyLocation,
                "same_shopify_location",
                "move within one Shopify location",
            ),
            (
                unmapped("DOCK"),
                "unmapped_warehouse",
                "warehouse \"DOCK\" has no Shopify location configured",
            ),
        ];
        for (i, (skip, label, message)) in cases.into_iter().enumerate() {
            assert_eq!(skip.as_str(), label);
            assert_eq!(Skip::LABELS[i], label);
            assert_eq!(skip.to_string(), message);
        }
        // Odd warehouse codes cannot break a log line.
        assert_eq!(
            unmapped("a\"b\\").to_string(),
            "warehouse \"a\\\"b\\\\\" has no Shopify location configured"
        );
    }

    #[test]
    fn shopify_order_source_matching() {
        for yes in ["shopify", "Shopify", "SHOPIFY", "sHoPiFy"] {
            assert!(is_shopify_order_source(yes), "{yes}");
        }
        for no in [
            "",
            "shopify ",
            " shopify",
            "shopify-pos",
            "shop",
            "amazon",
            "ѕhopify",
        ] {
            assert!(!is_shopify_order_source(no), "{no}");
        }
    }

    #[test]
    fn planned_change_serializes_with_integer_location() {
        let c = change(
            LocationId(9_007_199_254_740_993),
            -2,
            AdjustmentReason::Other,
        );
        assert_eq!(
            serde_json::to_string(&c).expect("ser"),
            r#"{"location":9007199254740993,"delta":-2,"reason":"other"}"#
        );
    }
}
