//! The shared Shopify client against the sandbox (and a redirecting server): reads are paced,
//! retried through throttling and 5xx, refused at once for a bad token or a bad query, every
//! request is counted, and the token never follows a redirect.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use platform::metrics::Metrics;
use serde_json::json;
use shopify_admin::{ReadError, ReadPolicy, ShopClient, http_client};
use shopify_sandbox::{
    FaultAction, FaultConfig, FaultRule, Sandbox, SandboxConfig, SandboxHandle, ThrottleConfig,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

const SHOP: &str = "acme.myshopify.com";
const TOKEN: &str = "shpat_admin_client_test";
const SHOP_QUERY: &str = "query ShopName { shop { name myshopifyDomain } }";

async fn sandbox() -> SandboxHandle {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    sandbox.create_shop(SHOP, TOKEN).unwrap();
    sandbox
}

fn client(sandbox: &SandboxHandle, token: &str, metrics: &Metrics) -> ShopClient {
    ShopClient::for_url(
        http_client().unwrap(),
        SHOP,
        sandbox.graphql_url("2026-04"),
        token.to_owned(),
    )
    .with_metrics(metrics.clone())
}

fn fast() -> ReadPolicy {
    ReadPolicy {
        backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        ..ReadPolicy::default()
    }
}

fn requests(metrics: &Metrics, status: &str) -> u64 {
    metrics
        .shopify_requests_total
        .with_label_values(&[SHOP, "ShopName", status])
        .get()
}

#[tokio::test]
async fn a_read_returns_data_and_is_counted_with_the_throttle_it_reported() {
    let sandbox = sandbox().await;
    let metrics = Metrics::new();
    let data = client(&sandbox, TOKEN, &metrics)
        .read("ShopName", SHOP_QUERY, json!({}), &fast())
        .await
        .unwrap();
    assert_eq!(data["shop"]["myshopifyDomain"], SHOP);
    assert_eq!(requests(&metrics, "200"), 1);
    let available = metrics
        .shopify_throttle_available
        .with_label_values(&[SHOP])
        .get();
    assert!((1900..=2000).contains(&available), "{available}");
}

#[tokio::test]
async fn a_read_goes_through_5xx_429_and_throttling() {
    let sandbox = sandbox().await;
    sandbox
        .set_faults(FaultConfig {
            rules: vec![
                FaultRule::next(
                    2,
                    FaultAction::Status {
                        status: 503,
                        retry_after_secs: None,
                        after_apply: false,
                    },
                ),
                FaultRule::next(
                    1,
                    FaultAction::Status {
                        status: 429,
                        retry_after_secs: Some(0),
                        after_apply: false,
                    },
                ),
            ],
            ..FaultConfig::none()
        })
        .unwrap();
    let metrics = Metrics::new();
    let client = client(&sandbox, TOKEN, &metrics);
    client
        .read("ShopName", SHOP_QUERY, json!({}), &fast())
        .await
        .unwrap();
    assert_eq!(requests(&metrics, "503"), 2);
    assert_eq!(requests(&metrics, "429"), 1);
    assert_eq!(requests(&metrics, "200"), 1);

    // An empty bucket restoring 4 points a second, and a read of about 12 points: Shopify
    // answers THROTTLED until the bucket holds them, seconds after the read was first sent
    // (so it is throttled however slowly this machine gets from here to the request).
    sandbox.set_throttle(ThrottleConfig {
        enabled: true,
        bucket_size: 2000.0,
        restore_rate: 4.0,
    });
    sandbox.set_bucket_available(SHOP, 0.0).unwrap();
    let data = client
        .read(
            "Locations",
            "query Locations { locations(first: 10) { nodes { id name } } }",
            json!({}),
            &fast(),
        )
        .await
        .unwrap();
    assert!(data["locations"]["nodes"].is_array());
    let locations = |status: &str| {
        metrics
            .shopify_requests_total
            .with_label_values(&[SHOP, "Locations", status])
            .get()
    };
    assert!(locations("throttled") >= 1);
    assert_eq!(locations("200"), 1);
}

#[tokio::test]
async fn a_bad_token_and_a_bad_query_are_refused_at_once() {
    let sandbox = sandbox().await;
    let metrics = Metrics::new();
    let err = client(&sandbox, "shpat_wrong", &metrics)
        .read("ShopName", SHOP_QUERY, json!({}), &fast())
        .await
        .unwrap_err();
    assert_eq!(err, ReadError::AccessDenied("HTTP 401".into()));
    assert_eq!(requests(&metrics, "401"), 1, "not retried");

    let err = client(&sandbox, TOKEN, &metrics)
        .read(
            "ShopName",
            "query ShopName { shop { noSuchField } }",
            json!({}),
            &fast(),
        )
        .await
        .unwrap_err();
    let ReadError::Refused(reason) = err else {
        panic!("refused: {err:?}")
    };
    assert!(reason.contains("noSuchField"), "{reason}");
}

#[tokio::test]
async fn retries_end_with_the_last_failure() {
    let sandbox = sandbox().await;
    sandbox
        .set_faults(FaultConfig::rule(FaultRule::next(10, FaultAction::Drop)))
        .unwrap();
    let metrics = Metrics::new();
    let policy = ReadPolicy {
        attempts: 3,
        ..fast()
    };
    let err = client(&sandbox, TOKEN, &metrics)
        .read("ShopName", SHOP_QUERY, json!({}), &policy)
        .await
        .unwrap_err();
    let ReadError::Unavailable { attempts, last } = err else {
        panic!("unavailable: {err:?}")
    };
    assert_eq!(attempts, 3);
    assert!(!last.is_empty());
    assert_eq!(requests(&metrics, "connection"), 3);
}

/// A server that answers every request with a redirect to `target`.
async fn redirecting_server(target: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buffer = vec![0u8; 8192];
            let _ = socket.read(&mut buffer).await;
            let answer = format!(
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: {target}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let _ = socket.write_all(answer.as_bytes()).await;
        }
    });
    format!("http://{addr}/admin/api/2026-04/graphql.json")
}

#[tokio::test]
async fn the_token_never_follows_a_redirect() {
    // The redirect's target records whether anything reached it.
    let elsewhere = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = format!("http://{}/steal", elsewhere.local_addr().unwrap());
    let url = redirecting_server(target).await;
    let client = ShopClient::for_url(http_client().unwrap(), SHOP, url, TOKEN.into());
    // One short attempt: a followed redirect would hang on the silent target.
    let policy = ReadPolicy {
        attempts: 1,
        timeout: Duration::from_secs(2),
        ..fast()
    };
    let err = client
        .read("ShopName", SHOP_QUERY, json!({}), &policy)
        .await
        .unwrap_err();
    let ReadError::Refused(reason) = err else {
        panic!("refused: {err:?}")
    };
    assert!(reason.starts_with("HTTP 307"), "{reason}");
    let reached = tokio::time::timeout(Duration::from_millis(200), elsewhere.accept()).await;
    assert!(reached.is_err(), "the redirect was followed");
}

/// A server that answers every request with `{"data": {"shop": {}}}` and hands over each
/// request's head (lowercased).
async fn recording_server() -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (heads, received) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut request = Vec::new();
            let mut buffer = vec![0u8; 8192];
            // The head ends at the first blank line; the body does not matter here.
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match socket.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buffer[..n]),
                }
            }
            let _ = heads.send(String::from_utf8_lossy(&request).to_lowercase());
            let body = r#"{"data":{"shop":{}}}"#;
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(answer.as_bytes()).await;
        }
    });
    (
        format!("http://{addr}/admin/api/2026-04/graphql.json"),
        received,
    )
}

#[tokio::test]
async fn a_request_carries_the_trace_of_the_work_it_is_sent_for() {
    use platform::trace::{TraceParent, scope};
    let (url, mut heads) = recording_server().await;
    let client = ShopClient::for_url(http_client().unwrap(), SHOP, url, TOKEN.into());
    let trace = TraceParent::new_root();
    scope(
        trace,
        tracing::Span::none(),
        client.read("ShopName", SHOP_QUERY, json!({}), &fast()),
    )
    .await
    .unwrap();
    let head = heads.recv().await.unwrap();
    let sent = head
        .lines()
        .find_map(|line| line.strip_prefix("traceparent:"))
        .unwrap_or_else(|| panic!("no traceparent header in {head}"));
    let sent = TraceParent::parse(sent.trim()).unwrap();
    assert_eq!(sent.trace_id(), trace.trace_id());
    assert_ne!(sent, trace, "the request names the span the work runs in");

    // Outside any trace: no header (nothing to correlate with).
    client
        .read("ShopName", SHOP_QUERY, json!({}), &fast())
        .await
        .unwrap();
    let head = heads.recv().await.unwrap();
    assert!(!head.contains("traceparent"), "{head}");
}
