//! Mappings WOS or an earlier integration wrote, WOS writing items concurrently, and the
//! seed's option of pinning `inventory_item_id`.

use std::time::Duration;

use model::config::FieldPolicies;
use serde_json::json;

use crate::harness::{Ingest, SHOP, product, v};

async fn set_mapping(ingest: &Ingest, sku: &str, item: Option<i64>) {
    ingest
        .env
        .pool
        .get()
        .await
        .unwrap()
        .execute(
            "INSERT INTO items (shop_domain, sku, inventory_item_id) VALUES ($1, $2, $3) \
             ON CONFLICT (shop_domain, sku) DO UPDATE SET inventory_item_id = EXCLUDED.inventory_item_id",
            &[&SHOP, &sku, &item],
        )
        .await
        .unwrap();
}

async fn conflicted_skus(ingest: &Ingest) -> Vec<String> {
    item_ingest::store::list_conflicts(&ingest.env.pool, SHOP)
        .await
        .unwrap()
        .into_iter()
        .map(|conflict| conflict.sku)
        .collect()
}

#[tokio::test]
async fn an_item_kept_unverified_while_a_live_variant_carries_its_sku_is_a_conflict() {
    let mut ingest = Ingest::start().await;
    // Mapped by WOS (or the old integration) to an inventory item the mirror has never seen.
    set_mapping(&ingest, "TEE-S", Some(555)).await;
    ingest
        .send(
            "products/create",
            &product(1, "Tee", 1, &[v(11, "TEE-S", 101)]),
            "w-1",
        )
        .await;
    assert_eq!(
        ingest.mapping("TEE-S").await,
        Some(Some(555)),
        "kept unverified"
    );
    assert_eq!(ingest.conflicts(), 1, "counted in wos_sync_sku_conflicts");
    assert_eq!(conflicted_skus(&ingest).await, ["TEE-S"], "and listed");

    // WOS points it at the live variant: no conflict left after the next webhook.
    set_mapping(&ingest, "TEE-S", Some(101)).await;
    ingest
        .send(
            "products/update",
            &product(1, "Tee v2", 2, &[v(11, "TEE-S", 101)]),
            "w-2",
        )
        .await;
    assert_eq!(ingest.conflicts(), 0);
    assert!(conflicted_skus(&ingest).await.is_empty());
    ingest.stop().await;
}

#[tokio::test]
async fn an_item_wos_inserts_while_a_webhook_creates_it_keeps_what_wos_wrote() {
    let policies = FieldPolicies::default().with(
        model::config::ItemField::Description,
        model::config::FieldPolicy::Wos,
    );
    let mut ingest = Ingest::start_with(policies).await;
    // WOS inserts the item and holds its transaction open.
    let mut wos = ingest.env.pool.get().await.unwrap();
    let wos_tx = wos.transaction().await.unwrap();
    wos_tx
        .execute(
            "INSERT INTO items (shop_domain, sku, description, inventory_item_id) \
             VALUES ($1, 'TEE-S', 'from WOS', 555)",
            &[&SHOP],
        )
        .await
        .unwrap();
    // item-ingest creates the same item meanwhile: it must end up waiting for WOS's row.
    ingest
        .publish(
            "products/create",
            &product(1, "Tee", 1, &[v(11, "TEE-S", 101)]),
            "w-1",
        )
        .await;
    let watcher = ingest.env.pool.get().await.unwrap();
    testkit::wait_until(
        Duration::from_secs(20),
        "item-ingest waiting for WOS's uncommitted row",
        || async {
            watcher
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity \
                     WHERE datname = current_database() AND wait_event_type = 'Lock'",
                    &[],
                )
                .await
                .unwrap()
                .get::<_, i64>(0)
                > 0
        },
    )
    .await;
    wos_tx.commit().await.unwrap();
    ingest.wait_handled().await;

    assert_eq!(ingest.messages("dead_lettered"), 0);
    assert_eq!(
        ingest.fields("TEE-S").await[0].as_deref(),
        Some("from WOS"),
        "a `wos` field is never written from Shopify"
    );
    assert_eq!(
        ingest.mapping("TEE-S").await,
        Some(Some(555)),
        "WOS's mapping is settled by the mapping rules (kept unverified), not overwritten"
    );
    assert_eq!(ingest.items_counter("created"), 0);
    ingest.stop().await;
}

/// A shop's field policies as read from the configuration file.
fn policies(fields: &str) -> FieldPolicies {
    let document: toml::Table = format!(
        "[[shops]]\ndomain = \"{SHOP}\"\napi_version = \"2026-04\"\n\
         admin_base_url = \"http://127.0.0.1:1\"\naccess_token_env = \"ACME_SHOPIFY_TOKEN\"\n\
         [shops.fields]\n{fields}\n"
    )
    .parse()
    .unwrap();
    model::config::parse_shops(&document)
        .unwrap_or_else(|err| panic!("configuration refused: {err}"))
        .remove(0)
        .fields
}

#[tokio::test]
async fn under_shopify_initial_the_mapping_is_filled_once_and_never_repointed() {
    let mut ingest = Ingest::start_with(policies("inventory_item_id = \"shopify_initial\"")).await;
    ingest
        .send(
            "products/create",
            &product(1, "Tee", 1, &[v(11, "TEE-S", 101)]),
            "w-1",
        )
        .await;
    assert_eq!(
        ingest.mapping("TEE-S").await,
        Some(Some(101)),
        "filled when empty"
    );

    // The variant is renamed: the mapping rules would clear TEE-S; pinned, it stays, and the
    // operator sees a conflict.
    ingest
        .send(
            "products/update",
            &product(1, "Tee", 2, &[v(11, "TEE-X", 101)]),
            "w-2",
        )
        .await;
    assert_eq!(
        ingest.mapping("TEE-S").await,
        Some(Some(101)),
        "not cleared"
    );
    assert_eq!(ingest.mapping("TEE-X").await, Some(Some(101)));
    assert_eq!(ingest.conflicts(), 1);
    assert_eq!(conflicted_skus(&ingest).await, ["TEE-S"]);

    // Another live variant carries TEE-S: still not repointed.
    ingest
        .send(
            "products/create",
            &product(2, "Tee again", 3, &[v(21, "TEE-S", 201)]),
            "w-3",
        )
        .await;
    assert_eq!(ingest.mapping("TEE-S").await, Some(Some(101)));

    // WOS empties it: the next webhook fills it by the mapping rules.
    set_mapping(&ingest, "TEE-S", None).await;
    ingest
        .send(
            "products/update",
            &product(2, "Tee again", 4, &[v(21, "TEE-S", 201)]),
            "w-4",
        )
        .await;
    assert_eq!(ingest.mapping("TEE-S").await, Some(Some(201)));
    assert_eq!(ingest.conflicts(), 0);

    // A deleted variant does not clear a pinned mapping either.
    ingest
        .send("products/delete", &json!({"id": 2}), "w-5")
        .await;
    assert_eq!(ingest.mapping("TEE-S").await, Some(Some(201)));
    assert_eq!(ingest.conflicts(), 1, "pinned to a deleted variant");
    ingest.stop().await;
}

#[tokio::test]
async fn under_wos_item_ingest_never_writes_the_mapping() {
    let mut ingest = Ingest::start_with(policies("inventory_item_id = \"wos\"")).await;
    ingest
        .send(
            "products/create",
            &product(1, "Tee", 1, &[v(11, "TEE-S", 101)]),
            "w-1",
        )
        .await;
    assert_eq!(
        ingest.mapping("TEE-S").await,
        Some(None),
        "the item is created, its mapping left to WOS"
    );
    assert_eq!(ingest.fields("TEE-S").await[0].as_deref(), Some("Tee - XL"));
    set_mapping(&ingest, "TEE-S", Some(101)).await;
    ingest
        .send(
            "products/update",
            &product(1, "Tee", 2, &[v(11, "TEE-X", 101)]),
            "w-2",
        )
        .await;
    assert_eq!(ingest.mapping("TEE-S").await, Some(Some(101)));
    assert_eq!(ingest.mapping("TEE-X").await, Some(None));
    assert_eq!(
        ingest.conflicts(),
        1,
        "TEE-S's variant no longer carries it"
    );
    ingest.stop().await;
}

#[tokio::test]
async fn a_mapping_wos_wrote_shows_as_a_conflict_at_the_next_rebuild_and_heals_at_the_next_webhook()
{
    let mut ingest = Ingest::start().await;
    let tee = product(1, "Tee", 1, &[v(11, "TEE-S", 101), v(12, "TEE-M", 102)]);
    ingest.send("products/create", &tee, "w-1").await;
    // WOS points TEE-S at TEE-M's inventory item: two items on one variant.
    set_mapping(&ingest, "TEE-S", Some(102)).await;
    // Conflicts are recomputed from the mirror at start (and every 10 minutes).
    ingest.stop_service().await;
    ingest.start_service();
    testkit::wait_until(Duration::from_secs(10), "the rebuild at start", || async {
        ingest.conflicts() == 1
    })
    .await;
    let conflicts = item_ingest::store::list_conflicts(&ingest.env.pool, SHOP)
        .await
        .unwrap();
    assert_eq!(conflicts[0].sku, "TEE-S");
    assert_eq!(
        conflicts[0].reasons,
        [item_ingest::store::ConflictReason::NotCarried]
    );
    // The next webhook of the product heals it.
    let tee = product(1, "Tee", 2, &[v(11, "TEE-S", 101), v(12, "TEE-M", 102)]);
    ingest.send("products/update", &tee, "w-2").await;
    assert_eq!(ingest.mapping("TEE-S").await, Some(Some(101)));
    assert_eq!(ingest.mapping("TEE-M").await, Some(Some(102)));
    assert_eq!(ingest.conflicts(), 0);
    ingest.stop().await;
}
