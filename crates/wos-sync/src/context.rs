//! What every command starts from: the services' settings, and connections to the database,
//! the broker and Shopify made the same way the services make them.

use std::time::Duration;

use anyhow::Context as _;
use deadpool_postgres::Pool;
use model::config::ShopSettings;
use platform::{
    amqp::topology::{WorkQueue, declare_exchanges, declare_work_queue},
    db,
    settings::{CommonArgs, Settings, redact_url},
};
use shopify_admin::{ShopClient, ShopTokens};
use shopify_sandbox::settings::SECTION as SANDBOX_SECTION;

use crate::cli::Cli;

/// How long connecting to the broker may take (lapin itself has no limit).
pub const BROKER_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A command's settings and connection helpers.
#[derive(Debug, Clone)]
pub struct Context {
    pub settings: Settings,
}

impl Context {
    /// The settings, loaded exactly as a service loads them (file, then environment). The file
    /// may carry the Shopify sandbox's section too (`up` runs the sandbox).
    pub fn load(cli: &Cli) -> anyhow::Result<Self> {
        let args = CommonArgs {
            config: cli.config.clone(),
            listen: None,
            log_format: cli.log_format,
        };
        Ok(Self {
            settings: Settings::load_with_sections(&args, &[SANDBOX_SECTION])?,
        })
    }

    /// A pool on the database, with every pending migration applied (as the services do at
    /// start), so the command finds the tables it reads.
    pub async fn database(&self) -> anyhow::Result<Pool> {
        let url = redact_url(&self.settings.database.url);
        db::ensure_database(&self.settings.database)
            .await
            .with_context(|| format!("database {url}"))?;
        let pool = db::connect_pool(&self.settings.database)?;
        db::migrate(&pool)
            .await
            .with_context(|| format!("applying migrations to {url}"))?;
        Ok(pool)
    }

    /// A broker connection named `wos-sync/<purpose>` (what `rabbitmqctl list_connections`
    /// shows), within [`BROKER_CONNECT_TIMEOUT`].
    pub async fn broker(&self, purpose: &str) -> anyhow::Result<lapin::Connection> {
        let url = &self.settings.amqp.url;
        let name = format!("wos-sync/{purpose}");
        let connect = platform::amqp::connect(url, &name);
        match tokio::time::timeout(BROKER_CONNECT_TIMEOUT, connect).await {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(err)) => Err(anyhow::anyhow!(
                "cannot connect to the broker at {}: {err}",
                redact_url(url)
            )),
            Err(_) => Err(anyhow::anyhow!(
                "no answer from the broker at {} within {BROKER_CONNECT_TIMEOUT:?}",
                redact_url(url)
            )),
        }
    }

    /// Every work queue with this deployment's prefix.
    pub fn work_queues(&self) -> Vec<WorkQueue> {
        self.settings.names().work_queues()
    }

    /// The work queue a `--queue` value (a contract name) designates.
    pub fn work_queue(&self, contract_name: &str) -> anyhow::Result<WorkQueue> {
        let name = self.settings.names().name(contract_name);
        self.work_queues()
            .into_iter()
            .find(|q| q.name == name)
            .with_context(|| format!("`{contract_name}` is not a work queue"))
    }

    /// Declares the whole topology (exchanges, then every work queue with its retry tiers and
    /// DLQ); idempotent.
    pub async fn declare_topology(&self) -> anyhow::Result<Vec<WorkQueue>> {
        let connection = self.broker("topology").await?;
        let channel = connection.create_channel().await?;
        let names = self.settings.names();
        declare_exchanges(&channel, &names)
            .await
            .context("declaring the exchanges")?;
        let queues = self.work_queues();
        for queue in &queues {
            declare_work_queue(&channel, queue, &self.settings.retry)
                .await
                .with_context(|| format!("declaring {} and its companions", queue.name))?;
        }
        let _ = channel.close(200, "topology declared".into()).await;
        let _ = connection.close(200, "done".into()).await;
        Ok(queues)
    }

    /// The configured shop `domain`, or an error listing the configured ones.
    pub fn shop(&self, domain: &str) -> anyhow::Result<&ShopSettings> {
        self.settings.shops.get(domain).with_context(|| {
            let known: Vec<&str> = self
                .settings
                .shops
                .iter()
                .map(|s| s.domain.as_str())
                .collect();
            format!(
                "shop {domain} is not configured (configured: {})",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            )
        })
    }

    /// A Shopify client for `shop`, with the token from the variable its configuration names.
    pub fn shop_client(&self, shop: &ShopSettings) -> anyhow::Result<ShopClient> {
        let directory = model::config::ShopDirectory::new(vec![shop.clone()])
            .map_err(|err| anyhow::anyhow!("{err}"))?;
        let tokens = ShopTokens::from_env(&directory)?;
        let token = tokens
            .get(&shop.domain)
            .map(str::to_owned)
            .with_context(|| format!("shop {}: no access token", shop.domain))?;
        let http = shopify_admin::http_client().context("building the HTTP client")?;
        Ok(ShopClient::new(http, shop, token))
    }
}
