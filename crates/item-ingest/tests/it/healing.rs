//! The seed's broken state left in `items` (by WOS or an earlier integration) heals by itself:
//! a webhook for the variant that owns an inventory item takes every other SKU off it.

use shopify_sandbox::{ProductSpec, Stock, VariantSpec};

use crate::{
    harness::{SHOP, product, v},
    stack::Stack,
};

const STOCK: i64 = 10;

#[tokio::test]
async fn a_stale_mapping_on_the_clones_inventory_item_heals_from_the_clones_webhook() {
    let mut stack = Stack::start().await;
    let spec = |title: &str, sku: &str| ProductSpec {
        title: title.into(),
        vendor: None,
        product_type: None,
        status: None,
        body_html: None,
        variants: vec![VariantSpec {
            sku: Some(sku.into()),
            stock: vec![Stock {
                location_id: stack.main,
                available: STOCK,
            }],
            ..VariantSpec::default()
        }],
    };
    let original = stack
        .sandbox
        .create_product(SHOP, spec("20A642", "20A642-XL"))
        .unwrap();
    let clone = stack
        .sandbox
        .create_product(SHOP, spec("20B611", "20B611-XL"))
        .unwrap();
    let (original_variant, original_item) = (
        original.variants[0].variant_id,
        original.variants[0].inventory_item_id,
    );
    let (clone_variant, clone_item) = (
        clone.variants[0].variant_id,
        clone.variants[0].inventory_item_id,
    );
    // Step 7 of the seed: both WOS items on the clone's inventory item; item-ingest has seen
    // neither product.
    for sku in ["20A642-XL", "20B611-XL"] {
        stack
            .ingest
            .env
            .pool
            .get()
            .await
            .unwrap()
            .execute(
                "INSERT INTO items (shop_domain, sku, inventory_item_id) VALUES ($1, $2, $3)",
                &[&SHOP, &sku, &(clone_item.0 as i64)],
            )
            .await
            .unwrap();
    }
    stack.start_pusher().await;

    // The clone's webhook confirms the clone's SKU: the original's item comes off the clone.
    let clone_webhook = product(
        clone.product_id.0,
        "20B611",
        5,
        &[v(clone_variant.0, "20B611-XL", clone_item.0)],
    );
    stack
        .ingest
        .send("products/update", &clone_webhook, "w-clone")
        .await;
    assert_eq!(
        stack.ingest.mapping("20A642-XL").await,
        Some(None),
        "20A642-XL no longer points at the clone's inventory item"
    );
    assert_eq!(
        stack.ingest.mapping("20B611-XL").await,
        Some(Some(clone_item.0))
    );

    // A put for the original parks until the right variant is known: never on the clone.
    stack.put("tx-1", "20A642-XL", 5).await;
    stack.wait_adjustments("parked", 1).await;
    assert_eq!(
        stack.available(clone_item),
        STOCK,
        "nothing landed on the clone"
    );

    // The original's own webhook maps it, and the put is released onto the original.
    let original_webhook = product(
        original.product_id.0,
        "20A642",
        6,
        &[v(original_variant.0, "20A642-XL", original_item.0)],
    );
    stack
        .ingest
        .send("products/update", &original_webhook, "w-original")
        .await;
    assert_eq!(
        stack.ingest.mapping("20A642-XL").await,
        Some(Some(original_item.0))
    );
    stack.wait_adjustments("pushed", 1).await;
    assert_eq!(stack.available(original_item), STOCK + 5);
    assert_eq!(stack.available(clone_item), STOCK);
    stack.stop().await;
}
