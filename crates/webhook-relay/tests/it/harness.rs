//! Starting a relay for a test, and looking at what it published.

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use lapin::message::BasicGetMessage;
use platform::{
    amqp::topology::{declare_exchanges, declare_work_queue},
    settings::Settings,
    shutdown::CancellationToken,
};
use testkit::{TestEnv, wait_until};
use webhook_relay::{
    Relay,
    client::{RelayClient, Reply, shopify_headers},
    secrets::ShopSecrets,
};

/// The shop of the shared HMAC test vector (its domain made a valid `*.myshopify.com`).
pub const VECTOR_SHOP: &str = "shop1.myshopify.com";
/// A shop in a rotation window: current secret `ROTATING_NEW`, previous `ROTATING_OLD`.
pub const ROTATING_SHOP: &str = "rotating.myshopify.com";
/// A shop whose configured previous-secret variable is unset (the window is over).
pub const ROTATED_SHOP: &str = "rotated.myshopify.com";
/// The current secret of [`ROTATING_SHOP`] and [`ROTATED_SHOP`].
pub const NEW_SECRET: &str = "new-secret";
/// Their previous secret.
pub const OLD_SECRET: &str = "old-secret";

/// The shared test vector: `(secret, raw body, expected signature)`.
pub fn hmac_vector() -> (String, String, String) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../contract/fixtures/hmac/shopify-app-js-validate-test-vector.json"
    );
    let vector: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let field = |name: &str| vector[name].as_str().unwrap().to_owned();
    (
        field("secret"),
        field("raw_body"),
        field("expected_x_shopify_hmac_sha256"),
    )
}

fn shops_toml() -> String {
    let shop = |domain: &str, current: &str, previous: Option<&str>| {
        let previous = previous
            .map(|p| format!("previous_webhook_secret_env = \"{p}\"\n"))
            .unwrap_or_default();
        format!(
            "[[shops]]\ndomain = \"{domain}\"\napi_version = \"2026-04\"\n\
             admin_base_url = \"http://127.0.0.1:9\"\naccess_token_env = \"UNUSED_TOKEN\"\n\
             webhook_secret_env = \"{current}\"\n{previous}\n"
        )
    };
    [
        shop(VECTOR_SHOP, "VECTOR_SECRET", None),
        shop(ROTATING_SHOP, "ROTATING_NEW", Some("ROTATING_OLD")),
        shop(ROTATED_SHOP, "ROTATED_NEW", Some("ROTATED_OLD")),
    ]
    .concat()
}

/// The secrets every test relay runs with (`ROTATED_OLD` deliberately unset).
fn secrets(settings: &Settings) -> ShopSecrets {
    let (vector_secret, _, _) = hmac_vector();
    let env: HashMap<&str, String> = [
        ("VECTOR_SECRET", vector_secret),
        ("ROTATING_NEW", NEW_SECRET.to_owned()),
        ("ROTATING_OLD", OLD_SECRET.to_owned()),
        ("ROTATED_NEW", NEW_SECRET.to_owned()),
    ]
    .into_iter()
    .collect();
    ShopSecrets::resolve(&settings.shops, |name| env.get(name).cloned()).unwrap()
}

/// A relay running for one test.
pub struct Harness {
    pub env: TestEnv,
    pub relay: Relay,
    /// The public (webhook) listener.
    pub client: RelayClient,
    /// The ops listener (`/metrics`, `/healthz`, `/readyz`).
    pub ops: RelayClient,
    /// `item-ingest.shopify-products` under the test's prefix (bound to `products.*`).
    pub queue: String,
    shutdown: CancellationToken,
}

/// Starts a relay for `env` with `relay_toml` (a `[webhook_relay]` table or nothing), talking
/// to the broker at `amqp_url` (the test's own, or a proxy in front of it).
pub async fn start_relay(env: TestEnv, amqp_url: &str, relay_toml: &str) -> Harness {
    let mut settings =
        Settings::from_toml_str(&format!("{}\n{relay_toml}", shops_toml()), "test.toml").unwrap();
    let base = env.settings();
    settings.amqp = base.amqp;
    settings.amqp.url = amqp_url.to_owned();
    settings.retry = base.retry;
    settings.database = base.database;
    settings.http.listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    settings.http.ops_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));

    // The contract topology under the test's prefix, as item-ingest would declare it.
    declare_exchanges(env.channel(), &env.names).await.unwrap();
    let queue = env.names.item_ingest_queue();
    declare_work_queue(env.channel(), &queue, &settings.retry)
        .await
        .unwrap();

    let secrets = secrets(&settings);
    let shutdown = CancellationToken::new();
    let relay = webhook_relay::start(settings, secrets, shutdown.clone())
        .await
        .unwrap();
    let client = RelayClient::new(relay.addr, 16);
    let ops = RelayClient::new(relay.ops_addr, 2);
    Harness {
        env,
        client,
        ops,
        queue: queue.name,
        relay,
        shutdown,
    }
}

/// Starts a relay on the test's own broker and waits until it is connected.
pub async fn connected_relay(relay_toml: &str) -> Harness {
    let env = TestEnv::new().await;
    let url = env.amqp_url.clone();
    let harness = start_relay(env, &url, relay_toml).await;
    harness.wait_ready().await;
    harness
}

impl Harness {
    /// Waits until `/readyz` says 200.
    pub async fn wait_ready(&self) {
        wait_until(Duration::from_secs(10), "relay ready", || async {
            self.ops.get("/readyz").await.unwrap().status == 200
        })
        .await;
    }

    /// Posts a webhook for `shop` signed with `secret`.
    pub async fn deliver(
        &self,
        secret: &str,
        shop: &str,
        topic: &str,
        webhook_id: &str,
        body: &[u8],
    ) -> Reply {
        let headers = shopify_headers(secret.as_bytes(), topic, shop, webhook_id, body);
        self.post(&headers, body).await
    }

    /// Posts with exactly these headers.
    pub async fn post(&self, headers: &[(String, String)], body: &[u8]) -> Reply {
        self.client
            .post_webhook(headers, body.to_vec())
            .await
            .unwrap()
    }

    /// `wos_sync_webhooks_total{topic,outcome}`.
    pub fn webhooks(&self, topic: &str, outcome: &str) -> u64 {
        self.relay
            .metrics
            .webhooks_total
            .with_label_values(&[topic, outcome])
            .get()
    }

    /// `wos_sync_webhook_requests_in_flight{kind}`.
    pub fn in_flight(&self, kind: &str) -> i64 {
        self.relay
            .metrics
            .registry
            .gather()
            .iter()
            .filter(|family| family.name() == "wos_sync_webhook_requests_in_flight")
            .flat_map(|family| family.get_metric())
            .find(|metric| {
                metric
                    .get_label()
                    .iter()
                    .any(|label| label.name() == "kind" && label.value() == kind)
            })
            .map_or(0, |metric| metric.get_gauge().get_value() as i64)
    }

    /// Waits until the work queue holds `count` messages, then takes them all.
    pub async fn take(&self, count: u32) -> Vec<BasicGetMessage> {
        let what = format!("{count} messages in {}", self.queue);
        wait_until(Duration::from_secs(10), &what, || async {
            self.env.queue_depth(&self.queue).await >= count
        })
        .await;
        self.env.drain(&self.queue).await
    }

    /// Stops the relay and checks it stopped cleanly.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.relay.wait())
            .await
            .unwrap()
            .unwrap();
    }
}

/// The `message_id` of a taken message.
pub fn message_id(message: &BasicGetMessage) -> String {
    message
        .delivery
        .properties
        .message_id()
        .as_ref()
        .unwrap()
        .to_string()
}
