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
