//! Parking adjustments of unmapped items, and releasing them.

use std::time::Duration;

use platform::amqp::headers::header_str;
use serde_json::json;

use crate::harness::{Harness, Options, tx};

const SHOP: &str = "acme.myshopify.com";

#[tokio::test]
async fn parked_adjustments_go_out_when_the_mapping_appears() {
    let mut h = Harness::start().await;
    h.map(SHOP, "SKU-0", None).await;
    h.publish(&tx(
        "park-1",
        SHOP,
        "put",
        "SKU-0",
        "MAIN",
        json!({"quantity": 7}),
    ))
    .await;
    h.publish(&tx(
        "park-2",
        SHOP,
        "pull",
        "SKU-0",
        "EAST",
        json!({"quantity": 2}),
    ))
    .await;
    h.wait_parked(2).await;
    assert_eq!(h.adjustments(SHOP, "put", "parked"), 1);
    // Nothing reached Shopify while parked.
    assert!(h.sandbox.adjustment_groups(SHOP).unwrap().is_empty());

    let item = h.shop(0).items["SKU-0"];
    h.map(SHOP, "SKU-0", Some(item)).await;
    h.expect(SHOP, "SKU-0", "MAIN", 7);
    h.expect(SHOP, "SKU-0", "EAST", -2);
    h.assert_totals(Duration::from_secs(20)).await;
    h.stop().await;
}

#[tokio::test]
async fn a_mapping_changed_while_parked_sends_to_the_item_mapped_at_release() {
    let mut h = Harness::start().await;
    // Parked against no mapping (a WOS-only item); the item is then mapped to SKU-1's inventory
    // item: the release uses whatever is mapped when it happens.
    h.map(SHOP, "WOS-ONLY", None).await;
    h.publish(&tx(
        "p-1",
        SHOP,
        "put",
        "WOS-ONLY",
        "MAIN",
        json!({"quantity": 11}),
    ))
    .await;
    h.wait_parked(1).await;
    let target = h.shop(0).items["SKU-1"];
    h.map(SHOP, "WOS-ONLY", Some(target)).await;
    h.expect(SHOP, "SKU-1", "MAIN", 11);
    h.assert_totals(Duration::from_secs(20)).await;
    h.stop().await;
}

#[tokio::test]
async fn a_mapping_announcement_releases_at_once() {
    let mut h = Harness::with(Options {
        pusher: "sweep_interval_ms = 600000",
        ..Options::default()
    })
    .await;
    h.map(SHOP, "SKU-2", None).await;
    h.publish(&tx(
        "a-1",
        SHOP,
        "put",
        "SKU-2",
        "EAST",
        json!({"quantity": 3}),
    ))
    .await;
    h.wait_parked(1).await;
    let item = h.shop(0).items["SKU-2"];
    h.map(SHOP, "SKU-2", Some(item)).await;
    // The sweep is 10 minutes away: only the announcement can release it now.
    let announcement = json!({
        "shop_domain": SHOP, "sku": "SKU-2", "change": "set", "inventory_item_id": item.0,
        "previous_inventory_item_id": null, "variant_id": null, "basis": "only_candidate",
        "changed_at": "2026-11-27T10:00:00Z"
    });
    let exchange = h.env.names.name(platform::amqp::topology::ITEM_MAPPINGS);
    h.env
        .publish(
            &exchange,
            "mapping.set",
            announcement.to_string().as_bytes(),
            lapin::BasicProperties::default(),
        )
        .await;
    h.expect(SHOP, "SKU-2", "EAST", 3);
    h.assert_totals(Duration::from_secs(10)).await;
    h.stop().await;
}

#[tokio::test]
async fn an_adjustment_parked_too_long_is_dead_lettered_as_unmapped() {
    let mut h = Harness::with(Options {
        pusher: "max_park_age_secs = 1",
        ..Options::default()
    })
    .await;
    h.map(SHOP, "GHOST", None).await;
    let body = tx(
        "ghost-1",
        SHOP,
        "put",
        "GHOST",
        "MAIN",
        json!({"quantity": 4}),
    );
    h.publish(&body).await;
    let dlq = h.env.names.adjustment_pusher_queue().dead_letter_queue();
    let dead = h
        .env
        .wait_and_drain(&dlq, 1, Duration::from_secs(15))
        .await
        .remove(0)
        .delivery;
    let headers = dead.properties.headers().as_ref();
    assert_eq!(header_str(headers, "x-error-kind"), Some("unmapped"));
    assert_eq!(header_str(headers, "x-service"), Some("adjustment-pusher"));
    assert!(header_str(headers, "x-failed-at").is_some());
    assert_eq!(
        dead.properties.message_id().as_ref().unwrap().as_str(),
        "ghost-1"
    );
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&dead.data).unwrap(),
        body
    );
    assert_eq!(h.adjustments(SHOP, "put", "dead_lettered"), 1);
    h.assert_totals(Duration::from_secs(5)).await;
    h.stop().await;
}

/// Parks `count` adjustments of `skus` (round robin, +1 each at MAIN) straight in the
/// database, as a backlog left by a long outage of item-ingest; returns the highest id.
async fn park_backlog(h: &Harness, count: i64, skus: &[&str], age_secs: i64) -> i64 {
    let main = h.shop(0).locations["MAIN"].0 as i64;
    let client = h.env.pool.get().await.unwrap();
    client
        .execute(
            "INSERT INTO wos_transactions (shop_domain, transaction_id, kind, sku, occurred_at, \
                 content_digest, body) \
             SELECT $1::text, 'backlog-' || n, 'put', ($2::text[])[1 + n % array_length($2::text[], 1)], \
                 now(), 'digest', convert_to('{\"transaction_id\":\"backlog-' || n || '\"}', 'UTF8') \
             FROM generate_series(1, $3::bigint) AS n",
            &[&SHOP, &skus, &count],
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO adjustments (shop_domain, transaction_id, kind, sku, location_id, delta, \
                 reason, occurred_at, state, created_at) \
             SELECT shop_domain, transaction_id, 'put', sku, $2, 1, 'received', occurred_at, \
                 'parked', now() - make_interval(secs => $3) \
             FROM wos_transactions WHERE shop_domain = $1 AND transaction_id LIKE 'backlog-%'",
            &[&SHOP, &main, &(age_secs as f64)],
        )
        .await
        .unwrap();
    client
        .query_one("SELECT max(id) FROM adjustments", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_hundred_thousand_parked_adjustments_are_released_in_chunks_that_commit() {
    let mut h = Harness::start().await;
    let skus = ["SKU-0", "SKU-1", "SKU-2", "SKU-3"];
    for sku in skus {
        h.map(SHOP, sku, None).await;
    }
    let count = 100_000;
    let last = park_backlog(&h, count, &skus, 0).await;
    for sku in skus {
        h.expect(SHOP, sku, "MAIN", count / 4);
    }
    // Someone holds one of the parked rows: a sweep in one statement would wait on it with
    // every other row, and its statement would time out; chunks that commit go past it.
    let mut holder = h.env.pool.get().await.unwrap();
    let hold = holder.transaction().await.unwrap();
    hold.execute(
        "SELECT 1 FROM adjustments WHERE id = $1 FOR UPDATE",
        &[&last],
    )
    .await
    .unwrap();
    let mappings: Vec<(&str, i64)> = skus.iter().map(|s| (*s, h.item_of(0, s))).collect();
    h.map_together(SHOP, &mappings).await;
    testkit::wait_until(
        Duration::from_secs(120),
        "every parked adjustment but the held one released",
        || async {
            h.count("SELECT count(*) FROM adjustments WHERE state <> 'parked'")
                .await
                == count - 1
        },
    )
    .await;
    hold.rollback().await.unwrap();
    drop(holder);
    h.assert_totals(Duration::from_secs(180)).await;
    h.stop().await;
}

#[tokio::test]
async fn adjustments_parked_too_long_are_dead_lettered_in_chunks_that_commit() {
    let h = Harness::with(Options {
        pusher: "max_park_age_secs = 3600",
        ..Options::default()
    })
    .await;
    h.map(SHOP, "GHOST", None).await;
    let count = 2_500;
    let last = park_backlog(&h, count, &["GHOST"], 7200).await;
    let mut holder = h.env.pool.get().await.unwrap();
    let hold = holder.transaction().await.unwrap();
    hold.execute(
        "SELECT 1 FROM adjustments WHERE id = $1 FOR UPDATE",
        &[&last],
    )
    .await
    .unwrap();
    testkit::wait_until(
        Duration::from_secs(60),
        "every expired adjustment but the held one dead-lettered",
        || async {
            h.count("SELECT count(*) FROM adjustments WHERE state = 'dead'")
                .await
                == count - 1
        },
    )
    .await;
    hold.rollback().await.unwrap();
    drop(holder);
    let dlq = h.env.names.adjustment_pusher_queue().dead_letter_queue();
    testkit::wait_until(
        Duration::from_secs(60),
        "one dead letter per transaction",
        || async {
            h.count("SELECT count(*) FROM adjustments WHERE state = 'dead'")
                .await
                == count
                && h.count("SELECT count(*) FROM outbox").await == 0
                && i64::from(h.env.queue_depth(&dlq).await) == count
        },
    )
    .await;
    h.stop().await;
}
