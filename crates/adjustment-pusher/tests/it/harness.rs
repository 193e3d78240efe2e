//! A pusher on a test's database and queue prefix, a sandbox shop with stocked items, and a
//! ledger of the expected Shopify quantities.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use adjustment_pusher::ShopTokens;
use lapin::BasicProperties;
use model::{
    config::{ShopDirectory, ShopSettings},
    ids::{InventoryItemId, LocationId},
};
use platform::{
    amqp::topology::{WOS_TRANSACTIONS, declare_exchanges, declare_work_queue},
    metrics::Metrics,
    settings::Settings,
    shutdown::CancellationToken,
};
use serde_json::{Value, json};
use shopify_sandbox::{
    ProductSpec, Sandbox, SandboxConfig, SandboxHandle, ThrottleConfig, VariantSpec,
};
use testkit::TestEnv;

pub const STOCK: i64 = 1000;

/// One sandbox shop as the test sees it.
#[derive(Debug, Clone)]
pub struct Shop {
    pub domain: String,
    pub token: String,
    /// WOS warehouse -> Shopify location.
    pub locations: BTreeMap<String, LocationId>,
    /// SKU -> inventory item.
    pub items: BTreeMap<String, InventoryItemId>,
}

pub struct Harness {
    pub env: TestEnv,
    pub sandbox: SandboxHandle,
    pub shops: Vec<Shop>,
    pub settings: Settings,
    /// Expected `available` per (shop, item, location).
    pub expected: BTreeMap<(String, InventoryItemId, LocationId), i64>,
    replicas: Vec<Replica>,
    /// webhook-relay and item-ingest, when the harness runs them (`Options::webhooks`).
    mapping_services: Option<CancellationToken>,
    /// The relay's webhook address, when it runs.
    pub relay_addr: Option<std::net::SocketAddr>,
    published: u64,
}

struct Replica {
    metrics: Metrics,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Options of a harness.
pub struct Options {
    pub shops: Vec<&'static str>,
    pub skus: usize,
    pub throttle: ThrottleConfig,
    /// `[adjustment_pusher]` overrides, as TOML.
    pub pusher: &'static str,
    /// `[database] max_connections` of the pusher (its intake pool).
    pub db_connections: Option<usize>,
    /// Runs webhook-relay and item-ingest too, with the sandbox's product webhooks going
    /// through them: mappings then change the way they do in production.
    pub webhooks: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            shops: vec!["acme.myshopify.com"],
            skus: 4,
            throttle: ThrottleConfig {
                enabled: false,
                ..ThrottleConfig::default()
            },
            pusher: "",
            db_connections: None,
            webhooks: false,
        }
    }
}

/// The webhook secret of every shop when the harness runs item-ingest.
const WEBHOOK_SECRET: &str = "hush";

impl Harness {
    pub async fn start() -> Self {
        Self::with(Options::default()).await
    }

    pub async fn with(options: Options) -> Self {
        platform::telemetry::init_test_tracing();
        let env = TestEnv::new().await;
        let sandbox = Sandbox::start(SandboxConfig {
            throttle: options.throttle,
            ..SandboxConfig::default()
        })
        .await
        .unwrap();
        let mut shops = Vec::new();
        for domain in &options.shops {
            let token = format!("token-{domain}");
            sandbox.create_shop(domain, &token).unwrap();
            let main = sandbox.create_location(domain, "Main").unwrap();
            let east = sandbox.create_location(domain, "East").unwrap();
            let locations: BTreeMap<String, LocationId> = [
                ("MAIN".to_owned(), main),
                ("EAST".to_owned(), east),
                // A second WOS warehouse in the same Shopify location.
                ("ANNEX".to_owned(), main),
            ]
            .into_iter()
            .collect();
            let variants = (0..options.skus)
                .map(|n| VariantSpec {
                    sku: Some(format!("SKU-{n}")),
                    stock: vec![
                        shopify_sandbox::Stock {
                            location_id: main,
                            available: STOCK,
                        },
                        shopify_sandbox::Stock {
                            location_id: east,
                            available: STOCK,
                        },
                    ],
                    ..VariantSpec::default()
                })
                .collect();
            let created = sandbox
                .create_product(
                    domain,
                    ProductSpec {
                        title: "Tee".into(),
                        variants,
                        ..product_defaults()
                    },
                )
                .unwrap();
            let items = created
                .variants
                .iter()
                .map(|v| (v.sku.clone().unwrap(), v.inventory_item_id))
                .collect();
            shops.push(Shop {
                domain: (*domain).to_owned(),
                token,
                locations,
                items,
            });
        }

        let mut settings = env.settings();
        settings.http.listen = Some("127.0.0.1:0".parse().unwrap());
        let configs: Vec<ShopSettings> = shops
            .iter()
            .map(|shop| ShopSettings {
                domain: shop.domain.clone(),
                api_version: "2026-04".into(),
                admin_base_url: sandbox.base_url(),
                access_token_env: "UNUSED_IN_TESTS".into(),
                webhook_secret_env: options.webhooks.then(|| "TEST_WEBHOOK_SECRET".into()),
                previous_webhook_secret_env: None,
                locations: shop.locations.clone(),
                fields: Default::default(),
            })
            .collect();
        settings.shops = ShopDirectory::new(configs).unwrap();
        if let Some(connections) = options.db_connections {
            settings.database.max_connections = connections;
        }
        let mut section: toml::Table =
            "batch_window_ms = 20\nretry_base_ms = 50\nretry_max_ms = 500\nsweep_interval_ms = 200\nrequest_timeout_ms = 2000"
                .parse()
                .unwrap();
        section.extend(options.pusher.parse::<toml::Table>().unwrap());
        settings
            .services
            .insert("adjustment_pusher".into(), toml::Value::Table(section));

        declare_exchanges(env.channel(), &env.names).await.unwrap();
        declare_work_queue(
            env.channel(),
            &env.names.adjustment_pusher_queue(),
            &settings.retry,
        )
        .await
        .unwrap();
        declare_work_queue(
            env.channel(),
            &env.names.item_mappings_queue(),
            &settings.retry,
        )
        .await
        .unwrap();
        let (mapping_services, relay_addr) = if options.webhooks {
            let (services, addr) = start_mapping_services(&env, &sandbox, &shops, &settings).await;
            (Some(services), Some(addr))
        } else {
            (None, None)
        };
        let mut harness = Self {
            env,
            sandbox,
            shops,
            settings,
            expected: BTreeMap::new(),
            replicas: Vec::new(),
            mapping_services,
            relay_addr,
            published: 0,
        };
        for shop in harness.shops.clone() {
            for item in shop.items.values() {
                for location in [shop.locations["MAIN"], shop.locations["EAST"]] {
                    harness
                        .expected
                        .insert((shop.domain.clone(), *item, location), STOCK);
                }
            }
        }
        harness.map_all().await;
        harness.start_replica();
        harness
    }

    /// Starts one more pusher on the same database and queues.
    pub fn start_replica(&mut self) {
        let tokens = ShopTokens::new(
            self.shops
                .iter()
                .map(|s| (s.domain.clone(), s.token.clone())),
        );
        let metrics = Metrics::new();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(adjustment_pusher::serve(
            self.settings.clone(),
            tokens,
            metrics.clone(),
            shutdown.clone(),
        ));
        self.replicas.push(Replica {
            metrics,
            shutdown,
            task,
        });
    }

    pub fn metrics(&self) -> &Metrics {
        &self.replicas[0].metrics
    }

    /// Sum of a counter over every replica.
    pub fn adjustments(&self, shop: &str, kind: &str, outcome: &str) -> u64 {
        self.replicas
            .iter()
            .map(|r| {
                r.metrics
                    .adjustments_total
                    .with_label_values(&[shop, kind, outcome])
                    .get()
            })
            .sum()
    }

    pub fn shop(&self, index: usize) -> &Shop {
        &self.shops[index]
    }

    /// Writes the `items` rows item-ingest would have written, for every SKU of every shop.
    pub async fn map_all(&self) {
        for shop in &self.shops {
            for (sku, item) in &shop.items {
                self.map(&shop.domain, sku, Some(*item)).await;
            }
        }
    }

    /// Sets an item's mapping (None: NULL), creating the item if needed.
    pub async fn map(&self, shop: &str, sku: &str, item: Option<InventoryItemId>) {
        let id = item.map(|i| i.0 as i64);
        self.env
            .pool
            .get()
            .await
            .unwrap()
            .execute(
                "INSERT INTO items (shop_domain, sku, inventory_item_id) VALUES ($1, $2, $3) \
                 ON CONFLICT (shop_domain, sku) DO UPDATE SET inventory_item_id = EXCLUDED.inventory_item_id",
                &[&shop, &sku, &id],
            )
            .await
            .unwrap();
    }

    /// Sets several items' mappings in one statement, so a sweep releases their parked
    /// adjustments together (one batch, whatever the timing).
    pub async fn map_together(&self, shop: &str, mappings: &[(&str, i64)]) {
        let skus: Vec<&str> = mappings.iter().map(|(sku, _)| *sku).collect();
        let items: Vec<i64> = mappings.iter().map(|(_, item)| *item).collect();
        self.env
            .pool
            .get()
            .await
            .unwrap()
            .execute(
                "UPDATE items i SET inventory_item_id = m.item \
                 FROM unnest($2::text[], $3::bigint[]) AS m(sku, item) \
                 WHERE i.shop_domain = $1 AND i.sku = m.sku",
                &[&shop, &skus, &items],
            )
            .await
            .unwrap();
    }

    /// The inventory item a SKU of the harness's product is stocked as, as a bigint.
    pub fn item_of(&self, shop: usize, sku: &str) -> i64 {
        self.shops[shop].items[sku].0 as i64
    }

    /// Waits until nothing is left to do: no transaction waiting in the queue, no adjustment
    /// parked, pending or batched, no open batch, no dead letter waiting in the outbox. The
    /// database part is one statement (one snapshot): read in several, a row could move from a
    /// state one query counts (parked) to one the next query does not (pending) and pass for
    /// settled in between.
    pub async fn wait_settled(&self, within: Duration) {
        let queue = self.env.names.adjustment_pusher_queue().name;
        testkit::wait_until(within, "the pusher settled", || async {
            self.env.queue_depth(&queue).await == 0
                && self
                    .count(
                        "SELECT (SELECT count(*) FROM adjustments \
                                 WHERE state IN ('parked', 'pending', 'batched')) \
                         + (SELECT count(*) FROM push_batches WHERE state = 'open') \
                         + (SELECT count(*) FROM outbox)",
                    )
                    .await
                    == 0
        })
        .await;
    }

    /// Takes the dead letters the push loop wrote (one per dead transaction; call after
    /// [`Self::wait_settled`]), keyed by message id.
    pub async fn push_dead_letters(&self) -> BTreeMap<String, lapin::message::BasicGetMessage> {
        let dead = self
            .count("SELECT count(DISTINCT transaction_id) FROM adjustments WHERE state = 'dead'")
            .await;
        let dlq = self.env.names.adjustment_pusher_queue().dead_letter_queue();
        self.env
            .wait_and_drain(&dlq, dead as usize, Duration::from_secs(10))
            .await
            .into_iter()
            .map(|m| {
                let id = m
                    .delivery
                    .properties
                    .message_id()
                    .as_ref()
                    .map(|id| id.to_string())
                    .unwrap_or_default();
                (id, m)
            })
            .collect()
    }

    /// One shop's push loop as the service builds it, on the test's pool, for tests that drive
    /// its steps by hand (stop the replicas first).
    pub fn shop_pusher(&self, shop: usize) -> adjustment_pusher::push::ShopPusher {
        let shop = &self.shops[shop];
        let config = self.settings.shops.get(&shop.domain).unwrap();
        let metrics = Metrics::new();
        let client = shopify_admin::ShopClient::new(
            shopify_admin::http_client().unwrap(),
            config,
            shop.token.clone(),
        )
        .with_metrics(metrics.clone());
        adjustment_pusher::push::ShopPusher {
            shop: shop.domain.clone(),
            client,
            pool: self.env.pool.clone(),
            settings: self.settings.service_section("adjustment_pusher").unwrap(),
            monitor: platform::supervise::LoopMonitor::new(
                &metrics,
                adjustment_pusher::SERVICE,
                adjustment_pusher::push::LOOP,
                &shop.domain,
            ),
            metrics,
            ready: std::sync::Arc::new(adjustment_pusher::push::ReadyShops::new(
                [&shop.domain],
                1,
                std::time::Duration::ZERO,
            )),
            dead_letter_queue: self.env.names.adjustment_pusher_queue().dead_letter_queue(),
            outbox_wake: Default::default(),
        }
    }

    /// Writes `count` pending adjustments (+`delta` each, SKU-`n` at MAIN) straight into the
    /// store, as intake would have.
    pub async fn insert_pending(&self, sku: &str, delta: i64, count: i64) {
        let shop = &self.shops[0];
        let main = shop.locations["MAIN"].0 as i64;
        let item = shop.items[sku].0 as i64;
        let client = self.env.pool.get().await.unwrap();
        client
            .execute(
                "INSERT INTO wos_transactions (shop_domain, transaction_id, kind, sku, \
                     occurred_at, content_digest, body) \
                 SELECT $1::text, 'direct-' || $2::text || '-' || n, 'put', $2::text, now(), \
                     'digest', '\\x7b7d'::bytea \
                 FROM generate_series(1, $3::bigint) AS n",
                &[&shop.domain, &sku, &count],
            )
            .await
            .unwrap();
        client
            .execute(
                "INSERT INTO adjustments (shop_domain, transaction_id, kind, sku, location_id, \
                     delta, reason, occurred_at, state, inventory_item_id) \
                 SELECT shop_domain, transaction_id, 'put', sku, $3, $4, 'received', \
                     occurred_at, 'pending', $5 FROM wos_transactions \
                 WHERE shop_domain = $1 AND sku = $2 AND transaction_id LIKE 'direct-%' \
                   AND NOT EXISTS (SELECT 1 FROM adjustments a \
                                   WHERE a.transaction_id = wos_transactions.transaction_id)",
                &[&shop.domain, &sku, &main, &delta, &item],
            )
            .await
            .unwrap();
    }

    /// Publishes a transaction as WOS does.
    pub async fn publish(&mut self, transaction: &Value) {
        self.publish_raw(
            transaction.to_string().as_bytes(),
            transaction["transaction_id"].as_str().unwrap_or("none"),
            transaction["type"].as_str().unwrap_or("put"),
        )
        .await;
    }

    pub async fn publish_raw(&mut self, body: &[u8], message_id: &str, kind: &str) {
        self.publish_with_headers(body, message_id, kind, Default::default())
            .await;
    }

    /// Publishes a transaction body with these AMQP headers (a `traceparent`, say).
    pub async fn publish_with_headers(
        &mut self,
        body: &[u8],
        message_id: &str,
        kind: &str,
        headers: lapin::types::FieldTable,
    ) {
        let properties = BasicProperties::default()
            .with_message_id(message_id.into())
            .with_content_type("application/json".into())
            .with_headers(headers);
        let exchange = self.env.names.name(WOS_TRANSACTIONS);
        self.env
            .publish(&exchange, &format!("inventory.{kind}"), body, properties)
            .await;
        self.published += 1;
    }

    /// Records an expected change.
    pub fn expect(&mut self, shop: &str, sku: &str, warehouse: &str, delta: i64) {
        let shop_fixture = self.shops.iter().find(|s| s.domain == shop).unwrap();
        let key = (
            shop.to_owned(),
            shop_fixture.items[sku],
            shop_fixture.locations[warehouse],
        );
        *self.expected.entry(key).or_insert(STOCK) += delta;
    }

    fn actual(&self) -> BTreeMap<(String, InventoryItemId, LocationId), i64> {
        self.expected
            .keys()
            .map(|(shop, item, location)| {
                let quantity = self
                    .sandbox
                    .quantity(shop, *item, *location, "available")
                    .unwrap_or(i64::MIN);
                ((shop.clone(), *item, *location), quantity)
            })
            .collect()
    }

    /// Waits until Shopify holds exactly the expected quantities and nothing is left to push,
    /// then checks it stays so (a late duplicate would show).
    pub async fn assert_totals(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if self.actual() == self.expected && self.in_flight().await == 0 {
                break;
            }
            if Instant::now() > deadline {
                let actual = self.actual();
                let wrong: Vec<_> = self
                    .expected
                    .iter()
                    .filter(|(key, value)| actual.get(*key) != Some(*value))
                    .map(|(key, value)| {
                        format!(
                            "{key:?}: expected {value}, Shopify has {:?}",
                            actual.get(key)
                        )
                    })
                    .collect();
                panic!(
                    "totals not reached within {within:?} (in flight: {}):\n{}",
                    self.in_flight().await,
                    wrong.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            self.actual(),
            self.expected,
            "quantities changed after they were reached"
        );
    }

    /// Expects `delta` on an inventory item the harness did not create (a product made by
    /// the test).
    pub fn expect_item(
        &mut self,
        shop: &str,
        item: InventoryItemId,
        location: LocationId,
        delta: i64,
        stock: i64,
    ) {
        *self
            .expected
            .entry((shop.to_owned(), item, location))
            .or_insert(stock) += delta;
    }

    /// Adjustments not finished (pending, batched) plus transactions not yet taken in.
    pub async fn in_flight(&self) -> i64 {
        let client = self.env.pool.get().await.unwrap();
        let open: i64 = client
            .query_one(
                "SELECT count(*) FROM adjustments WHERE state IN ('pending', 'batched')",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        open + i64::from(
            self.env
                .queue_depth(&self.env.names.adjustment_pusher_queue().name)
                .await,
        )
    }

    /// Waits until `count` adjustments are parked.
    pub async fn wait_parked(&self, count: i64) {
        testkit::wait_until(Duration::from_secs(10), "parked", || async {
            self.count("SELECT count(*) FROM adjustments WHERE state = 'parked'")
                .await
                == count
        })
        .await;
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.env
            .pool
            .get()
            .await
            .unwrap()
            .query_one(sql, &[])
            .await
            .unwrap()
            .get(0)
    }

    pub async fn stop(mut self) {
        self.stop_replicas().await;
    }

    /// Stops every in-process replica (SIGTERM-like) and waits for them.
    pub async fn stop_replicas(&mut self) {
        for replica in self.replicas.drain(..) {
            replica.shutdown.cancel();
            tokio::time::timeout(Duration::from_secs(20), replica.task)
                .await
                .unwrap()
                .unwrap()
                .unwrap();
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        for replica in &self.replicas {
            replica.shutdown.cancel();
        }
        if let Some(services) = &self.mapping_services {
            services.cancel();
        }
    }
}

/// The webhook secret of every shop when the harness runs item-ingest, for tests that post
/// webhooks to the relay themselves.
pub fn webhook_secret() -> &'static [u8] {
    WEBHOOK_SECRET.as_bytes()
}

/// Starts webhook-relay and item-ingest on the test's database and prefix, and points the
/// sandbox's product webhooks at the relay (whose address it returns).
async fn start_mapping_services(
    env: &TestEnv,
    sandbox: &SandboxHandle,
    shops: &[Shop],
    settings: &Settings,
) -> (CancellationToken, std::net::SocketAddr) {
    declare_work_queue(
        env.channel(),
        &env.names.item_ingest_queue(),
        &settings.retry,
    )
    .await
    .unwrap();
    for shop in shops {
        sandbox
            .set_webhook_secret(&shop.domain, Some(WEBHOOK_SECRET))
            .unwrap();
    }
    let shutdown = CancellationToken::new();
    let secrets = webhook_relay::secrets::ShopSecrets::resolve(&settings.shops, |_| {
        Some(WEBHOOK_SECRET.to_owned())
    })
    .unwrap();
    // Its ops endpoints on a free port: the default (0.0.0.0:9466) is one port for every test
    // running at once, and for whatever else runs on the machine.
    let mut relay_settings = settings.clone();
    relay_settings.http.ops_listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    let relay = webhook_relay::start(relay_settings, secrets, shutdown.clone())
        .await
        .unwrap();
    sandbox.set_webhook_url(Some(&format!("http://{}/webhooks/shopify", relay.addr)));
    let tokens = ShopTokens::new(shops.iter().map(|s| (s.domain.clone(), s.token.clone())));
    tokio::spawn(item_ingest::serve(
        settings.clone(),
        tokens,
        Metrics::new(),
        shutdown.clone(),
    ));
    (shutdown, relay.addr)
}

fn product_defaults() -> ProductSpec {
    ProductSpec {
        title: String::new(),
        vendor: None,
        product_type: None,
        status: None,
        body_html: None,
        variants: Vec::new(),
    }
}

/// A transaction body.
pub fn tx(id: &str, shop: &str, kind: &str, sku: &str, warehouse: &str, extra: Value) -> Value {
    let mut body = json!({
        "transaction_id": id,
        "shop_domain": shop,
        "type": kind,
        "sku": sku,
        "warehouse": warehouse,
        "occurred_at": chrono::Utc::now().to_rfc3339(),
    });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    body
}
