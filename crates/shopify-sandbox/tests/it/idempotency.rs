//! `@idempotent(key:)` over HTTP: replay, mismatch, concurrency, scope.

use std::time::Duration;

use serde_json::{Value, json};
use shopify_sandbox::{FaultAction, FaultConfig, FaultRule, SandboxConfig, ThrottleConfig};

use crate::{ADJUST, SHOP, TOKEN, V, World, codes, payload};

fn without_cost(mut body: Value) -> Value {
    body.as_object_mut().unwrap().remove("extensions");
    body
}

#[tokio::test]
async fn same_key_same_variables_returns_the_original_result_applied_once() {
    let world = World::new().await;
    let vars = world.adjust_vars(vec![world.change(0, 5)], "key-1");
    let first = world.gql(V, ADJUST, vars.clone()).await;
    let second = world.gql(V, ADJUST, vars.clone()).await;
    assert_eq!(first.status, 200);
    assert_eq!(without_cost(first.json()), without_cost(second.json()));
    assert!(payload(&first)["inventoryAdjustmentGroup"]["id"].is_string());
    assert_eq!(world.available(0), 15);
    assert_eq!(world.groups(), 1);
    // Key order in the variables does not matter.
    let reordered: Value = serde_json::from_str(&format!(
        r#"{{"idempotencyKey":"key-1","input":{{"changes":[{}],"referenceDocumentUri":"logistics://wos/tx/1","reason":"correction","name":"available"}}}}"#,
        world.change(0, 5)
    ))
    .unwrap();
    let third = world.gql(V, ADJUST, reordered).await;
    assert_eq!(without_cost(third.json()), without_cost(first.json()));
    assert_eq!(world.groups(), 1);
}

#[tokio::test]
async fn same_key_other_variables_is_a_parameter_mismatch() {
    let world = World::new().await;
    world
        .gql(
            V,
            ADJUST,
            world.adjust_vars(vec![world.change(0, 5)], "key-m"),
        )
        .await;
    let response = world
        .gql(
            V,
            ADJUST,
            world.adjust_vars(vec![world.change(0, 6)], "key-m"),
        )
        .await;
    assert_eq!(codes(&response), ["IDEMPOTENCY_KEY_PARAMETER_MISMATCH"]);
    assert_eq!(payload(&response)["inventoryAdjustmentGroup"], Value::Null);
    assert_eq!(world.available(0), 15);
    assert_eq!(world.groups(), 1);
}

#[tokio::test]
async fn a_key_in_flight_is_a_concurrent_request_then_replays() {
    let world = World::new().await;
    world
        .sandbox
        .set_faults(FaultConfig::rule(
            FaultRule::next(1, FaultAction::Hold).mutations_only(),
        ))
        .unwrap();
    let vars = world.adjust_vars(vec![world.change(1, -3)], "key-c");
    let (client, base) = (world.client.clone(), world.sandbox.base_url());
    let held_vars = vars.clone();
    let first = tokio::spawn(async move {
        client
            .graphql(&base, V, TOKEN, ADJUST, &held_vars)
            .await
            .unwrap()
    });
    testkit::wait_until(
        Duration::from_secs(5),
        "the first call to be held",
        || async { world.sandbox.held_requests() == 1 },
    )
    .await;
    let concurrent = world.gql(V, ADJUST, vars.clone()).await;
    assert_eq!(codes(&concurrent), ["IDEMPOTENCY_CONCURRENT_REQUEST"]);
    assert_eq!(
        payload(&concurrent)["userErrors"][0]["message"],
        "This request is currently in progress, please try again."
    );
    assert_eq!(world.available(1), 10, "nothing applied while held");
    assert_eq!(world.sandbox.release_held(), 1);
    let first = first.await.unwrap();
    assert_eq!(codes(&first), Vec::<String>::new());
    let replay = world.gql(V, ADJUST, vars).await;
    assert_eq!(without_cost(replay.json()), without_cost(first.json()));
    assert_eq!(world.available(1), 7);
    assert_eq!(world.groups(), 1);
}

#[tokio::test]
async fn many_concurrent_requests_with_one_key_apply_once() {
    let world = World::with(
        SandboxConfig {
            throttle: ThrottleConfig::disabled(),
            ..SandboxConfig::default()
        },
        3,
    )
    .await;
    let vars = world.adjust_vars(vec![world.change(2, 1)], "key-race");
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (client, base, vars) =
                (world.client.clone(), world.sandbox.base_url(), vars.clone());
            tokio::spawn(async move {
                client
                    .graphql(&base, V, TOKEN, ADJUST, &vars)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut group_ids = Vec::new();
    for task in tasks {
        let response = task.await.unwrap();
        match codes(&response).as_slice() {
            [] => group_ids.push(payload(&response)["inventoryAdjustmentGroup"]["id"].clone()),
            [code] => assert_eq!(code, "IDEMPOTENCY_CONCURRENT_REQUEST"),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(!group_ids.is_empty());
    assert!(
        group_ids.iter().all(|id| *id == group_ids[0]),
        "every success is the same group"
    );
    assert_eq!(world.available(2), 11);
    assert_eq!(world.groups(), 1);
}

#[tokio::test]
async fn keys_are_scoped_per_app_and_user_errors_replay() {
    let world = World::new().await;
    world.sandbox.add_app(SHOP, "shpat_other", "other").unwrap();
    let vars = world.adjust_vars(vec![world.change(0, 1)], "shared-key");
    world.gql(V, ADJUST, vars.clone()).await;
    let other = world
        .client
        .graphql(&world.sandbox.base_url(), V, "shpat_other", ADJUST, &vars)
        .await
        .unwrap();
    assert_eq!(codes(&other), Vec::<String>::new());
    assert_eq!(world.available(0), 12, "another app's key is another key");

    let mut stale = world.change(1, 1);
    stale["changeFromQuantity"] = json!(0);
    let vars = world.adjust_vars(vec![stale], "stale-key");
    let first = world.gql(V, ADJUST, vars.clone()).await;
    assert_eq!(codes(&first), ["CHANGE_FROM_QUANTITY_STALE"]);
    world
        .sandbox
        .set_quantity(SHOP, world.items[1], world.location, "available", 0)
        .unwrap();
    let again = world.gql(V, ADJUST, vars).await;
    assert_eq!(
        codes(&again),
        ["CHANGE_FROM_QUANTITY_STALE"],
        "the original result, not a new attempt"
    );
    assert_eq!(world.available(1), 0);
}

#[tokio::test]
async fn refusals_before_execution_do_not_burn_the_key() {
    let world = World::new().await;
    world.sandbox.set_bucket_available(SHOP, 0.0).unwrap();
    world.sandbox.set_throttle(ThrottleConfig {
        enabled: true,
        bucket_size: 2000.0,
        restore_rate: 0.0,
    });
    let vars = world.adjust_vars(vec![world.change(0, 1)], "throttled-key");
    let throttled = world.gql(V, ADJUST, vars.clone()).await;
    assert_eq!(
        throttled.json()["errors"][0]["extensions"]["code"],
        "THROTTLED"
    );
    world.sandbox.set_bucket_available(SHOP, 2000.0).unwrap();
    let response = world.gql(V, ADJUST, vars).await;
    assert_eq!(codes(&response), Vec::<String>::new());
    assert_eq!(world.available(0), 11);
}
