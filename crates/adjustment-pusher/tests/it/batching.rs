//! What goes into one call: sums that fit Shopify's Int, errors sent back to the change they
//! name, sums that cancel out. Each test parks its transactions first and then maps their items
//! in one statement, so the sweep releases them together and they form one batch whatever the
//! timing.

use std::time::Duration;

use platform::amqp::headers::header_str;
use serde_json::json;

use crate::harness::{Harness, STOCK, tx};

const SHOP: &str = "acme.myshopify.com";
const HUGE: i64 = 1_000_000_000;

#[tokio::test]
async fn three_huge_puts_on_one_sku_never_leave_the_int_bound_nor_condemn_a_small_one() {
    let mut h = Harness::start().await;
    h.map(SHOP, "SKU-0", None).await;
    h.map(SHOP, "SKU-1", None).await;
    for n in 0..3 {
        h.publish(&tx(
            &format!("huge-{n}"),
            SHOP,
            "put",
            "SKU-0",
            "MAIN",
            json!({"quantity": HUGE}),
        ))
        .await;
    }
    h.publish(&tx(
        "small",
        SHOP,
        "put",
        "SKU-1",
        "MAIN",
        json!({"quantity": 5}),
    ))
    .await;
    h.wait_parked(4).await;
    let (sku0, sku1) = (h.item_of(0, "SKU-0"), h.item_of(0, "SKU-1"));
    h.map_together(SHOP, &[("SKU-0", sku0), ("SKU-1", sku1)])
        .await;
    h.wait_settled(Duration::from_secs(30)).await;

    // The small put is never condemned with the huge ones.
    let dead = h.push_dead_letters().await;
    assert!(
        !dead.contains_key("small"),
        "the small put was dead-lettered"
    );
    h.expect(SHOP, "SKU-1", "MAIN", 5);
    // Each huge put is applied or dead-lettered with Shopify's reason, never both, never lost.
    for (id, message) in &dead {
        assert!(id.starts_with("huge-"), "{id} dead-lettered");
        let headers = message.delivery.properties.headers().as_ref();
        assert_eq!(header_str(headers, "x-error-kind"), Some("rejected"));
        let error = header_str(headers, "x-error").unwrap();
        assert!(error.contains("INVALID_QUANTITY_TOO_HIGH"), "{error}");
    }
    let applied = 3 - dead.len() as i64;
    assert!(
        applied >= 1,
        "Shopify can take one of them: {STOCK} + 1e9 < 2e9"
    );
    h.expect(SHOP, "SKU-0", "MAIN", applied * HUGE);
    h.assert_totals(Duration::from_secs(10)).await;
    // No change ever left the pusher outside GraphQL's Int.
    let widest = h
        .count(
            "SELECT coalesce(max(abs((c->>'delta')::bigint)), 0) FROM push_batches b, \
             jsonb_array_elements(b.variables->'changes') c",
        )
        .await;
    assert!(
        widest <= i64::from(i32::MAX),
        "a change of {widest} was sent"
    );
    h.stop().await;
}

#[tokio::test]
async fn a_non_positive_inventory_item_is_parked_and_errors_land_on_the_changes_they_name() {
    let mut h = Harness::start().await;
    for n in 0..4 {
        h.map(SHOP, &format!("SKU-{n}"), None).await;
    }
    for n in 0..4 {
        h.publish(&tx(
            &format!("mix-{n}"),
            SHOP,
            "put",
            &format!("SKU-{n}"),
            "MAIN",
            json!({"quantity": 10 + n}),
        ))
        .await;
    }
    h.wait_parked(4).await;
    // WOS wrote a non-positive id into SKU-2's item; SKU-3's item points at an inventory item
    // Shopify does not have.
    let (sku0, sku1) = (h.item_of(0, "SKU-0"), h.item_of(0, "SKU-1"));
    h.map_together(
        SHOP,
        &[
            ("SKU-0", sku0),
            ("SKU-1", sku1),
            ("SKU-2", -5),
            ("SKU-3", 424_242),
        ],
    )
    .await;
    h.expect(SHOP, "SKU-0", "MAIN", 10);
    h.expect(SHOP, "SKU-1", "MAIN", 11);
    let dlq = h.env.names.adjustment_pusher_queue().dead_letter_queue();
    let dead = h
        .env
        .wait_and_drain(&dlq, 1, Duration::from_secs(20))
        .await
        .remove(0)
        .delivery;
    assert_eq!(
        dead.properties.message_id().as_ref().unwrap().as_str(),
        "mix-3",
        "Shopify's error landed on the change it named"
    );
    let error = header_str(dead.properties.headers().as_ref(), "x-error").unwrap();
    assert!(error.contains("INVALID_INVENTORY_ITEM"), "{error}");
    h.assert_totals(Duration::from_secs(20)).await;
    // SKU-2's adjustment waits for a real mapping instead of going round for ever.
    testkit::wait_until(Duration::from_secs(10), "SKU-2 parked", || async {
        h.count(
            "SELECT count(*) FROM adjustments WHERE sku = 'SKU-2' AND state = 'parked' \
             AND batch_id IS NULL",
        )
        .await
            == 1
    })
    .await;
    assert_eq!(
        h.env.queue_depth(&dlq).await,
        0,
        "nothing else dead-lettered"
    );
    h.stop().await;
}

#[tokio::test]
async fn adjustments_that_cancel_out_in_a_batch_count_as_pushed() {
    let mut h = Harness::start().await;
    h.map(SHOP, "SKU-2", None).await;
    // Two opposite moves: every (item, location) sums to zero, so no call is made.
    h.publish(&tx(
        "there",
        SHOP,
        "move",
        "SKU-2",
        "MAIN",
        json!({"quantity": 3, "to_warehouse": "EAST"}),
    ))
    .await;
    h.publish(&tx(
        "back",
        SHOP,
        "move",
        "SKU-2",
        "EAST",
        json!({"quantity": 3, "to_warehouse": "MAIN"}),
    ))
    .await;
    h.wait_parked(4).await;
    let item = h.item_of(0, "SKU-2");
    h.map_together(SHOP, &[("SKU-2", item)]).await;
    h.assert_totals(Duration::from_secs(20)).await;
    testkit::wait_until(
        Duration::from_secs(5),
        "all four counted as pushed",
        || async { h.adjustments(SHOP, "move", "pushed") == 4 },
    )
    .await;
    assert!(
        h.sandbox.adjustment_groups(SHOP).unwrap().is_empty(),
        "nothing needed sending"
    );
    h.stop().await;
}
