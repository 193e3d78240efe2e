//! Shops do not wait for each other.

use std::time::{Duration, Instant};

use serde_json::json;
use shopify_sandbox::{FaultAction, FaultConfig, FaultRule};

use crate::harness::{Harness, Options, tx};

const HEALTHY: &str = "healthy.myshopify.com";
const THROTTLED: &str = "throttled.myshopify.com";
const FAILING: &str = "failing.myshopify.com";

#[tokio::test]
async fn a_throttled_shop_and_a_failing_shop_do_not_delay_a_healthy_one() {
    let mut h = Harness::with(Options {
        shops: vec![HEALTHY, THROTTLED, FAILING],
        ..Options::default()
    })
    .await;
    let mut faults = FaultConfig::rule(
        FaultRule::probability(
            1.0,
            FaultAction::Status {
                status: 429,
                retry_after_secs: Some(5),
                after_apply: false,
            },
        )
        .mutations_only()
        .for_shop(THROTTLED),
    );
    faults.rules.push(
        FaultRule::probability(
            1.0,
            FaultAction::Status {
                status: 503,
                retry_after_secs: None,
                after_apply: false,
            },
        )
        .mutations_only()
        .for_shop(FAILING),
    );
    h.sandbox.set_faults(faults).unwrap();

    let started = Instant::now();
    for n in 0..20 {
        for shop in [HEALTHY, THROTTLED, FAILING] {
            let sku = format!("SKU-{}", n % 4);
            h.publish(&tx(
                &format!("{shop}-{n}"),
                shop,
                "put",
                &sku,
                "EAST",
                json!({"quantity": 1}),
            ))
            .await;
            h.expect(shop, &sku, "EAST", 1);
        }
    }
    // The healthy shop's quantities arrive promptly although the others are stuck.
    let healthy = h.shop(0).clone();
    testkit::wait_until(
        Duration::from_secs(10),
        "the healthy shop's quantities (held up?)",
        || async {
            healthy.items.values().all(|item| {
                h.sandbox
                    .quantity(HEALTHY, *item, healthy.locations["EAST"], "available")
                    == Some(crate::harness::STOCK + 5)
            })
        },
    )
    .await;
    tracing::info!(healthy_done = ?started.elapsed(), "healthy shop done while the others are stuck");
    assert!(h.sandbox.adjustment_groups(THROTTLED).unwrap().is_empty());
    assert!(h.sandbox.adjustment_groups(FAILING).unwrap().is_empty());
    // Shopify has the quantities a moment before the pusher records its answer.
    let lag = h
        .metrics()
        .adjustment_lag_seconds
        .with_label_values(&[HEALTHY]);
    testkit::wait_until(
        Duration::from_secs(5),
        "every healthy adjustment acknowledged",
        || async { lag.get_sample_count() == 20 },
    )
    .await;

    // Once Shopify recovers, the other shops catch up, each transaction counted once.
    h.sandbox.set_faults(FaultConfig::none()).unwrap();
    h.assert_totals(Duration::from_secs(30)).await;
    h.stop().await;
}

/// One worker serves every shop, and no worker waits for Shopify: while a shop's calls hang
/// (four in flight, held by the sandbox), another shop's transaction goes through on the same
/// single worker.
#[tokio::test]
async fn a_shop_whose_calls_hang_holds_no_worker_from_the_others() {
    const HUNG: &str = "hung.myshopify.com";
    const QUIET: &str = "quiet.myshopify.com";
    let mut h = Harness::with(Options {
        shops: vec![HUNG, QUIET],
        skus: 20,
        pusher: "push_workers = 1\nbatches_in_flight = 4\nmax_changes_per_call = 5",
        ..Options::default()
    })
    .await;
    h.sandbox
        .set_faults(FaultConfig::rule(
            FaultRule::probability(1.0, FaultAction::Hold)
                .mutations_only()
                .for_shop(HUNG),
        ))
        .unwrap();
    // Twenty SKUs at five changes a call: four batches, every slot of the shop held.
    for n in 0..20 {
        let sku = format!("SKU-{n}");
        h.publish(&tx(
            &format!("hung-{n}"),
            HUNG,
            "put",
            &sku,
            "MAIN",
            json!({"quantity": 1}),
        ))
        .await;
        h.expect(HUNG, &sku, "MAIN", 1);
    }
    testkit::wait_until(Duration::from_secs(20), "four calls held", || async {
        h.sandbox.held_requests() == 4
    })
    .await;

    h.publish(&tx(
        "quiet-1",
        QUIET,
        "put",
        "SKU-3",
        "EAST",
        json!({"quantity": 2}),
    ))
    .await;
    h.expect(QUIET, "SKU-3", "EAST", 2);
    let quiet = h.shop(1).clone();
    testkit::wait_until(
        Duration::from_secs(10),
        "the quiet shop's put (the worker held by the hung calls?)",
        || async {
            h.sandbox.quantity(
                QUIET,
                quiet.items["SKU-3"],
                quiet.locations["EAST"],
                "available",
            ) == Some(crate::harness::STOCK + 2)
        },
    )
    .await;
    assert_eq!(
        h.sandbox.held_requests(),
        4,
        "the hung calls are still held"
    );
    assert!(h.sandbox.adjustment_groups(HUNG).unwrap().is_empty());

    h.sandbox.set_faults(FaultConfig::none()).unwrap();
    h.sandbox.release_held();
    h.assert_totals(Duration::from_secs(30)).await;
    h.stop().await;
}
