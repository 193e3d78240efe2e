//! Products with more than 100 variants: a webhook details the first 100 (by position) and
//! lists every variant in `variant_gids` with its `updated_at`; item-ingest reads the others
//! from the shop's Admin API (`nodes(ids:)`) and settles their SKUs from what Shopify says.

use std::time::Duration;

use serde_json::{Value, json};
use shopify_sandbox::{
    CreatedProduct, FaultAction, FaultConfig, FaultRule, Operations, ProductSpec, VariantSpec,
    VariantUpdate,
};

use crate::{
    harness::{Ingest, SHOP, V, product, ts, v},
    stack::Stack,
};

fn big_product(stack: &Stack, variants: usize) -> CreatedProduct {
    stack
        .sandbox
        .create_product(
            SHOP,
            ProductSpec {
                title: "Big".into(),
                vendor: None,
                product_type: None,
                status: None,
                body_html: None,
                variants: (1..=variants)
                    .map(|n| VariantSpec::sku(format!("BIG-{n:03}")))
                    .collect(),
            },
        )
        .unwrap()
}

fn webhook(stack: &Stack, created: &CreatedProduct) -> Value {
    stack
        .sandbox
        .product_webhook(SHOP, created.product_id)
        .unwrap()
        .unwrap()
}

fn detailed_ids(payload: &Value) -> Vec<u64> {
    payload["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_u64().unwrap())
        .collect()
}

async fn mapped_items(ingest: &Ingest) -> i64 {
    ingest
        .env
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
        .get(0)
}

fn reads(ingest: &Ingest) -> f64 {
    ingest.metric(
        "wos_sync_shopify_requests_total",
        &[
            ("shop", SHOP),
            ("operation", "VariantRefresh"),
            ("status", "200"),
        ],
    )
}

#[tokio::test]
async fn a_product_with_150_variants_maps_a_rename_at_130_and_a_creation_at_140() {
    let mut stack = Stack::start().await;
    let created = big_product(&stack, 149);
    let create = webhook(&stack, &created);
    assert_eq!(create["variants"].as_array().unwrap().len(), 100);
    stack.ingest.send("products/create", &create, "w-1").await;
    // The 49 variants beyond the detailed ones are read from the Admin API.
    testkit::wait_until(Duration::from_secs(20), "149 items mapped", || async {
        mapped_items(&stack.ingest).await == 149
    })
    .await;
    for n in [1, 100, 101, 130, 149] {
        let variant = &created.variants[n - 1];
        assert_eq!(
            stack.ingest.mapping(&format!("BIG-{n:03}")).await,
            Some(Some(variant.inventory_item_id.0)),
            "BIG-{n:03}"
        );
    }
    assert_eq!(reads(&stack.ingest), 1.0, "one nodes(ids:) call for 49 ids");

    // Variant 130 is renamed and a variant is created at position 140: neither is detailed.
    let renamed = &created.variants[129];
    stack
        .sandbox
        .update_variant(
            SHOP,
            renamed.variant_id,
            VariantUpdate {
                sku: Some(Some("BIG-130-R".into())),
                ..VariantUpdate::default()
            },
        )
        .unwrap();
    let added = stack
        .sandbox
        .add_variant_at(SHOP, created.product_id, 140, VariantSpec::sku("NEW-140"))
        .unwrap();
    let update = webhook(&stack, &created);
    let detailed = detailed_ids(&update);
    assert!(!detailed.contains(&renamed.variant_id.0) && !detailed.contains(&added.variant_id.0));
    assert_eq!(
        update["variant_gids"][0]["admin_graphql_api_id"],
        json!(added.variant_id.gid()),
        "variant_gids lists the newest first"
    );

    // While Shopify's answer is held, the renamed variant is no candidate: BIG-130 is unmapped
    // (its adjustments park) rather than left on a variant that no longer carries it.
    stack
        .sandbox
        .set_faults(FaultConfig {
            rules: vec![FaultRule {
                operations: Operations::Queries,
                ..FaultRule::next(1, FaultAction::Hold)
            }],
            ..FaultConfig::none()
        })
        .unwrap();
    stack.ingest.send("products/update", &update, "w-2").await;
    assert_eq!(stack.ingest.mapping("BIG-130").await, Some(None));
    assert_eq!(stack.ingest.mapping("BIG-130-R").await, None);
    testkit::wait_until(Duration::from_secs(10), "the read is held", || async {
        stack.sandbox.held_requests() == 1
    })
    .await;
    stack.sandbox.release_held();

    testkit::wait_until(Duration::from_secs(20), "the read applied", || async {
        stack.ingest.mapping("NEW-140").await == Some(Some(added.inventory_item_id.0))
    })
    .await;
    assert_eq!(
        stack.ingest.mapping("BIG-130-R").await,
        Some(Some(renamed.inventory_item_id.0))
    );
    assert_eq!(stack.ingest.mapping("BIG-130").await, Some(None));
    for (n, variant) in created.variants.iter().enumerate() {
        if n != 129 {
            assert_eq!(
                stack.ingest.mapping(&format!("BIG-{:03}", n + 1)).await,
                Some(Some(variant.inventory_item_id.0)),
                "BIG-{:03} untouched",
                n + 1
            );
        }
    }
    assert_eq!(
        reads(&stack.ingest),
        2.0,
        "one more call, for the two changed variants"
    );
    // The same listing again asks for nothing: what was read is recorded.
    stack
        .ingest
        .send("products/update", &webhook(&stack, &created), "w-3")
        .await;
    let pending: i64 = stack
        .ingest
        .env
        .pool
        .get()
        .await
        .unwrap()
        .query_one("SELECT count(*) FROM variant_refreshes", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(pending, 0);
    assert_eq!(reads(&stack.ingest), 2.0);
    assert_eq!(stack.ingest.messages("dead_lettered"), 0);
    stack.stop().await;
}

#[tokio::test]
async fn variants_beyond_the_detailed_hundred_are_read_in_pages() {
    let mut stack = Stack::start().await;
    let created = big_product(&stack, 260);
    let create = webhook(&stack, &created);
    stack.ingest.send("products/create", &create, "w-1").await;
    testkit::wait_until(Duration::from_secs(30), "260 items mapped", || async {
        mapped_items(&stack.ingest).await == 260
    })
    .await;
    assert_eq!(
        reads(&stack.ingest),
        2.0,
        "160 ids in pages of at most 100 per nodes(ids:) call"
    );
    assert_eq!(
        stack.ingest.mapping("BIG-260").await,
        Some(Some(created.variants[259].inventory_item_id.0))
    );
    stack.stop().await;
}

/// Shopify's REST product JSON detailing `detailed` and listing `listed` (variant, second of
/// its `updated_at`) as `variant_gids`.
fn listed_product(updated: u32, detailed: &[V], listed: &[(u64, u32)]) -> Value {
    let mut body = product(1, "Big", updated, detailed);
    body["variant_gids"] = json!(
        listed
            .iter()
            .map(|(id, second)| json!({
                "admin_graphql_api_id": format!("gid://shopify/ProductVariant/{id}"),
                "updated_at": ts(*second),
            }))
            .collect::<Vec<_>>()
    );
    body
}

#[tokio::test]
async fn without_an_access_token_webhooks_are_ingested_and_unread_variants_are_conflicts() {
    // The harness's shop has no token (and no reachable Admin API).
    let mut ingest = Ingest::start().await;
    let all: Vec<V> = (0..150u64)
        .map(|n| {
            v(
                1000 + n,
                Box::leak(format!("BIG-{n:03}").into_boxed_str()),
                5000 + n,
            )
        })
        .collect();
    let listing: Vec<(u64, u32)> = all.iter().map(|variant| (variant.id, 1)).collect();
    ingest
        .send(
            "products/create",
            &listed_product(1, &all[..100], &listing),
            "w-1",
        )
        .await;
    assert_eq!(
        ingest.item_count().await,
        100,
        "the detailed variants are ingested"
    );
    // The next update details the other 50 and lists BIG-010 (not detailed) as changed.
    let mut listing: Vec<(u64, u32)> = all.iter().map(|variant| (variant.id, 1)).collect();
    listing[10].1 = 2;
    ingest
        .send(
            "products/update",
            &listed_product(2, &all[100..], &listing),
            "w-2",
        )
        .await;
    assert_eq!(ingest.item_count().await, 150);
    assert_eq!(
        ingest.mapping("BIG-010").await,
        Some(None),
        "held until Shopify says what variant 1010 carries now"
    );
    testkit::wait_until(Duration::from_secs(10), "the read failed", || async {
        ingest.metric(
            "wos_sync_variant_refreshes_total",
            &[("shop", SHOP), ("outcome", "failed")],
        ) >= 1.0
    })
    .await;
    testkit::wait_until(Duration::from_secs(10), "counted as a conflict", || async {
        ingest.conflicts() == 1
    })
    .await;
    let conflicts = item_ingest::store::list_conflicts(&ingest.env.pool, SHOP)
        .await
        .unwrap();
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].sku, "BIG-010");
    assert_eq!(
        conflicts[0].reasons,
        [item_ingest::store::ConflictReason::AwaitingShopify]
    );
    let error: String = ingest
        .env
        .pool
        .get()
        .await
        .unwrap()
        .query_one("SELECT last_error FROM variant_refreshes", &[])
        .await
        .unwrap()
        .get(0);
    assert!(error.contains("ACME_SHOPIFY_TOKEN"), "{error}");
    assert_eq!(ingest.messages("dead_lettered"), 0);
    ingest.stop().await;
}
