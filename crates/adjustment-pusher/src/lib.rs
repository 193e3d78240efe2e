//! adjustment-pusher: WOS inventory transactions become exactly-once delta adjustments in
//! Shopify.
//!
//! - [`intake`]: consumes `adjustment-pusher.wos-transactions`; records each transaction once
//!   and its changes as pending (item mapped) or parked (not yet);
//! - [`release`]: parked adjustments become pending when their item gets a mapping
//!   (announcements on `adjustment-pusher.item-mappings`, and a periodic sweep); too old ->
//!   `unmapped` dead letter;
//! - [`push`]: workers shared by every shop (a fair queue of the shops with work) batch pending
//!   adjustments into `inventoryAdjustQuantities` calls persisted with their idempotency key
//!   before sending, and resend each unchanged until Shopify answers definitely;
//! - [`store`]: all of that state in PostgreSQL (intake, parking, forming, batches,
//!   outcomes); [`shopify`]: the GraphQL call and how its answers are sorted. The transport, each shop's token and its rate limiting from
//!   `throttleStatus` are the shared `shopify_admin` crate.
//! - [`retention`]: settled transactions (with their bodies, adjustments and replay records)
//!   and batches pruned after `[retention] transactions_days`.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod intake;
pub mod operator;
pub mod push;
pub mod release;
pub mod retention;
pub mod shopify;
pub mod store;

use std::{collections::BTreeMap, net::SocketAddr, sync::Arc, time::Duration};

pub use shopify_admin::ShopTokens;

use anyhow::Context as _;
use platform::{
    amqp::{
        consumer::{ConsumerConfig, run_consumer},
        publisher::Publisher,
    },
    db,
    http::Health,
    metrics::Metrics,
    outbox::{OutboxMetrics, run_outbox_relay},
    retention::run_retention,
    settings::Settings,
    shutdown::CancellationToken,
    startup::{self, Prepared},
    supervise::{LoopMonitor, supervise},
};
use serde::Deserialize;
use tokio::sync::Notify;

use shopify_admin::ShopClient;

use crate::{
    intake::Intake,
    push::{Pushers, ReadyShops, ShopPusher},
    release::{MappingReleases, Sweeper},
    retention::PusherRetention,
};

/// The service name (metric label, `x-service`, connection names).
pub const SERVICE: &str = "adjustment-pusher";

/// Default HTTP address (CONTRACT 1).
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 9465);

/// `[adjustment_pusher]` in the configuration file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PusherSettings {
    /// After new work arrives, wait this long so a burst goes out as one batch.
    pub batch_window_ms: u64,
    /// Changes per `inventoryAdjustQuantities` call (Shopify allows at most 250).
    pub max_changes_per_call: usize,
    /// `false`: one call per transaction, no coalescing across transactions (for comparison).
    pub batching: bool,
    /// One call's time limit; past it the outcome is unknown and the batch is resent.
    pub request_timeout_ms: u64,
    /// First backoff after a transient failure; doubles per attempt, with jitter.
    pub retry_base_ms: u64,
    /// Longest backoff between attempts of one batch.
    pub retry_max_ms: u64,
    /// After this long without a definite answer a batch is given up (`exhausted`).
    pub give_up_after_secs: u64,
    /// Adjustments parked longer than this are dead-lettered as `unmapped` (default 7 days).
    pub max_park_age_secs: u64,
    /// How often parked adjustments are re-examined.
    pub sweep_interval_ms: u64,
    /// Rows a sweep releases (transactions it expires) per database transaction.
    pub sweep_chunk_rows: u32,
    /// Connections of the push loops' own pool, apart from intake's `[database]` pool, so
    /// Shopify's answers are recorded whatever intake does.
    pub push_pool_connections: usize,
    /// Batches of one shop in flight at once (formed, sent and recorded concurrently), at most
    /// [`store::MAX_SLOTS`]; the database holds every replica to it (one open batch per slot).
    pub batches_in_flight: u16,
    /// Steps' database parts (claiming a batch, forming batches) run at once for all the
    /// replica's shops together (`push::ready`); the Shopify calls and the recording of their
    /// answers run apart, bounded by each shop's `batches_in_flight`.
    pub push_workers: usize,
}

impl Default for PusherSettings {
    fn default() -> Self {
        Self {
            batch_window_ms: 50,
            max_changes_per_call: 250,
            batching: true,
            request_timeout_ms: 10_000,
            retry_base_ms: 500,
            retry_max_ms: 60_000,
            give_up_after_secs: 23 * 3600,
            max_park_age_secs: 7 * 24 * 3600,
            sweep_interval_ms: 10_000,
            sweep_chunk_rows: 1000,
            push_pool_connections: 4,
            batches_in_flight: 4,
            push_workers: 8,
        }
    }
}

impl PusherSettings {
    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (1..=250).contains(&self.max_changes_per_call),
            "adjustment_pusher.max_changes_per_call must be between 1 and 250 (Shopify's limit)"
        );
        anyhow::ensure!(
            self.request_timeout_ms > 0,
            "adjustment_pusher.request_timeout_ms must be positive"
        );
        anyhow::ensure!(
            self.retry_base_ms > 0,
            "adjustment_pusher.retry_base_ms must be positive"
        );
        // Shopify keeps an idempotency key for 24 hours; a batch must never be resent later.
        anyhow::ensure!(
            self.give_up_after_secs <= 23 * 3600,
            "adjustment_pusher.give_up_after_secs must be at most 82800 (23 h): Shopify forgets \
             idempotency keys after 24 h, and a batch resent after that could be applied twice"
        );
        anyhow::ensure!(
            self.sweep_interval_ms > 0,
            "adjustment_pusher.sweep_interval_ms must be positive"
        );
        anyhow::ensure!(
            self.sweep_chunk_rows > 0,
            "adjustment_pusher.sweep_chunk_rows must be positive"
        );
        anyhow::ensure!(
            self.push_pool_connections > 0,
            "adjustment_pusher.push_pool_connections must be positive"
        );
        anyhow::ensure!(
            (1..=store::MAX_SLOTS).contains(&self.batches_in_flight),
            "adjustment_pusher.batches_in_flight must be between 1 and {} (the slots the \
             database allows per shop)",
            store::MAX_SLOTS
        );
        anyhow::ensure!(
            (1..=256).contains(&self.push_workers),
            "adjustment_pusher.push_workers must be between 1 and 256"
        );
        Ok(())
    }
}

/// Runs the adjustment-pusher until `shutdown`, with tokens from the environment.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let tokens = ShopTokens::from_env(&settings.shops)?;
    serve(settings, tokens, Metrics::new(), shutdown).await
}

/// [`run`] with the tokens and metrics registry given (tests and benchmarks).
pub async fn serve(
    settings: Settings,
    tokens: ShopTokens,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let pusher: PusherSettings = settings.service_section("adjustment_pusher")?;
    pusher.validate()?;
    anyhow::ensure!(
        !settings.shops.is_empty(),
        "no [[shops]] configured: nothing to push to"
    );
    let http_client = shopify_admin::http_client().context("building the HTTP client")?;
    let mut clients = BTreeMap::new();
    for shop in settings.shops.iter() {
        let token = tokens.get(&shop.domain).map(str::to_owned);
        let token = token.with_context(|| format!("shop {}: no access token", shop.domain))?;
        clients.insert(
            shop.domain.clone(),
            ShopClient::new(http_client.clone(), shop, token).with_metrics(metrics.clone()),
        );
    }

    let Prepared {
        pool,
        health,
        ops_server: server,
        stop,
    } = startup::serve_ops_and_prepare_database(
        &settings,
        DEFAULT_LISTEN,
        metrics.clone(),
        shutdown,
    )
    .await?;
    // Everything below drains on `stop`: at the signal only readiness fails, and the service
    // serves on for the pre-stop delay.
    let shutdown = stop;
    // The push loops record Shopify's answers through a pool of their own: intake saturating
    // its pool must never make an answer wait out its lease and cost a resend.
    let push_pool = db::connect_pool(&db::DatabaseSettings {
        max_connections: pusher.push_pool_connections,
        ..settings.database.clone()
    })?;

    let names = settings.names();
    let dead_letter_queue = names.adjustment_pusher_queue().dead_letter_queue();
    let ready = Arc::new(ReadyShops::new(
        clients.keys(),
        pusher.batches_in_flight,
        Duration::from_millis(pusher.batch_window_ms),
    ));
    let outbox_wake = Arc::new(Notify::new());

    let mut tasks = tokio::task::JoinSet::new();
    let publisher = Publisher::new(settings.amqp.url.clone(), format!("{SERVICE}/outbox"));
    tasks.spawn(run_outbox_relay(
        pool.clone(),
        publisher,
        OutboxMetrics::new(&metrics, SERVICE),
        outbox_wake.clone(),
        shutdown.clone(),
    ));
    tasks.spawn(run_retention(
        Arc::new(PusherRetention {
            pool: pool.clone(),
            settings: settings.retention.clone(),
        }),
        SERVICE,
        settings.retention.interval(),
        metrics.clone(),
        shutdown.clone(),
    ));
    // Every background loop is supervised: a panic is counted and the loop started again.
    let shops = clients
        .into_iter()
        .map(|(shop, client)| {
            let pusher = Arc::new(ShopPusher {
                monitor: LoopMonitor::new(&metrics, SERVICE, push::LOOP, &shop),
                shop: shop.clone(),
                client,
                pool: push_pool.clone(),
                settings: pusher.clone(),
                metrics: metrics.clone(),
                ready: ready.clone(),
                dead_letter_queue: dead_letter_queue.clone(),
                outbox_wake: outbox_wake.clone(),
            });
            (shop, pusher)
        })
        .collect();
    let monitor = LoopMonitor::new(&metrics, SERVICE, push::LOOP, "");
    let pushers = Arc::new(Pushers {
        shops,
        ready: ready.clone(),
        pool: push_pool,
        workers: pusher.push_workers,
        slots: pusher.batches_in_flight,
        monitor: monitor.clone(),
    });
    let stop = shutdown.clone();
    tasks.spawn(supervise(monitor, shutdown.clone(), move || {
        pushers.clone().run(stop.clone())
    }));
    let chunk = i64::from(pusher.sweep_chunk_rows);
    let monitor = LoopMonitor::new(&metrics, SERVICE, "sweep", "");
    let sweeper = Arc::new(Sweeper {
        pool: pool.clone(),
        metrics: metrics.clone(),
        ready: ready.clone(),
        outbox_wake: outbox_wake.clone(),
        interval: Duration::from_millis(pusher.sweep_interval_ms),
        max_park_age: Duration::from_secs(pusher.max_park_age_secs),
        dead_letter_queue,
        chunk,
        monitor: monitor.clone(),
    });
    let stop = shutdown.clone();
    tasks.spawn(supervise(monitor, shutdown.clone(), move || {
        sweeper.clone().run(stop.clone())
    }));

    let consumer = |queue| ConsumerConfig {
        service: SERVICE.to_owned(),
        amqp_url: settings.amqp.url.clone(),
        names: names.clone(),
        queue,
        settings: settings.consumer.clone(),
        retry: settings.retry.clone(),
    };
    // /readyz follows the transaction consumer; the mapping consumer reports to its own flag.
    let releases = run_consumer(
        consumer(names.item_mappings_queue()),
        Arc::new(MappingReleases {
            pool: pool.clone(),
            ready: ready.clone(),
            chunk,
        }),
        metrics.clone(),
        Health::new(None),
        shutdown.clone(),
    );
    let intake = run_consumer(
        consumer(names.adjustment_pusher_queue()),
        Arc::new(Intake {
            pool,
            shops: settings.shops.clone(),
            metrics: metrics.clone(),
            ready,
        }),
        metrics,
        health,
        shutdown,
    );
    tokio::join!(releases, intake);
    while tasks.join_next().await.is_some() {}
    server.await.context("HTTP server task")?;
    Ok(())
}
