//! Database connections: Shopify's answer is recorded even when intake holds every connection
//! of its pool.

use std::time::Duration;

use serde_json::json;
use shopify_sandbox::{FaultAction, FaultConfig, FaultRule};

use crate::harness::{Harness, Options, tx};

const SHOP: &str = "acme.myshopify.com";

#[tokio::test]
async fn shopifys_answer_is_recorded_while_intake_saturates_its_pool() {
    let connections = 3;
    let mut h = Harness::with(Options {
        db_connections: Some(connections),
        ..Options::default()
    })
    .await;
    // Shopify holds the first call until the test lets it answer.
    h.sandbox
        .set_faults(FaultConfig::rule(
            FaultRule::next(1, FaultAction::Hold).mutations_only(),
        ))
        .unwrap();
    h.publish(&tx(
        "first",
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
        "the call held by Shopify",
        || async { h.sandbox.held_requests() == 1 },
    )
    .await;

    // Intake now blocks on a table lock with every connection of its pool.
    let mut blocker = h.env.pool.get().await.unwrap();
    let lock = blocker.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE wos_transactions IN EXCLUSIVE MODE")
        .await
        .unwrap();
    for n in 0..(connections * 3) {
        h.publish(&tx(
            &format!("blocked-{n}"),
            SHOP,
            "put",
            "SKU-1",
            "EAST",
            json!({"quantity": 1}),
        ))
        .await;
        h.expect(SHOP, "SKU-1", "EAST", 1);
    }
    testkit::wait_until(
        Duration::from_secs(20),
        "every intake connection waiting on the lock",
        || async {
            h.count(
                "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
                 WHERE c.relname = 'wos_transactions' AND NOT l.granted \
                 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            )
            .await
                >= connections as i64
        },
    )
    .await;

    // Shopify answers: the pusher records it at once, intake or not.
    assert_eq!(h.sandbox.release_held(), 1);
    testkit::wait_until(
        Duration::from_secs(10),
        "Shopify's answer recorded while intake holds its pool",
        || async {
            h.count("SELECT count(*) FROM push_batches WHERE state = 'applied'")
                .await
                == 1
        },
    )
    .await;
    assert_eq!(
        h.count(
            "SELECT count(*) FROM adjustments WHERE transaction_id = 'first' AND state = 'pushed'"
        )
        .await,
        1
    );
    lock.rollback().await.unwrap();
    h.assert_totals(Duration::from_secs(30)).await;
    assert_eq!(
        h.sandbox.adjustment_groups(SHOP).unwrap().len() as i64,
        h.count("SELECT count(*) FROM push_batches WHERE state = 'applied'")
            .await,
        "no call applied twice"
    );
    h.stop().await;
}
