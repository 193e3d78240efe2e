//! `POST /webhooks/shopify`: one Shopify delivery, from headers to the broker's confirm.
//!
//! The checks run cheapest first and nothing is published unless all pass:
//!
//! | step | refusal |
//! |---|---|
//! | more requests in progress than `max_concurrent_requests` | 503 + `Retry-After` |
//! | `Content-Length` over the limit (checked before reading a byte) | 413 |
//! | `X-Shopify-Topic`, `X-Shopify-Shop-Domain` or `X-Shopify-Webhook-Id` missing/unreadable | 400 |
//! | `X-Shopify-Hmac-Sha256` missing, shop not configured | 401 |
//! | a large body (or one of unknown length) while `max_concurrent_large_bodies` are read | 503 + `Retry-After` |
//! | body over the limit while streaming (chunked bodies have no length) | 413 |
//! | signature matches neither the current nor the previous secret | 401 |
//! | topic not in `topics`: answered 200, **not published** | (200) |
//! | `products/delete` whose body is not exactly `{"id": <integer>}` | 400 |
//! | broker down or no confirm within the publish budget | 503 |
//!
//! The signature covers the body only, not the headers: whoever saw one signed delivery can
//! replay its body with any `X-Shopify-Topic`. So only the topics the services consume are
//! published, and a delete is only believed with a delete-shaped body: a signed create or
//! update body sent as `products/delete` cannot delete a product.
//!
//! A verified webhook is published unchanged to `shopify.events` (CONTRACT 3.1) and answered 200
//! once the broker confirmed it, also when no queue is bound to its topic (counted as
//! unroutable: Shopify must not retry a webhook nobody subscribed to). The whole request runs
//! under a timeout shorter than Shopify's 5 s, after which it is answered 503 so Shopify
//! redelivers. Answers never echo the body or the signature.
//!
//! Each request runs in a span `webhook` with the `trace_id` of its trace: the request's W3C
//! `traceparent` when it sends a valid one (a tracing proxy in front of the relay), a new trace
//! otherwise. The published message carries it on (`traceparent` header: the request span's
//! context), so item-ingest's log lines for the webhook name the same trace id.

use std::{sync::Arc, time::Instant};

use axum::{
    body::Body,
    extract::State,
    http::{
        HeaderMap, HeaderValue, StatusCode,
        header::{CONTENT_LENGTH, RETRY_AFTER},
    },
    response::{IntoResponse, Response},
};
use futures_util::StreamExt;
use lapin::{BasicProperties, types::FieldTable};
use platform::{
    amqp::{
        headers::set_str,
        publisher::{Confirmed, Publisher},
    },
    metrics::Metrics,
    trace::TraceParent,
};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::{
    secrets::{ShopSecrets, Verification},
    settings::{LARGE_BODY_BYTES, RelaySettings},
};

/// The route Shopify delivers to.
pub const PATH: &str = "/webhooks/shopify";

/// Request headers Shopify sends (HTTP header names are case-insensitive).
pub mod header {
    pub const TOPIC: &str = "x-shopify-topic";
    pub const HMAC: &str = "x-shopify-hmac-sha256";
    pub const SHOP_DOMAIN: &str = "x-shopify-shop-domain";
    pub const WEBHOOK_ID: &str = "x-shopify-webhook-id";
    pub const EVENT_ID: &str = "x-shopify-event-id";
    pub const TRIGGERED_AT: &str = "x-shopify-triggered-at";
    pub const API_VERSION: &str = "x-shopify-api-version";
}

/// AMQP headers of a published webhook (CONTRACT 3.1), each copied from the request header of
/// the same name when Shopify sent it.
const FORWARDED: [&str; 6] = [
    header::TOPIC,
    header::SHOP_DOMAIN,
    header::WEBHOOK_ID,
    header::EVENT_ID,
    header::TRIGGERED_AT,
    header::API_VERSION,
];

/// AMQP short strings (routing key, `message_id`) hold at most 255 bytes.
const MAX_SHORT_STRING: usize = 255;

/// `Retry-After` of a shed request, in seconds.
const RETRY_AFTER_SECS: &str = "1";

/// `outcome` label of `wos_sync_webhooks_total` (CONTRACT 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    BadHmac,
    BadRequest,
    Unavailable,
}

impl Outcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::BadHmac => "bad_hmac",
            Self::BadRequest => "bad_request",
            Self::Unavailable => "unavailable",
        }
    }
}

/// Topic label of requests refused before their signature was verified: anyone can send any
/// topic, and a label value per invented topic would grow the metric without bound.
pub const UNVERIFIED_TOPIC: &str = "unverified";
/// Topic label of authentic webhooks of a topic the relay does not publish (not in `topics`):
/// one value for all of them, so the label set stays the configured topics plus two.
pub const OTHER_TOPIC: &str = "other";

/// The relay's metrics beyond the contract's families.
#[derive(Debug, Clone)]
pub struct RelayMetrics {
    /// `wos_sync_webhook_request_seconds{outcome}`: time from request to answer.
    pub request_seconds: HistogramVec,
    /// `wos_sync_webhooks_unroutable_total{topic}`: accepted webhooks no queue was bound for.
    pub unroutable_total: IntCounterVec,
    /// `wos_sync_webhook_requests_in_flight{kind}`: requests being handled (`request`), and of
    /// those the ones reading a large body (`large_body`); at their limit, more are shed.
    pub in_flight: IntGaugeVec,
}

impl RelayMetrics {
    /// Registers the relay's families on the service's registry.
    pub fn register(metrics: &Metrics) -> Result<Self, prometheus::Error> {
        let request_seconds = HistogramVec::new(
            HistogramOpts::new(
                "wos_sync_webhook_request_seconds",
                "Time from a webhook request to the relay's answer, by outcome.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["outcome"],
        )?;
        let unroutable_total = IntCounterVec::new(
            Opts::new(
                "wos_sync_webhooks_unroutable_total",
                "Accepted webhooks whose topic no queue is bound to (confirmed, stored nowhere).",
            ),
            &["topic"],
        )?;
        metrics
            .registry
            .register(Box::new(request_seconds.clone()))?;
        let in_flight = IntGaugeVec::new(
            Opts::new(
                "wos_sync_webhook_requests_in_flight",
                "Webhook requests being handled (kind=request), and those reading a large body \
                 (kind=large_body); at their limits further requests get 503.",
            ),
            &["kind"],
        )?;
        metrics
            .registry
            .register(Box::new(unroutable_total.clone()))?;
        metrics.registry.register(Box::new(in_flight.clone()))?;
        for kind in [REQUEST_SLOT, LARGE_BODY_SLOT] {
            in_flight.with_label_values(&[kind]).set(0);
        }
        Ok(Self {
            request_seconds,
            unroutable_total,
            in_flight,
        })
    }
}

/// What a request handler needs; shared by every request.
#[derive(Debug)]
pub struct RelayState {
    pub secrets: ShopSecrets,
    pub publisher: Publisher,
    /// `shopify.events` under the deployment's prefix.
    pub exchange: String,
    pub config: RelaySettings,
    pub metrics: Metrics,
    pub relay_metrics: RelayMetrics,
    /// Slots of `max_concurrent_requests`.
    pub requests: Semaphore,
    /// Slots of `max_concurrent_large_bodies`.
    pub large_bodies: Semaphore,
}

/// `kind` label values of `wos_sync_webhook_requests_in_flight`.
pub const REQUEST_SLOT: &str = "request";
/// See [`REQUEST_SLOT`].
pub const LARGE_BODY_SLOT: &str = "large_body";

/// A taken admission slot, counted in `wos_sync_webhook_requests_in_flight` while held.
struct Slot<'a> {
    permit: Option<SemaphorePermit<'a>>,
    gauge: IntGauge,
}

impl<'a> Slot<'a> {
    /// A slot of `slots` if one is free right now (no waiting: waiting requests are what
    /// exhausts a server).
    fn try_take(slots: &'a Semaphore, gauge: IntGauge) -> Option<Self> {
        let permit = slots.try_acquire().ok()?;
        gauge.inc();
        Some(Self {
            permit: Some(permit),
            gauge,
        })
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        // The slot is free before the gauge says so, never the other way round.
        drop(self.permit.take());
        self.gauge.dec();
    }
}

impl RelayState {
    /// The shared state of a relay's requests, with the admission slots of `config`.
    pub fn new(
        secrets: ShopSecrets,
        publisher: Publisher,
        exchange: String,
        config: RelaySettings,
        metrics: Metrics,
        relay_metrics: RelayMetrics,
    ) -> Self {
        Self {
            requests: Semaphore::new(config.max_concurrent_requests),
            large_bodies: Semaphore::new(config.max_concurrent_large_bodies),
            secrets,
            publisher,
            exchange,
            config,
            metrics,
            relay_metrics,
        }
    }
}

/// How one request ended.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    outcome: Outcome,
    topic_label: String,
    message: &'static str,
    /// Load shed: tell the client when to come back.
    retry_after: bool,
}

impl Answer {
    fn refuse(status: StatusCode, outcome: Outcome, message: &'static str) -> Self {
        Self {
            status,
            outcome,
            topic_label: UNVERIFIED_TOPIC.to_owned(),
            message,
            retry_after: false,
        }
    }

    /// Too much at once: 503 with `Retry-After`, nothing read.
    fn shed(message: &'static str) -> Self {
        Self {
            retry_after: true,
            ..Self::refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                Outcome::Unavailable,
                message,
            )
        }
    }

    fn bad_request(message: &'static str) -> Self {
        Self::refuse(StatusCode::BAD_REQUEST, Outcome::BadRequest, message)
    }

    fn too_large() -> Self {
        Self::refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            Outcome::BadRequest,
            "body too large",
        )
    }

    fn unauthorized(message: &'static str) -> Self {
        Self::refuse(StatusCode::UNAUTHORIZED, Outcome::BadHmac, message)
    }
}

/// The webhook handler: runs [`handle`] under the request budget, answers and records metrics.
pub async fn receive(
    State(state): State<Arc<RelayState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let trace = request_trace(&headers);
    let span = tracing::info_span!("webhook", trace_id = %trace.trace_id());
    let gauge = state
        .relay_metrics
        .in_flight
        .with_label_values(&[REQUEST_SLOT]);
    let answer = match Slot::try_take(&state.requests, gauge) {
        // Shed before anything is read: the cheapest answer there is.
        None => Answer::shed("too many requests at once, retry later"),
        Some(_slot) => match tokio::time::timeout(
            state.config.request_timeout(),
            platform::trace::scope(trace, span.clone(), handle(&state, &headers, body)),
        )
        .await
        {
            Ok(answer) => answer,
            Err(_elapsed) => {
                tracing::warn!(
                    parent: &span,
                    timeout_ms = state.config.request_timeout_ms,
                    "webhook not handled within the request budget; answering 503"
                );
                // It may have run out of time before its signature was checked.
                Answer::refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    Outcome::Unavailable,
                    "not handled in time, retry later",
                )
            }
        },
    };
    state
        .metrics
        .webhooks_total
        .with_label_values(&[answer.topic_label.as_str(), answer.outcome.as_str()])
        .inc();
    state
        .relay_metrics
        .request_seconds
        .with_label_values(&[answer.outcome.as_str()])
        .observe(started.elapsed().as_secs_f64());
    let mut response = (answer.status, format!("{}\n", answer.message)).into_response();
    if answer.retry_after {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS));
    }
    response
}

/// The checks and the publish; see the module documentation for the order.
async fn handle(state: &RelayState, headers: &HeaderMap, body: Body) -> Answer {
    let limit = state.config.max_body_bytes;
    let declared = match headers.get(CONTENT_LENGTH) {
        None => None,
        Some(length) => match length
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            Some(length) if length > limit as u64 => return Answer::too_large(),
            Some(length) => Some(length),
            None => return Answer::bad_request("invalid Content-Length"),
        },
    };
    let Some(topic) = short_header(headers, header::TOPIC) else {
        return Answer::bad_request("missing or invalid X-Shopify-Topic");
    };
    let Some(shop_header) = short_header(headers, header::SHOP_DOMAIN) else {
        return Answer::bad_request("missing or invalid X-Shopify-Shop-Domain");
    };
    let Some(webhook_id) = short_header(headers, header::WEBHOOK_ID) else {
        return Answer::bad_request("missing or invalid X-Shopify-Webhook-Id");
    };
    let Some(signature) = headers
        .get(header::HMAC)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.trim().is_empty())
    else {
        return Answer::unauthorized("missing signature");
    };
    let shop = shop_header.to_ascii_lowercase();
    if !state.secrets.knows(&shop) {
        tracing::debug!(shop = %shop, "webhook for a shop that is not configured");
        return Answer::unauthorized("unknown shop or invalid signature");
    }
    // A large body (or one whose size is not announced) is read only with a slot of its own:
    // a flood of them cannot take the memory the small, usual ones need.
    let _large_slot = match declared {
        Some(length) if length <= LARGE_BODY_BYTES => None,
        _ => {
            let gauge = state
                .relay_metrics
                .in_flight
                .with_label_values(&[LARGE_BODY_SLOT]);
            match Slot::try_take(&state.large_bodies, gauge) {
                Some(slot) => Some(slot),
                None => return Answer::shed("too many large requests at once, retry later"),
            }
        }
    };
    let capacity = declared.map_or(0, |length| usize::try_from(length).unwrap_or(limit));
    let body = match read_limited(body, limit, capacity).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => return Answer::too_large(),
        Err(BodyError::Read) => return Answer::bad_request("could not read the body"),
    };
    let verification = state.secrets.verify(&shop, &body, signature);
    match verification {
        Verification::Current => {}
        Verification::Previous => {
            tracing::info!(shop = %shop, "webhook signed with the previous secret (rotation)");
        }
        Verification::Invalid | Verification::UnknownShop => {
            // Debug only: anyone can send these, and the metric counts them.
            tracing::debug!(shop = %shop, topic, "webhook with an invalid signature refused");
            return Answer::unauthorized("unknown shop or invalid signature");
        }
    }

    if !state.config.publishes(topic) {
        // Authentic, but nobody here consumes it: Shopify must not retry it, and it must not
        // reach the exchange (the signature does not cover the topic header).
        tracing::debug!(shop = %shop, topic, webhook_id, "webhook of a topic the relay does not publish");
        return Answer {
            status: StatusCode::OK,
            outcome: Outcome::Accepted,
            topic_label: OTHER_TOPIC.to_owned(),
            message: "accepted (topic not handled)",
            retry_after: false,
        };
    }
    let topic_label = topic.to_owned();
    if topic == DELETE_TOPIC && !is_delete_shaped(&body) {
        // A signed body replayed under a forged topic, or a payload Shopify changed: either
        // way, not something to delete a product for.
        tracing::warn!(shop = %shop, webhook_id, "products/delete whose body is not {{\"id\": ...}} only; refused");
        return Answer {
            topic_label,
            ..Answer::bad_request("products/delete body must be {\"id\": <product id>}")
        };
    }
    let properties = message_properties(headers, &shop, webhook_id, platform::trace::current());
    let routing_key = routing_key(topic);
    let published = state
        .publisher
        .publish(
            &state.exchange,
            &routing_key,
            &body,
            properties,
            state.config.publish_timeout(),
        )
        .await;
    match published {
        // CONTRACT 3 binds `products.*` to item-ingest's queue: a product webhook nobody stored
        // (item-ingest has not declared its queue yet: a fresh broker, a crash loop) would be
        // lost after a 200, since Shopify never redelivers one. 503 makes Shopify retry.
        Ok(Confirmed::Unroutable) if routing_key.starts_with("products.") => {
            state
                .relay_metrics
                .unroutable_total
                .with_label_values(&[topic_label.as_str()])
                .inc();
            tracing::warn!(shop = %shop, topic, webhook_id, "no queue bound for a product webhook; answering 503 so Shopify retries");
            Answer {
                status: StatusCode::SERVICE_UNAVAILABLE,
                outcome: Outcome::Unavailable,
                topic_label,
                message: "not stored yet, retry later",
                retry_after: false,
            }
        }
        Ok(confirmed) => {
            if confirmed == Confirmed::Unroutable {
                state
                    .relay_metrics
                    .unroutable_total
                    .with_label_values(&[topic_label.as_str()])
                    .inc();
                tracing::debug!(shop = %shop, topic, webhook_id, "no queue is bound to this topic");
            }
            tracing::info!(shop = %shop, topic, webhook_id, "webhook published");
            Answer {
                status: StatusCode::OK,
                outcome: Outcome::Accepted,
                topic_label,
                message: "accepted",
                retry_after: false,
            }
        }
        Err(err) => {
            tracing::warn!(
                shop = %shop,
                topic,
                webhook_id,
                error = %err,
                "webhook not published; answering 503"
            );
            Answer {
                status: StatusCode::SERVICE_UNAVAILABLE,
                outcome: Outcome::Unavailable,
                topic_label,
                message: "broker unavailable, retry later",
                retry_after: false,
            }
        }
    }
}

/// A required header as text: present, visible ASCII, not blank, at most 255 bytes (it becomes
/// an AMQP routing key or `message_id`).
fn short_header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= MAX_SHORT_STRING)
}

/// The routing key of a topic: `/` replaced by `.` (`products/update` -> `products.update`).
pub fn routing_key(topic: &str) -> String {
    topic.replace('/', ".")
}

/// The topic whose body must be delete-shaped.
pub const DELETE_TOPIC: &str = "products/delete";

/// Shopify's `products/delete` body: an object with the product's `id` (a positive integer) and
/// nothing else. Create and update bodies (title, variants, ...) never pass.
pub fn is_delete_shaped(body: &[u8]) -> bool {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(body)
    else {
        return false;
    };
    map.len() == 1
        && map
            .get("id")
            .and_then(serde_json::Value::as_u64)
            .is_some_and(|id| id > 0)
}

/// The request's trace: its valid `traceparent` header, else a new trace. An invalid one is
/// not an error (anyone can send anything): the webhook is handled under a new trace.
fn request_trace(headers: &HeaderMap) -> TraceParent {
    headers
        .get(platform::trace::HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| TraceParent::parse(v).ok())
        .unwrap_or_else(TraceParent::new_root)
}

/// Properties of the published message (CONTRACT 3.1). The shop domain header carries the
/// configured (lowercase) domain the webhook was verified for; `traceparent` the context of
/// the request's span (`platform::trace::scope`).
fn message_properties(
    headers: &HeaderMap,
    shop: &str,
    webhook_id: &str,
    trace: Option<TraceParent>,
) -> BasicProperties {
    let mut table = FieldTable::default();
    if let Some(trace) = trace {
        trace.write_to(&mut table);
    }
    for name in FORWARDED {
        if name == header::SHOP_DOMAIN {
            set_str(&mut table, name, shop);
        } else if let Some(value) = headers.get(name).and_then(|v| v.to_str().ok()) {
            set_str(&mut table, name, value.trim());
        }
    }
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_message_id(webhook_id.into())
        .with_headers(table)
}

#[derive(Debug)]
enum BodyError {
    TooLarge,
    Read,
}

/// Reads the body, stopping as soon as it exceeds `limit` bytes; `capacity` (the announced
/// length) is allocated at once, so a body never costs twice its size in a growing buffer.
async fn read_limited(body: Body, limit: usize, capacity: usize) -> Result<Vec<u8>, BodyError> {
    let mut stream = body.into_data_stream();
    let mut buffer = Vec::with_capacity(capacity.min(limit));
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| BodyError::Read)?;
        if buffer.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge);
        }
        buffer.extend_from_slice(&chunk);
    }
    Ok(buffer)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn routing_keys_replace_slashes() {
        assert_eq!(routing_key("products/update"), "products.update");
        assert_eq!(
            routing_key("inventory_levels/update"),
            "inventory_levels.update"
        );
    }

    #[test]
    fn only_an_id_is_a_delete() {
        for body in [
            r#"{"id":788032119674292922}"#,
            r#"{ "id" : 18446744073709551615 }"#,
        ] {
            assert!(is_delete_shaped(body.as_bytes()), "{body}");
        }
        for body in [
            r#"{"id":1,"title":"T","variants":[]}"#,
            r#"{"id":1,"admin_graphql_api_id":"gid://shopify/Product/1"}"#,
            r#"{"id":"1"}"#,
            r#"{"id":0}"#,
            r#"{"id":-1}"#,
            r#"{"id":1.5}"#,
            r#"{}"#,
            r#"[{"id":1}]"#,
            "not json",
        ] {
            assert!(!is_delete_shaped(body.as_bytes()), "{body}");
        }
    }

    #[test]
    fn properties_carry_the_contract_headers_that_were_sent() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("x-shopify-topic", "products/update"),
            ("x-shopify-shop-domain", "ACME.myshopify.com"),
            ("x-shopify-webhook-id", "w-1"),
            ("x-shopify-hmac-sha256", "c2ln"),
        ] {
            headers.insert(name, HeaderValue::from_static(value));
        }
        let trace = TraceParent::new_root();
        let properties = message_properties(&headers, "acme.myshopify.com", "w-1", Some(trace));
        assert_eq!(
            properties.message_id().as_ref().map(|v| v.as_str()),
            Some("w-1")
        );
        assert_eq!(
            properties.content_type().as_ref().map(|v| v.as_str()),
            Some("application/json")
        );
        let table = properties.headers().as_ref();
        let get = |name| platform::amqp::headers::header_str(table, name);
        assert_eq!(get(header::TOPIC), Some("products/update"));
        assert_eq!(get(header::SHOP_DOMAIN), Some("acme.myshopify.com"));
        assert_eq!(get(header::WEBHOOK_ID), Some("w-1"));
        assert_eq!(get(header::EVENT_ID), None, "not sent, not invented");
        assert_eq!(get(header::HMAC), None, "the signature is not forwarded");
        let sent = TraceParent::parse(get(platform::trace::HEADER).unwrap_or_default())
            .expect("a valid traceparent");
        assert_eq!(sent, trace);
        assert_eq!(table.map(|t| t.inner().len()), Some(4));
    }

    #[test]
    fn a_request_keeps_its_valid_trace_and_gets_a_new_one_otherwise() {
        let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", HeaderValue::from_static(valid));
        assert_eq!(request_trace(&headers).to_string(), valid);
        for invalid in [
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "junk",
        ] {
            headers.insert("traceparent", HeaderValue::from_static(invalid));
            let trace = request_trace(&headers);
            assert_ne!(trace.to_string(), valid);
            assert!(TraceParent::parse(&trace.to_string()).is_ok());
        }
        assert!(TraceParent::parse(&request_trace(&HeaderMap::new()).to_string()).is_ok());
    }
}
