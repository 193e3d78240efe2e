//! At-least-once, unordered delivery; bad input; every fixture; announcements.

use std::{path::PathBuf, time::Duration};

use model::announcement::{MappingAnnouncement, MappingChange};
use platform::{amqp::headers::header_str, amqp::topology::ITEM_MAPPINGS, outbox};
use serde_json::Value;

use crate::harness::{Ingest, product, v};

#[tokio::test]
async fn the_same_webhook_delivered_three_times_is_applied_once() {
    let mut ingest = Ingest::start().await;
    let body = product(1, "Tee", 1, &[v(11, "TEE-S", 101)]);
    for _ in 0..3 {
        ingest.send("products/update", &body, "same-webhook").await;
    }
    assert_eq!(ingest.messages("acked"), 1);
    assert_eq!(ingest.messages("duplicate"), 2);
    assert_eq!(ingest.items_counter("created"), 1);
    assert_eq!(
        ingest.items_counter("updated") + ingest.items_counter("unchanged"),
        0
    );
    assert_eq!(ingest.mapping("TEE-S").await, Some(Some(101)));
    ingest.stop().await;
}

#[tokio::test]
async fn an_older_update_after_a_newer_one_changes_nothing() {
    let mut ingest = Ingest::start().await;
    ingest
        .send(
            "products/update",
            &product(1, "Tee v2", 20, &[v(11, "TEE-S", 101)]),
            "newer",
        )
        .await;
    ingest
        .send(
            "products/update",
            &product(1, "Tee v1", 10, &[v(11, "TEE-S", 101)]),
            "older",
        )
        .await;
    assert_eq!(
        ingest.fields("TEE-S").await[0].as_deref(),
        Some("Tee v2 - XL")
    );
    assert_eq!(ingest.items_counter("stale"), 1);
    assert_eq!(ingest.items_counter("updated"), 0);
    ingest.stop().await;
}

#[tokio::test]
async fn a_create_of_the_same_second_never_undoes_an_update() {
    // Both events carry the same `updated_at` and no X-Shopify-Triggered-At; the update (the
    // variant's SKU renamed) is delivered before the create. A create is always the product's
    // first event, so it is the older one.
    let mut ingest = Ingest::start().await;
    ingest
        .send(
            "products/update",
            &product(1, "Tee", 2, &[v(11, "NEW", 101)]),
            "update",
        )
        .await;
    ingest
        .send(
            "products/create",
            &product(1, "Tee", 2, &[v(11, "OLD", 101)]),
            "create",
        )
        .await;
    assert_eq!(ingest.mapping("NEW").await, Some(Some(101)));
    assert_eq!(ingest.mapping("OLD").await, None, "the create is stale");
    assert_eq!(ingest.items_counter("stale"), 1);
    ingest.stop().await;
}

fn fixtures() -> Vec<(String, PathBuf)> {
    let root = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../contract/fixtures/shopify-webhooks"
    ));
    let mut files = Vec::new();
    let mut pending = vec![root.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                let relative = path
                    .strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                files.push((relative, path));
            }
        }
    }
    files.sort();
    assert!(
        files.len() >= 30,
        "the shared fixtures are next to the checkout"
    );
    files
}

#[tokio::test]
async fn every_webhook_fixture_ingests_or_is_refused_with_a_reason() {
    let mut ingest = Ingest::start().await;
    let mut expected_dead = 0;
    for (n, (name, path)) in fixtures().into_iter().enumerate() {
        let document: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let parts: Vec<&str> = name.trim_end_matches(".json").rsplitn(3, '/').collect();
        let topic = format!("{}/{}", parts[1], parts[0]);
        // Docs examples carry the payload under `response`; the JSON schemas are sent as they
        // are, as a payload that is not Shopify's product JSON.
        let payload = document.get("response").cloned().unwrap_or(document);
        let before_dead = ingest.messages("dead_lettered");
        ingest.send(&topic, &payload, &format!("fixture-{n}")).await;
        let dead = ingest.messages("dead_lettered") > before_dead;
        let is_payload =
            name.starts_with("shopify-docs-examples/") && topic.starts_with("products/");
        assert_eq!(dead, !is_payload, "{name} as {topic}: ingested = {}", !dead);
        expected_dead += u64::from(dead);
    }
    let dlq = ingest.env.names.item_ingest_queue().dead_letter_queue();
    let dead_letters = ingest.env.drain(&dlq).await;
    assert_eq!(dead_letters.len() as u64, expected_dead);
    for dead in &dead_letters {
        let headers = dead.delivery.properties.headers().as_ref();
        assert_eq!(header_str(headers, "x-error-kind"), Some("malformed"));
        let error = header_str(headers, "x-error").unwrap();
        assert!(
            error.contains("unsupported") || error.contains("payload of `products/"),
            "unclear reason: {error}"
        );
    }
    // Still consuming after all of that.
    ingest
        .send(
            "products/create",
            &product(1, "After", 1, &[v(11, "AFTER", 101)]),
            "after",
        )
        .await;
    assert_eq!(ingest.mapping("AFTER").await, Some(Some(101)));
    ingest.stop().await;
}

#[tokio::test]
async fn malformed_deliveries_go_to_the_dlq_with_a_precise_error() {
    let mut ingest = Ingest::start().await;
    let valid = product(1, "Tee", 1, &[v(11, "TEE-S", 101)]).to_string();
    let cases: [(&str, &[u8], Option<&str>, &str); 4] = [
        (
            "products/update",
            b"{not json",
            Some(crate::harness::SHOP),
            "payload of `products/update`",
        ),
        (
            "products/update",
            br#"{"id": 1, "title": "T", "variants": [{"id": "abc"}]}"#,
            Some(crate::harness::SHOP),
            "variants[0].id",
        ),
        (
            "products/update",
            valid.as_bytes(),
            Some("other.myshopify.com"),
            "shop `other.myshopify.com` is not configured",
        ),
        (
            "products/update",
            valid.as_bytes(),
            None,
            "missing header `x-shopify-shop-domain`",
        ),
    ];
    for (n, (topic, body, shop, _)) in cases.iter().enumerate() {
        ingest
            .send_raw(topic, body, &format!("bad-{n}"), *shop)
            .await;
    }
    let dlq = ingest.env.names.item_ingest_queue().dead_letter_queue();
    let dead = ingest.env.drain(&dlq).await;
    assert_eq!(dead.len(), cases.len());
    for (dead, (_, body, _, reason)) in dead.iter().zip(&cases) {
        let headers = dead.delivery.properties.headers().as_ref();
        assert_eq!(header_str(headers, "x-error-kind"), Some("malformed"));
        let error = header_str(headers, "x-error").unwrap();
        assert!(error.contains(reason), "expected `{reason}` in `{error}`");
        assert_eq!(&dead.delivery.data[..], *body, "the original body is kept");
        assert_eq!(header_str(headers, "x-service"), Some("item-ingest"));
    }
    assert_eq!(ingest.item_count().await, 0);
    ingest.stop().await;
}

async fn bind_announcements(ingest: &Ingest) -> String {
    ingest
        .env
        .tap("announcements", ITEM_MAPPINGS, "mapping.*")
        .await
}

async fn announcements(
    ingest: &Ingest,
    queue: &str,
    count: usize,
) -> Vec<(String, MappingAnnouncement)> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while seen.len() < count {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {count} announcements: {seen:?}",
            seen.len()
        );
        for message in ingest.env.drain(queue).await {
            let announcement: MappingAnnouncement =
                serde_json::from_slice(&message.delivery.data).unwrap();
            seen.push((message.delivery.routing_key.to_string(), announcement));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    seen.sort_by(|a, b| {
        a.1.sku
            .cmp(&b.1.sku)
            .then(a.1.changed_at.cmp(&b.1.changed_at))
    });
    seen
}

#[tokio::test]
async fn every_mapping_change_is_announced() {
    let mut ingest = Ingest::start().await;
    let queue = bind_announcements(&ingest).await;
    ingest
        .send(
            "products/create",
            &product(1, "Tee", 1, &[v(11, "OLD", 101)]),
            "w-1",
        )
        .await;
    ingest
        .send(
            "products/update",
            &product(1, "Tee", 2, &[v(11, "NEW", 101)]),
            "w-2",
        )
        .await;
    ingest
        .send(
            "products/update",
            &product(1, "Tee v3", 3, &[v(11, "NEW", 101)]),
            "w-3",
        )
        .await; // no mapping change
    let seen = announcements(&ingest, &queue, 3).await;
    let summary: Vec<(&str, &str, Option<u64>)> = seen
        .iter()
        .map(|(key, a)| {
            (
                key.as_str(),
                a.sku.as_str(),
                a.inventory_item_id.map(|id| id.0),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("mapping.set", "NEW", Some(101)),
            ("mapping.set", "OLD", Some(101)),
            ("mapping.cleared", "OLD", None)
        ]
    );
    assert_eq!(seen[2].1.change, MappingChange::Cleared);
    assert_eq!(
        seen[2].1.previous_inventory_item_id.map(|id| id.0),
        Some(101)
    );
    // Nothing more: the title change did not touch a mapping.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(ingest.env.drain(&queue).await.is_empty());
    ingest.stop().await;
}

#[tokio::test]
async fn announcements_left_in_the_outbox_by_a_crash_are_published_at_the_next_start() {
    let mut ingest = Ingest::start().await;
    let queue = bind_announcements(&ingest).await;
    ingest.stop_service().await;
    // What a crash between commit and publish leaves behind: committed outbox rows.
    let exchange = format!("{}{ITEM_MAPPINGS}", ingest.env.names.prefix());
    let client = ingest.env.pool.get().await.unwrap();
    for sku in ["A", "B"] {
        let body = format!(
            r#"{{"shop_domain":"acme.myshopify.com","sku":"{sku}","change":"set","inventory_item_id":1,
                "previous_inventory_item_id":null,"variant_id":null,"basis":"only_candidate",
                "changed_at":"2026-11-27T10:00:00Z"}}"#
        );
        outbox::enqueue(
            &client,
            &outbox::OutboxMessage::json(&exchange, "mapping.set", sku, body.as_bytes()),
        )
        .await
        .unwrap();
    }
    drop(client);
    ingest.start_service();
    let seen = announcements(&ingest, &queue, 2).await;
    assert_eq!(
        seen.iter().map(|(_, a)| a.sku.as_str()).collect::<Vec<_>>(),
        ["A", "B"]
    );
    let left: i64 = ingest
        .env
        .pool
        .get()
        .await
        .unwrap()
        .query_one("SELECT count(*) FROM outbox", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "published rows are deleted");
    ingest
        .send(
            "products/create",
            &product(1, "Tee", 1, &[v(11, "C", 101)]),
            "w-1",
        )
        .await;
    ingest.stop().await;
}

#[tokio::test]
async fn a_database_outage_goes_through_the_retry_tiers_and_nothing_is_lost() {
    let (mut ingest, proxy) = Ingest::start_through_database_proxy().await;
    ingest
        .send(
            "products/create",
            &product(1, "Tee", 1, &[v(11, "BEFORE", 101)]),
            "w-1",
        )
        .await;
    assert_eq!(ingest.mapping("BEFORE").await, Some(Some(101)));

    proxy.cut();
    let mut headers = lapin::types::FieldTable::default();
    platform::amqp::headers::set_str(&mut headers, "x-shopify-topic", "products/update");
    platform::amqp::headers::set_str(&mut headers, "x-shopify-shop-domain", crate::harness::SHOP);
    platform::amqp::headers::set_str(&mut headers, "x-shopify-webhook-id", "w-2");
    let body = product(1, "Tee", 2, &[v(11, "BEFORE", 101), v(12, "DURING", 102)]).to_string();
    let exchange = ingest
        .env
        .names
        .name(platform::amqp::topology::SHOPIFY_EVENTS);
    ingest
        .env
        .publish(
            &exchange,
            "products.update",
            body.as_bytes(),
            lapin::BasicProperties::default().with_headers(headers),
        )
        .await;
    testkit::wait_until(
        Duration::from_secs(15),
        "retried while the database is away",
        || async { ingest.messages("retried") >= 1 },
    )
    .await;
    assert_eq!(ingest.messages("dead_lettered"), 0);

    proxy.restore();
    testkit::wait_until(
        Duration::from_secs(20),
        "applied once the database is back",
        || async { ingest.messages("acked") == 2 },
    )
    .await;
    assert_eq!(ingest.mapping("DURING").await, Some(Some(102)));
    ingest.stop().await;
}

#[tokio::test]
async fn an_announcement_is_published_past_a_dead_letter_whose_queue_is_missing() {
    let mut ingest = Ingest::start().await;
    let queue = bind_announcements(&ingest).await;
    // The outbox is shared: the pusher's dead letter of a transaction, addressed to a DLQ an
    // operator deleted, is first in line.
    let missing = format!(
        "{}adjustment-pusher.wos-transactions.dlq",
        ingest.env.names.prefix()
    );
    let client = ingest.env.pool.get().await.unwrap();
    outbox::enqueue(
        &client,
        &outbox::OutboxMessage::json("", &missing, "tx-1", br#"{"transaction_id":"tx-1"}"#),
    )
    .await
    .unwrap();
    drop(client);

    ingest
        .send(
            "products/create",
            &product(1, "Tee", 1, &[v(11, "TEE-S", 101)]),
            "w-1",
        )
        .await;
    let seen = announcements(&ingest, &queue, 1).await;
    assert_eq!(seen[0].1.sku, "TEE-S", "published past the dead letter");

    // The dead letter stays, put aside with its reason, and shows in the metrics.
    let row = ingest
        .env
        .pool
        .get()
        .await
        .unwrap()
        .query_one(
            "SELECT routing_key, attempts, last_error, next_attempt_at > now() FROM outbox",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), missing);
    assert!(row.get::<_, i32>(1) >= 1);
    assert!(
        row.get::<_, Option<String>>(2)
            .is_some_and(|error| error.contains("does not exist")),
        "{:?}",
        row.get::<_, Option<String>>(2)
    );
    assert!(
        ingest.metric(
            "wos_sync_outbox_publish_failures_total",
            &[("service", "item-ingest"), ("reason", "unroutable")]
        ) >= 1.0
    );
    testkit::wait_until(
        Duration::from_secs(10),
        "the deferred row shows",
        || async {
            ingest.metric(
                "wos_sync_outbox_deferred_messages",
                &[("service", "item-ingest")],
            ) == 1.0
        },
    )
    .await;
    ingest.stop().await;
}
