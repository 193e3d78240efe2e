//! Fault injection over HTTP: statuses, drops, hangs, delays — and what was applied.

use std::time::Duration;

use serde_json::json;
use shopify_sandbox::{FaultAction, FaultConfig, FaultRule, client::HttpError};

use crate::{ADJUST, TOKEN, V, World, codes, payload};

fn status(status: u16, retry_after_secs: Option<u64>, after_apply: bool) -> FaultAction {
    FaultAction::Status {
        status,
        retry_after_secs,
        after_apply,
    }
}

#[tokio::test]
async fn error_statuses_are_answered_before_anything_runs() {
    let world = World::new().await;
    world
        .sandbox
        .set_faults(FaultConfig {
            seed: 0,
            rules: vec![
                FaultRule::next(1, status(500, None, false)),
                FaultRule::next(1, status(502, None, false)),
                FaultRule::next(1, status(503, Some(2), false)),
                FaultRule::next(1, status(429, Some(1), false)),
            ],
        })
        .unwrap();
    let vars = world.adjust_vars(vec![world.change(0, 1)], "k");
    let mut seen = Vec::new();
    for _ in 0..4 {
        let r = world.gql(V, ADJUST, vars.clone()).await;
        seen.push((
            r.status,
            r.header("retry-after").map(str::to_owned),
            r.header("content-type").unwrap_or_default().to_owned(),
        ));
    }
    assert_eq!(seen[0].0, 500);
    assert_eq!(seen[1].0, 502);
    assert!(
        seen[1].2.starts_with("text/html"),
        "gateway errors are HTML"
    );
    assert_eq!((seen[2].0, seen[2].1.as_deref()), (503, Some("2")));
    assert_eq!((seen[3].0, seen[3].1.as_deref()), (429, Some("1")));
    assert_eq!(world.available(0), 10, "nothing applied");
    let r = world.gql(V, ADJUST, vars).await;
    assert_eq!(codes(&r), Vec::<String>::new(), "the key was never used");
    assert_eq!(world.available(0), 11);
    assert_eq!(world.sandbox.fired_faults().len(), 4);
}

#[tokio::test]
async fn apply_then_drop_applies_and_resets_the_connection_so_only_the_key_saves_the_retry() {
    let world = World::new().await;
    world
        .sandbox
        .set_faults(FaultConfig::rule(
            FaultRule::next(1, FaultAction::ApplyThenDrop).mutations_only(),
        ))
        .unwrap();
    let vars = world.adjust_vars(vec![world.change(0, -2)], "drop-key");
    let err = world
        .client
        .graphql(&world.sandbox.base_url(), V, TOKEN, ADJUST, &vars)
        .await
        .expect_err("no response");
    assert!(
        matches!(
            err,
            HttpError::Connection {
                after_send: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        world.available(0),
        8,
        "applied although the client saw no response"
    );
    let retry = world.gql(V, ADJUST, vars).await;
    assert_eq!(codes(&retry), Vec::<String>::new());
    assert!(payload(&retry)["inventoryAdjustmentGroup"]["id"].is_string());
    assert_eq!(world.available(0), 8, "the retry replayed, not re-applied");
    assert_eq!(world.groups(), 1);
}

#[tokio::test]
async fn drop_closes_without_running_anything() {
    let world = World::new().await;
    world
        .sandbox
        .set_faults(FaultConfig::rule(FaultRule::next(1, FaultAction::Drop)))
        .unwrap();
    let vars = world.adjust_vars(vec![world.change(0, 1)], "k");
    let err = world
        .client
        .graphql(&world.sandbox.base_url(), V, TOKEN, ADJUST, &vars)
        .await
        .expect_err("dropped");
    assert!(matches!(err, HttpError::Connection { .. }), "{err:?}");
    assert_eq!(world.available(0), 10);
    assert_eq!(world.groups(), 0);
}

#[tokio::test]
async fn apply_then_hang_keeps_the_client_waiting_past_its_timeout() {
    let world = World::new().await;
    world
        .sandbox
        .set_faults(FaultConfig::rule(FaultRule::next(
            1,
            FaultAction::ApplyThenHang { ms: 2_000 },
        )))
        .unwrap();
    let vars = world.adjust_vars(vec![world.change(1, 4)], "hang-key");
    let impatient = world.client.with_timeout(Duration::from_millis(300));
    let err = impatient
        .graphql(&world.sandbox.base_url(), V, TOKEN, ADJUST, &vars)
        .await
        .expect_err("times out");
    assert!(matches!(err, HttpError::Timeout(_)), "{err:?}");
    assert_eq!(world.available(1), 14);
    let retry = world.gql(V, ADJUST, vars).await;
    assert_eq!(codes(&retry), Vec::<String>::new());
    assert_eq!(world.available(1), 14);
}

#[tokio::test]
async fn a_gateway_error_after_apply_is_answered_after_the_change_was_made() {
    let world = World::new().await;
    world
        .sandbox
        .set_faults(FaultConfig::rule(FaultRule::next(
            1,
            status(504, None, true),
        )))
        .unwrap();
    let vars = world.adjust_vars(vec![world.change(2, 1)], "gw-key");
    let r = world.gql(V, ADJUST, vars.clone()).await;
    assert_eq!(r.status, 504);
    assert_eq!(world.available(2), 11);
    world.gql(V, ADJUST, vars).await;
    assert_eq!(world.available(2), 11);
}

#[tokio::test]
async fn a_delayed_call_holds_its_key_and_applies_after_the_delay() {
    let world = World::new().await;
    world
        .sandbox
        .set_faults(FaultConfig::rule(FaultRule::next(
            1,
            FaultAction::Delay { ms: 400 },
        )))
        .unwrap();
    let vars = world.adjust_vars(vec![world.change(0, 1)], "slow-key");
    let impatient = world.client.with_timeout(Duration::from_millis(100));
    let err = impatient
        .graphql(&world.sandbox.base_url(), V, TOKEN, ADJUST, &vars)
        .await
        .expect_err("too slow");
    assert!(matches!(err, HttpError::Timeout(_)));
    let retry = world.gql(V, ADJUST, vars.clone()).await;
    let first_answer = codes(&retry);
    assert!(
        first_answer == ["IDEMPOTENCY_CONCURRENT_REQUEST"] || first_answer.is_empty(),
        "{first_answer:?}"
    );
    testkit::wait_until(Duration::from_secs(5), "the slow call to apply", || async {
        world.available(0) == 11
    })
    .await;
    let r = world.gql(V, ADJUST, vars).await;
    assert_eq!(codes(&r), Vec::<String>::new());
    assert_eq!(world.available(0), 11);
    assert_eq!(world.groups(), 1);
}

#[tokio::test]
async fn probability_faults_are_reproducible_and_scoped() {
    let world = World::new().await;
    let config = FaultConfig {
        seed: 7,
        rules: vec![FaultRule::probability(0.5, status(503, None, false)).queries_only()],
    };
    let mut runs = Vec::new();
    for _ in 0..2 {
        world.sandbox.set_faults(config.clone()).unwrap();
        let mut statuses = Vec::new();
        for _ in 0..20 {
            statuses.push(world.gql(V, "{ shop { id } }", json!({})).await.status);
        }
        runs.push(statuses);
    }
    assert_eq!(runs[0], runs[1]);
    assert!(
        runs[0].contains(&503) && runs[0].contains(&200),
        "{:?}",
        runs[0]
    );
    let r = world
        .gql(V, ADJUST, world.adjust_vars(vec![world.change(0, 1)], "m"))
        .await;
    assert_eq!(r.status, 200, "mutations are out of scope");
    world
        .sandbox
        .set_faults(FaultConfig::rule(
            FaultRule::probability(1.0, status(500, None, false)).for_shop("other.myshopify.com"),
        ))
        .unwrap();
    assert_eq!(world.gql(V, "{ shop { id } }", json!({})).await.status, 200);
}

#[tokio::test]
async fn faults_can_be_set_at_runtime_through_the_admin_api() {
    let world = World::new().await;
    let admin = format!("{}/sandbox/faults", world.sandbox.base_url());
    let body = json!({"seed": 1, "rules": [{"action": {"kind": "status", "status": 503, "retry_after_secs": 3}, "trigger": {"next": 1}}]});
    let r = world
        .client
        .send(
            "PUT",
            &admin,
            &[("content-type", "application/json")],
            body.to_string().into_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let r = world.gql(V, "{ shop { id } }", json!({})).await;
    assert_eq!((r.status, r.header("retry-after")), (503, Some("3")));
    assert_eq!(world.gql(V, "{ shop { id } }", json!({})).await.status, 200);
    let bad =
        json!({"rules": [{"action": {"kind": "status", "status": 200}, "trigger": {"next": 1}}]});
    let r = world
        .client
        .send("PUT", &admin, &[], bad.to_string().into_bytes())
        .await
        .unwrap();
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn previous_attempt_failed_answers_like_shopify_and_the_key_stays_failed() {
    let world = World::new().await;
    world
        .sandbox
        .set_faults(FaultConfig::rule(
            FaultRule::next(1, FaultAction::IdempotencyPreviousAttemptFailed).mutations_only(),
        ))
        .unwrap();
    let vars = world.adjust_vars(vec![world.change(0, 4)], "failed-key");
    let first = world.gql(V, ADJUST, vars.clone()).await;
    assert_eq!(first.status, 200);
    assert_eq!(codes(&first), ["IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED"]);
    let error = &payload(&first)["userErrors"][0];
    assert_eq!(error["field"], serde_json::Value::Null);
    assert_eq!(
        error["message"],
        "A previous request with this idempotency key failed. Retry with a new idempotency key."
    );
    assert_eq!(payload(&first)["inventoryAdjustmentGroup"], json!(null));
    // The fault is spent; the key stays failed, as Shopify remembers it.
    let again = world.gql(V, ADJUST, vars).await;
    assert_eq!(codes(&again), ["IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED"]);
    assert_eq!(world.available(0), 10, "nothing applied");
    let fresh = world
        .gql(
            V,
            ADJUST,
            world.adjust_vars(vec![world.change(0, 4)], "new-key"),
        )
        .await;
    assert_eq!(codes(&fresh), Vec::<String>::new());
    assert_eq!(world.available(0), 14);
    assert_eq!(world.groups(), 1);
}

#[tokio::test]
async fn key_parameter_mismatch_after_applying_hides_that_it_applied() {
    let world = World::new().await;
    world
        .sandbox
        .set_faults(FaultConfig::rule(
            FaultRule::next(
                1,
                FaultAction::IdempotencyKeyParameterMismatch { after_apply: true },
            )
            .mutations_only(),
        ))
        .unwrap();
    let applied = world.adjust_vars(vec![world.change(0, 3)], "k-applied");
    let r = world.gql(V, ADJUST, applied.clone()).await;
    assert_eq!(codes(&r), ["IDEMPOTENCY_KEY_PARAMETER_MISMATCH"]);
    assert_eq!(
        payload(&r)["userErrors"][0]["message"],
        "The same idempotency key cannot be used with different operation parameters."
    );
    assert_eq!(world.available(0), 13, "applied before answering");
    // The key kept what it did: the same request replays the group.
    let replay = world.gql(V, ADJUST, applied).await;
    assert_eq!(codes(&replay), Vec::<String>::new());
    assert!(payload(&replay)["inventoryAdjustmentGroup"]["id"].is_string());
    assert_eq!(world.available(0), 13);

    world
        .sandbox
        .set_faults(FaultConfig::rule(
            FaultRule::next(
                1,
                FaultAction::IdempotencyKeyParameterMismatch { after_apply: false },
            )
            .mutations_only(),
        ))
        .unwrap();
    let not_applied = world.adjust_vars(vec![world.change(1, 3)], "k-not-applied");
    let r = world.gql(V, ADJUST, not_applied.clone()).await;
    assert_eq!(codes(&r), ["IDEMPOTENCY_KEY_PARAMETER_MISMATCH"]);
    assert_eq!(world.available(1), 10, "nothing ran");
    let r = world.gql(V, ADJUST, not_applied).await;
    assert_eq!(codes(&r), Vec::<String>::new(), "the key was never used");
    assert_eq!(world.available(1), 13);
    assert_eq!(world.groups(), 2);
}

#[tokio::test]
async fn an_empty_payload_says_nothing_and_the_key_tells_the_truth_later() {
    let world = World::new().await;
    world
        .sandbox
        .set_faults(FaultConfig {
            seed: 0,
            rules: vec![
                FaultRule::next(1, FaultAction::EmptyPayload { after_apply: false })
                    .mutations_only(),
                FaultRule::next(1, FaultAction::EmptyPayload { after_apply: true })
                    .mutations_only(),
            ],
        })
        .unwrap();
    let vars = world.adjust_vars(vec![world.change(2, -1)], "k-empty");
    let r = world.gql(V, ADJUST, vars.clone()).await;
    assert_eq!(
        payload(&r),
        json!({"inventoryAdjustmentGroup": null, "userErrors": []})
    );
    assert_eq!(world.available(2), 10, "not run");
    let r = world.gql(V, ADJUST, vars.clone()).await;
    assert_eq!(
        payload(&r),
        json!({"inventoryAdjustmentGroup": null, "userErrors": []})
    );
    assert_eq!(world.available(2), 9, "run, answered empty");
    let replay = world.gql(V, ADJUST, vars).await;
    assert!(payload(&replay)["inventoryAdjustmentGroup"]["id"].is_string());
    assert_eq!(world.available(2), 9);
    assert_eq!(world.groups(), 1);
}
