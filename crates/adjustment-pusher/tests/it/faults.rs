//! Shopify misbehaving: only idempotency and the persisted batch keep the totals exact.

use std::time::{Duration, Instant};

use serde_json::json;
use shopify_sandbox::{FaultAction, FaultConfig, FaultRule, ThrottleConfig};

use crate::harness::{Harness, Options, tx};

const SHOP: &str = "acme.myshopify.com";

async fn publish_puts(h: &mut Harness, prefix: &str, count: usize) {
    for n in 0..count {
        let sku = format!("SKU-{}", n % 4);
        h.publish(&tx(
            &format!("{prefix}-{n}"),
            SHOP,
            "put",
            &sku,
            "MAIN",
            json!({"quantity": n + 1}),
        ))
        .await;
        h.expect(SHOP, &sku, "MAIN", n as i64 + 1);
    }
}

#[tokio::test]
async fn a_batch_applied_then_cut_off_is_resent_with_its_key_and_applied_once() {
    let mut h = Harness::start().await;
    h.sandbox
        .set_faults(FaultConfig::rule(
            FaultRule::next(4, FaultAction::ApplyThenDrop).mutations_only(),
        ))
        .unwrap();
    publish_puts(&mut h, "drop", 12).await;
    h.assert_totals(Duration::from_secs(30)).await;
    assert_eq!(h.sandbox.fired_faults().len(), 4, "every cut-off happened");
    // Each batch was applied once: as many groups as applied batches, keys all distinct.
    let groups = h.sandbox.adjustment_groups(SHOP).unwrap();
    let keys: std::collections::BTreeSet<_> =
        groups.iter().map(|g| g.idempotency_key.clone()).collect();
    assert_eq!(keys.len(), groups.len());
    let applied = h
        .count("SELECT count(*) FROM push_batches WHERE state = 'applied' AND change_count > 0")
        .await;
    assert_eq!(applied as usize, groups.len());
    h.stop().await;
}

#[tokio::test]
async fn a_5xx_storm_including_errors_after_applying_changes_nothing_twice() {
    let mut h = Harness::start().await;
    let mut faults = FaultConfig::rule(
        FaultRule::probability(
            0.3,
            FaultAction::Status {
                status: 500,
                retry_after_secs: None,
                after_apply: true,
            },
        )
        .mutations_only(),
    );
    faults.seed = 7;
    faults.rules.push(
        FaultRule::probability(
            0.3,
            FaultAction::Status {
                status: 502,
                retry_after_secs: None,
                after_apply: false,
            },
        )
        .mutations_only(),
    );
    faults.rules.push(
        FaultRule::probability(
            0.2,
            FaultAction::Status {
                status: 503,
                retry_after_secs: None,
                after_apply: false,
            },
        )
        .mutations_only(),
    );
    h.sandbox.set_faults(faults).unwrap();
    publish_puts(&mut h, "storm", 60).await;
    h.assert_totals(Duration::from_secs(60)).await;
    assert!(h.sandbox.fired_faults().len() >= 2, "the storm happened");
    h.stop().await;
}

#[tokio::test]
async fn a_429_with_retry_after_is_waited_out() {
    let mut h = Harness::start().await;
    h.sandbox
        .set_faults(FaultConfig::rule(
            FaultRule::next(
                1,
                FaultAction::Status {
                    status: 429,
                    retry_after_secs: Some(1),
                    after_apply: false,
                },
            )
            .mutations_only(),
        ))
        .unwrap();
    let started = Instant::now();
    publish_puts(&mut h, "limited", 3).await;
    h.assert_totals(Duration::from_secs(20)).await;
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After honoured"
    );
    let limited = h
        .metrics()
        .shopify_requests_total
        .with_label_values(&[SHOP, "inventoryAdjustQuantities", "429"])
        .get();
    assert_eq!(limited, 1);
    h.stop().await;
}

#[tokio::test]
async fn throttled_calls_wait_for_the_bucket_and_pacing_avoids_more() {
    let throttle = ThrottleConfig {
        enabled: true,
        bucket_size: 100.0,
        // Slow enough that the drained bucket cannot refill before the first call, even on a
        // loaded machine.
        restore_rate: 5.0,
    };
    let mut h = Harness::with(Options {
        throttle,
        ..Options::default()
    })
    .await;
    // Someone else drained the shop's bucket: the first call is THROTTLED.
    h.sandbox.set_bucket_available(SHOP, 0.0).unwrap();
    publish_puts(&mut h, "throttled", 8).await;
    h.assert_totals(Duration::from_secs(20)).await;
    let requests = |status: &str| {
        h.metrics()
            .shopify_requests_total
            .with_label_values(&[SHOP, "inventoryAdjustQuantities", status])
            .get()
    };
    assert!(requests("throttled") >= 1, "the drained bucket was noticed");
    assert!(
        requests("throttled") <= 2,
        "then pacing waited instead of hammering: {}",
        requests("throttled")
    );
    h.stop().await;
}

#[tokio::test]
async fn a_rejected_change_is_dead_lettered_and_the_rest_of_its_batch_is_pushed() {
    let mut h = Harness::with(Options {
        pusher: "batch_window_ms = 300",
        ..Options::default()
    })
    .await;
    // SKU-3's item points at an inventory item Shopify does not have.
    h.map(SHOP, "SKU-3", Some(model::ids::InventoryItemId(424_242)))
        .await;
    for n in 0..4 {
        h.publish(&tx(
            &format!("mix-{n}"),
            SHOP,
            "put",
            &format!("SKU-{n}"),
            "MAIN",
            json!({"quantity": 10}),
        ))
        .await;
        if n != 3 {
            h.expect(SHOP, &format!("SKU-{n}"), "MAIN", 10);
        }
    }
    h.assert_totals(Duration::from_secs(20)).await;
    let dlq = h.env.names.adjustment_pusher_queue().dead_letter_queue();
    let dead = h
        .env
        .wait_and_drain(&dlq, 1, Duration::from_secs(10))
        .await
        .remove(0)
        .delivery;
    let headers = dead.properties.headers().as_ref();
    assert_eq!(
        platform::amqp::headers::header_str(headers, "x-error-kind"),
        Some("rejected")
    );
    let error = platform::amqp::headers::header_str(headers, "x-error").unwrap();
    assert!(error.contains("INVALID_INVENTORY_ITEM"), "{error}");
    assert_eq!(
        dead.properties.message_id().as_ref().unwrap().as_str(),
        "mix-3"
    );
    h.stop().await;
}

#[tokio::test]
async fn a_batch_never_applied_is_rebatched_when_its_key_would_expire() {
    // Give up after 1 s instead of 23 h; Shopify refuses every call before running it.
    let mut h = Harness::with(Options {
        pusher: "give_up_after_secs = 1",
        ..Options::default()
    })
    .await;
    h.sandbox
        .set_faults(FaultConfig::rule(
            FaultRule::probability(
                1.0,
                FaultAction::Status {
                    status: 429,
                    retry_after_secs: None,
                    after_apply: false,
                },
            )
            .mutations_only(),
        ))
        .unwrap();
    publish_puts(&mut h, "refused", 3).await;
    testkit::wait_until(
        Duration::from_secs(20),
        "a batch re-formed under a new key",
        || async {
            h.count("SELECT count(*) FROM push_batches WHERE state = 'failed'")
                .await
                >= 1
        },
    )
    .await;
    h.sandbox.set_faults(FaultConfig::none()).unwrap();
    h.assert_totals(Duration::from_secs(20)).await;
    let dlq = h.env.names.adjustment_pusher_queue().dead_letter_queue();
    assert_eq!(
        h.env.queue_depth(&dlq).await,
        0,
        "nothing was dead-lettered: nothing was ever applied"
    );
    h.stop().await;
}

#[tokio::test]
async fn a_batch_whose_outcome_stays_unknown_is_exhausted_not_resent_on_a_forgotten_key() {
    let mut h = Harness::with(Options {
        pusher: "give_up_after_secs = 1",
        ..Options::default()
    })
    .await;
    // Every call is applied and then cut off: the pusher never learns the outcome.
    h.sandbox
        .set_faults(FaultConfig::rule(
            FaultRule::probability(1.0, FaultAction::ApplyThenDrop).mutations_only(),
        ))
        .unwrap();
    h.publish(&tx(
        "unknown-1",
        SHOP,
        "put",
        "SKU-0",
        "MAIN",
        json!({"quantity": 5}),
    ))
    .await;
    h.expect(SHOP, "SKU-0", "MAIN", 5); // Shopify did apply it, once
    let dlq = h.env.names.adjustment_pusher_queue().dead_letter_queue();
    let dead = h
        .env
        .wait_and_drain(&dlq, 1, Duration::from_secs(20))
        .await
        .remove(0)
        .delivery;
    let headers = dead.properties.headers().as_ref();
    assert_eq!(
        platform::amqp::headers::header_str(headers, "x-error-kind"),
        Some("exhausted")
    );
    let error = platform::amqp::headers::header_str(headers, "x-error").unwrap();
    assert!(error.contains("may have been applied"), "{error}");
    h.sandbox.set_faults(FaultConfig::none()).unwrap();
    h.assert_totals(Duration::from_secs(10)).await;
    assert_eq!(
        h.sandbox.adjustment_groups(SHOP).unwrap().len(),
        1,
        "applied exactly once"
    );
    h.stop().await;
}

#[tokio::test]
async fn an_answer_without_group_nor_errors_is_resent_with_its_key_not_taken_as_applied() {
    let mut h = Harness::start().await;
    // Shopify answers the first call with nothing: no group, no error, nothing applied.
    h.sandbox
        .set_faults(FaultConfig::rule(
            FaultRule::next(1, FaultAction::EmptyPayload { after_apply: false }).mutations_only(),
        ))
        .unwrap();
    h.publish(&tx(
        "silent",
        SHOP,
        "put",
        "SKU-0",
        "MAIN",
        json!({"quantity": 6}),
    ))
    .await;
    h.expect(SHOP, "SKU-0", "MAIN", 6);
    h.assert_totals(Duration::from_secs(20)).await;
    assert_eq!(h.sandbox.fired_faults().len(), 1);
    let resent_with_its_key = h
        .count(
            "SELECT count(*) FROM push_batches WHERE state = 'applied' AND attempts = 2 \
             AND adjustment_group_id IS NOT NULL",
        )
        .await;
    assert_eq!(resent_with_its_key, 1, "the same batch, sent twice");
    assert_eq!(h.sandbox.adjustment_groups(SHOP).unwrap().len(), 1);
    h.stop().await;
}

#[tokio::test]
async fn a_key_parameter_mismatch_is_exhausted_naming_the_reference_and_never_resent() {
    let mut h = Harness::start().await;
    // Shopify ran the call and then says the key was used with other parameters: the batch
    // may well be applied, so its changes must not go out again under another key.
    h.sandbox
        .set_faults(FaultConfig::rule(
            FaultRule::next(
                1,
                FaultAction::IdempotencyKeyParameterMismatch { after_apply: true },
            )
            .mutations_only(),
        ))
        .unwrap();
    h.publish(&tx(
        "mismatch",
        SHOP,
        "put",
        "SKU-2",
        "EAST",
        json!({"quantity": 8}),
    ))
    .await;
    h.expect(SHOP, "SKU-2", "EAST", 8); // applied once, by the faulted call
    let dlq = h.env.names.adjustment_pusher_queue().dead_letter_queue();
    let dead = h
        .env
        .wait_and_drain(&dlq, 1, Duration::from_secs(20))
        .await
        .remove(0)
        .delivery;
    let headers = dead.properties.headers().as_ref();
    assert_eq!(
        platform::amqp::headers::header_str(headers, "x-error-kind"),
        Some("exhausted")
    );
    let error = platform::amqp::headers::header_str(headers, "x-error").unwrap();
    assert!(
        error.contains("IDEMPOTENCY_KEY_PARAMETER_MISMATCH"),
        "{error}"
    );
    let reference: String = h
        .env
        .pool
        .get()
        .await
        .unwrap()
        .query_one(
            "SELECT variables->>'referenceDocumentUri' FROM push_batches",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(error.contains(&reference), "{error} names {reference}");
    h.assert_totals(Duration::from_secs(10)).await;
    assert_eq!(
        h.sandbox.adjustment_groups(SHOP).unwrap().len(),
        1,
        "never sent again under a new key"
    );
    h.stop().await;
}

#[tokio::test]
async fn a_previous_attempt_failed_is_sent_again_under_a_new_key_and_applied_once() {
    let mut h = Harness::start().await;
    h.sandbox
        .set_faults(FaultConfig::rule(
            FaultRule::next(1, FaultAction::IdempotencyPreviousAttemptFailed).mutations_only(),
        ))
        .unwrap();
    h.publish(&tx(
        "failed-before",
        SHOP,
        "pull",
        "SKU-3",
        "MAIN",
        json!({"quantity": 9}),
    ))
    .await;
    h.expect(SHOP, "SKU-3", "MAIN", -9);
    h.assert_totals(Duration::from_secs(20)).await;
    assert_eq!(h.sandbox.fired_faults().len(), 1);
    let groups = h.sandbox.adjustment_groups(SHOP).unwrap();
    assert_eq!(groups.len(), 1);
    let key: String = h
        .env
        .pool
        .get()
        .await
        .unwrap()
        .query_one("SELECT idempotency_key FROM push_batches", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(groups[0].idempotency_key.as_deref(), Some(key.as_str()));
    h.stop().await;
}
