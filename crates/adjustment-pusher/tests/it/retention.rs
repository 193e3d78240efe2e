//! The retention job: settled work older than the window goes, everything else stays, and a
//! redelivery inside the window is still a duplicate.

use std::time::Duration;

use serde_json::json;

use crate::harness::{Harness, tx};

const PUSHED: &str =
    "SELECT count(*) FROM adjustments WHERE transaction_id = $1 AND state = 'pushed'";
const RECORDED: &str = "SELECT count(*) FROM wos_transactions WHERE transaction_id = $1";

/// Waits until `sql` (a count with the transaction id as `$1`) gives `expected`.
async fn wait_count(h: &Harness, what: &str, sql: &str, transaction: &str, expected: i64) {
    testkit::wait_until(Duration::from_secs(20), what, || async {
        let client = h.env.pool.get().await.unwrap();
        let count: i64 = client.query_one(sql, &[&transaction]).await.unwrap().get(0);
        count == expected
    })
    .await;
}

/// Ages every row of `transaction` (its record, its adjustments, their batches) by `days`.
async fn age(h: &Harness, transaction: &str, days: i32) {
    let client = h.env.pool.get().await.unwrap();
    let age = days * 24;
    for sql in [
        "UPDATE push_batches SET created_at = now() - make_interval(hours => $2), \
             completed_at = now() - make_interval(hours => $2) \
         WHERE id IN (SELECT batch_id FROM adjustments WHERE transaction_id = $1)",
        "UPDATE adjustments SET created_at = now() - make_interval(hours => $2), \
             updated_at = now() - make_interval(hours => $2) WHERE transaction_id = $1",
        "UPDATE wos_transactions SET received_at = now() - make_interval(hours => $2) WHERE transaction_id = $1",
    ] {
        client.execute(sql, &[&transaction, &age]).await.unwrap();
    }
}

/// Records a transaction with one adjustment in `state`, as intake and the push loop leave it.
async fn insert_transaction(h: &Harness, shop: &str, id: &str, state: &str, days: i32) {
    let client = h.env.pool.get().await.unwrap();
    let age = days * 24;
    client
        .execute(
            "INSERT INTO wos_transactions (shop_domain, transaction_id, kind, sku, occurred_at, \
                 content_digest, body, received_at) \
             VALUES ($1, $2, 'put', 'NO-ITEM', now() - make_interval(hours => $3), 'digest', '{}', \
                 now() - make_interval(hours => $3))",
            &[&shop, &id, &age],
        )
        .await
        .unwrap();
    // A parked adjustment is young (else the sweep would expire it); a dead one is as old as
    // its transaction.
    let adjustment_age = if state == "parked" { 1 } else { age };
    client
        .execute(
            "INSERT INTO adjustments (shop_domain, transaction_id, kind, sku, location_id, delta, \
                 reason, occurred_at, state, error, created_at, updated_at) \
             VALUES ($1, $2, 'put', 'NO-ITEM', 1, 1, 'received', now(), $3, \
                 CASE WHEN $3 = 'dead' THEN 'rejected' END, \
                 now() - make_interval(hours => $4), now() - make_interval(hours => $4))",
            &[&shop, &id, &state, &adjustment_age],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn settled_transactions_older_than_the_window_are_pruned_and_a_copy_inside_it_is_a_duplicate()
{
    let mut h = Harness::start().await;
    let shop = h.shop(0).domain.clone();
    let young = tx(
        "young-pushed",
        &shop,
        "put",
        "SKU-1",
        "MAIN",
        json!({"quantity": 2}),
    );
    let old = tx(
        "old-pushed",
        &shop,
        "put",
        "SKU-0",
        "MAIN",
        json!({"quantity": 2}),
    );
    for (transaction, sku) in [(&old, "SKU-0"), (&young, "SKU-1")] {
        h.publish(transaction).await;
        h.expect(&shop, sku, "MAIN", 2);
        // One batch each: the old batch can go with its transaction, the young one stays.
        let id = transaction["transaction_id"].as_str().unwrap();
        wait_count(&h, &format!("{id} pushed"), PUSHED, id, 1).await;
    }
    // Nothing to push at all (counted what it was).
    let unchanged = json!({"previous_quantity": 5, "counted_quantity": 5});
    h.publish(&tx(
        "old-nothing",
        &shop,
        "cycle_count",
        "SKU-2",
        "MAIN",
        unchanged,
    ))
    .await;
    wait_count(&h, "old-nothing taken in", RECORDED, "old-nothing", 1).await;
    h.wait_settled(Duration::from_secs(20)).await;
    h.stop_replicas().await;

    // The default window is 14 days.
    age(&h, "old-pushed", 15).await;
    age(&h, "old-nothing", 15).await;
    age(&h, "young-pushed", 13).await;
    insert_transaction(&h, &shop, "old-dead", "dead", 30).await;
    insert_transaction(&h, &shop, "old-parked", "parked", 30).await;
    h.env
        .pool
        .get()
        .await
        .unwrap()
        .execute(
            "INSERT INTO dead_letter_replays (shop_domain, transaction_id, failed_at, kind, \
                 pending, parked) VALUES ($1, 'old-pushed', 'earlier', 'rejected', 1, 0)",
            &[&shop],
        )
        .await
        .unwrap();
    let batches = h.count("SELECT count(*) FROM push_batches").await;
    assert_eq!(batches, 2);

    // A pass runs at start.
    h.start_replica();
    testkit::wait_until(
        Duration::from_secs(30),
        "old settled work pruned",
        || async {
            h.count(
                "SELECT count(*) FROM wos_transactions \
             WHERE transaction_id IN ('old-pushed', 'old-nothing')",
            )
            .await
                == 0
        },
    )
    .await;
    let left = |sql: &'static str| h.count(sql);
    assert_eq!(
        left("SELECT count(*) FROM adjustments WHERE transaction_id = 'old-pushed'").await,
        0
    );
    assert_eq!(left("SELECT count(*) FROM dead_letter_replays").await, 0);
    assert_eq!(
        left("SELECT count(*) FROM push_batches").await,
        1,
        "the old batch went with its adjustments"
    );
    // Young, dead and parked work stays, whatever its age.
    for id in ["young-pushed", "old-dead", "old-parked"] {
        let kept = h
            .env
            .pool
            .get()
            .await
            .unwrap()
            .query_one(
                "SELECT (SELECT count(*) FROM wos_transactions WHERE transaction_id = $1), \
                        (SELECT count(*) FROM adjustments WHERE transaction_id = $1)",
                &[&id],
            )
            .await
            .unwrap();
        assert_eq!(
            (kept.get::<_, i64>(0), kept.get::<_, i64>(1)),
            (1, 1),
            "{id}"
        );
    }
    let pruned = |table: &str| {
        h.metrics()
            .retention_pruned_rows_total
            .with_label_values(&["adjustment-pusher", table])
            .get()
    };
    assert_eq!(pruned("wos_transactions"), 2);
    assert_eq!(pruned("adjustments"), 1);
    assert_eq!(pruned("push_batches"), 1);

    // WOS sends the young transaction again: inside the window, it is a duplicate.
    h.publish(&young).await;
    testkit::wait_until(
        Duration::from_secs(20),
        "the copy acked as a duplicate",
        || async { h.adjustments(&shop, "put", "duplicate") == 1 },
    )
    .await;
    h.assert_totals(Duration::from_secs(20)).await;
    h.stop().await;
}
