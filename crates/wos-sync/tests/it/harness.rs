//! A test's world: its database and queue prefix (`TestEnv`), a Shopify sandbox with a shop,
//! a configuration file both the in-process services and the `wos-sync` processes read, and
//! helpers to run the binary and wait for conditions.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::{Output, Stdio},
    time::Duration,
};

use adjustment_pusher::ShopTokens;
use lapin::BasicProperties;
use model::ids::{InventoryItemId, LocationId};
use platform::{
    amqp::topology::WOS_TRANSACTIONS, metrics::Metrics, settings::Settings,
    shutdown::CancellationToken,
};
use serde_json::{Value, json};
use shopify_sandbox::{
    ProductSpec, Sandbox, SandboxConfig, SandboxHandle, Stock, ThrottleConfig, VariantSpec,
};
use testkit::TestEnv;

pub const SHOP: &str = "acme.myshopify.com";
pub const MAIN: LocationId = LocationId(68_845_568_042);
pub const EAST: LocationId = LocationId(68_845_600_810);
pub const STOCK: i64 = 100;

/// The binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_wos-sync")
}

/// What one `wos-sync` run printed and how it ended.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(output: Output) -> Self {
        Self {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Stdout as JSON (panics with the output when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|err| panic!("not JSON ({err}): {self:?}"))
    }

    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, Some(code), "{self:#?}");
        self
    }
}

pub struct World {
    pub env: TestEnv,
    pub sandbox: SandboxHandle,
    pub config: PathBuf,
    /// The text of the configuration file.
    pub toml: String,
    /// Environment of every `wos-sync` process (tokens, secrets).
    pub vars: BTreeMap<String, String>,
    /// SKU -> inventory item in the sandbox.
    pub items: BTreeMap<String, InventoryItemId>,
    pusher: Option<(
        CancellationToken,
        tokio::task::JoinHandle<anyhow::Result<()>>,
    )>,
}

/// What a world starts with.
pub struct Setup {
    /// SKUs of the sandbox's product (stocked with [`STOCK`] at MAIN and EAST).
    pub skus: Vec<&'static str>,
    /// `[adjustment_pusher]` keys added to the test defaults.
    pub pusher: &'static str,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            skus: vec!["SKU-1", "SKU-2"],
            pusher: "",
        }
    }
}

impl World {
    pub async fn new(setup: Setup) -> Self {
        platform::telemetry::init_test_tracing();
        let env = TestEnv::new().await;
        let sandbox = Sandbox::start(SandboxConfig {
            throttle: ThrottleConfig {
                enabled: false,
                ..ThrottleConfig::default()
            },
            ..SandboxConfig::default()
        })
        .await
        .expect("sandbox");
        let token = format!("token-{}", env.id);
        sandbox.create_shop(SHOP, &token).expect("shop");
        sandbox
            .create_location_with_id(SHOP, MAIN, "Main")
            .expect("main");
        sandbox
            .create_location_with_id(SHOP, EAST, "East")
            .expect("east");
        let mut items = BTreeMap::new();
        if !setup.skus.is_empty() {
            let created = sandbox
                .create_product(
                    SHOP,
                    ProductSpec {
                        title: "Tee".into(),
                        variants: setup
                            .skus
                            .iter()
                            .map(|sku| VariantSpec {
                                stock: vec![
                                    Stock {
                                        location_id: MAIN,
                                        available: STOCK,
                                    },
                                    Stock {
                                        location_id: EAST,
                                        available: STOCK,
                                    },
                                ],
                                ..VariantSpec::sku(*sku)
                            })
                            .collect(),
                        ..ProductSpec::default()
                    },
                )
                .expect("product");
            for variant in created.variants {
                items.insert(variant.sku.clone().expect("sku"), variant.inventory_item_id);
            }
        }
        let token_var = format!("ACME_TOKEN_{}", env.id.to_uppercase());
        let secret_var = format!("ACME_SECRET_{}", env.id.to_uppercase());
        let toml = config_text(
            &env,
            &sandbox.base_url(),
            &token_var,
            &secret_var,
            setup.pusher,
        );
        let config = std::env::temp_dir().join(format!("wos-sync-{}.toml", env.id));
        std::fs::write(&config, &toml).expect("config file");
        let vars = [
            (token_var, token),
            (secret_var, "webhook-secret".to_owned()),
        ]
        .into_iter()
        .collect();
        Self {
            env,
            sandbox,
            config,
            toml,
            vars,
            items,
            pusher: None,
        }
    }

    /// The settings the in-process services run with (the file, and the test's URLs).
    pub fn settings(&self) -> Settings {
        let mut settings = Settings::from_toml_str(&self.toml, "test.toml").expect("valid");
        settings.amqp.url = self.env.amqp_url.clone();
        settings.database.url = self.env.database_url.clone();
        settings
    }

    /// Runs `wos-sync --config <file> ARGS` to completion.
    pub async fn cli(&self, args: &[&str]) -> Run {
        self.cli_with(args, &[]).await
    }

    /// [`World::cli`] with extra (or overriding) environment variables.
    pub async fn cli_with(&self, args: &[&str], vars: &[(&str, &str)]) -> Run {
        self.cli_in(&self.config, args, vars).await
    }

    /// [`World::cli_with`] with another configuration file.
    pub async fn cli_in(
        &self,
        config: &std::path::Path,
        args: &[&str],
        vars: &[(&str, &str)],
    ) -> Run {
        let mut command = self.command(args, vars);
        command.env("WOS_SYNC_CONFIG", config);
        let output = tokio::time::timeout(Duration::from_secs(120), command.output())
            .await
            .unwrap_or_else(|_| panic!("wos-sync {args:?} did not finish within 120 s"))
            .expect("wos-sync runs");
        Run::from(output)
    }

    /// The command, not started: stdout and stderr piped.
    pub fn command(&self, args: &[&str], vars: &[(&str, &str)]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(binary());
        // The file through WOS_SYNC_CONFIG, as a deployment sets it.
        command
            .args(args)
            .env("WOS_SYNC_CONFIG", &self.config)
            .env("AMQP_URL", &self.env.amqp_url)
            .env("DATABASE_URL", &self.env.database_url)
            .env("LOG_FORMAT", "text")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (name, value) in &self.vars {
            command.env(name, value);
        }
        for (name, value) in vars {
            command.env(name, value);
        }
        command
    }

    /// Starts an adjustment-pusher in this process on the world's settings.
    pub fn start_pusher(&mut self) {
        self.start_pusher_with(self.settings());
    }

    pub fn start_pusher_with(&mut self, settings: Settings) {
        let token = self
            .vars
            .iter()
            .find(|(k, _)| k.starts_with("ACME_TOKEN"))
            .map(|(_, v)| v.clone());
        let mut tokens = vec![(SHOP.to_owned(), token.unwrap_or_default())];
        for shop in settings.shops.iter().filter(|s| s.domain != SHOP) {
            tokens.push((
                shop.domain.clone(),
                self.vars
                    .get(&shop.access_token_env)
                    .cloned()
                    .unwrap_or_default(),
            ));
        }
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(adjustment_pusher::serve(
            settings,
            ShopTokens::new(tokens),
            Metrics::new(),
            shutdown.clone(),
        ));
        self.pusher = Some((shutdown, task));
    }

    pub async fn stop_pusher(&mut self) {
        if let Some((shutdown, task)) = self.pusher.take() {
            shutdown.cancel();
            tokio::time::timeout(Duration::from_secs(20), task)
                .await
                .expect("pusher stops")
                .expect("pusher task")
                .expect("pusher ran");
        }
    }

    /// Waits until the pusher consumes its queue.
    pub async fn wait_consuming(&self, queue: &str) {
        let channel = self.env.channel().clone();
        let _ = channel;
        testkit::wait_until(
            Duration::from_secs(20),
            &format!("a consumer on {queue}"),
            || async {
                let connection = platform::amqp::connect(
                    &self.env.amqp_url,
                    &format!("test-{}-look", self.env.id),
                )
                .await
                .expect("broker");
                let channel = connection.create_channel().await.expect("channel");
                let declared = channel
                    .queue_declare(
                        queue.into(),
                        lapin::options::QueueDeclareOptions {
                            passive: true,
                            ..Default::default()
                        },
                        lapin::types::FieldTable::default(),
                    )
                    .await;
                let _ = connection.close(200, "looked".into()).await;
                declared.is_ok_and(|q| q.consumer_count() > 0)
            },
        )
        .await;
    }

    /// Sets an item's `inventory_item_id` (creating the item), as item-ingest or WOS would.
    pub async fn map(&self, sku: &str, item: Option<i64>) {
        self.env
            .pool
            .get()
            .await
            .expect("db")
            .execute(
                "INSERT INTO items (shop_domain, sku, inventory_item_id) VALUES ($1, $2, $3) \
                 ON CONFLICT (shop_domain, sku) DO UPDATE SET inventory_item_id = EXCLUDED.inventory_item_id",
                &[&SHOP, &sku, &item],
            )
            .await
            .expect("item written");
    }

    /// The inventory item of a sandbox SKU, as a bigint.
    pub fn item(&self, sku: &str) -> i64 {
        i64::try_from(self.items[sku].0).expect("fits")
    }

    /// `available` of a SKU at a location in the sandbox.
    pub fn available(&self, sku: &str, location: LocationId) -> i64 {
        self.sandbox
            .quantity(SHOP, self.items[sku], location, "available")
            .expect("stocked")
    }

    /// Publishes a transaction as WOS does.
    pub async fn publish(&self, transaction: &Value) {
        let properties = BasicProperties::default()
            .with_message_id(
                transaction["transaction_id"]
                    .as_str()
                    .unwrap_or("none")
                    .into(),
            )
            .with_content_type("application/json".into());
        let key = format!(
            "inventory.{}",
            transaction["type"].as_str().unwrap_or("put")
        );
        self.env
            .publish(
                &self.env.names.name(WOS_TRANSACTIONS),
                &key,
                transaction.to_string().as_bytes(),
                properties,
            )
            .await;
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.env
            .pool
            .get()
            .await
            .expect("db")
            .query_one(sql, &[])
            .await
            .expect("count")
            .get(0)
    }

    /// Waits for a condition on the sandbox or the database.
    pub async fn wait<F, Fut>(&self, what: &str, condition: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        testkit::wait_until(Duration::from_secs(30), what, condition).await;
    }

    /// The pusher's DLQ (with the test's prefix).
    pub fn pusher_dlq(&self) -> String {
        self.env.names.adjustment_pusher_queue().dead_letter_queue()
    }

    /// Copies every message now in `queue` back into it `times` more times (as an outbox or
    /// broker redelivery duplicates a dead letter), waiting for `count` first.
    pub async fn duplicate_messages(&self, queue: &str, count: usize, times: usize) {
        let messages = self
            .env
            .wait_and_drain(queue, count, Duration::from_secs(30))
            .await;
        for message in &messages {
            for _ in 0..=times {
                self.env
                    .publish(
                        "",
                        queue,
                        &message.delivery.data,
                        message.delivery.properties.clone(),
                    )
                    .await;
            }
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some((shutdown, _)) = &self.pusher {
            shutdown.cancel();
        }
        let _ = std::fs::remove_file(&self.config);
    }
}

fn config_text(
    env: &TestEnv,
    sandbox: &str,
    token_var: &str,
    secret_var: &str,
    pusher: &str,
) -> String {
    format!(
        r#"[amqp]
name_prefix = "{prefix}"

[retry]
base_delay_ms = 200
multiplier = 2
tiers = 3
jitter = 0.2
max_attempts = 4
delivery_limit = 20

[consumer]
shutdown_grace_ms = 5000

[http]
listen = "127.0.0.1:0"

[adjustment_pusher]
batch_window_ms = 20
retry_base_ms = 50
retry_max_ms = 500
sweep_interval_ms = 200
request_timeout_ms = 2000
{pusher}

[[shops]]
domain = "{SHOP}"
api_version = "2026-04"
admin_base_url = "{sandbox}"
access_token_env = "{token_var}"
webhook_secret_env = "{secret_var}"

[shops.locations]
MAIN = {main}
EAST = {east}
"#,
        prefix = env.names.prefix(),
        main = MAIN.0,
        east = EAST.0,
    )
}

/// A transaction body.
pub fn tx(id: &str, kind: &str, sku: &str, warehouse: &str, extra: Value) -> Value {
    let mut body = json!({
        "transaction_id": id,
        "shop_domain": SHOP,
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
