//! Product webhooks: the REST-style `products/create|update|delete` payloads Shopify sends,
//! signed with the shop's secret and POSTed to the configured relay URL.
//!
//! Payloads follow `contract/fixtures/shopify-webhooks/shopify-docs-examples/2026-04/products/`:
//! full details for the first 100 variants, every variant in `variant_gids` (newest first),
//! ids as JSON integers (they can exceed 2^53), a null SKU for a variant without one.
//! Deliveries go out one at a time, in the order the changes happened, each retried with
//! backoff until it gets a 2xx or runs out of attempts; the log records every outcome.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, SecondsFormat, Utc};
use model::{ids::ProductId, signature::sign_webhook, webhook::ProductTopic};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};

use crate::{
    client::HttpClient,
    store::{ShopState, lock},
};

/// Variants with full details in a product payload (Shopify's limit).
pub const FULL_VARIANTS: usize = 100;

fn rest_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, false)
}

/// The `products/create|update` body for a product as it is now; `None` if it is gone.
pub fn product_payload(state: &ShopState, product_id: ProductId) -> Option<Value> {
    let product = state.products.get(&product_id)?;
    let variants: Vec<_> = product
        .variants
        .iter()
        .filter_map(|id| state.variants.get(id))
        .collect();
    let full: Vec<Value> = variants
        .iter()
        .take(FULL_VARIANTS)
        .enumerate()
        .map(|(i, v)| {
            let quantity = state.variant_inventory_quantity(v);
            json!({
                "admin_graphql_api_id": v.id.gid(),
                "barcode": v.barcode,
                "compare_at_price": null,
                "created_at": rest_time(v.created_at),
                "id": v.id.0,
                "inventory_policy": "deny",
                "position": i + 1,
                "price": v.price,
                "product_id": product_id.0,
                "sku": v.sku,
                "taxable": true,
                "title": v.title,
                "updated_at": rest_time(v.updated_at),
                "option1": v.title,
                "option2": null,
                "option3": null,
                "image_id": null,
                "inventory_item_id": v.inventory_item_id.0,
                "inventory_quantity": quantity,
                "old_inventory_quantity": quantity,
            })
        })
        .collect();
    let mut by_update = variants.clone();
    by_update.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then(b.id.cmp(&a.id)));
    let variant_gids: Vec<Value> = by_update
        .iter()
        .map(|v| {
            json!({
                "admin_graphql_api_id": v.id.gid(),
                "updated_at": v.updated_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            })
        })
        .collect();
    Some(json!({
        "admin_graphql_api_id": product_id.gid(),
        "body_html": product.body_html,
        "created_at": rest_time(product.created_at),
        "handle": product.handle,
        "id": product_id.0,
        "product_type": product.product_type,
        "published_at": rest_time(product.created_at),
        "template_suffix": null,
        "title": product.title,
        "updated_at": rest_time(product.updated_at),
        "vendor": product.vendor,
        "status": product.status,
        "published_scope": "web",
        "tags": "",
        "variants": full,
        "options": [],
        "images": [],
        "image": null,
        "media": [],
        "variant_gids": variant_gids,
        "has_variants_that_requires_components": false,
        "category": null,
    }))
}

/// The `products/delete` body.
pub fn delete_payload(product_id: ProductId) -> Value {
    json!({ "id": product_id.0 })
}

/// One webhook and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookDelivery {
    /// `X-Shopify-Webhook-Id`.
    pub webhook_id: String,
    /// `X-Shopify-Event-Id`.
    pub event_id: String,
    /// `products/create`, …
    pub topic: String,
    /// The shop.
    pub shop: String,
    /// The product.
    pub product_id: ProductId,
    /// The exact body sent.
    pub body: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// Status of the last attempt, if one got a response.
    pub last_status: Option<u16>,
    /// Error of the last attempt, if it got none.
    pub last_error: Option<String>,
    /// Whether an attempt got a 2xx.
    pub delivered: bool,
}

#[derive(Debug)]
struct Job {
    index: usize,
    url: String,
    secret: String,
    api_version: String,
    triggered_at: String,
}

/// Queues, sends and records webhooks.
#[derive(Debug)]
pub struct WebhookEmitter {
    log: Mutex<Vec<WebhookDelivery>>,
    queue: mpsc::UnboundedSender<Job>,
    pending: Arc<AtomicUsize>,
    idle: Arc<Notify>,
}

impl WebhookEmitter {
    /// Starts the delivery worker on the current runtime.
    pub fn start(max_attempts: u32) -> Arc<Self> {
        let (queue, jobs) = mpsc::unbounded_channel();
        let emitter = Arc::new(Self {
            log: Mutex::new(Vec::new()),
            queue,
            pending: Arc::new(AtomicUsize::new(0)),
            idle: Arc::new(Notify::new()),
        });
        tokio::spawn(deliver_all(
            Arc::downgrade(&emitter),
            jobs,
            max_attempts.max(1),
        ));
        emitter
    }

    /// Queues one webhook.
    #[allow(clippy::too_many_arguments)]
    pub fn emit(
        &self,
        url: &str,
        secret: &str,
        api_version: &str,
        shop: &str,
        topic: ProductTopic,
        product_id: ProductId,
        body: &Value,
    ) {
        let delivery = WebhookDelivery {
            webhook_id: uuid::Uuid::new_v4().to_string(),
            event_id: uuid::Uuid::new_v4().to_string(),
            topic: topic.as_str().to_owned(),
            shop: shop.to_owned(),
            product_id,
            body: body.to_string(),
            attempts: 0,
            last_status: None,
            last_error: None,
            delivered: false,
        };
        let index = {
            let mut log = lock(&self.log);
            log.push(delivery);
            log.len() - 1
        };
        self.pending.fetch_add(1, Ordering::SeqCst);
        let job = Job {
            index,
            url: url.to_owned(),
            secret: secret.to_owned(),
            api_version: api_version.to_owned(),
            triggered_at: Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true),
        };
        if self.queue.send(job).is_err() {
            self.pending.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Every webhook so far.
    pub fn log(&self) -> Vec<WebhookDelivery> {
        lock(&self.log).clone()
    }

    /// Forgets the log (reset). Deliveries in flight still update their old slot harmlessly.
    pub fn clear(&self) {
        lock(&self.log).clear();
    }

    /// Waits until every queued webhook was delivered or gave up; false on timeout.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.idle.notified();
            if self.pending.load(Ordering::SeqCst) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.pending.load(Ordering::SeqCst) == 0;
            }
        }
    }

    fn update(&self, index: usize, f: impl FnOnce(&mut WebhookDelivery)) {
        if let Some(delivery) = lock(&self.log).get_mut(index) {
            f(delivery);
        }
    }
}

async fn deliver_all(
    emitter: std::sync::Weak<WebhookEmitter>,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    max_attempts: u32,
) {
    let client = HttpClient::new(Duration::from_secs(5));
    while let Some(job) = jobs.recv().await {
        let Some(emitter) = emitter.upgrade() else {
            return;
        };
        let Some(delivery) = lock(&emitter.log).get(job.index).cloned() else {
            finish(&emitter);
            continue;
        };
        let signature = sign_webhook(job.secret.as_bytes(), delivery.body.as_bytes());
        let headers = [
            ("content-type", "application/json"),
            ("x-shopify-topic", delivery.topic.as_str()),
            ("x-shopify-hmac-sha256", signature.as_str()),
            ("x-shopify-shop-domain", delivery.shop.as_str()),
            ("x-shopify-webhook-id", delivery.webhook_id.as_str()),
            ("x-shopify-event-id", delivery.event_id.as_str()),
            ("x-shopify-triggered-at", job.triggered_at.as_str()),
            ("x-shopify-api-version", job.api_version.as_str()),
        ];
        for attempt in 1..=max_attempts {
            let result = client
                .send(
                    "POST",
                    &job.url,
                    &headers,
                    delivery.body.clone().into_bytes(),
                )
                .await;
            let delivered = matches!(&result, Ok(r) if (200..300).contains(&r.status));
            emitter.update(job.index, |d| {
                d.attempts = attempt;
                match &result {
                    Ok(r) => {
                        d.last_status = Some(r.status);
                        d.last_error = None;
                    }
                    Err(e) => {
                        d.last_status = None;
                        d.last_error = Some(e.to_string());
                    }
                }
                d.delivered = delivered;
            });
            if delivered {
                break;
            }
            if attempt < max_attempts {
                // Shopify retries over hours; the sandbox compresses that to seconds.
                let backoff = Duration::from_millis(100 * 2u64.pow(attempt.min(5) - 1));
                tokio::time::sleep(backoff).await;
            } else {
                tracing::warn!(topic = %delivery.topic, url = %job.url, "webhook not delivered");
            }
        }
        finish(&emitter);
    }
}

fn finish(emitter: &WebhookEmitter) {
    emitter.pending.fetch_sub(1, Ordering::SeqCst);
    emitter.idle.notify_waiters();
}
