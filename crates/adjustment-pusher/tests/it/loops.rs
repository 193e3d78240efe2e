//! The per-shop push loops: states that would break them are impossible, and a loop that keeps
//! failing is restarted and shows in the metrics.

use std::time::Duration;

use serde_json::json;

use crate::harness::{Harness, tx};

const SHOP: &str = "acme.myshopify.com";

#[tokio::test]
async fn a_pending_adjustment_without_inventory_item_is_refused_and_the_shop_keeps_pushing() {
    let mut h = Harness::start().await;
    h.publish(&tx(
        "before",
        SHOP,
        "put",
        "SKU-0",
        "MAIN",
        json!({"quantity": 2}),
    ))
    .await;
    h.expect(SHOP, "SKU-0", "MAIN", 2);
    h.assert_totals(Duration::from_secs(20)).await;
    // Someone (a replay script, an older release) writes a pending row without its inventory
    // item.
    let client = h.env.pool.get().await.unwrap();
    let inserted = client
        .execute(
            "INSERT INTO adjustments (shop_domain, transaction_id, kind, sku, location_id, delta, \
                 reason, occurred_at, state, inventory_item_id) \
             SELECT shop_domain, transaction_id, kind, sku, location_id, 1, reason, occurred_at, \
                 'pending', NULL FROM adjustments WHERE transaction_id = 'before'",
            &[],
        )
        .await;
    drop(client);
    // Whatever happened to the row, the shop's loop goes on pushing.
    h.publish(&tx(
        "after",
        SHOP,
        "put",
        "SKU-1",
        "MAIN",
        json!({"quantity": 3}),
    ))
    .await;
    h.expect(SHOP, "SKU-1", "MAIN", 3);
    h.assert_totals(Duration::from_secs(20)).await;
    let refused = inserted.expect_err("the database refuses a pending row without an item");
    assert_eq!(
        refused.code(),
        Some(&tokio_postgres::error::SqlState::CHECK_VIOLATION),
        "{refused}"
    );
    h.stop().await;
}

/// `wos_sync_loop_failures_total` and `wos_sync_loop_consecutive_failures` of the shop's push
/// loop, as `/metrics` shows them (0 when absent).
fn loop_metric(h: &Harness, family: &str) -> f64 {
    let prefix = format!("{family}{{");
    h.metrics()
        .render()
        .lines()
        .filter(|line| line.starts_with(&prefix))
        .filter(|line| line.contains("loop=\"push\"") && line.contains(SHOP))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn a_push_loop_that_keeps_failing_shows_in_the_metrics_and_recovers() {
    let mut h = Harness::start().await;
    // The loop's table disappears (a botched migration, a restore in progress).
    h.env
        .pool
        .get()
        .await
        .unwrap()
        .batch_execute("ALTER TABLE push_batches RENAME TO push_batches_away")
        .await
        .unwrap();
    h.publish(&tx(
        "waiting",
        SHOP,
        "put",
        "SKU-0",
        "MAIN",
        json!({"quantity": 4}),
    ))
    .await;
    h.expect(SHOP, "SKU-0", "MAIN", 4);
    testkit::wait_until(
        Duration::from_secs(20),
        "the failing loop counted in wos_sync_loop_failures_total and still failing",
        || async {
            loop_metric(&h, "wos_sync_loop_failures_total") >= 2.0
                && loop_metric(&h, "wos_sync_loop_consecutive_failures") >= 2.0
        },
    )
    .await;
    h.env
        .pool
        .get()
        .await
        .unwrap()
        .batch_execute("ALTER TABLE push_batches_away RENAME TO push_batches")
        .await
        .unwrap();
    h.assert_totals(Duration::from_secs(60)).await;
    testkit::wait_until(
        Duration::from_secs(10),
        "the recovered loop no longer counted as failing",
        || async { loop_metric(&h, "wos_sync_loop_consecutive_failures") == 0.0 },
    )
    .await;
    h.stop().await;
}
