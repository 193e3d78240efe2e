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
