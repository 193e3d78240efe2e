//! item-ingest: Shopify product webhooks become WOS items.
//!
//! Consumes `item-ingest.shopify-products` (bound to `shopify.events`, `products.*`). Per
//! message: [`event`] reads the relay's headers and Shopify's payload (anything unusable is a
//! `malformed` dead letter), [`store`] applies it in one transaction (inbox, catalog mirror,
//! SKU mapping, items, outbox), and this module records the outcome in metrics and wakes the
//! outbox relay that publishes mapping announcements on `wos-sync.item-mappings`.

pub mod bench;
pub mod event;
pub mod store;

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context as _;
use chrono::Utc;
use deadpool_postgres::Pool;
use model::config::ShopDirectory;
use platform::{
    amqp::{
        consumer::{ConsumerConfig, Disposition, Handler, Incoming, run_consumer},
        publisher::Publisher,
        topology::ITEM_MAPPINGS,
    },
    db,
    http::{self, Health},
    metrics::Metrics,
    outbox::run_outbox_relay,
    settings::Settings,
    shutdown::CancellationToken,
};
use prometheus::IntCounterVec;
use tokio::sync::Notify;
use tracing::Instrument;

use crate::{
    event::read_event,
    store::{IngestError, IngestReport, count_conflicts, ingest},
};

/// The service name (metric label, `x-service`, connection names).
pub const SERVICE: &str = "item-ingest";

/// Default HTTP address (CONTRACT 1).
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 9464);

/// The message handler.
#[derive(Debug)]
pub struct ItemIngest {
    pool: Pool,
    shops: ShopDirectory,
    metrics: Metrics,
    variants_without_sku: IntCounterVec,
    unreadable_fields: IntCounterVec,
    announce_exchange: String,
    outbox_wake: Arc<Notify>,
}

impl Handler for ItemIngest {
    async fn handle(&self, message: &Incoming) -> Disposition {
        let webhook = match read_event(message, &self.shops, Utc::now()) {
            Ok(webhook) => webhook,
            Err(err) => return Disposition::malformed(err),
        };
        let span = tracing::info_span!(
            "product",
            shop = %webhook.shop.domain,
            topic = %webhook.topic,
            product_id = %webhook.event.product_id(),
        );
        match ingest(&self.pool, &webhook, &self.announce_exchange)
            .instrument(span)
            .await
        {
            Ok(report) if report.duplicate => Disposition::Duplicate,
            Ok(report) => {
                self.record(&webhook.shop.domain, &report).await;
                if report.announcements > 0 {
                    self.outbox_wake.notify_one();
                }
                Disposition::Ack
            }
            Err(IngestError::Unstorable(reason)) => Disposition::malformed(reason),
            Err(IngestError::Database(err)) => Disposition::retry(err),
            Err(IngestError::Contended(reason)) => Disposition::retry(reason),
        }
    }
}

impl ItemIngest {
    async fn record(&self, shop: &str, report: &IngestReport) {
        for (_, outcome) in &report.items {
            self.metrics
                .items_total
                .with_label_values(&[shop, outcome.as_str()])
                .inc();
        }
        if !report.stale.is_empty() {
            tracing::info!(variants = ?report.stale, "older than the state already applied: stale");
            self.metrics
                .items_total
                .with_label_values(&[shop, "stale"])
                .inc_by(report.stale.len() as u64);
        }
        for unreadable in &report.unreadable {
            tracing::warn!(
                field = unreadable.field.as_str(),
                path = %unreadable.path,
                problem = %unreadable.problem,
                "descriptive field does not parse: kept as it was (null when new)"
            );
            self.unreadable_fields
                .with_label_values(&[shop, unreadable.field.as_str()])
                .inc();
        }
        if !report.without_sku.is_empty() {
            tracing::info!(variants = ?report.without_sku, "variants without SKU map to no WOS item");
            self.variants_without_sku
                .with_label_values(&[shop])
                .inc_by(report.without_sku.len() as u64);
        }
        if !report.items.is_empty() {
            self.refresh_conflicts(shop).await;
        }
    }

    async fn refresh_conflicts(&self, shop: &str) {
        let count = async {
            count_conflicts(&self.pool.get().await.ok()?, shop)
                .await
                .ok()
        }
        .await;
        if let Some(count) = count {
            self.metrics
                .sku_conflicts
                .with_label_values(&[shop])
                .set(count);
        }
    }
}

/// Runs item-ingest until `shutdown`.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    serve(settings, Metrics::new(), shutdown).await
}

/// [`run`] with the caller's metrics registry (tests read it).
pub async fn serve(
    settings: Settings,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        !settings.shops.is_empty(),
        "no [[shops]] configured: item-ingest would dead-letter every webhook as from an unknown shop"
    );
    db::ensure_database(&settings.database)
        .await
        .context("preparing the database")?;
    let pool = db::connect_pool(&settings.database)?;
    db::migrate(&pool).await.context("applying migrations")?;

    let variants_without_sku = IntCounterVec::new(
        prometheus::Opts::new(
            "wos_sync_variants_without_sku_total",
            "Shopify variants without a SKU seen in product events (they map to no WOS item).",
        ),
        &["shop"],
    )?;
    metrics
        .registry
        .register(Box::new(variants_without_sku.clone()))?;
    let unreadable_fields = IntCounterVec::new(
        prometheus::Opts::new(
            "wos_sync_unreadable_fields_total",
            "Descriptive fields of product webhooks that did not parse (kept as they were).",
        ),
        &["shop", "field"],
    )?;
    metrics
        .registry
        .register(Box::new(unreadable_fields.clone()))?;
    let handler = Arc::new(ItemIngest {
        pool: pool.clone(),
        shops: settings.shops.clone(),
        metrics: metrics.clone(),
        variants_without_sku,
        unreadable_fields,
        announce_exchange: settings.names().name(ITEM_MAPPINGS),
        outbox_wake: Arc::new(Notify::new()),
    });
    for shop in settings.shops.iter() {
        handler.refresh_conflicts(&shop.domain).await;
    }

    let health = Health::new(Some(pool.clone()));
    let server = http::spawn_ops_server(
        settings.listen_or(DEFAULT_LISTEN),
        metrics.clone(),
        health.clone(),
        shutdown.clone(),
    )
    .await
    .context("binding HTTP")?;
    let publisher = Publisher::new(settings.amqp.url.clone(), format!("{SERVICE}/outbox"));
    let relay = tokio::spawn(run_outbox_relay(
        pool.clone(),
        publisher,
        handler.outbox_wake.clone(),
        shutdown.clone(),
    ));

    let config = ConsumerConfig {
        service: SERVICE.to_owned(),
        amqp_url: settings.amqp.url.clone(),
        names: settings.names(),
        queue: settings.names().item_ingest_queue(),
        settings: settings.consumer.clone(),
        retry: settings.retry.clone(),
    };
    run_consumer(config, handler, metrics, health, shutdown).await;
    relay.await.context("outbox relay task")?;
    server.await.context("HTTP server task")?;
    Ok(())
}
