//! One shop's Admin GraphQL endpoint: sends a request with the shop's token, and accounts for
//! it the same way whoever calls (the pusher's mutations, reads by item-ingest and the CLI): a
//! [`Reservation`] of the shop's [`Pacer`] holds the request's cost while it is in flight and is
//! settled by the answer's `throttleStatus`, and `wos_sync_shopify_requests_total` / `_request_seconds` /
//! `_throttle_available` are recorded.
//!
//! A request sent while the task works for a trace (`platform::trace::current`) carries its
//! `traceparent`.
//!
//! What the answer *means* is the caller's business ([`Answer`] carries the raw facts).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use model::config::ShopSettings;
use platform::metrics::Metrics;
use serde_json::Value;

use crate::{
    answer::{ThrottleStatus, cost_of, is_throttled, parse_retry_after},
    pacing::{Pacer, Reservation},
};

/// The HTTP client for Shopify: rustls with the ring provider, and no redirects, so the access
/// token is only ever sent to the configured host.
///
/// reqwest is built without a default TLS provider and panics in `build()` until one is
/// installed, even for plain `http://`; installing it twice (several services in one process)
/// is harmless.
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

/// One shop's endpoint, credentials, pacer and metrics. Cheap to clone (the pacer is shared).
#[derive(Clone)]
pub struct ShopClient {
    shop: String,
    http: reqwest::Client,
    url: String,
    token: String,
    pacer: Arc<Pacer>,
    metrics: Option<Metrics>,
}

impl std::fmt::Debug for ShopClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("ShopClient")
            .field("shop", &self.shop)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// A request that reached Shopify and got an HTTP answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    /// `Retry-After`, clamped to [50 ms, 300 s].
    pub retry_after: Option<Duration>,
    pub body: String,
    /// The body as JSON, when it is JSON.
    pub document: Option<Value>,
    pub throttle: Option<ThrottleStatus>,
    pub requested_cost: Option<f64>,
}

/// A request that got no HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportFailure {
    /// One line, without the URL or anything secret.
    pub reason: String,
    /// Nothing was sent (the connection was refused): the request cannot have run.
    pub not_sent: bool,
}

/// One request's answer, whatever it was.
#[derive(Debug, Clone)]
pub struct Answer {
    pub reply: Result<Reply, TransportFailure>,
    /// The `status` label it was counted under: the HTTP status, `throttled`, `timeout` or
    /// `connection`.
    pub status_label: String,
    pub elapsed: Duration,
}

impl ShopClient {
    /// The client of a configured shop.
    pub fn new(http: reqwest::Client, shop: &ShopSettings, token: String) -> Self {
        Self::for_url(http, &shop.domain, shop.graphql_url(), token)
    }

    /// A client for an explicit GraphQL URL (benchmarks and tests).
    pub fn for_url(http: reqwest::Client, shop: &str, graphql_url: String, token: String) -> Self {
        Self {
            shop: shop.to_owned(),
            http,
            url: graphql_url,
            token,
            pacer: Arc::new(Pacer::new(Instant::now())),
            metrics: None,
        }
    }

    /// Records every request into `metrics` (CONTRACT 6's `wos_sync_shopify_*` families).
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    pub fn shop(&self) -> &str {
        &self.shop
    }

    /// The shop's pacer (shared by every clone of this client).
    pub fn pacer(&self) -> &Arc<Pacer> {
        &self.pacer
    }

    /// Sends one GraphQL request (`{"query", "variables", ...}`) and records it under
    /// `operation`. Its cost is reserved from the pacer as it leaves, whatever the estimate,
    /// and settled by the answer; the caller decides what the answer means and whether to wait
    /// first ([`Pacer::delay_before_call`]).
    pub async fn send(&self, operation: &str, request: &Value, timeout: Duration) -> Answer {
        self.send_reserved(self.pacer.reserve_now(), operation, request, timeout)
            .await
    }

    /// [`Self::send`] for a call whose cost the caller already reserved ([`Pacer::reserve`]:
    /// concurrent callers that must never over-draw the bucket between them).
    pub async fn send_reserved(
        &self,
        reservation: Reservation,
        operation: &str,
        request: &Value,
        timeout: Duration,
    ) -> Answer {
        let started = Instant::now();
        let reply = self.exchange(request, timeout).await;
        let now = Instant::now();
        let status_label = match &reply {
            Ok(reply) if reply.document.as_ref().is_some_and(is_throttled) => "throttled".into(),
            Ok(reply) => reply.status.to_string(),
            Err(failure) if failure.reason.starts_with("timed out") => "timeout".into(),
            Err(_) => "connection".into(),
        };
        match &reply {
            Ok(reply) => reservation.settle(reply.throttle, reply.requested_cost, now),
            Err(_) => reservation.settle(None, None, now),
        }
        let elapsed = started.elapsed();
        if let Some(metrics) = &self.metrics {
            let shop = self.shop.as_str();
            metrics
                .shopify_requests_total
                .with_label_values(&[shop, operation, &status_label])
                .inc();
            metrics
                .shopify_request_seconds
                .with_label_values(&[shop, operation])
                .observe(elapsed.as_secs_f64());
            metrics
                .shopify_throttle_available
                .with_label_values(&[shop])
                .set(self.pacer.estimated_available(now) as i64);
        }
        Answer {
            reply,
            status_label,
            elapsed,
        }
    }

    async fn exchange(
        &self,
        request: &Value,
        timeout: Duration,
    ) -> Result<Reply, TransportFailure> {
        let mut post = self
            .http
            .post(&self.url)
            .header("X-Shopify-Access-Token", &self.token);
        // Sent for the work the task does (a batch, a delivery): Shopify ignores it, but a proxy
        // or a stand-in in between can log the request under the trace id our logs name.
        if let Some(trace) = platform::trace::current() {
            post = post.header(platform::trace::HEADER, trace.to_string());
        }
        let response = post
            .json(request)
            .timeout(timeout)
            .send()
            .await
            .map_err(|err| TransportFailure {
                not_sent: err.is_connect(),
                reason: transport_error(err),
            })?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let body = response.text().await.map_err(|err| TransportFailure {
            not_sent: false,
            reason: transport_error(err),
        })?;
        let document: Option<Value> = serde_json::from_str(&body).ok();
        let (throttle, requested_cost) = document.as_ref().map(cost_of).unwrap_or_default();
        Ok(Reply {
            status,
            retry_after,
            body,
            document,
            throttle,
            requested_cost,
        })
    }
}

/// A transport error in one line, without the URL's query or anything secret.
fn transport_error(err: reqwest::Error) -> String {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "cannot connect"
    } else if err.is_body() || err.is_decode() {
        "connection dropped while reading the answer"
    } else {
        "request failed"
    };
    format!("{kind}: {}", err.without_url())
}
