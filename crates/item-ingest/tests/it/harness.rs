//! Starting item-ingest for a test, sending webhooks, reading items.

use std::time::Duration;

use item_ingest::ShopTokens;
use lapin::{BasicProperties, types::FieldTable};
use model::config::{FieldPolicies, ShopDirectory, ShopSettings};
use platform::{
    amqp::{
        headers::set_str,
        topology::{SHOPIFY_EVENTS, declare_exchanges, declare_work_queue},
    },
    metrics::Metrics,
    shutdown::CancellationToken,
};
use serde_json::{Value, json};
use testkit::{TestEnv, wait_until};

pub const SHOP: &str = "acme.myshopify.com";

pub struct Ingest {
    pub env: TestEnv,
    pub metrics: Metrics,
    pub settings: platform::settings::Settings,
    tokens: ShopTokens,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    sent: u64,
    triggered_at: Option<String>,
}

impl Ingest {
    pub async fn start() -> Self {
        Self::start_with(FieldPolicies::default()).await
    }

    /// item-ingest reaching PostgreSQL through a TCP proxy the test can cut (a database outage
    /// without touching the shared server).
    pub async fn start_through_database_proxy() -> (Self, testkit::proxy::Proxy) {
        let mut ingest = Self::start().await;
        ingest.stop_service().await;
        let proxy = testkit::proxy::Proxy::start("127.0.0.1:5432")
            .await
            .unwrap();
        ingest.settings.database.url = format!(
            "postgres://postgres@{}/{}",
            proxy.addr(),
            ingest.env.database_name
        );
        ingest.start_service();
        (ingest, proxy)
    }

    pub async fn start_with(fields: FieldPolicies) -> Self {
        Self::start_with_shop(shop(fields), ShopTokens::default()).await
    }

    /// item-ingest for one shop configured as given (e.g. pointing at a sandbox), with these
    /// access tokens.
    pub async fn start_with_shop(shop: ShopSettings, tokens: ShopTokens) -> Self {
        // Logs show up in a failing test's output.
        platform::telemetry::init_test_tracing();
        let env = TestEnv::new().await;
        let mut settings = env.settings();
        settings.http.listen = Some("127.0.0.1:0".parse().unwrap());
        settings.shops = ShopDirectory::new(vec![shop]).unwrap();
        // The queue must exist before the first publish, whoever declares first.
        declare_exchanges(env.channel(), &env.names).await.unwrap();
        declare_work_queue(
            env.channel(),
            &env.names.item_ingest_queue(),
            &settings.retry,
        )
        .await
        .unwrap();
        let mut ingest = Self {
            env,
            metrics: Metrics::new(),
            settings,
            tokens,
            shutdown: CancellationToken::new(),
            task: None,
            sent: 0,
            triggered_at: None,
        };
        ingest.start_service();
        ingest
    }

    /// Starts the service (again) with a fresh metrics registry.
    pub fn start_service(&mut self) {
        self.metrics = Metrics::new();
        self.shutdown = CancellationToken::new();
        self.sent = 0;
        self.task = Some(tokio::spawn(item_ingest::serve(
            self.settings.clone(),
            self.tokens.clone(),
            self.metrics.clone(),
            self.shutdown.clone(),
        )));
    }

    /// Stops the service (SIGTERM-like) and waits for it to finish.
    pub async fn stop_service(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(15), task)
                .await
                .unwrap()
                .unwrap()
                .unwrap();
        }
    }

    /// Publishes a webhook as the relay does and waits until the service has finished with it
    /// (acked, duplicate or dead-lettered).
    pub async fn send(&mut self, topic: &str, body: &Value, webhook_id: &str) {
        self.send_raw(topic, body.to_string().as_bytes(), webhook_id, Some(SHOP))
            .await;
    }

    /// Sends with `X-Shopify-Triggered-At` (as the relay passes it on).
    pub async fn send_triggered(
        &mut self,
        topic: &str,
        body: &Value,
        webhook_id: &str,
        triggered_at: &str,
    ) {
        self.triggered_at = Some(triggered_at.to_owned());
        self.send(topic, body, webhook_id).await;
        self.triggered_at = None;
    }

    pub async fn send_raw(
        &mut self,
        topic: &str,
        body: &[u8],
        webhook_id: &str,
        shop: Option<&str>,
    ) {
        self.publish_raw(topic, body, webhook_id, shop).await;
        self.wait_handled().await;
    }

    /// Publishes a webhook as the relay does, without waiting for the service (then
    /// [`Self::wait_handled`]).
    pub async fn publish(&mut self, topic: &str, body: &Value, webhook_id: &str) {
        self.publish_raw(topic, body.to_string().as_bytes(), webhook_id, Some(SHOP))
            .await;
    }

    /// Waits until the service has finished with every webhook published so far.
    pub async fn wait_handled(&self) {
        let expected = self.sent;
        wait_until(Duration::from_secs(20), "webhook handled", || async {
            self.handled() >= expected
        })
        .await;
    }

    async fn publish_raw(
        &mut self,
        topic: &str,
        body: &[u8],
        webhook_id: &str,
        shop: Option<&str>,
    ) {
        let mut headers = FieldTable::default();
        if let Some(triggered_at) = &self.triggered_at {
            set_str(
                &mut headers,
                "x-shopify-triggered-at",
                triggered_at.as_str(),
            );
        }
        set_str(&mut headers, "x-shopify-topic", topic);
        if let Some(shop) = shop {
            set_str(&mut headers, "x-shopify-shop-domain", shop);
        }
        set_str(&mut headers, "x-shopify-webhook-id", webhook_id);
        set_str(&mut headers, "x-shopify-api-version", "2026-04");
        let properties = BasicProperties::default()
            .with_message_id(webhook_id.into())
            .with_content_type("application/json".into())
            .with_headers(headers);
        if topic.starts_with("products/") {
            let exchange = self.env.names.name(SHOPIFY_EVENTS);
            self.env
                .publish(&exchange, &topic.replace('/', "."), body, properties)
                .await;
        } else {
            // Other topics are not bound to the queue; put them in directly, as a wrong
            // binding would, to see how the service treats them.
            let queue = self.env.names.item_ingest_queue().name;
            self.env.publish("", &queue, body, properties).await;
        }
        self.sent += 1;
    }

    /// Messages the service finished with (any final outcome).
    pub fn handled(&self) -> u64 {
        let queue = self.env.names.item_ingest_queue().name;
        ["acked", "duplicate", "dead_lettered", "parked"]
            .iter()
            .map(|outcome| {
                self.metrics
                    .messages_total
                    .with_label_values(&[item_ingest::SERVICE, queue.as_str(), outcome])
                    .get()
            })
            .sum()
    }

    pub fn messages(&self, outcome: &str) -> u64 {
        let queue = self.env.names.item_ingest_queue().name;
        self.metrics
            .messages_total
            .with_label_values(&[item_ingest::SERVICE, queue.as_str(), outcome])
            .get()
    }

    pub fn items_counter(&self, outcome: &str) -> u64 {
        self.metrics
            .items_total
            .with_label_values(&[SHOP, outcome])
            .get()
    }

    /// A metric's value by name and labels (0 when the series does not exist), for metrics the
    /// service registers itself.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.metrics
            .registry
            .gather()
            .iter()
            .filter(|family| family.name() == name)
            .flat_map(|family| family.get_metric())
            .filter(|metric| {
                labels.iter().all(|(key, value)| {
                    metric
                        .get_label()
                        .iter()
                        .any(|pair| pair.name() == *key && pair.value() == *value)
                })
            })
            .map(|metric| metric.get_counter().get_value() + metric.get_gauge().get_value())
            .sum()
    }

    /// Waits until [`Self::metric`] reaches `value`.
    pub async fn wait_metric_at_least(&self, name: &str, labels: &[(&str, &str)], value: f64) {
        wait_until(
            Duration::from_secs(30),
            &format!("{name} {labels:?} at least {value}"),
            || async { self.metric(name, labels) >= value },
        )
        .await;
    }

    pub fn conflicts(&self) -> i64 {
        self.metrics.sku_conflicts.with_label_values(&[SHOP]).get()
    }

    /// The inventory item a SKU's item points at: `None` = no item, `Some(None)` = NULL.
    pub async fn mapping(&self, sku: &str) -> Option<Option<u64>> {
        self.env
            .pool
            .get()
            .await
            .unwrap()
            .query_opt(
                "SELECT inventory_item_id FROM items WHERE shop_domain = $1 AND sku = $2",
                &[&SHOP, &sku],
            )
            .await
            .unwrap()
            .map(|row| row.get::<_, Option<i64>>(0).map(|id| id as u64))
    }

    /// An item's policy-governed columns: description, barcode, price, vendor, product_type.
    pub async fn fields(&self, sku: &str) -> [Option<String>; 5] {
        let row = self
            .env
            .pool
            .get()
            .await
            .unwrap()
            .query_one(
                "SELECT description, barcode, price::text, vendor, product_type FROM items \
                 WHERE shop_domain = $1 AND sku = $2",
                &[&SHOP, &sku],
            )
            .await
            .unwrap();
        [row.get(0), row.get(1), row.get(2), row.get(3), row.get(4)]
    }

    pub async fn item_count(&self) -> i64 {
        self.env
            .pool
            .get()
            .await
            .unwrap()
            .query_one("SELECT count(*) FROM items", &[])
            .await
            .unwrap()
            .get(0)
    }

    pub async fn stop(mut self) {
        self.stop_service().await;
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        // A test that panicked before stop(): stop consuming before the environment's cleanup
        // deletes the queues, or the service would declare them again.
        self.shutdown.cancel();
    }
}

pub fn shop(fields: FieldPolicies) -> ShopSettings {
    ShopSettings {
        domain: SHOP.to_owned(),
        api_version: "2026-04".to_owned(),
        admin_base_url: "http://127.0.0.1:1".to_owned(),
        access_token_env: "ACME_SHOPIFY_TOKEN".to_owned(),
        webhook_secret_env: None,
        previous_webhook_secret_env: None,
        locations: Default::default(),
        fields,
    }
}

/// A variant of a Shopify product payload.
#[derive(Clone)]
pub struct V {
    pub id: u64,
    pub sku: Option<&'static str>,
    pub item: u64,
    pub title: &'static str,
    pub created: u32,
}

pub fn v(id: u64, sku: &'static str, item: u64) -> V {
    V {
        id,
        sku: Some(sku),
        item,
        title: "XL",
        created: 0,
    }
}

/// Shopify's REST product JSON at second `updated` of a fixed minute.
pub fn product(id: u64, title: &str, updated: u32, variants: &[V]) -> Value {
    let variants: Vec<Value> = variants
        .iter()
        .map(|variant| {
            json!({
                "id": variant.id,
                "product_id": id,
                "title": variant.title,
                "sku": variant.sku,
                "barcode": format!("bc-{}", variant.id),
                "price": "19.99",
                "inventory_item_id": variant.item,
                "created_at": ts(variant.created),
                "updated_at": ts(updated),
                "admin_graphql_api_id": format!("gid://shopify/ProductVariant/{}", variant.id),
            })
        })
        .collect();
    json!({
        "id": id,
        "title": title,
        "vendor": "Acme",
        "product_type": "Shirts",
        "created_at": ts(0),
        "updated_at": ts(updated),
        "variants": variants,
    })
}

pub fn ts(second: u32) -> String {
    format!("2026-11-27T10:{:02}:{:02}-05:00", second / 60, second % 60)
}
