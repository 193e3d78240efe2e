//! The admin API under /sandbox, as the quick start uses it.

use model::ids::{InventoryItemId, LocationId};
use serde_json::{Value, json};
use shopify_sandbox::{Sandbox, SandboxConfig, client::HttpClient};

use crate::{ADJUST, V};

#[tokio::test]
async fn shops_locations_products_inventory_log_and_reset_over_http() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let client = HttpClient::new(std::time::Duration::from_secs(5));
    let base = sandbox.base_url();
    let post = |path: &str, body: Value| {
        let client = client.clone();
        let url = format!("{base}{path}");
        async move { client.post_json(&url, &[], &body).await.unwrap() }
    };
    let r = post(
        "/sandbox/shops",
        json!({"domain": "quick.myshopify.com", "access_token": "shpat_q"}),
    )
    .await;
    assert_eq!(r.status, 201);
    let r = post(
        "/sandbox/shops",
        json!({"domain": "quick.myshopify.com", "access_token": "shpat_x"}),
    )
    .await;
    assert_eq!(r.status, 409);
    let r = post(
        "/sandbox/shops/quick.myshopify.com/locations",
        json!({"name": "MAIN", "id": 68845568042_u64}),
    )
    .await;
    assert_eq!(r.json()["gid"], "gid://shopify/Location/68845568042");
    let r = post(
        "/sandbox/shops/quick.myshopify.com/products",
        json!({"title": "Tee", "variants": [{"sku": "T-1", "stock": [{"location_id": 68845568042_u64, "available": 4}]}]}),
    )
    .await;
    assert_eq!(r.status, 201);
    let item = r.json()["variants"][0]["inventory_item_id"]
        .as_u64()
        .unwrap();
    let r = post(
        "/sandbox/shops/nowhere.myshopify.com/locations",
        json!({"name": "X"}),
    )
    .await;
    assert_eq!(r.status, 404);
    let r = post(
        "/sandbox/shops/quick.myshopify.com/products",
        json!({"title": "x", "bogus": 1}),
    )
    .await;
    assert_eq!(r.status, 400);

    let vars = json!({"input": {"name": "available", "reason": "received", "changes": [
        {"inventoryItemId": format!("gid://shopify/InventoryItem/{item}"), "locationId": "gid://shopify/Location/68845568042", "delta": 3, "changeFromQuantity": null}]},
        "idempotencyKey": "q-1"});
    client
        .graphql(&base, V, "shpat_q", ADJUST, &vars)
        .await
        .unwrap();

    // Orders commit stock outside the API: on_hand counts it, incoming does not.
    sandbox
        .set_quantity(
            "quick.myshopify.com",
            InventoryItemId(item),
            LocationId(68845568042),
            "committed",
            2,
        )
        .unwrap();
    sandbox
        .set_quantity(
            "quick.myshopify.com",
            InventoryItemId(item),
            LocationId(68845568042),
            "incoming",
            9,
        )
        .unwrap();
    let inventory = client
        .get(&format!(
            "{base}/sandbox/shops/quick.myshopify.com/inventory"
        ))
        .await
        .unwrap()
        .json();
    assert_eq!(inventory[0]["sku"], "T-1");
    assert_eq!(inventory[0]["quantities"]["available"], 7);
    assert_eq!(inventory[0]["quantities"]["committed"], 2);
    assert_eq!(inventory[0]["quantities"]["incoming"], 9);
    assert_eq!(inventory[0]["quantities"]["on_hand"], 9);
    let groups = client
        .get(&format!(
            "{base}/sandbox/shops/quick.myshopify.com/adjustment-groups"
        ))
        .await
        .unwrap()
        .json();
    assert_eq!(groups[0]["idempotency_key"], "q-1");
    assert_eq!(groups[0]["changes"][0]["name"], "available");
    assert_eq!(groups[0]["changes"][1]["name"], "on_hand");

    let r = post("/sandbox/reset", json!({})).await;
    assert_eq!(r.status, 200);
    let shops = client
        .get(&format!("{base}/sandbox/shops"))
        .await
        .unwrap()
        .json();
    assert_eq!(shops, json!([]));
    let r = client
        .graphql(&base, V, "shpat_q", "{ shop { id } }", &json!({}))
        .await
        .unwrap();
    assert_eq!(r.status, 401, "reset removed the shop and its token");
}

#[tokio::test]
async fn throttle_and_bucket_can_be_set_over_http() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    sandbox.create_shop("t.myshopify.com", "shpat_t").unwrap();
    let client = HttpClient::new(std::time::Duration::from_secs(5));
    let base = sandbox.base_url();
    let r = client
        .send(
            "PUT",
            &format!("{base}/sandbox/throttle"),
            &[],
            json!({"enabled": true, "bucket_size": 100.0, "restore_rate": 0.0})
                .to_string()
                .into_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let r = client
        .send(
            "PUT",
            &format!("{base}/sandbox/shops/t.myshopify.com/bucket"),
            &[],
            json!({"available": 0}).to_string().into_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let r = client
        .graphql(&base, V, "shpat_t", "{ shop { id } }", &json!({}))
        .await
        .unwrap();
    assert_eq!(r.json()["errors"][0]["extensions"]["code"], "THROTTLED");
    assert_eq!(
        r.json()["extensions"]["cost"]["throttleStatus"]["maximumAvailable"],
        100
    );
}
