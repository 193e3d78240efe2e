//! Variants coming and going: deletes, re-creations, renames, duplicates, big products.

use serde_json::json;

use crate::harness::{Ingest, V, product, v};

#[tokio::test]
async fn a_variant_deleted_then_recreated_with_the_same_sku_maps_to_the_new_one() {
    let mut ingest = Ingest::start().await;
    ingest
        .send(
            "products/create",
            &product(1, "Tee", 1, &[v(11, "TEE-S", 101), v(12, "TEE-M", 102)]),
            "w-1",
        )
        .await;
    // The S variant is removed from the product (absent from a newer update)...
    ingest
        .send(
            "products/update",
            &product(1, "Tee", 2, &[v(12, "TEE-M", 102)]),
            "w-2",
        )
        .await;
    assert_eq!(
        ingest.mapping("TEE-S").await,
        Some(None),
        "no live variant: mapping cleared, item kept"
    );
    // ...and created again: a new variant id and inventory item, the same SKU.
    ingest
        .send(
            "products/update",
            &product(1, "Tee", 3, &[v(12, "TEE-M", 102), v(13, "TEE-S", 103)]),
            "w-3",
        )
        .await;
    assert_eq!(ingest.mapping("TEE-S").await, Some(Some(103)));
    assert_eq!(ingest.mapping("TEE-M").await, Some(Some(102)));
    ingest.stop().await;
}

#[tokio::test]
async fn a_recreated_variant_seen_before_the_delete_takes_over_when_the_delete_arrives() {
    let mut ingest = Ingest::start().await;
    ingest
        .send(
            "products/create",
            &product(1, "Tee", 1, &[v(11, "TEE-S", 101)]),
            "w-1",
        )
        .await;
    ingest
        .send(
            "products/create",
            &product(2, "Tee again", 2, &[v(21, "TEE-S", 201)]),
            "w-2",
        )
        .await;
    assert_eq!(
        ingest.mapping("TEE-S").await,
        Some(Some(101)),
        "the old one still carries the SKU"
    );
    ingest
        .send("products/delete", &json!({"id": 1}), "w-3")
        .await;
    assert_eq!(ingest.mapping("TEE-S").await, Some(Some(201)));
    ingest.stop().await;
}

#[tokio::test]
async fn a_renamed_sku_unmaps_the_old_item_and_maps_the_new_one() {
    let mut ingest = Ingest::start().await;
    ingest
        .send(
            "products/create",
            &product(1, "Tee", 1, &[v(11, "OLD-SKU", 101)]),
            "w-1",
        )
        .await;
    ingest
        .send(
            "products/update",
            &product(1, "Tee", 2, &[v(11, "NEW-SKU", 101)]),
            "w-2",
        )
        .await;
    assert_eq!(
        ingest.mapping("OLD-SKU").await,
        Some(None),
        "the old item stays (WOS history), unmapped"
    );
    assert_eq!(ingest.mapping("NEW-SKU").await, Some(Some(101)));
    ingest.stop().await;
}

#[tokio::test]
async fn two_variants_born_with_the_same_sku_map_to_the_oldest_and_are_a_conflict() {
    let mut ingest = Ingest::start().await;
    let older = V {
        created: 5,
        ..v(12, "TWIN", 102)
    };
    let newer = V {
        created: 9,
        ..v(11, "TWIN", 101)
    };
    ingest
        .send(
            "products/create",
            &product(1, "Twins", 10, &[newer, older]),
            "w-1",
        )
        .await;
    assert_eq!(
        ingest.mapping("TWIN").await,
        Some(Some(102)),
        "the variant created first"
    );
    assert_eq!(ingest.conflicts(), 1);
    // Operators can list it: the SKU, where the item points, its live variants oldest first.
    let conflicts = item_ingest::store::list_conflicts(&ingest.env.pool, crate::harness::SHOP)
        .await
        .unwrap();
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].sku, "TWIN");
    assert_eq!(
        conflicts[0].mapped_inventory_item_id.map(|id| id.0),
        Some(102)
    );
    let variants: Vec<u64> = conflicts[0]
        .variants
        .iter()
        .map(|v| v.variant_id.0)
        .collect();
    assert_eq!(variants, [12, 11]);
    ingest.stop().await;
}

#[tokio::test]
async fn deleting_the_original_product_moves_the_sku_to_the_clone_still_carrying_it() {
    let mut ingest = Ingest::start().await;
    ingest
        .send(
            "products/create",
            &product(1, "Original", 1, &[v(11, "SKU-1", 101)]),
            "w-1",
        )
        .await;
    ingest
        .send(
            "products/create",
            &product(2, "Clone", 2, &[v(21, "SKU-1", 201)]),
            "w-2",
        )
        .await;
    assert_eq!(ingest.mapping("SKU-1").await, Some(Some(101)));
    ingest
        .send("products/delete", &json!({"id": 1}), "w-3")
        .await;
    assert_eq!(ingest.mapping("SKU-1").await, Some(Some(201)));
    assert_eq!(ingest.conflicts(), 0);
    // A late update of the deleted product changes nothing.
    ingest
        .send(
            "products/update",
            &product(1, "Original", 3, &[v(11, "SKU-1", 101)]),
            "w-4",
        )
        .await;
    assert_eq!(ingest.mapping("SKU-1").await, Some(Some(201)));
    ingest.stop().await;
}

#[tokio::test]
async fn a_product_with_150_variants_keeps_the_ones_without_details() {
    let mut ingest = Ingest::start().await;
    let skus: Vec<&'static str> = (0..150)
        .map(|n| &*Box::leak(format!("BIG-{n:03}").into_boxed_str()))
        .collect();
    let all: Vec<V> = (0..150)
        .map(|n| v(1000 + n as u64, skus[n], 5000 + n as u64))
        .collect();
    let gids: Vec<_> = all
        .iter()
        .map(|variant| json!({"admin_graphql_api_id": format!("gid://shopify/ProductVariant/{}", variant.id)}))
        .collect();
    let mut first = product(1, "Big", 1, &all[..100]);
    first["variant_gids"] = json!(gids);
    ingest.send("products/create", &first, "w-1").await;
    assert_eq!(ingest.item_count().await, 100);
    // The next update details the other 50 (recently updated first), lists all 150.
    let mut second = product(1, "Big", 2, &all[100..]);
    second["variant_gids"] = json!(gids);
    ingest.send("products/update", &second, "w-2").await;
    assert_eq!(ingest.item_count().await, 150);
    for n in [0usize, 99, 100, 149] {
        assert_eq!(
            ingest.mapping(skus[n]).await,
            Some(Some(5000 + n as u64)),
            "{}",
            skus[n]
        );
    }
    assert_eq!(
        ingest.fields(skus[0]).await[0].as_deref(),
        Some("Big - XL"),
        "undetailed variant kept"
    );
    ingest.stop().await;
}

#[tokio::test]
async fn a_whitespace_only_sku_is_no_sku() {
    let mut ingest = Ingest::start().await;
    ingest
        .send(
            "products/create",
            &product(
                1,
                "Tee",
                1,
                &[v(11, "   ", 101), v(12, "\t \n", 102), v(13, "TEE", 103)],
            ),
            "w-1",
        )
        .await;
    assert_eq!(ingest.item_count().await, 1, "only TEE is an item");
    assert_eq!(ingest.mapping("   ").await, None);
    assert_eq!(ingest.mapping("TEE").await, Some(Some(103)));
    assert_eq!(
        ingest.metric(
            "wos_sync_variants_without_sku_total",
            &[("shop", crate::harness::SHOP)]
        ),
        2.0
    );
    ingest.stop().await;
}
