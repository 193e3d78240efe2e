//! Signed product webhooks to a relay: the seed's clone walkthrough, as Shopify would send it.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::Bytes,
    http::{HeaderMap, StatusCode},
    routing::post,
};
use model::{
    signature::verify_webhook,
    webhook::{ProductEvent, parse_product_event},
};
use shopify_sandbox::{ProductSpec, Sandbox, SandboxConfig, VariantSpec, VariantUpdate};

type Received = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

/// A relay stand-in on a free port that records what it receives; it refuses the first
/// delivery so retries are exercised.
async fn relay() -> (String, Received) {
    let received: Received = Arc::default();
    let calls = Arc::new(Mutex::new(0u32));
    let store = Arc::clone(&received);
    let app = Router::new().route(
        "/webhooks/shopify",
        post(move |headers: HeaderMap, body: Bytes| {
            let store = Arc::clone(&store);
            let calls = Arc::clone(&calls);
            async move {
                let mut n = calls.lock().unwrap();
                *n += 1;
                if *n == 1 {
                    return StatusCode::SERVICE_UNAVAILABLE;
                }
                store.lock().unwrap().push((headers, body));
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/webhooks/shopify", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

#[tokio::test]
async fn the_clone_walkthrough_emits_signed_webhooks_item_ingest_can_parse() {
    let (url, received) = relay().await;
    let sandbox = Sandbox::start(SandboxConfig {
        webhook_url: Some(url),
        ..SandboxConfig::default()
    })
    .await
    .unwrap();
    let shop = "acme.myshopify.com";
    sandbox.create_shop(shop, "shpat_acme").unwrap();
    sandbox.set_webhook_secret(shop, Some("hush")).unwrap();
    let main = sandbox.create_location(shop, "MAIN").unwrap();
    let original = sandbox
        .create_product(
            shop,
            ProductSpec {
                title: "20A642".into(),
                variants: vec![VariantSpec::sku("20A642-XL").stocked_at(main, 5)],
                ..ProductSpec::default()
            },
        )
        .unwrap();
    // Clone (same SKU), fix the clone's SKU, touch the original, then clean up.
    let clone = sandbox
        .duplicate_product(shop, original.product_id, "20B611")
        .unwrap();
    sandbox
        .update_variant(
            shop,
            clone.variants[0].variant_id,
            VariantUpdate::sku("20B611-XL"),
        )
        .unwrap();
    sandbox
        .update_product(shop, original.product_id, Default::default())
        .unwrap();
    let extra = sandbox
        .add_variant(shop, clone.product_id, VariantSpec::sku("20B611-L"))
        .unwrap();
    sandbox.delete_variant(shop, extra.variant_id).unwrap();
    sandbox.delete_product(shop, clone.product_id).unwrap();
    assert!(sandbox.wait_for_webhooks(Duration::from_secs(10)).await);

    let received = received.lock().unwrap().clone();
    let topics: Vec<_> = received
        .iter()
        .map(|(h, _)| h["x-shopify-topic"].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        topics,
        [
            "products/create",
            "products/create",
            "products/update",
            "products/update",
            "products/update",
            "products/update",
            "products/delete"
        ]
    );
    let log = sandbox.webhook_deliveries();
    assert_eq!(
        log[0].attempts, 2,
        "the first delivery was refused once and retried"
    );
    assert!(log.iter().all(|d| d.delivered));
    for (headers, body) in &received {
        let header = |name: &str| headers[name].to_str().unwrap().to_owned();
        assert!(verify_webhook(
            b"hush",
            body,
            &header("x-shopify-hmac-sha256")
        ));
        assert_eq!(header("x-shopify-shop-domain"), shop);
        assert!(uuid::Uuid::parse_str(&header("x-shopify-webhook-id")).is_ok());
        for name in [
            "x-shopify-event-id",
            "x-shopify-triggered-at",
            "x-shopify-api-version",
        ] {
            assert!(!header(name).is_empty(), "{name}");
        }
        parse_product_event(&header("x-shopify-topic"), body).expect("item-ingest parses it");
    }
    let event = |i: usize| {
        parse_product_event(
            received[i].0["x-shopify-topic"].to_str().unwrap(),
            &received[i].1,
        )
        .unwrap()
    };
    let ProductEvent::Upsert(cloned) = event(1) else {
        panic!("upsert")
    };
    assert_eq!(
        cloned.variants[0].sku.as_deref(),
        Some("20A642-XL"),
        "the clone copies the SKU"
    );
    assert_eq!(
        cloned.variants[0].inventory_item_id,
        Some(clone.variants[0].inventory_item_id)
    );
    let ProductEvent::Upsert(renamed) = event(2) else {
        panic!("upsert")
    };
    assert_eq!(renamed.variants[0].sku.as_deref(), Some("20B611-XL"));
    let ProductEvent::Upsert(touched) = event(3) else {
        panic!("upsert")
    };
    assert_eq!(touched.id, original.product_id);
    let ProductEvent::Upsert(shrunk) = event(5) else {
        panic!("upsert")
    };
    assert_eq!(shrunk.listed_variant_ids.as_ref().map(Vec::len), Some(1));
    assert_eq!(
        event(6),
        ProductEvent::Delete {
            product_id: clone.product_id
        }
    );
}

#[tokio::test]
async fn no_secret_or_no_url_means_no_webhooks() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    sandbox.create_shop("a.myshopify.com", "t").unwrap();
    sandbox
        .set_webhook_secret("a.myshopify.com", Some("s"))
        .unwrap();
    sandbox
        .create_product(
            "a.myshopify.com",
            ProductSpec {
                title: "x".into(),
                ..ProductSpec::default()
            },
        )
        .unwrap();
    assert!(sandbox.webhook_deliveries().is_empty());
}
