//! The relay on the internet: slow and greedy clients, the public listener's routes, and
//! authentic bodies under a forged topic.

use std::time::Duration;

use platform::amqp::topology::{Binding, WorkQueue, declare_work_queue};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use webhook_relay::{
    client::shopify_headers,
    webhook::{LARGE_BODY_SLOT, OTHER_TOPIC, REQUEST_SLOT, UNVERIFIED_TOPIC},
};

use crate::harness::{Harness, NEW_SECRET, ROTATING_SHOP, connected_relay, message_id};

/// Reads until the peer closes the connection (or `limit` passes); `true` when it closed.
async fn closed_by_peer(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buffer = [0u8; 1024];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// The head of a signed `products/update` delivery announcing `length` body bytes.
fn head(webhook_id: &str, length: usize) -> String {
    let headers = shopify_headers(
        NEW_SECRET.as_bytes(),
        "products/update",
        ROTATING_SHOP,
        webhook_id,
        b"{}",
    );
    let mut head =
        format!("POST /webhooks/shopify HTTP/1.1\r\nHost: relay\r\nContent-Length: {length}\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head
}

/// A request whose body never finishes: it holds its slot until the request budget runs out or
/// the connection is dropped.
async fn stalled_request(relay: &Harness, webhook_id: &str, length: usize) -> TcpStream {
    let mut stream = TcpStream::connect(relay.relay.addr).await.unwrap();
    stream
        .write_all(head(webhook_id, length).as_bytes())
        .await
        .unwrap();
    stream.write_all(b"{\"id\":").await.unwrap();
    stream
}

/// Sends `request` raw and returns the answer's head (status line and headers).
async fn raw_answer_head(relay: &Harness, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(relay.relay.addr).await.unwrap();
    // The relay may answer before the body is sent in full: that is fine.
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let mut buffer = [0u8; 1024];
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&answer).into_owned()
}

async fn wait_in_flight(relay: &Harness, kind: &str, count: i64) {
    let what = format!("{count} request(s) in flight ({kind})");
    testkit::wait_until(Duration::from_secs(10), &what, || async {
        relay.in_flight(kind) == count
    })
    .await;
}

#[tokio::test]
async fn a_client_trickling_its_headers_is_disconnected() {
    let relay = connected_relay("").await;
    let mut stream = TcpStream::connect(relay.relay.addr).await.unwrap();
    // A byte every 200 ms: never idle, never a complete head.
    let text = head("slow", 2).into_bytes();
    let (mut read_half, mut write_half) = stream.split();
    let trickle = async {
        for byte in text.iter().cycle() {
            if write_half.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let peer_closed = async {
        let mut buffer = [0u8; 256];
        loop {
            match read_half.read(&mut buffer).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    };
    let closed = tokio::select! {
        () = trickle => true,
        closed = peer_closed => closed,
        () = tokio::time::sleep(Duration::from_secs(30)) => false,
    };
    assert!(
        closed,
        "a connection trickling its headers was still open after 30 s (header-read timeout \
         is 5 s)"
    );
    relay.stop().await;
}

#[tokio::test]
async fn requests_beyond_the_limits_are_shed_with_retry_after() {
    let relay = connected_relay(
        "[webhook_relay]\nmax_concurrent_requests = 2\nmax_concurrent_large_bodies = 1\n",
    )
    .await;

    // Two requests in progress (their bodies never finish): the limit is reached.
    let first = stalled_request(&relay, "stalled-1", 100).await;
    let second = stalled_request(&relay, "stalled-2", 100).await;
    wait_in_flight(&relay, REQUEST_SLOT, 2).await;
    let body = br#"{"id":1,"title":"T","variants":[]}"#;
    let mut request = head("shed", body.len()).into_bytes();
    request.extend_from_slice(body);
    let answer = raw_answer_head(&relay, &request).await;
    assert!(
        answer.starts_with("HTTP/1.1 503"),
        "over the limit: {answer}"
    );
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    assert_eq!(relay.webhooks(UNVERIFIED_TOPIC, "unavailable"), 1);

    // Slots come back when the stalled clients go away.
    drop(first);
    drop(second);
    wait_in_flight(&relay, REQUEST_SLOT, 0).await;
    let reply = relay
        .deliver(NEW_SECRET, ROTATING_SHOP, "products/update", "after", body)
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");

    // One large body being read: another large one is shed, a usual small one is served.
    let large = stalled_request(&relay, "large-1", 200 * 1024).await;
    wait_in_flight(&relay, LARGE_BODY_SLOT, 1).await;
    let answer = raw_answer_head(&relay, head("large-2", 200 * 1024).as_bytes()).await;
    assert!(
        answer.starts_with("HTTP/1.1 503") && answer.to_ascii_lowercase().contains("retry-after"),
        "a second large body: {answer}"
    );
    let reply = relay
        .deliver(NEW_SECRET, ROTATING_SHOP, "products/update", "small", body)
        .await;
    assert_eq!(reply.status, 200, "small bodies are not held up: {reply:?}");
    drop(large);
    wait_in_flight(&relay, LARGE_BODY_SLOT, 0).await;

    let ids: Vec<_> = relay.take(2).await.iter().map(message_id).collect();
    assert_eq!(ids, ["after", "small"]);
    relay.stop().await;
}

#[tokio::test]
async fn the_public_listener_serves_only_the_webhook_route() {
    let relay = connected_relay("").await;
    for path in ["/metrics", "/readyz", "/healthz"] {
        let public = relay.client.get(path).await.unwrap();
        assert_eq!(
            public.status, 404,
            "{path} on the public listener: {public:?}"
        );
        let ops = relay.ops.get(path).await.unwrap();
        assert_eq!(ops.status, 200, "{path} on the ops listener: {ops:?}");
    }
    assert_ne!(relay.relay.addr, relay.relay.ops_addr);
    relay.stop().await;
}

/// Binds a queue to every routing key of the test's `shopify.events`: whatever the relay
/// publishes lands there.
async fn catch_all(relay: &Harness) -> String {
    let queue = WorkQueue {
        name: relay.env.names.name("everything"),
        bindings: vec![Binding {
            exchange: relay.env.names.name("shopify.events"),
            routing_key: "#".to_owned(),
        }],
    };
    relay.env.track_queue(&queue);
    declare_work_queue(relay.env.channel(), &queue, &relay.env.settings().retry)
        .await
        .unwrap();
    queue.name
}

#[tokio::test]
async fn authentic_webhooks_of_other_topics_are_answered_but_not_published() {
    let relay = connected_relay("").await;
    let everything = catch_all(&relay).await;
    for (n, topic) in ["orders/create", "customers/update", "app/uninstalled"]
        .iter()
        .enumerate()
    {
        let reply = relay
            .deliver(
                NEW_SECRET,
                ROTATING_SHOP,
                topic,
                &format!("other-{n}"),
                br#"{"id":1}"#,
            )
            .await;
        assert_eq!(reply.status, 200, "{topic}: {reply:?}");
    }
    assert_eq!(relay.webhooks(OTHER_TOPIC, "accepted"), 3);
    let families = relay.relay.metrics.registry.gather();
    let labels: Vec<String> = families
        .iter()
        .filter(|family| family.name() == "wos_sync_webhooks_total")
        .flat_map(|family| family.get_metric())
        .flat_map(|metric| metric.get_label())
        .filter(|label| label.name() == "topic")
        .map(|label| label.value().to_owned())
        .collect();
    assert!(
        labels.iter().all(|label| label == OTHER_TOPIC),
        "one label value for all of them: {labels:?}"
    );

    // A product webhook after them is the only message published.
    let reply = relay
        .deliver(
            NEW_SECRET,
            ROTATING_SHOP,
            "products/update",
            "product",
            br#"{"id":2}"#,
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let published = relay
        .env
        .wait_and_drain(&everything, 1, Duration::from_secs(10))
        .await;
    assert_eq!(message_id(&published[0]), "product");
    relay.stop().await;
}

#[tokio::test]
async fn a_signed_body_replayed_as_a_delete_deletes_nothing() {
    let relay = connected_relay("").await;
    let everything = catch_all(&relay).await;
    // A real products/update body, correctly signed, sent again with a forged topic.
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../contract/fixtures/shopify-webhooks/shopify-docs-examples/2026-04/products/update.json"
    );
    let document: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap();
    let update = serde_json::to_vec(&document["response"]).unwrap();
    for (topic, id) in [
        ("products/update", "genuine"),
        ("products/delete", "forged"),
    ] {
        let reply = relay
            .deliver(NEW_SECRET, ROTATING_SHOP, topic, id, &update)
            .await;
        let expected = if topic == "products/update" { 200 } else { 400 };
        assert_eq!(reply.status, expected, "{topic}: {reply:?}");
    }
    assert_eq!(relay.webhooks("products/delete", "bad_request"), 1);

    // A delete-shaped body is a delete.
    let reply = relay
        .deliver(
            NEW_SECRET,
            ROTATING_SHOP,
            "products/delete",
            "real-delete",
            br#"{"id":788032119674292922}"#,
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let published: Vec<_> = relay
        .env
        .wait_and_drain(&everything, 2, Duration::from_secs(10))
        .await
        .iter()
        .map(|message| {
            (
                message_id(message),
                message.delivery.routing_key.to_string(),
            )
        })
        .collect();
    assert_eq!(
        published,
        [
            ("genuine".to_owned(), "products.update".to_owned()),
            ("real-delete".to_owned(), "products.delete".to_owned())
        ]
    );
    relay.stop().await;
}

#[tokio::test]
async fn a_silent_connection_is_closed() {
    // Nothing sent at all: the header-read timeout (or the idle timeout) closes it.
    let relay = connected_relay("[webhook_relay]\nheader_read_timeout_ms = 200\n").await;
    let mut stream = TcpStream::connect(relay.relay.addr).await.unwrap();
    assert!(
        closed_by_peer(&mut stream, Duration::from_secs(30)).await,
        "a silent connection stayed open"
    );
    relay.stop().await;
}
