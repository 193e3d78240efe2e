#![allow(clippy::unwrap_used)]

use serde_json::json;

use super::*;
use crate::store::{ProductSpec, Store, VariantSpec};

struct Fixture {
    store: Store,
    item: InventoryItemId,
    other: InventoryItemId,
    unstocked: InventoryItemId,
    loc: LocationId,
}

fn fixture() -> Fixture {
    let store = Store::new(100);
    store.create_shop("s.myshopify.com", "t").unwrap();
    let shop = store.shop("s.myshopify.com").unwrap();
    let mut state = shop.lock();
    let loc = state.create_location(&store.ids, None, "Main").unwrap();
    let p = state
        .create_product(
            &store.ids,
            &ProductSpec {
                title: "P".into(),
                variants: vec![
                    VariantSpec::sku("A").stocked_at(loc, 5),
                    VariantSpec::sku("B").stocked_at(loc, 0),
                    VariantSpec::sku("C"),
                ],
                ..ProductSpec::default()
            },
            Utc::now(),
        )
        .unwrap();
    drop(state);
    Fixture {
        item: p.variants[0].inventory_item_id,
        other: p.variants[1].inventory_item_id,
        unstocked: p.variants[2].inventory_item_id,
        loc,
        store,
    }
}

fn request(value: Value) -> AdjustRequest {
    AdjustRequest::from_coerced(&value).expect("shaped like the input type")
}

fn run(f: &Fixture, value: Value) -> AdjustOutcome {
    let shop = f.store.shop("s.myshopify.com").unwrap();
    let mut state = shop.lock();
    adjust_quantities(
        &mut state,
        &f.store.ids,
        &request(value),
        AdjustContext {
            app_id: 1,
            api_version: "2026-04",
            idempotency_key: Some("k"),
            now: Utc::now(),
        },
    )
}

fn codes(outcome: &AdjustOutcome) -> Vec<&'static str> {
    match outcome {
        AdjustOutcome::UserErrors(errors) => errors.iter().map(|e| e.code).collect(),
        other => panic!("expected user errors, got {other:?}"),
    }
}

fn change(item: InventoryItemId, loc: LocationId, delta: i64) -> Value {
    json!({"inventoryItemId": item.gid(), "locationId": loc.gid(), "delta": delta, "changeFromQuantity": null})
}

fn available(f: &Fixture, item: InventoryItemId, name: QuantityName) -> Option<i64> {
    let shop = f.store.shop("s.myshopify.com").unwrap();
    let state = shop.lock();
    state.quantity(item, f.loc, name)
}

#[test]
fn available_is_applied_and_mirrored_into_on_hand_after_the_named_changes() {
    let f = fixture();
    let outcome = run(
        &f,
        json!({"name": "available", "reason": "correction", "referenceDocumentUri": "logistics://x/1",
               "changes": [change(f.item, f.loc, -2), change(f.other, f.loc, 4)]}),
    );
    let AdjustOutcome::Applied(group) = outcome else {
        panic!("applied expected")
    };
    let names: Vec<(QuantityName, i64)> = group.changes.iter().map(|c| (c.name, c.delta)).collect();
    assert_eq!(
        names,
        vec![
            (QuantityName::Available, -2),
            (QuantityName::Available, 4),
            (QuantityName::OnHand, -2),
            (QuantityName::OnHand, 4)
        ]
    );
    assert_eq!(group.idempotency_key.as_deref(), Some("k"));
    assert_eq!(available(&f, f.item, QuantityName::Available), Some(3));
    assert_eq!(available(&f, f.item, QuantityName::OnHand), Some(3));
    assert_eq!(available(&f, f.other, QuantityName::Available), Some(4));
}

#[test]
fn incoming_is_not_mirrored_and_needs_a_ledger_document() {
    let f = fixture();
    let mut c = change(f.item, f.loc, 6);
    c["ledgerDocumentUri"] = json!("https://example.com/ledger/1");
    let AdjustOutcome::Applied(group) = run(
        &f,
        json!({"name": "incoming", "reason": "received", "changes": [c]}),
    ) else {
        panic!("applied expected")
    };
    assert_eq!(group.changes.len(), 1);
    assert_eq!(
        group.changes[0].ledger_document_uri.as_deref(),
        Some("https://example.com/ledger/1")
    );
    assert_eq!(available(&f, f.item, QuantityName::OnHand), Some(5));
    assert_eq!(available(&f, f.item, QuantityName::Incoming), Some(6));
}

#[test]
fn ledger_rules() {
    let f = fixture();
    let with = |uri: &str| {
        let mut c = change(f.item, f.loc, 1);
        c["ledgerDocumentUri"] = json!(uri);
        c
    };
    let cases = [
        (
            "damaged",
            vec![change(f.item, f.loc, 1)],
            "INVALID_QUANTITY_DOCUMENT",
        ),
        (
            "available",
            vec![with("https://e/1")],
            "INVALID_AVAILABLE_DOCUMENT",
        ),
        (
            "reserved",
            vec![with("gid://shopify/Order/123")],
            "INTERNAL_LEDGER_DOCUMENT",
        ),
        (
            "reserved",
            vec![with("not a uri")],
            "INVALID_LEDGER_DOCUMENT",
        ),
        (
            "damaged",
            vec![with("https://e/1"), with("https://e/2")],
            "MAX_ONE_LEDGER_DOCUMENT",
        ),
    ];
    for (name, changes, code) in cases {
        let outcome = run(
            &f,
            json!({"name": name, "reason": "damaged", "changes": changes}),
        );
        assert_eq!(codes(&outcome), vec![code], "{name}");
    }
    assert_eq!(available(&f, f.item, QuantityName::OnHand), Some(5));
}

#[test]
fn every_error_is_reported_and_nothing_is_applied() {
    let f = fixture();
    let bad_item = json!({"inventoryItemId": "gid://shopify/InventoryItem/999999999999", "locationId": f.loc.gid(), "delta": 1});
    let bad_location = json!({"inventoryItemId": f.item.gid(), "locationId": "gid://shopify/Location/999999999999", "delta": 1});
    let not_stocked = change(f.unstocked, f.loc, 1);
    let outcome = run(
        &f,
        json!({"name": "on_hand", "reason": "nope", "referenceDocumentUri": "no scheme",
               "changes": [change(f.item, f.loc, 1), bad_item, bad_location, not_stocked]}),
    );
    assert_eq!(
        codes(&outcome),
        vec![
            "INVALID_QUANTITY_NAME",
            "INVALID_REASON",
            "INVALID_REFERENCE_DOCUMENT",
            "INVALID_QUANTITY_DOCUMENT",
            "INVALID_INVENTORY_ITEM",
            "INVALID_QUANTITY_DOCUMENT",
            "INVALID_LOCATION",
            "INVALID_QUANTITY_DOCUMENT",
            "ITEM_NOT_STOCKED_AT_LOCATION",
            "INVALID_QUANTITY_DOCUMENT",
        ]
    );
    let AdjustOutcome::UserErrors(errors) = outcome else {
        unreachable!()
    };
    assert_eq!(
        errors[4].field.as_deref().unwrap(),
        ["input", "changes", "1", "inventoryItemId"]
    );
    assert_eq!(available(&f, f.item, QuantityName::Available), Some(5));
    assert!(
        f.store
            .shop("s.myshopify.com")
            .unwrap()
            .lock()
            .groups
            .is_empty()
    );
}

#[test]
fn zero_deltas_are_skipped_and_all_zero_is_a_no_op() {
    let f = fixture();
    assert_eq!(
        run(
            &f,
            json!({"name": "available", "reason": "correction", "changes": [change(f.item, f.loc, 0)]})
        ),
        AdjustOutcome::NoOp
    );
    let AdjustOutcome::Applied(group) = run(
        &f,
        json!({"name": "available", "reason": "correction",
               "changes": [change(f.item, f.loc, 0), change(f.other, f.loc, 3)]}),
    ) else {
        panic!("applied expected")
    };
    assert_eq!(group.changes.len(), 2);
    assert!(group.changes.iter().all(|c| c.inventory_item_id == f.other));
}

#[test]
fn change_from_quantity_is_a_compare_and_swap_chained_within_a_call() {
    let f = fixture();
    let cas = |delta: i64, from: i64| {
        let mut c = change(f.item, f.loc, delta);
        c["changeFromQuantity"] = json!(from);
        c
    };
    let stale = run(
        &f,
        json!({"name": "available", "reason": "correction", "changes": [cas(1, 4)]}),
    );
    assert_eq!(codes(&stale), vec!["CHANGE_FROM_QUANTITY_STALE"]);
    let ok = run(
        &f,
        json!({"name": "available", "reason": "correction", "changes": [cas(1, 5), cas(2, 6)]}),
    );
    assert!(matches!(ok, AdjustOutcome::Applied(_)));
    assert_eq!(available(&f, f.item, QuantityName::Available), Some(8));
}

#[test]
fn resulting_quantities_are_bounded() {
    let f = fixture();
    let outcome = run(
        &f,
        json!({"name": "available", "reason": "correction", "changes": [change(f.item, f.loc, 1_999_999_999)]}),
    );
    assert_eq!(codes(&outcome), vec!["INVALID_QUANTITY_TOO_HIGH"]);
    let outcome = run(
        &f,
        json!({"name": "available", "reason": "correction", "changes": [change(f.item, f.loc, -2_000_000_006)]}),
    );
    assert_eq!(codes(&outcome), vec!["INVALID_QUANTITY_TOO_LOW"]);
}

#[test]
fn every_reason_is_accepted() {
    let f = fixture();
    for reason in REASONS {
        let outcome = run(
            &f,
            json!({"name": "available", "reason": reason, "changes": [change(f.item, f.loc, 1)]}),
        );
        assert!(matches!(outcome, AdjustOutcome::Applied(_)), "{reason}");
    }
    assert_eq!(available(&f, f.item, QuantityName::Available), Some(22));
}

#[test]
fn uris() {
    for good in [
        "logistics://har-408/adjust/1",
        "https://e.com/x",
        "urn:isbn:1",
        "a+b.c-d:x",
    ] {
        assert!(is_uri(good), "{good}");
    }
    for bad in ["", "no scheme", "://x", "1abc:x", "a:", "a:b c", "a:\u{7}"] {
        assert!(!is_uri(bad), "{bad}");
    }
}
