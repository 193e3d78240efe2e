//! `inventoryAdjustQuantities` over HTTP: limits, compare-and-swap, stocking, versions.

use serde_json::json;

use crate::{ADJUST, SHOP, V, World, codes, payload, top_codes};

#[tokio::test]
async fn two_hundred_fifty_changes_pass_and_two_hundred_fifty_one_are_refused() {
    let world = World::with(shopify_sandbox::SandboxConfig::default(), 251).await;
    let all: Vec<_> = (0..251).map(|i| world.change(i, 1)).collect();
    let response = world
        .gql(V, ADJUST, world.adjust_vars(all.clone(), "too-many"))
        .await;
    assert_eq!(top_codes(&response), ["MAX_INPUT_SIZE_EXCEEDED"]);
    let body = response.json();
    assert_eq!(
        body["errors"][0]["message"],
        "The input array size of 251 is greater than the maximum allowed of 250."
    );
    assert_eq!(
        body["errors"][0]["path"],
        json!(["inventoryAdjustQuantities", "input", "changes"])
    );
    assert_eq!(body["data"]["inventoryAdjustQuantities"], json!(null));
    assert_eq!(world.groups(), 0);

    let response = world
        .gql(
            V,
            ADJUST,
            world.adjust_vars(all[..250].to_vec(), "just-right"),
        )
        .await;
    assert_eq!(codes(&response), Vec::<String>::new());
    let changes = payload(&response)["inventoryAdjustmentGroup"]["changes"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(
        changes, 500,
        "250 available changes and their 250 on_hand mirrors"
    );
    assert_eq!(world.available(0), 11);
    assert_eq!(world.available(250), 10);
}

#[tokio::test]
async fn change_from_quantity_is_compared_when_given() {
    let world = World::new().await;
    let mut stale = world.change(0, 1);
    stale["changeFromQuantity"] = json!(9);
    let response = world
        .gql(V, ADJUST, world.adjust_vars(vec![stale], "stale"))
        .await;
    assert_eq!(codes(&response), ["CHANGE_FROM_QUANTITY_STALE"]);
    assert_eq!(
        payload(&response)["userErrors"][0]["field"],
        json!(["input", "changes", "0", "changeFromQuantity"])
    );
    let mut fresh = world.change(0, 1);
    fresh["changeFromQuantity"] = json!(10);
    let response = world
        .gql(V, ADJUST, world.adjust_vars(vec![fresh], "fresh"))
        .await;
    assert_eq!(codes(&response), Vec::<String>::new());
    assert_eq!(world.available(0), 11);
}

#[tokio::test]
async fn an_item_not_stocked_at_the_location_is_refused() {
    let world = World::new().await;
    let elsewhere = world.sandbox.create_location(SHOP, "East").unwrap();
    let mut change = world.change(0, 1);
    change["locationId"] = json!(elsewhere.gid());
    let response = world
        .gql(V, ADJUST, world.adjust_vars(vec![change], "k"))
        .await;
    assert_eq!(codes(&response), ["ITEM_NOT_STOCKED_AT_LOCATION"]);
    world
        .sandbox
        .stock_item(SHOP, world.items[0], elsewhere, 0)
        .unwrap();
    let mut change = world.change(0, 1);
    change["locationId"] = json!(elsewhere.gid());
    let response = world
        .gql(V, ADJUST, world.adjust_vars(vec![change], "k2"))
        .await;
    assert_eq!(codes(&response), Vec::<String>::new());
    assert_eq!(
        world
            .sandbox
            .quantity(SHOP, world.items[0], elsewhere, "available"),
        Some(1)
    );
}

#[tokio::test]
async fn older_versions_need_neither_directive_nor_change_from_quantity() {
    let world = World::new().await;
    let doc = "mutation($input: InventoryAdjustQuantitiesInput!) {
      inventoryAdjustQuantities(input: $input) { inventoryAdjustmentGroup { id } userErrors { code } } }";
    let input = json!({"name": "available", "reason": "received",
        "changes": [{"inventoryItemId": world.items[0].gid(), "locationId": world.location.gid(), "delta": 3}]});
    let response = world.gql("2025-07", doc, json!({"input": input})).await;
    assert_eq!(codes(&response), Vec::<String>::new());
    assert_eq!(world.available(0), 13);
    for strict in ["2026-04", "2026-07", "unstable"] {
        let response = world.gql(strict, doc, json!({"input": input})).await;
        assert_eq!(
            top_codes(&response),
            ["INVALID_FIELD_ARGUMENTS"],
            "{strict}"
        );
    }
    assert_eq!(world.available(0), 13);
}

#[tokio::test]
async fn inline_literal_input_works_like_variables() {
    let world = World::new().await;
    let doc = format!(
        r#"mutation {{ inventoryAdjustQuantities(input: {{name: "available", reason: "correction",
            changes: [{{inventoryItemId: "{}", locationId: "{}", delta: -4, changeFromQuantity: null}}]}})
            @idempotent(key: "inline-1") {{ inventoryAdjustmentGroup {{ changes {{ name delta }} }} userErrors {{ code }} }} }}"#,
        world.items[1].gid(),
        world.location.gid()
    );
    let response = world.gql(V, &doc, json!({})).await;
    assert_eq!(
        payload(&response)["inventoryAdjustmentGroup"]["changes"],
        json!([{"name": "available", "delta": -4}, {"name": "on_hand", "delta": -4}])
    );
    assert_eq!(world.available(1), 6);
    let bad = doc.replace("delta: -4", "delta: \"x\"");
    let response = world.gql(V, &bad, json!({})).await;
    assert_eq!(top_codes(&response), ["argumentLiteralsIncompatible"]);
}

#[tokio::test]
async fn the_log_records_key_reason_reference_and_changes() {
    let world = World::new().await;
    world
        .gql(
            V,
            ADJUST,
            world.adjust_vars(vec![world.change(0, 2), world.change(2, -1)], "log-key"),
        )
        .await;
    let groups = world.sandbox.adjustment_groups(SHOP).unwrap();
    let group = &groups[0];
    assert_eq!(group.idempotency_key.as_deref(), Some("log-key"));
    assert_eq!(group.reason, "correction");
    assert_eq!(
        group.reference_document_uri.as_deref(),
        Some("logistics://wos/tx/1")
    );
    assert_eq!(group.api_version, V);
    let available: Vec<_> = group
        .changes_named(shopify_sandbox::QuantityName::Available)
        .map(|c| (c.inventory_item_id, c.delta))
        .collect();
    assert_eq!(available, vec![(world.items[0], 2), (world.items[2], -1)]);
}
