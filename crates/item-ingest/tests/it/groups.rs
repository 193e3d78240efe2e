//! Groups of webhooks in one transaction (`store::ingest` with several webhooks, as the
//! consumer runtime's grouped commits give them): order within the group, duplicates, and a
//! group of thousands of SKUs.

use chrono::Utc;
use item_ingest::{event::read_event, store::ingest};
use lapin::{BasicProperties, types::FieldTable};
use model::config::{FieldPolicies, ShopDirectory};
use platform::amqp::{consumer::Incoming, headers::set_str};
use serde_json::{Value, json};
use testkit::TestEnv;

use crate::harness::{SHOP, product, shop, ts, v};

fn delivery(topic: &str, body: &Value, webhook_id: &str) -> Incoming {
    let mut headers = FieldTable::default();
    set_str(&mut headers, "x-shopify-topic", topic);
    set_str(&mut headers, "x-shopify-shop-domain", SHOP);
    set_str(&mut headers, "x-shopify-webhook-id", webhook_id);
    Incoming {
        body: body.to_string().into_bytes(),
        properties: BasicProperties::default().with_headers(headers),
        exchange: String::new(),
        routing_key: String::new(),
        redelivered: false,
        attempt: 1,
    }
}

async fn mapping(env: &TestEnv, sku: &str) -> Option<Option<i64>> {
    env.pool
        .get()
        .await
        .unwrap()
        .query_opt(
            "SELECT inventory_item_id FROM items WHERE shop_domain = $1 AND sku = $2",
            &[&SHOP, &sku],
        )
        .await
        .unwrap()
        .map(|row| row.get(0))
}

#[tokio::test]
async fn webhooks_of_one_product_in_a_group_apply_in_order_and_a_duplicate_is_told_apart() {
    let env = TestEnv::new().await;
    platform::db::migrate(&env.pool).await.unwrap();
    let shops = ShopDirectory::new(vec![shop(FieldPolicies::default())]).unwrap();
    // A create, then an update renaming the SKU, then the create again (a redelivery), in one
    // group: the update applies to the mirror the create left, the redelivery is a duplicate.
    let messages = [
        delivery(
            "products/create",
            &product(1, "Tee", 1, &[v(11, "TEE-S", 101)]),
            "create",
        ),
        delivery(
            "products/update",
            &product(1, "Tee", 2, &[v(11, "TEE-SMALL", 101)]),
            "update",
        ),
        delivery(
            "products/create",
            &product(1, "Tee", 1, &[v(11, "TEE-S", 101)]),
            "create",
        ),
    ];
    let webhooks: Vec<_> = messages
        .iter()
        .map(|m| read_event(m, &shops, Utc::now()).unwrap())
        .collect();
    let reports = ingest(&env.pool, &webhooks, "wos-sync.item-mappings")
        .await
        .unwrap();
    let duplicates: Vec<bool> = reports.iter().map(|r| r.duplicate).collect();
    assert_eq!(duplicates, [false, false, true]);
    assert_eq!(mapping(&env, "TEE-SMALL").await, Some(Some(101)));
    // The old SKU's item (created and left in one transaction, as the webhooks one by one
    // would) is not on the variant any more.
    assert_ne!(mapping(&env, "TEE-S").await, Some(Some(101)));
}

#[tokio::test]
async fn a_group_carrying_seven_thousand_skus_is_ingested_in_one_transaction() {
    // 7 products x 1,000 variants: every statement is set-based (arrays of 7,000 rows, not
    // 7,000 statements or parameters), and the SKU locks are striped (at most 256).
    let env = TestEnv::new().await;
    platform::db::migrate(&env.pool).await.unwrap();
    let shops = ShopDirectory::new(vec![shop(FieldPolicies::default())]).unwrap();
    let messages: Vec<Incoming> = (0..7u64)
        .map(|p| {
            let variants: Vec<Value> = (0..1000u64)
                .map(|n| {
                    let id = 1_000_000 + p * 10_000 + n;
                    json!({
                        "id": id, "product_id": 100 + p, "title": format!("V{n}"),
                        "sku": format!("BIG-{p}-{n}"), "price": "1.00",
                        "inventory_item_id": id + 50_000_000,
                        "created_at": ts(0), "updated_at": ts(1),
                    })
                })
                .collect();
            let body = json!({
                "id": 100 + p, "title": format!("Big {p}"), "created_at": ts(0),
                "updated_at": ts(1), "variants": variants,
            });
            delivery("products/create", &body, &format!("big-{p}"))
        })
        .collect();
    let webhooks: Vec<_> = messages
        .iter()
        .map(|m| read_event(m, &shops, Utc::now()).unwrap())
        .collect();
    let reports = ingest(&env.pool, &webhooks, "wos-sync.item-mappings")
        .await
        .unwrap();
    let written: usize = reports.iter().map(|r| r.items.len()).sum();
    assert_eq!(written, 7000);
    let items: i64 = env
        .pool
        .get()
        .await
        .unwrap()
        .query_one(
            "SELECT count(*) FROM items WHERE inventory_item_id IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(items, 7000);
}
