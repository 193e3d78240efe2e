//! Reading one delivery into a product event: the relay's headers and Shopify's payload.
//!
//! Everything that can make a message unusable is found here, before any database work, and
//! becomes a `malformed` dead letter with a precise reason: a missing header, a shop that is
//! not configured, a payload that is not Shopify's product JSON.

use chrono::{DateTime, Utc};
use model::{
    catalog::EventKind,
    config::{ShopDirectory, ShopSettings},
    webhook::{ProductEvent, ProductTopic, parse_product_event, parse_shopify_timestamp},
};
use platform::amqp::consumer::Incoming;

/// A product webhook, ready to ingest.
#[derive(Debug, Clone)]
pub struct WebhookEvent<'a> {
    pub shop: &'a ShopSettings,
    /// `X-Shopify-Webhook-Id`: the same on every redelivery of one webhook.
    pub webhook_id: String,
    /// Orders events without `updated_at` (deletes): `X-Shopify-Triggered-At`, else receipt.
    pub event_time: DateTime<Utc>,
    /// `X-Shopify-Triggered-At`, which orders events of the same second.
    pub triggered_at: Option<DateTime<Utc>>,
    pub topic: String,
    /// The topic read: whether the event is the product's create.
    pub kind: EventKind,
    pub event: ProductEvent,
}

/// Why a delivery is not a usable product event. One line; becomes `x-error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("missing header `{0}` (the relay sets it from Shopify's request)")]
    MissingHeader(&'static str),
    #[error("shop `{0}` is not configured")]
    UnknownShop(String),
    #[error("payload of `{topic}`: {problem}")]
    Payload { topic: String, problem: String },
}

/// Reads the headers CONTRACT 3.1 puts on every Shopify event, then the payload.
pub fn read_event<'a>(
    message: &Incoming,
    shops: &'a ShopDirectory,
    received_at: DateTime<Utc>,
) -> Result<WebhookEvent<'a>, EventError> {
    let topic = message
        .header_str("x-shopify-topic")
        .map(str::to_owned)
        .ok_or(EventError::MissingHeader("x-shopify-topic"))?;
    let domain = message
        .header_str("x-shopify-shop-domain")
        .ok_or(EventError::MissingHeader("x-shopify-shop-domain"))?
        .trim()
        .to_ascii_lowercase();
    let webhook_id = message
        .header_str("x-shopify-webhook-id")
        .or_else(|| message.message_id())
        .filter(|id| !id.trim().is_empty())
        .ok_or(EventError::MissingHeader("x-shopify-webhook-id"))?
        .to_owned();
    let shop = shops
        .get(&domain)
        .ok_or_else(|| EventError::UnknownShop(escape(&domain)))?;
    let triggered_at = message
        .header_str("x-shopify-triggered-at")
        .and_then(parse_shopify_timestamp)
        .map(|t| t.with_timezone(&Utc));
    let event_time = triggered_at.unwrap_or(received_at);
    let event = parse_product_event(&topic, &message.body).map_err(|err| EventError::Payload {
        topic: escape(&topic),
        problem: err.to_string(),
    })?;
    // parse_product_event refused anything but a product topic.
    let kind = ProductTopic::parse(&topic).map_or(EventKind::Update, EventKind::of_topic);
    Ok(WebhookEvent {
        shop,
        webhook_id,
        event_time,
        triggered_at,
        topic,
        kind,
        event,
    })
}

/// Header values are echoed in errors: keep them short and on one line.
fn escape(value: &str) -> String {
    value
        .chars()
        .take(100)
        .flat_map(char::escape_debug)
        .collect()
}
