//! A small plain-HTTP/1.1 client (hyper), for the sandbox's webhook deliveries, its benchmark
//! and tests — in this crate and in other crates' tests that drive the sandbox.
//!
//! Why not reqwest: the workspace's reqwest (`rustls-no-provider`) panics when a client is
//! built without a process-wide rustls crypto provider, even for `http://` URLs, and the
//! sandbox must not pull a TLS backend. Everything here is `http://` on localhost.

use std::time::Duration;

use axum::{body::Bytes, http::HeaderMap};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use serde_json::Value;

/// Why a request got no response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The URL or a header is not usable.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// No complete response within the timeout.
    #[error("no response within {0:?}")]
    Timeout(Duration),
    /// The connection could not be made, or closed/reset before a complete response.
    #[error("connection failed: {message}")]
    Connection {
        /// What the transport said.
        message: String,
        /// True when the connection was closed or reset after the request was sent (the
        /// server may have acted on it).
        after_send: bool,
    },
}

/// A response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: HeaderMap,
    /// Body bytes.
    pub body: Bytes,
}

impl HttpResponse {
    /// The body as JSON (`Value::Null` if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A pooled HTTP/1.1 client with a per-request timeout.
#[derive(Debug, Clone)]
pub struct HttpClient {
    inner: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
}

impl HttpClient {
    /// A client whose requests time out after `timeout`.
    pub fn new(timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Self {
            inner: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector),
            timeout,
        }
    }

    /// The same client with another timeout.
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        Self {
            inner: self.inner.clone(),
            timeout,
        }
    }

    /// Sends a request and reads the whole response.
    pub async fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<HttpResponse, HttpError> {
        let mut builder = axum::http::Request::builder().method(method).uri(url);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| HttpError::InvalidRequest(e.to_string()))?;
        let exchange = async {
            let response = self.inner.request(request).await.map_err(|e| {
                let after_send = !e.is_connect();
                HttpError::Connection {
                    message: error_chain(&e),
                    after_send,
                }
            })?;
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| HttpError::Connection {
                    message: error_chain(&e),
                    after_send: true,
                })?
                .to_bytes();
            Ok(HttpResponse {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| HttpError::Timeout(self.timeout))?
    }

    /// POSTs JSON.
    pub async fn post_json(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: &Value,
    ) -> Result<HttpResponse, HttpError> {
        let mut all = vec![("content-type", "application/json")];
        all.extend_from_slice(headers);
        self.send("POST", url, &all, body.to_string().into_bytes())
            .await
    }

    /// GETs a URL.
    pub async fn get(&self, url: &str) -> Result<HttpResponse, HttpError> {
        self.send("GET", url, &[], Vec::new()).await
    }

    /// POSTs a GraphQL request to `{base_url}/admin/api/{version}/graphql.json` with
    /// `X-Shopify-Access-Token`.
    pub async fn graphql(
        &self,
        base_url: &str,
        version: &str,
        access_token: &str,
        query: &str,
        variables: &Value,
    ) -> Result<HttpResponse, HttpError> {
        let url = format!("{base_url}/admin/api/{version}/graphql.json");
        self.post_json(
            &url,
            &[("x-shopify-access-token", access_token)],
            &serde_json::json!({"query": query, "variables": variables}),
        )
        .await
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
