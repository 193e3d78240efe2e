//! Field policies: who owns each item column.

use model::config::{FieldPolicies, FieldPolicy, ItemField};

use crate::harness::{Ingest, SHOP, product, v};

async fn edit_in_wos(ingest: &Ingest, sku: &str) {
    ingest
        .env
        .pool
        .get()
        .await
        .unwrap()
        .execute(
            "UPDATE items SET description = 'edited in WOS', custom_fields = '{\"bin\": \"A-01\"}' \
             WHERE shop_domain = $1 AND sku = $2",
            &[&SHOP, &sku],
        )
        .await
        .unwrap();
}

async fn description_after_update(policy: FieldPolicy) -> (Option<String>, Option<String>) {
    let mut ingest =
        Ingest::start_with(FieldPolicies::default().with(ItemField::Description, policy)).await;
    ingest
        .send(
            "products/create",
            &product(1, "Tee", 1, &[v(11, "TEE-S", 101)]),
            "w-1",
        )
        .await;
    let created = ingest.fields("TEE-S").await[0].clone();
    edit_in_wos(&ingest, "TEE-S").await;
    ingest
        .send(
            "products/update",
            &product(1, "Tee (new title)", 2, &[v(11, "TEE-S", 101)]),
            "w-2",
        )
        .await;
    let after = ingest.fields("TEE-S").await[0].clone();
    let custom: serde_json::Value = ingest
        .env
        .pool
        .get()
        .await
        .unwrap()
        .query_one("SELECT custom_fields FROM items WHERE sku = 'TEE-S'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        custom,
        serde_json::json!({"bin": "A-01"}),
        "custom_fields never written from Shopify"
    );
    ingest.stop().await;
    (created, after)
}

#[tokio::test]
async fn under_shopify_a_wos_edit_is_overwritten_by_the_next_update() {
    let (created, after) = description_after_update(FieldPolicy::Shopify).await;
    assert_eq!(created.as_deref(), Some("Tee - XL"));
    assert_eq!(after.as_deref(), Some("Tee (new title) - XL"));
}

#[tokio::test]
async fn under_wos_shopify_never_writes_the_field() {
    let (created, after) = description_after_update(FieldPolicy::Wos).await;
    assert_eq!(created, None);
    assert_eq!(after.as_deref(), Some("edited in WOS"));
}

#[tokio::test]
async fn under_shopify_initial_the_field_is_written_once_then_owned_by_wos() {
    let (created, after) = description_after_update(FieldPolicy::ShopifyInitial).await;
    assert_eq!(created.as_deref(), Some("Tee - XL"));
    assert_eq!(after.as_deref(), Some("edited in WOS"));
}

#[tokio::test]
async fn every_field_comes_from_the_mapped_variant() {
    let mut ingest = Ingest::start().await;
    let mut default_variant = v(11, "PLAIN", 101);
    default_variant.title = "Default Title";
    ingest
        .send(
            "products/create",
            &product(1, "Plain mug", 1, &[default_variant]),
            "w-1",
        )
        .await;
    let [description, barcode, price, vendor, product_type] = ingest.fields("PLAIN").await;
    assert_eq!(
        description.as_deref(),
        Some("Plain mug"),
        "Shopify's Default Title is left out"
    );
    assert_eq!(barcode.as_deref(), Some("bc-11"));
    assert_eq!(price.as_deref(), Some("19.99"));
    assert_eq!(vendor.as_deref(), Some("Acme"));
    assert_eq!(product_type.as_deref(), Some("Shirts"));
    assert_eq!(ingest.items_counter("created"), 1);
    ingest.stop().await;
}
