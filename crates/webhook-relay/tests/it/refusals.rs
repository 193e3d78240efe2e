//! Every refusal path: the right status, the right outcome, and nothing published.

use std::time::Duration;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use webhook_relay::{
    client::shopify_headers,
    webhook::{UNVERIFIED_TOPIC, header},
};

use crate::harness::{NEW_SECRET, ROTATING_SHOP, connected_relay, message_id};

/// The test relays' body limit.
const LIMIT: usize = 1024;

fn limited() -> String {
    format!("[webhook_relay]\nmax_body_bytes = {LIMIT}\n")
}

/// A refusal case: name, headers, body, expected status.
type Case<'a> = (&'a str, Vec<(String, String)>, &'a [u8], u16);

fn without(headers: &[(String, String)], name: &str) -> Vec<(String, String)> {
    headers.iter().filter(|(n, _)| n != name).cloned().collect()
}

fn replaced(headers: &[(String, String)], name: &str, value: &str) -> Vec<(String, String)> {
    let mut headers = without(headers, name);
    headers.push((name.to_owned(), value.to_owned()));
    headers
}

#[tokio::test]
async fn every_refusal_publishes_nothing() {
    let relay = connected_relay(&limited()).await;
    let body = br#"{"id":4242,"title":"refused"}"#;
    let good = shopify_headers(
        NEW_SECRET.as_bytes(),
        "products/update",
        ROTATING_SHOP,
        "w",
        body,
    );
    let signature = good
        .iter()
        .find(|(n, _)| n == header::HMAC)
        .map(|(_, v)| v.clone())
        .unwrap();
    let stranger = shopify_headers(
        NEW_SECRET.as_bytes(),
        "products/update",
        "stranger.myshopify.com",
        "w",
        body,
    );
    let other_secret = shopify_headers(
        b"not-the-secret",
        "products/update",
        ROTATING_SHOP,
        "w",
        body,
    );
    let oversized = vec![b' '; LIMIT + 1];
    let oversized_headers = shopify_headers(
        NEW_SECRET.as_bytes(),
        "products/update",
        ROTATING_SHOP,
        "w",
        &oversized,
    );

    let cases: Vec<Case<'_>> = vec![
        ("unknown shop", stranger, body, 401),
        ("missing signature", without(&good, header::HMAC), body, 401),
        (
            "empty signature",
            replaced(&good, header::HMAC, ""),
            body,
            401,
        ),
        ("wrong secret", other_secret, body, 401),
        (
            "not base64",
            replaced(&good, header::HMAC, "%%%not-base64%%%"),
            body,
            401,
        ),
        ("missing topic", without(&good, header::TOPIC), body, 400),
        (
            "missing shop",
            without(&good, header::SHOP_DOMAIN),
            body,
            400,
        ),
        (
            "missing webhook id",
            without(&good, header::WEBHOOK_ID),
            body,
            400,
        ),
        (
            "blank webhook id",
            replaced(&good, header::WEBHOOK_ID, " "),
            body,
            400,
        ),
        ("body over the limit", oversized_headers, &oversized, 413),
    ];
    for (case, headers, body, status) in &cases {
        let reply = relay.post(headers, body).await;
        assert_eq!(reply.status, *status, "{case}: {reply:?}");
        assert!(
            !reply.body.contains(&signature) && !reply.body.contains("refused\""),
            "{case}: the answer echoes the request: {reply:?}"
        );
    }
    assert_eq!(relay.webhooks(UNVERIFIED_TOPIC, "bad_hmac"), 5);
    assert_eq!(relay.webhooks(UNVERIFIED_TOPIC, "bad_request"), 5);

    // A good delivery after all of them is the only message in the queue: had any refusal been
    // published, it would be there, ahead of this one.
    let reply = relay
        .post(&replaced(&good, header::WEBHOOK_ID, "the-good-one"), body)
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let messages = relay.take(1).await;
    assert_eq!(
        messages.iter().map(message_id).collect::<Vec<_>>(),
        ["the-good-one"]
    );
    relay.stop().await;
}

/// Sends `head` (and `chunks`, raw) and returns the status line of the answer.
async fn raw_exchange(addr: std::net::SocketAddr, head: &str, chunks: &[Vec<u8>]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    for chunk in chunks {
        // The relay may answer and stop reading before the last chunk: that is the point.
        if stream.write_all(chunk).await.is_err() {
            break;
        }
    }
    let mut answer = Vec::new();
    let mut buffer = [0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(3), async {
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer within 3 s");
    let text = String::from_utf8_lossy(&answer).into_owned();
    text.lines().next().unwrap_or_default().to_owned()
}

fn request_head(framing: &str) -> String {
    let headers = shopify_headers(
        NEW_SECRET.as_bytes(),
        "products/update",
        ROTATING_SHOP,
        "raw",
        b"{}",
    );
    let mut head = format!("POST /webhooks/shopify HTTP/1.1\r\nHost: 127.0.0.1\r\n{framing}\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head
}

#[tokio::test]
async fn oversized_bodies_are_refused_without_being_read() {
    let relay = connected_relay(&limited()).await;

    // Announced too large: refused on the headers alone, the body never sent.
    let status = raw_exchange(
        relay.relay.addr,
        &request_head("Content-Length: 6000000"),
        &[],
    )
    .await;
    assert_eq!(status, "HTTP/1.1 413 Payload Too Large");

    // No length announced (chunked): refused as soon as the limit is crossed, with the final
    // chunk never sent.
    let chunk = |size: usize| {
        let mut chunk = format!("{size:x}\r\n").into_bytes();
        chunk.extend(std::iter::repeat_n(b'x', size));
        chunk.extend_from_slice(b"\r\n");
        chunk
    };
    let status = raw_exchange(
        relay.relay.addr,
        &request_head("Transfer-Encoding: chunked"),
        &[chunk(512), chunk(512), chunk(512)],
    )
    .await;
    assert_eq!(status, "HTTP/1.1 413 Payload Too Large");
    assert_eq!(relay.webhooks(UNVERIFIED_TOPIC, "bad_request"), 2);

    // Exactly at the limit is fine.
    let body = vec![b' '; LIMIT];
    let reply = relay
        .deliver(
            NEW_SECRET,
            ROTATING_SHOP,
            "products/update",
            "at-limit",
            &body,
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let messages = relay.take(1).await;
    assert_eq!(
        messages.iter().map(message_id).collect::<Vec<_>>(),
        ["at-limit"]
    );
    relay.stop().await;
}
