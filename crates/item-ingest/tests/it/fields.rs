//! Descriptive fields that do not parse: the item is still created and mapped; the field is
//! stored as the value it had (null for a new variant), logged and counted.

use serde_json::json;

use crate::harness::{Ingest, SHOP, product, v};

const UNREADABLE: &str = "wos_sync_unreadable_fields_total";

#[tokio::test]
async fn an_unreadable_price_costs_neither_the_item_nor_its_mapping() {
    let mut ingest = Ingest::start().await;
    let mut body = product(1, "Tee", 1, &[v(11, "TEE-S", 101), v(12, "TEE-M", 102)]);
    body["variants"][0]["price"] = json!("example string");
    body["variants"][1]["barcode"] = json!(12345);
    body["vendor"] = json!({"name": "Acme"});
    ingest.send("products/create", &body, "w-1").await;

    assert_eq!(ingest.messages("dead_lettered"), 0, "not dead-lettered");
    assert_eq!(ingest.mapping("TEE-S").await, Some(Some(101)));
    assert_eq!(ingest.mapping("TEE-M").await, Some(Some(102)));
    let [description, barcode, price, vendor, product_type] = ingest.fields("TEE-S").await;
    assert_eq!(description.as_deref(), Some("Tee - XL"));
    assert_eq!(barcode.as_deref(), Some("bc-11"));
    assert_eq!(price, None, "an unreadable price of a new variant is null");
    assert_eq!(
        vendor, None,
        "an unreadable vendor of a new product is null"
    );
    assert_eq!(product_type.as_deref(), Some("Shirts"));
    let [_, barcode, price, ..] = ingest.fields("TEE-M").await;
    assert_eq!(barcode, None);
    assert_eq!(price.as_deref(), Some("19.99"));

    for field in ["price", "barcode", "vendor"] {
        assert_eq!(
            ingest.metric(UNREADABLE, &[("shop", SHOP), ("field", field)]),
            1.0,
            "{field} counted"
        );
    }
    ingest.stop().await;
}

#[tokio::test]
async fn an_unreadable_field_keeps_the_value_it_had() {
    let mut ingest = Ingest::start().await;
    ingest
        .send(
            "products/create",
            &product(1, "Tee", 1, &[v(11, "TEE-S", 101)]),
            "w-1",
        )
        .await;
    let mut update = product(1, "Tee v2", 2, &[v(11, "TEE-S", 101)]);
    update["variants"][0]["price"] = json!("example string");
    update["variants"][0]["barcode"] = json!(["bc"]);
    update["product_type"] = json!(7);
    ingest.send("products/update", &update, "w-2").await;

    assert_eq!(ingest.messages("dead_lettered"), 0);
    assert_eq!(ingest.mapping("TEE-S").await, Some(Some(101)));
    let [description, barcode, price, vendor, product_type] = ingest.fields("TEE-S").await;
    assert_eq!(
        description.as_deref(),
        Some("Tee v2 - XL"),
        "readable fields still update"
    );
    assert_eq!(barcode.as_deref(), Some("bc-11"));
    assert_eq!(price.as_deref(), Some("19.99"));
    assert_eq!(vendor.as_deref(), Some("Acme"));
    assert_eq!(product_type.as_deref(), Some("Shirts"));
    assert_eq!(
        ingest.metric(UNREADABLE, &[("shop", SHOP)]),
        3.0,
        "price, barcode and product_type counted"
    );
    ingest.stop().await;
}
