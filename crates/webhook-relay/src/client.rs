//! An HTTP/1.1 client that delivers webhooks the way Shopify does (signed, with Shopify's
//! headers), for the benchmark's load generator and the tests.
//!
//! It is hyper-util's pooled client over plain TCP: reqwest cannot build a client without a
//! rustls crypto provider compiled in, and the relay only ever talks plain HTTP on loopback
//! here (TLS terminates in front of it in production).

use std::net::SocketAddr;

use axum::{
    body::{Body, Bytes},
    http::{Method, Request, StatusCode},
};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use model::signature::sign_webhook;

use crate::webhook::{PATH, header};

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("building the request: {0}")]
    Build(#[from] axum::http::Error),
    #[error("sending the request: {0}")]
    Send(#[from] hyper_util::client::legacy::Error),
    #[error("reading the answer: {0}")]
    Read(#[from] axum::Error),
}

/// An answer: status and body text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: StatusCode,
    pub body: String,
}

/// A client for one relay.
#[derive(Debug, Clone)]
pub struct RelayClient {
    client: Client<HttpConnector, Body>,
    base: String,
}

impl RelayClient {
    /// A client for the relay at `addr`, keeping up to `idle_connections` connections open.
    pub fn new(addr: SocketAddr, idle_connections: usize) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(idle_connections)
            .build(connector);
        Self {
            client,
            base: format!("http://{addr}"),
        }
    }

    /// `POST /webhooks/shopify` with `headers` and `body` as given.
    pub async fn post_webhook(
        &self,
        headers: &[(String, String)],
        body: impl Into<Bytes>,
    ) -> Result<Reply, ClientError> {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(format!("{}{PATH}", self.base))
            .header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        self.send(request.body(Body::from(body.into()))?).await
    }

    /// `GET path` (`/healthz`, `/readyz`, `/metrics`).
    pub async fn get(&self, path: &str) -> Result<Reply, ClientError> {
        let request = Request::builder()
            .method(Method::GET)
            .uri(format!("{}{path}", self.base))
            .body(Body::empty())?;
        self.send(request).await
    }

    async fn send(&self, request: Request<Body>) -> Result<Reply, ClientError> {
        let response = self.client.request(request).await?;
        let status = response.status();
        let bytes = axum::body::to_bytes(Body::new(response.into_body()), usize::MAX).await?;
        Ok(Reply {
            status,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        })
    }
}

/// Every header Shopify sends with a webhook, signed with `secret`.
pub fn shopify_headers(
    secret: &[u8],
    topic: &str,
    shop: &str,
    webhook_id: &str,
    body: &[u8],
) -> Vec<(String, String)> {
    webhook_headers(topic, shop, webhook_id, sign_webhook(secret, body))
}

/// Every header Shopify sends with a webhook, with a signature computed beforehand (the
/// benchmark signs its one body once).
pub fn webhook_headers(
    topic: &str,
    shop: &str,
    webhook_id: &str,
    signature: String,
) -> Vec<(String, String)> {
    [
        (header::TOPIC, topic.to_owned()),
        (header::HMAC, signature),
        (header::SHOP_DOMAIN, shop.to_owned()),
        (header::WEBHOOK_ID, webhook_id.to_owned()),
        (header::EVENT_ID, format!("event-{webhook_id}")),
        (
            header::TRIGGERED_AT,
            "2026-05-01T12:00:00.000000000Z".to_owned(),
        ),
        (header::API_VERSION, "2026-04".to_owned()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect()
}
