//! item-ingest and the adjustment-pusher on one database and queue prefix, against a sandbox
//! shop: what WOS sees end to end when a mapping changes.

use std::time::Duration;

use adjustment_pusher::ShopTokens;
use lapin::BasicProperties;
use model::{
    config::{FieldPolicies, ShopSettings},
    ids::{InventoryItemId, LocationId},
};
use platform::{
    amqp::topology::{WOS_TRANSACTIONS, declare_work_queue},
    metrics::Metrics,
    shutdown::CancellationToken,
};
use serde_json::json;
use shopify_sandbox::{Sandbox, SandboxConfig, SandboxHandle, ThrottleConfig};

use crate::harness::{Ingest, SHOP};

pub const TOKEN: &str = "shpat_item_ingest_test";

pub struct Stack {
    pub ingest: Ingest,
    pub sandbox: SandboxHandle,
    pub main: LocationId,
    pusher_shutdown: CancellationToken,
    pusher: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Stack {
    /// A sandbox shop with location `MAIN`, and item-ingest configured for it (not the
    /// pusher yet: [`Self::start_pusher`]).
    pub async fn start() -> Self {
        let sandbox = Sandbox::start(SandboxConfig {
            throttle: ThrottleConfig {
                enabled: false,
                ..ThrottleConfig::default()
            },
            ..SandboxConfig::default()
        })
        .await
        .unwrap();
        sandbox.create_shop(SHOP, TOKEN).unwrap();
        let main = sandbox.create_location(SHOP, "Main").unwrap();
        let config = ShopSettings {
            domain: SHOP.to_owned(),
            api_version: "2026-04".to_owned(),
            admin_base_url: sandbox.base_url(),
            access_token_env: "ACME_SHOPIFY_TOKEN".to_owned(),
            webhook_secret_env: None,
            previous_webhook_secret_env: None,
            locations: [("MAIN".to_owned(), main)].into_iter().collect(),
            fields: FieldPolicies::default(),
        };
        let ingest = Ingest::start_with_shop(
            config,
            ShopTokens::new([(SHOP.to_owned(), TOKEN.to_owned())]),
        )
        .await;
        Self {
            ingest,
            sandbox,
            main,
            pusher_shutdown: CancellationToken::new(),
            pusher: None,
        }
    }

    /// Starts the adjustment-pusher on the same database and queue prefix.
    pub async fn start_pusher(&mut self) {
        let env = &self.ingest.env;
        let mut settings = self.ingest.settings.clone();
        settings.http.listen = Some("127.0.0.1:0".parse().unwrap());
        let section: toml::Table = "batch_window_ms = 20\nretry_base_ms = 50\nretry_max_ms = 500\n\
             sweep_interval_ms = 200\nrequest_timeout_ms = 2000"
            .parse()
            .unwrap();
        settings
            .services
            .insert("adjustment_pusher".into(), toml::Value::Table(section));
        for queue in [
            env.names.adjustment_pusher_queue(),
            env.names.item_mappings_queue(),
        ] {
            declare_work_queue(env.channel(), &queue, &settings.retry)
                .await
                .unwrap();
        }
        self.pusher = Some(tokio::spawn(adjustment_pusher::serve(
            settings,
            ShopTokens::new([(SHOP.to_owned(), TOKEN.to_owned())]),
            Metrics::new(),
            self.pusher_shutdown.clone(),
        )));
    }

    /// Publishes a WOS `put` of `quantity` at MAIN, as WOS does.
    pub async fn put(&self, transaction_id: &str, sku: &str, quantity: i64) {
        let body = json!({
            "transaction_id": transaction_id,
            "shop_domain": SHOP,
            "type": "put",
            "sku": sku,
            "warehouse": "MAIN",
            "quantity": quantity,
            "occurred_at": chrono::Utc::now().to_rfc3339(),
        });
        let properties = BasicProperties::default()
            .with_message_id(transaction_id.into())
            .with_content_type("application/json".into());
        let exchange = self.ingest.env.names.name(WOS_TRANSACTIONS);
        self.ingest
            .env
            .publish(
                &exchange,
                "inventory.put",
                body.to_string().as_bytes(),
                properties,
            )
            .await;
    }

    /// `available` of an item at MAIN in the sandbox.
    pub fn available(&self, item: InventoryItemId) -> i64 {
        self.sandbox
            .quantity(SHOP, item, self.main, "available")
            .unwrap()
    }

    /// Waits until `count` adjustments are in `state` in the pusher's ledger.
    pub async fn wait_adjustments(&self, state: &str, count: i64) {
        let client = self.ingest.env.pool.get().await.unwrap();
        testkit::wait_until(
            Duration::from_secs(20),
            &format!("{count} adjustment(s) {state}"),
            || async {
                client
                    .query_one(
                        "SELECT count(*) FROM adjustments WHERE state = $1",
                        &[&state],
                    )
                    .await
                    .map(|row| row.get::<_, i64>(0) == count)
                    .unwrap_or(false)
            },
        )
        .await;
    }

    pub async fn stop(mut self) {
        self.pusher_shutdown.cancel();
        if let Some(task) = self.pusher.take() {
            tokio::time::timeout(Duration::from_secs(20), task)
                .await
                .unwrap()
                .unwrap()
                .unwrap();
        }
        self.ingest.stop_service().await;
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.pusher_shutdown.cancel();
    }
}
