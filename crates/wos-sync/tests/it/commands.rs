//! `migrate`, `topology`, `dlq list|show|purge|replay` on item-ingest's DLQ, `publish`,
//! `parked`, `conflicts`, `status`: each against the real broker, database and sandbox.

use std::time::Duration;

use lapin::{
    BasicProperties,
    types::{AMQPValue, FieldArray, FieldTable},
};
use platform::amqp::headers::{header_str, header_u64, set_i64, set_str};
use serde_json::json;

use crate::harness::{MAIN, SHOP, STOCK, Setup, World, tx};

const INGEST_QUEUE: &str = "item-ingest.shopify-products";

#[tokio::test]
async fn migrate_and_topology_are_idempotent() {
    let world = World::new(Setup::default()).await;
    let run = world.cli(&["migrate", "--json"]).await;
    run.assert_code(0);
    // TestEnv migrated the database already.
    assert_eq!(run.json()["applied"], json!([]));
    for _ in 0..2 {
        let run = world.cli(&["topology", "--json"]).await;
        run.assert_code(0);
        let queues = run.json()["queues"].as_array().unwrap().len();
        assert_eq!(queues, 3);
    }
    for queue in world.env.names.work_queues() {
        world.env.queue_depth(&queue.dead_letter_queue()).await;
        world.env.queue_depth(&queue.retry_queue(3)).await;
        world.env.queue_depth(&queue.name).await;
    }
}

/// A dead letter as the consumer runtime and the broker leave it: our `x-error-*` headers, the
/// broker's `x-death` and `x-delivery-count`, and the relay's `x-shopify-*` headers.
fn ingest_dead_letter(id: &str) -> BasicProperties {
    let mut headers = FieldTable::default();
    set_str(&mut headers, "x-shopify-topic", "products/update");
    set_str(&mut headers, "x-shopify-shop-domain", SHOP);
    set_str(&mut headers, "x-error-kind", "malformed");
    set_str(
        &mut headers,
        "x-error",
        "shop `acme.myshopify.com` is not configured",
    );
    set_i64(&mut headers, "x-attempts", 3);
    set_str(&mut headers, "x-failed-at", "2026-01-01T00:00:00.000Z");
    set_str(&mut headers, "x-service", "item-ingest");
    set_i64(&mut headers, "x-delivery-count", 4);
    set_str(
        &mut headers,
        "x-first-death-queue",
        "item-ingest.shopify-products",
    );
    let mut death = FieldTable::default();
    set_str(&mut death, "queue", "item-ingest.shopify-products");
    headers.insert(
        "x-death".into(),
        AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::FieldTable(death)])),
    );
    BasicProperties::default()
        .with_message_id(id.into())
        .with_content_type("application/json".into())
        .with_headers(headers)
}

#[tokio::test]
async fn item_ingest_dead_letters_are_shown_purged_only_with_yes_and_republished_with_a_fresh_count()
 {
    let world = World::new(Setup::default()).await;
    world.cli(&["topology"]).await.assert_code(0);
    let queue = world.env.names.item_ingest_queue();
    let dlq = queue.dead_letter_queue();
    let body = br#"{"id": 1, "title": "Tee"}"#;
    for id in ["wh-1", "wh-2"] {
        world
            .env
            .publish("", &dlq, body, ingest_dead_letter(id))
            .await;
    }

    let shown = world
        .cli(&["dlq", "show", "--queue", INGEST_QUEUE, "wh-1"])
        .await;
    shown.assert_code(0);
    assert!(
        shown.stdout.contains("x-error-kind: malformed"),
        "{shown:?}"
    );
    assert!(
        shown.stdout.contains("x-shopify-topic: products/update"),
        "{shown:?}"
    );
    assert!(
        shown.stdout.contains("\"title\": \"Tee\""),
        "pretty body: {shown:?}"
    );
    // Messages given back reach the quorum queue's count shortly after the command exits.
    world
        .wait("show takes nothing away", || async {
            world.env.queue_depth(&dlq).await == 2
        })
        .await;

    let refused = world
        .cli(&["dlq", "purge", "--queue", INGEST_QUEUE, "wh-2"])
        .await;
    refused.assert_code(2);
    assert!(refused.stdout.contains("would remove wh-2"), "{refused:?}");
    assert!(refused.stderr.contains("--yes"), "{refused:?}");
    // Messages given back reach the quorum queue's count shortly after the command exits.
    world
        .wait("a purge without --yes takes nothing away", || async {
            world.env.queue_depth(&dlq).await == 2
        })
        .await;
    let purged = world
        .cli(&["dlq", "purge", "--queue", INGEST_QUEUE, "wh-2", "--yes"])
        .await;
    purged.assert_code(0);
    assert!(
        purged.stdout.contains("removed wh-2 (malformed"),
        "{purged:?}"
    );
    // Messages given back reach the quorum queue's count shortly after the command exits.
    world
        .wait("only wh-2 purged", || async {
            world.env.queue_depth(&dlq).await == 1
        })
        .await;

    let listed = world.cli(&["dlq", "list", "--json"]).await;
    listed.assert_code(0);
    let listed = listed.json();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["queue"], queue.name);
    assert_eq!(listed[0]["shop"], SHOP);
    let filtered = world
        .cli(&["dlq", "list", "--kind", "rejected", "--json"])
        .await;
    assert_eq!(filtered.json(), json!([]));
    let young = world
        .cli(&["dlq", "list", "--newer-than", "1h", "--json"])
        .await;
    assert_eq!(
        young.json(),
        json!([]),
        "failed in 2026-01: older than an hour"
    );

    let replayed = world
        .cli(&["dlq", "replay", "--queue", INGEST_QUEUE, "--all"])
        .await;
    replayed.assert_code(0);
    assert!(replayed.stdout.contains("replayed wh-1"), "{replayed:?}");
    assert_eq!(world.env.queue_depth(&dlq).await, 0);
    let copy = world
        .env
        .wait_and_drain(&queue.name, 1, Duration::from_secs(10))
        .await
        .remove(0)
        .delivery;
    assert_eq!(copy.data, body);
    assert_eq!(
        copy.properties.message_id().as_ref().unwrap().as_str(),
        "wh-1"
    );
    let headers = copy.properties.headers().as_ref();
    assert_eq!(
        header_str(headers, "x-shopify-topic"),
        Some("products/update")
    );
    assert!(header_str(headers, "x-replayed-at").is_some());
    for dropped in [
        "x-error-kind",
        "x-error",
        "x-failed-at",
        "x-service",
        "x-first-death-queue",
        "x-death",
    ] {
        assert!(
            !headers.is_some_and(|h| h.contains_key(dropped)),
            "{dropped} kept"
        );
    }
    assert_eq!(header_u64(headers, "x-attempts"), None);
    // The broker adds its own count to a quorum queue's delivery: a fresh one, not the 4.
    assert_eq!(header_u64(headers, "x-delivery-count").unwrap_or(0), 0);
}

#[tokio::test]
async fn publish_validates_then_publishes_and_parked_adjustments_are_listed_and_released() {
    let mut world = World::new(Setup::default()).await;
    world.start_pusher();
    world
        .wait_consuming(&world.env.names.adjustment_pusher_queue().name)
        .await;

    let invalid = world
        .cli(&[
            "publish",
            "put",
            "--shop",
            SHOP,
            "--sku",
            "SKU-1",
            "--warehouse",
            "MAIN",
            "--quantity",
            "0",
        ])
        .await;
    invalid.assert_code(2);
    assert!(invalid.stderr.contains("quantity"), "{invalid:?}");

    // SKU-1 has no WOS mapping yet: parked.
    let published = world
        .cli(&[
            "publish",
            "put",
            "--shop",
            SHOP,
            "--sku",
            "SKU-1",
            "--warehouse",
            "MAIN",
            "--quantity",
            "6",
            "--transaction-id",
            "pub-1",
            "--json",
        ])
        .await;
    published.assert_code(0);
    assert_eq!(published.json()[0]["transaction_id"], "pub-1");
    let file = std::env::temp_dir().join(format!("tx-{}.json", world.env.id));
    std::fs::write(
        &file,
        serde_json::to_vec(&json!([
            tx("pub-2", "put", "SKU-1", "EAST", json!({"quantity": 1})),
            tx("pub-3", "pull", "SKU-2", "MAIN", json!({"quantity": 2})),
        ]))
        .unwrap(),
    )
    .unwrap();
    world
        .cli(&["publish", "--file", file.to_str().unwrap()])
        .await
        .assert_code(0);
    let _ = std::fs::remove_file(&file);
    world
        .wait("three parked adjustments", || async {
            world
                .count("SELECT count(*) FROM adjustments WHERE state = 'parked'")
                .await
                == 3
        })
        .await;

    let parked = world
        .cli(&["parked", "list", "--shop", SHOP, "--json"])
        .await;
    parked.assert_code(0);
    let parked = parked.json();
    assert_eq!(parked[0]["sku"], "SKU-1");
    assert_eq!(parked[0]["adjustments"], 2);
    assert_eq!(parked[0]["net_delta"], 7);
    assert_eq!(parked[1]["sku"], "SKU-2");
    assert_eq!(parked[1]["net_delta"], -2);

    // WOS maps SKU-1 only (no announcement reaches the pusher): release pushes it now.
    world.map("SKU-1", Some(world.item("SKU-1"))).await;
    let released = world.cli(&["parked", "release", "--json"]).await;
    released.assert_code(0);
    let released = released.json();
    // The pusher's own sweep may have released it first; either way it is pushed once.
    let by_cli = released["released"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["adjustments"].as_u64().unwrap())
        .sum::<u64>();
    assert!(by_cli <= 2, "{released}");
    assert_eq!(released["still_parked"], 1);
    world
        .wait("SKU-1 pushed", || async {
            world.available("SKU-1", MAIN) == STOCK + 6
                && world.available("SKU-1", crate::harness::EAST) == STOCK + 1
        })
        .await;

    let status = world.cli(&["status", "--json"]).await;
    status.assert_code(0);
    let status = status.json();
    let shop = status["shops"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["shop"] == SHOP)
        .cloned()
        .unwrap();
    assert_eq!(shop["parked"], 1, "{status}");
    assert_eq!(shop["pending"], 0, "{status}");
    assert_eq!(shop["last_answer"]["outcome"], "applied", "{status}");
    assert_eq!(shop["throttle"]["maximum_available"], 2000.0, "{status}");
    assert_eq!(shop["sku_conflicts"], 0);
    let pusher_queue = status["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["queue"] == world.env.names.adjustment_pusher_queue().name)
        .cloned()
        .unwrap();
    assert_eq!(pusher_queue["consumers"], 1, "{status}");
    assert_eq!(pusher_queue["dead_letters"], 0, "{status}");
    let screen = world.cli(&["status"]).await;
    screen.assert_code(0);
    assert!(screen.stdout.contains("LAST SHOPIFY ANSWER"), "{screen:?}");
    world.stop_pusher().await;
}

#[tokio::test]
async fn conflicts_show_the_variant_each_item_points_at_and_why() {
    let world = World::new(Setup::default()).await;
    let client = world.env.pool.get().await.unwrap();
    // Two live variants carry SKU-1 (a clone); the item points at the original (the older).
    for (variant, item, created) in [
        (1_i64, 11_i64, "2026-01-01T00:00:00Z"),
        (2, 12, "2026-02-01T00:00:00Z"),
    ] {
        client
            .execute(
                "INSERT INTO shopify_variants (shop_domain, variant_id, product_id, sku, \
                     inventory_item_id, product_title, created_at, version) \
                 VALUES ($1, $2, $2, 'SKU-1', $3, 'Tee', $4::text::timestamptz, now())",
                &[&SHOP, &variant, &item, &created],
            )
            .await
            .unwrap();
    }
    world.map("SKU-1", Some(11)).await;
    let run = world.cli(&["conflicts", "--json"]).await;
    run.assert_code(0);
    let conflicts = run.json();
    assert_eq!(conflicts.as_array().unwrap().len(), 1, "{conflicts}");
    assert_eq!(conflicts[0]["sku"], "SKU-1");
    assert_eq!(conflicts[0]["mapped_inventory_item_id"], 11);
    assert_eq!(conflicts[0]["rule"]["basis"], "kept");
    assert_eq!(conflicts[0]["variants"].as_array().unwrap().len(), 2);
    let text = world.cli(&["conflicts", "--shop", SHOP]).await;
    text.assert_code(0);
    assert!(
        text.stdout.contains("-> variant 1 (inventory item 11)"),
        "{text:?}"
    );
    assert!(
        text.stdout.contains("already pointed at this variant"),
        "{text:?}"
    );
}
