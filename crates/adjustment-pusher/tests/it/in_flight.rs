//! Several batches of one shop in flight at once (`batches_in_flight`), paced together so that
//! the calls in flight never over-draw Shopify's bucket.

use std::time::Duration;

use serde_json::json;
use shopify_sandbox::{FaultAction, FaultConfig, FaultRule, ThrottleConfig};

use crate::harness::{Harness, Options, tx};

const SHOP: &str = "acme.myshopify.com";
const SKUS: usize = 32;

#[tokio::test]
async fn four_batches_of_a_shop_are_in_flight_at_once_and_never_throttled() {
    // A bucket that holds four calls (about 12 points each) and little more: calls in flight
    // that did not reserve their cost together would be refused as soon as it runs low.
    let throttle = ThrottleConfig {
        enabled: true,
        bucket_size: 60.0,
        restore_rate: 100.0,
    };
    let mut h = Harness::with(Options {
        skus: SKUS,
        throttle,
        pusher: "batches_in_flight = 4\nmax_changes_per_call = 5",
        ..Options::default()
    })
    .await;
    // One call first: the pacer learns the bucket (until then it sends one call at a time).
    h.publish(&tx(
        "warm-up",
        SHOP,
        "put",
        "SKU-0",
        "MAIN",
        json!({"quantity": 1}),
    ))
    .await;
    h.expect(SHOP, "SKU-0", "MAIN", 1);
    h.assert_totals(Duration::from_secs(20)).await;

    // A backlog over 64 (SKU, location) pairs, released at once: parked first, then mapped
    // in one statement.
    let skus: Vec<String> = (0..SKUS).map(|n| format!("SKU-{n}")).collect();
    for sku in &skus {
        h.map(SHOP, sku, None).await;
    }
    for n in 0..160 {
        let sku = &skus[n % SKUS];
        let warehouse = if (n / SKUS).is_multiple_of(2) {
            "MAIN"
        } else {
            "EAST"
        };
        h.publish(&tx(
            &format!("backlog-{n}"),
            SHOP,
            "put",
            sku,
            warehouse,
            json!({"quantity": 1 + n % 3}),
        ))
        .await;
        h.expect(SHOP, sku, warehouse, 1 + (n % 3) as i64);
    }
    h.wait_parked(160).await;
    // Shopify holds the next four calls: the pusher has four in flight at once, or this waits
    // in vain.
    h.sandbox
        .set_faults(FaultConfig::rule(
            FaultRule::next(4, FaultAction::Hold).mutations_only(),
        ))
        .unwrap();
    let mappings: Vec<(&str, i64)> = skus
        .iter()
        .map(|sku| (sku.as_str(), h.item_of(0, sku)))
        .collect();
    h.map_together(SHOP, &mappings).await;
    testkit::wait_until(Duration::from_secs(20), "four calls in flight", || async {
        h.sandbox.held_requests() == 4
    })
    .await;
    assert_eq!(
        h.count("SELECT count(*) FROM push_batches WHERE state = 'open'")
            .await,
        4,
        "one open batch per call in flight, no more"
    );
    h.sandbox.release_held();

    h.assert_totals(Duration::from_secs(60)).await;
    let requests = |status: &str| {
        h.metrics()
            .shopify_requests_total
            .with_label_values(&[SHOP, "inventoryAdjustQuantities", status])
            .get()
    };
    assert_eq!(
        requests("throttled"),
        0,
        "a call in flight over-drew the bucket"
    );
    // 160 adjustments over 64 pairs, at most five changes a call: at least 13 calls, most of
    // them paced by the bucket (60 points, 100 restored per second).
    assert!(requests("200") >= 13, "{} calls", requests("200"));
    assert_eq!(
        h.count("SELECT count(DISTINCT slot) FROM push_batches")
            .await,
        4
    );
    h.stop().await;
}
