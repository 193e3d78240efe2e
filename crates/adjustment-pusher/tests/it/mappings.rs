//! Adjustments follow their item's current mapping until they are sent: mappings moved by
//! Shopify's webhooks (through webhook-relay and item-ingest, as in production) while Shopify
//! refuses every call.

use std::time::Duration;

use model::ids::InventoryItemId;
use serde_json::json;
use shopify_sandbox::{FaultAction, FaultConfig, FaultRule, ProductSpec, VariantSpec};

use crate::harness::{Harness, Options, tx};

const SHOP: &str = "acme.myshopify.com";
const STOCK: i64 = 40;

async fn mapped_item(h: &Harness, sku: &str) -> Option<i64> {
    h.env
        .pool
        .get()
        .await
        .unwrap()
        .query_opt(
            "SELECT inventory_item_id FROM items WHERE shop_domain = $1 AND sku = $2",
            &[&SHOP, &sku],
        )
        .await
        .unwrap()
        .and_then(|row| row.get(0))
}

#[tokio::test]
async fn pending_adjustments_follow_a_mapping_moved_by_webhooks_while_shopify_is_down() {
    let mut h = Harness::with(Options {
        webhooks: true,
        ..Options::default()
    })
    .await;
    let main = h.shop(0).locations["MAIN"];
    let product = |title: &str| ProductSpec {
        title: title.into(),
        variants: vec![VariantSpec::sku("MOVE-1").stocked_at(main, STOCK)],
        ..ProductSpec::default()
    };
    let old = h.sandbox.create_product(SHOP, product("Old")).unwrap();
    let old_item = old.variants[0].inventory_item_id;
    testkit::wait_until(
        Duration::from_secs(20),
        "MOVE-1 mapped by item-ingest",
        || async { mapped_item(&h, "MOVE-1").await == Some(old_item.0 as i64) },
    )
    .await;

    // Shopify is down: the first put goes out in a batch (to the old variant) and is retried;
    // the second waits, pending, behind it.
    h.sandbox
        .set_faults(FaultConfig::rule(
            FaultRule::probability(
                1.0,
                FaultAction::Status {
                    status: 503,
                    retry_after_secs: None,
                    after_apply: false,
                },
            )
            .mutations_only(),
        ))
        .unwrap();
    h.publish(&tx(
        "while-down-1",
        SHOP,
        "put",
        "MOVE-1",
        "MAIN",
        json!({"quantity": 7}),
    ))
    .await;
    testkit::wait_until(
        Duration::from_secs(20),
        "the first batch refused by a 503",
        || async {
            h.count("SELECT count(*) FROM push_batches WHERE state = 'open' AND attempts >= 1")
                .await
                == 1
        },
    )
    .await;
    h.publish(&tx(
        "while-down-2",
        SHOP,
        "put",
        "MOVE-1",
        "MAIN",
        json!({"quantity": 5}),
    ))
    .await;
    testkit::wait_until(
        Duration::from_secs(20),
        "the second put pending",
        || async {
            h.count("SELECT count(*) FROM adjustments WHERE state = 'pending'")
                .await
                == 1
        },
    )
    .await;

    // The merchant deletes the product and creates it again: the SKU moves to a new variant,
    // through the products/delete and products/create webhooks.
    h.sandbox.delete_product(SHOP, old.product_id).unwrap();
    let new = h.sandbox.create_product(SHOP, product("New")).unwrap();
    let new_item = new.variants[0].inventory_item_id;
    testkit::wait_until(
        Duration::from_secs(20),
        "MOVE-1 moved by item-ingest",
        || async { mapped_item(&h, "MOVE-1").await == Some(new_item.0 as i64) },
    )
    .await;

    // Shopify is back: both puts land on the variant the SKU is mapped to now.
    h.sandbox.set_faults(FaultConfig::none()).unwrap();
    h.expect_item(SHOP, new_item, main, 12, STOCK);
    h.wait_settled(Duration::from_secs(30)).await;
    h.assert_totals(Duration::from_secs(10)).await;
    assert!(
        h.sandbox
            .quantity(SHOP, InventoryItemId(old_item.0), main, "available")
            .is_none(),
        "the old variant is gone"
    );
    let dlq = h.env.names.adjustment_pusher_queue().dead_letter_queue();
    assert_eq!(h.env.queue_depth(&dlq).await, 0, "nothing dead-lettered");
    h.stop().await;
}
