//! Cost-based throttling over HTTP: arithmetic, refusal, restore, isolation.

use std::time::Duration;

use serde_json::{Value, json};
use shopify_sandbox::{SandboxConfig, ThrottleConfig};

use crate::{ADJUST, SHOP, V, World, codes};

fn status(body: &Value) -> (i64, i64, i64) {
    let t = &body["extensions"]["cost"]["throttleStatus"];
    (
        t["maximumAvailable"].as_i64().unwrap(),
        t["currentlyAvailable"].as_i64().unwrap(),
        t["restoreRate"].as_i64().unwrap(),
    )
}

#[tokio::test]
async fn requested_cost_is_taken_and_the_unused_part_given_back() {
    // No restore, so the arithmetic is exact.
    let world = World::with(
        SandboxConfig {
            throttle: ThrottleConfig {
                enabled: true,
                bucket_size: 60.0,
                restore_rate: 0.0,
            },
            ..SandboxConfig::default()
        },
        1,
    )
    .await;
    let ok = world
        .gql(V, ADJUST, world.adjust_vars(vec![world.change(0, 1)], "a"))
        .await;
    assert_eq!(status(&ok.json()), (60, 47, 0), "13 requested, 13 used");
    let refused_item = world
        .gql(V, ADJUST, json!({"input": {"name": "available", "reason": "correction", "changes": [
            {"inventoryItemId": "gid://shopify/InventoryItem/1", "locationId": world.location.gid(), "delta": 1, "changeFromQuantity": null}]},
            "idempotencyKey": "b"}))
        .await;
    assert_eq!(codes(&refused_item), ["INVALID_INVENTORY_ITEM"]);
    assert_eq!(
        status(&refused_item.json()),
        (60, 37, 0),
        "13 requested, 10 used"
    );
    for key in ["c", "d"] {
        world
            .gql(V, ADJUST, world.adjust_vars(vec![world.change(0, 1)], key))
            .await;
    }
    assert_eq!(world.available(0), 13);
    let throttled = world
        .gql(V, ADJUST, world.adjust_vars(vec![world.change(0, 1)], "e"))
        .await;
    let body = throttled.json();
    assert_eq!(throttled.status, 200);
    assert_eq!(body["errors"][0]["message"], "Throttled");
    assert_eq!(body["errors"][0]["extensions"]["code"], "THROTTLED");
    assert_eq!(body["extensions"]["cost"]["requestedQueryCost"], 13);
    assert_eq!(body["extensions"]["cost"]["actualQueryCost"], Value::Null);
    assert_eq!(status(&body), (60, 11, 0));
    assert!(body.get("data").is_none());
    assert_eq!(world.available(0), 13, "a throttled call applies nothing");
}

#[tokio::test]
async fn a_burst_over_the_bucket_is_refused_then_accepted_after_the_restore_interval() {
    // 50 points, 500/s: four calls fit, the fifth is refused, and 26 ms later it fits.
    let world = World::with(
        SandboxConfig {
            throttle: ThrottleConfig {
                enabled: true,
                bucket_size: 50.0,
                restore_rate: 500.0,
            },
            ..SandboxConfig::default()
        },
        1,
    )
    .await;
    world.sandbox.set_bucket_available(SHOP, 50.0).unwrap();
    let mut refused = None;
    for i in 0..10 {
        let r = world
            .gql(
                V,
                ADJUST,
                world.adjust_vars(vec![world.change(0, 1)], &format!("burst-{i}")),
            )
            .await;
        if r.json()["errors"][0]["extensions"]["code"] == "THROTTLED" {
            refused = Some(i);
            break;
        }
    }
    let refused = refused.expect("a burst beyond the bucket is throttled");
    assert!(
        refused >= 3,
        "at least three 13-point calls fit in 50 points"
    );
    // The refused call never used its key: resent until the bucket holds its cost, it applies.
    let key = format!("burst-{refused}");
    testkit::wait_until(
        Duration::from_secs(5),
        "the bucket to restore enough for the refused call",
        || async {
            let r = world
                .gql(V, ADJUST, world.adjust_vars(vec![world.change(0, 1)], &key))
                .await;
            r.json()["errors"].is_null() && codes(&r).is_empty()
        },
    )
    .await;
    assert_eq!(world.groups(), refused + 1);
}

#[tokio::test]
async fn one_shop_throttled_does_not_affect_another() {
    let world = World::new().await;
    world
        .sandbox
        .create_shop("other.myshopify.com", "shpat_other")
        .unwrap();
    world.sandbox.set_throttle(ThrottleConfig {
        enabled: true,
        bucket_size: 2000.0,
        restore_rate: 0.0,
    });
    world.sandbox.set_bucket_available(SHOP, 0.0).unwrap();
    let throttled = world.gql(V, "{ shop { id } }", json!({})).await;
    assert_eq!(
        throttled.json()["errors"][0]["extensions"]["code"],
        "THROTTLED"
    );
    let other = world
        .client
        .graphql(
            &world.sandbox.base_url(),
            V,
            "shpat_other",
            "{ shop { myshopifyDomain } }",
            &json!({}),
        )
        .await
        .unwrap();
    assert_eq!(
        other.json()["data"]["shop"]["myshopifyDomain"],
        "other.myshopify.com"
    );
    assert_eq!(status(&other.json()), (2000, 1999, 0));
}

#[tokio::test]
async fn throttling_off_never_refuses_and_reports_a_full_bucket() {
    let world = World::with(
        SandboxConfig {
            throttle: ThrottleConfig::disabled(),
            ..SandboxConfig::default()
        },
        1,
    )
    .await;
    world.sandbox.set_bucket_available(SHOP, 0.0).unwrap();
    for i in 0..5 {
        let r = world
            .gql(
                V,
                ADJUST,
                world.adjust_vars(vec![world.change(0, 1)], &format!("off-{i}")),
            )
            .await;
        assert_eq!(status(&r.json()), (2000, 2000, 100));
    }
    assert_eq!(world.groups(), 5);
}

#[tokio::test]
async fn a_query_over_the_single_query_limit_is_refused() {
    let world = World::new().await;
    let r = world
        .gql(V, "{ a: productVariants(first: 250) { nodes { id product { id } inventoryItem { id } } } b: productVariants(first: 250) { nodes { id product { id } inventoryItem { id } } } }", json!({}))
        .await;
    let body = r.json();
    assert_eq!(body["errors"][0]["extensions"]["code"], "MAX_COST_EXCEEDED");
    // Each page: 2 + 250 × (the variant, its product, its item).
    assert_eq!(body["extensions"]["cost"]["requestedQueryCost"], 2 * 752);
    assert!(body.get("data").is_none(), "nothing ran");
}
