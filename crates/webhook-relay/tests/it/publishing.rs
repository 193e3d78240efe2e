//! What a verified webhook becomes on the broker, alone and under concurrency.

use std::collections::BTreeSet;

use lapin::types::AMQPValue;
use platform::amqp::{
    headers::header_str,
    topology::{Binding, WorkQueue, declare_work_queue},
};
use webhook_relay::{client::shopify_headers, webhook::header};

use crate::harness::{
    NEW_SECRET, ROTATING_SHOP, VECTOR_SHOP, connected_relay, hmac_vector, message_id,
};

#[tokio::test]
async fn a_confirmed_webhook_arrives_byte_identical_with_all_headers() {
    let relay = connected_relay("").await;
    let (secret, _, _) = hmac_vector();
    // Not normalised JSON: odd spacing, an id above 2^53, non-ASCII text, a trailing newline.
    let body =
        "{ \"id\" : 9007199254740993,\n  \"title\":\"Crème brûlée \\u00e9 ✓\" ,\"sku\":null }\n"
            .as_bytes()
            .to_vec();
    let mut headers = shopify_headers(
        secret.as_bytes(),
        "products/update",
        &VECTOR_SHOP.to_uppercase(),
        "b7f0c0a6-1d0c-4a37-9b62-8b0f5c1f3e11",
        &body,
    );
    // Header names are case-insensitive.
    for (name, _) in &mut headers {
        if name == header::TOPIC {
            *name = "X-Shopify-Topic".to_owned();
        }
    }
    let sent: std::collections::HashMap<_, _> = headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
        .collect();
    let reply = relay.post(&headers, &body).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body, "accepted\n");

    let messages = relay.take(1).await;
    assert_eq!(messages.len(), 1);
    let delivery = &messages[0].delivery;
    assert_eq!(delivery.data, body, "body byte-identical");
    assert_eq!(delivery.routing_key.as_str(), "products.update");
    assert_eq!(
        delivery.exchange.as_str(),
        relay.env.names.name("shopify.events")
    );
    let properties = &delivery.properties;
    assert_eq!(*properties.delivery_mode(), Some(2), "persistent");
    assert_eq!(
        properties.content_type().as_ref().map(|v| v.as_str()),
        Some("application/json")
    );
    assert_eq!(
        message_id(&messages[0]),
        "b7f0c0a6-1d0c-4a37-9b62-8b0f5c1f3e11"
    );
    let table = properties.headers().as_ref();
    for name in [
        header::TOPIC,
        header::WEBHOOK_ID,
        header::EVENT_ID,
        header::TRIGGERED_AT,
        header::API_VERSION,
    ] {
        assert_eq!(header_str(table, name), Some(sent[name].as_str()), "{name}");
        assert!(
            matches!(
                table.unwrap().inner().get(name),
                Some(AMQPValue::LongString(_))
            ),
            "{name} is a string"
        );
    }
    // The verified shop, in its configured (lowercase) spelling.
    assert_eq!(header_str(table, header::SHOP_DOMAIN), Some(VECTOR_SHOP));
    // The contract's headers only (the broker may add its own, e.g. `x-delivery-count`).
    let ours: BTreeSet<_> = table
        .unwrap()
        .inner()
        .keys()
        .map(|key| key.as_str().to_owned())
        .filter(|key| key.starts_with("x-shopify-"))
        .collect();
    assert_eq!(
        ours.len(),
        6,
        "{:?}",
        table.unwrap().inner().keys().collect::<Vec<_>>()
    );
    assert!(header_str(table, header::HMAC).is_none());

    // Counted, timed and exposed.
    assert_eq!(relay.webhooks("products/update", "accepted"), 1);
    let metrics = relay.ops.get("/metrics").await.unwrap().body;
    for line in [
        "wos_sync_webhooks_total{outcome=\"accepted\",topic=\"products/update\"} 1",
        "wos_sync_webhook_request_seconds_count{outcome=\"accepted\"} 1",
    ] {
        assert!(metrics.contains(line), "missing `{line}` in:\n{metrics}");
    }
    assert_eq!(relay.ops.get("/healthz").await.unwrap().status, 200);
    let ready = relay.ops.get("/readyz").await.unwrap();
    assert_eq!(ready.status, 200);
    assert!(ready.body.contains("\"broker\":\"ok\""), "{ready:?}");
    relay.stop().await;
}

#[tokio::test]
async fn a_topic_no_queue_is_bound_to_is_accepted_and_counted() {
    // A deployment that also publishes inventory level changes (nobody consumes them yet).
    let relay = connected_relay(
        "[webhook_relay]\ntopics = [\"products/create\", \"products/update\", \
         \"products/delete\", \"inventory_levels/update\"]\n",
    )
    .await;
    let body = br#"{"inventory_item_id":1,"location_id":2,"available":3}"#;
    let reply = relay
        .deliver(
            NEW_SECRET,
            ROTATING_SHOP,
            "inventory_levels/update",
            "level-1",
            body,
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(relay.webhooks("inventory_levels/update", "accepted"), 1);
    let unroutable = &relay.relay.metrics.registry.gather();
    let unroutable = unroutable
        .iter()
        .find(|family| family.name() == "wos_sync_webhooks_unroutable_total")
        .expect("unroutable family registered");
    assert_eq!(unroutable.get_metric()[0].get_counter().get_value(), 1.0);

    // Once a queue is bound to it, the same topic is routed there under `inventory_levels.update`.
    let levels = WorkQueue {
        name: relay.env.names.name("levels"),
        bindings: vec![Binding {
            exchange: relay.env.names.name("shopify.events"),
            routing_key: "inventory_levels.#".to_owned(),
        }],
    };
    relay.env.track_queue(&levels);
    declare_work_queue(relay.env.channel(), &levels, &relay.env.settings().retry)
        .await
        .unwrap();
    let reply = relay
        .deliver(
            NEW_SECRET,
            ROTATING_SHOP,
            "inventory_levels/update",
            "level-2",
            body,
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    testkit::wait_until(std::time::Duration::from_secs(10), "routed", || async {
        relay.env.queue_depth(&levels.name).await == 1
    })
    .await;
    let routed = relay.env.drain(&levels.name).await;
    assert_eq!(
        routed[0].delivery.routing_key.as_str(),
        "inventory_levels.update"
    );
    assert_eq!(message_id(&routed[0]), "level-2");
    assert_eq!(unroutable.get_metric()[0].get_counter().get_value(), 1.0);

    // And nothing of it reached the products queue.
    let reply = relay
        .deliver(
            NEW_SECRET,
            ROTATING_SHOP,
            "products/update",
            "product-1",
            b"{}",
        )
        .await;
    assert_eq!(reply.status, 200);
    let products: Vec<_> = relay.take(1).await.iter().map(message_id).collect();
    assert_eq!(products, ["product-1"]);
    relay.stop().await;
}

#[tokio::test]
async fn two_hundred_concurrent_deliveries_are_all_confirmed_and_queued_once() {
    let relay = connected_relay("").await;
    let replies = futures_util::future::join_all((0..200).map(|n| {
        let relay = &relay;
        async move {
            let body = format!("{{\"id\":{n}}}");
            let id = format!("concurrent-{n}");
            let reply = relay
                .deliver(
                    NEW_SECRET,
                    ROTATING_SHOP,
                    "products/update",
                    &id,
                    body.as_bytes(),
                )
                .await;
            (id, reply)
        }
    }))
    .await;
    for (id, reply) in &replies {
        assert_eq!(reply.status, 200, "{id}: {reply:?}");
    }
    let messages = relay.take(200).await;
    assert_eq!(messages.len(), 200, "each exactly once");
    let ids: BTreeSet<_> = messages.iter().map(message_id).collect();
    let expected: BTreeSet<_> = (0..200).map(|n| format!("concurrent-{n}")).collect();
    assert_eq!(ids, expected);
    for message in &messages {
        let n = message_id(message)
            .trim_start_matches("concurrent-")
            .to_owned();
        assert_eq!(message.delivery.data, format!("{{\"id\":{n}}}").as_bytes());
    }
    assert_eq!(relay.webhooks("products/update", "accepted"), 200);
    relay.stop().await;
}

#[tokio::test]
async fn a_product_webhook_with_no_queue_to_store_it_gets_503_so_shopify_retries() {
    let relay = connected_relay("").await;
    // item-ingest has not declared its queue yet (a fresh broker, a crash loop).
    relay
        .env
        .channel()
        .queue_delete(
            relay.queue.as_str().into(),
            lapin::options::QueueDeleteOptions::default(),
        )
        .await
        .unwrap();
    let body = br#"{"id": 1, "title": "T", "variants": []}"#;
    let reply = relay
        .deliver(NEW_SECRET, ROTATING_SHOP, "products/update", "lost-1", body)
        .await;
    assert_eq!(reply.status, 503, "{reply:?}");
    assert_eq!(relay.webhooks("products/update", "unavailable"), 1);

    // Once the queue exists, Shopify's retry is stored and accepted.
    let queue = relay.env.names.item_ingest_queue();
    declare_work_queue(relay.env.channel(), &queue, &relay.env.settings().retry)
        .await
        .unwrap();
    let reply = relay
        .deliver(NEW_SECRET, ROTATING_SHOP, "products/update", "lost-1", body)
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(relay.env.drain(&relay.queue).await.len(), 1);
}
