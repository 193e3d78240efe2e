//! item-ingest: Shopify product webhooks become WOS items.
//!
//! Consumes `item-ingest.shopify-products` (bound to `shopify.events`, `products.*`). Per
//! message: [`event`] reads the relay's headers and Shopify's payload (anything unusable is a
//! `malformed` dead letter), [`store`] applies it in one transaction (inbox, catalog mirror,
//! SKU mapping, items, outbox), and this module records the outcome in metrics and wakes the
//! outbox relay that publishes mapping announcements on `wos-sync.item-mappings`. [`refresh`]
//! reads from the shop's Admin API the variants a webhook lists beyond the 100 it details.
//! [`retention`] prunes what grows with traffic (inbox rows, tombstones of deleted products
//! and variants, undeliverable announcements, old backfill runs).

pub mod event;
pub mod operator;
pub mod refresh;
pub mod retention;
pub mod store;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    sync::Arc,
};

use anyhow::Context as _;
use chrono::Utc;
use deadpool_postgres::Pool;
use model::config::ShopDirectory;
use platform::{
    amqp::{
        consumer::{ConsumerConfig, Disposition, GroupOutcome, Handler, Incoming, run_consumer},
        publisher::Publisher,
        topology::ITEM_MAPPINGS,
    },
    metrics::Metrics,
    outbox::{OutboxMetrics, run_outbox_relay},
    retention::run_retention,
    settings::Settings,
    shutdown::CancellationToken,
    startup::{self, Prepared},
};
use prometheus::IntCounterVec;
use tokio::sync::Notify;
use tracing::Instrument;

pub use shopify_admin::ShopTokens;

use crate::{
    event::read_event,
    refresh::ShopRefresher,
    retention::IngestRetention,
    store::{IngestError, IngestReport, ItemOutcome, count_conflicts, ingest},
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
    /// Each shop's refresh task, woken when an event asks for variant reads.
    refresh_wakers: BTreeMap<String, Arc<Notify>>,
    conflicts: Arc<ConflictGauge>,
}

impl Handler for ItemIngest {
    const GROUPS: bool = true;

    async fn handle(&self, message: &Incoming) -> Disposition {
        match self.take_in(std::slice::from_ref(message)).await {
            Ok(mut dispositions) => dispositions
                .pop()
                .unwrap_or_else(|| Disposition::retry("no disposition for the message")),
            Err(IngestError::Unstorable(reason)) => Disposition::malformed(reason),
            Err(IngestError::Database(err)) => Disposition::retry(err),
            Err(IngestError::Contended(reason)) => Disposition::retry(reason),
        }
    }

    async fn handle_group(&self, messages: &[Incoming]) -> GroupOutcome {
        match self.take_in(messages).await {
            Ok(dispositions) => GroupOutcome::Handled(dispositions),
            Err(IngestError::Database(err)) if err.is_unavailable() => {
                GroupOutcome::Handled(vec![Disposition::retry(err); messages.len()])
            }
            // Something in one webhook (an id beyond bigint, a statement refused, a contended
            // item): find it by ingesting each alone.
            Err(_) => GroupOutcome::HandleAlone,
        }
    }
}

impl ItemIngest {
    /// Reads each message (outside any database transaction), ingests the usable ones together
    /// and says what became of each, in order.
    async fn take_in(&self, messages: &[Incoming]) -> Result<Vec<Disposition>, IngestError> {
        let now = Utc::now();
        let mut dispositions: Vec<Option<Disposition>> = Vec::with_capacity(messages.len());
        let mut webhooks = Vec::with_capacity(messages.len());
        for message in messages {
            match read_event(message, &self.shops, now) {
                Ok(webhook) => {
                    webhooks.push(webhook);
                    dispositions.push(None);
                }
                Err(err) => dispositions.push(Some(Disposition::malformed(err))),
            }
        }
        if webhooks.is_empty() {
            return Ok(dispositions.into_iter().flatten().collect());
        }
        let span = match webhooks.as_slice() {
            [webhook] => product_span(webhook),
            _ => tracing::info_span!("products", webhooks = webhooks.len()),
        };
        let reports = ingest(&self.pool, &webhooks, &self.announce_exchange)
            .instrument(span)
            .await?;

        let mut recount = BTreeSet::new();
        let (mut announced, mut refresh) = (false, BTreeSet::new());
        let mut outcomes = webhooks.iter().zip(&reports).map(|(webhook, report)| {
            if report.duplicate {
                return Disposition::Duplicate;
            }
            let shop = webhook.shop.domain.as_str();
            product_span(webhook).in_scope(|| self.record(shop, report));
            if !report.items.is_empty() || report.refreshes_requested > 0 {
                recount.insert(shop);
            }
            announced |= report.announcements > 0;
            if report.refreshes_requested > 0 {
                refresh.insert(shop);
            }
            Disposition::Ack
        });
        let dispositions = dispositions
            .into_iter()
            .map(|refused| refused.unwrap_or_else(|| outcomes.next().unwrap_or(Disposition::Ack)))
            .collect();
        drop(outcomes);
        if announced {
            self.outbox_wake.notify_one();
        }
        for shop in refresh {
            if let Some(wake) = self.refresh_wakers.get(shop) {
                wake.notify_one();
            }
        }
        // Once per shop and group, not per webhook.
        for shop in recount {
            self.conflicts.recount(shop).await;
        }
        Ok(dispositions)
    }

    /// Logs and counts what one webhook did (in its `product` span).
    fn record(&self, shop: &str, report: &IngestReport) {
        for (sku, outcome) in &report.items {
            // One line per item row the webhook wrote, in the delivery's span: its `trace_id`
            // leads from the webhook (and the relay's line) to the row.
            if *outcome != ItemOutcome::Unchanged {
                tracing::info!(shop, sku, outcome = outcome.as_str(), "item row written");
            }
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
    }
}

/// The span of one webhook's work: its log lines name the shop, the topic and the product.
fn product_span(webhook: &event::WebhookEvent<'_>) -> tracing::Span {
    tracing::info_span!(
        "product",
        shop = %webhook.shop.domain,
        topic = %webhook.topic,
        product_id = %webhook.event.product_id(),
    )
}

/// `wos_sync_sku_conflicts`, set by the handler, the refresh tasks and the periodic rebuild.
/// One count per shop at a time: a count computed earlier never overwrites a later one.
#[derive(Debug)]
pub struct ConflictGauge {
    pool: Pool,
    metrics: Metrics,
    turns: BTreeMap<String, tokio::sync::Mutex<()>>,
}

impl ConflictGauge {
    fn new(pool: Pool, metrics: Metrics, shops: &ShopDirectory) -> Self {
        Self {
            pool,
            metrics,
            turns: shops
                .iter()
                .map(|shop| (shop.domain.clone(), tokio::sync::Mutex::new(())))
                .collect(),
        }
    }

    /// Recounts `shop`'s conflicts from `sku_conflicts` (a failure leaves the last count).
    pub async fn recount(&self, shop: &str) {
        let Some(turn) = self.turns.get(shop) else {
            return;
        };
        let _turn = turn.lock().await;
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

    /// Recomputes `shop`'s conflicts from the mirror and `items`, and sets the count.
    pub async fn rebuild(&self, shop: &str) -> Result<(), IngestError> {
        let Some(turn) = self.turns.get(shop) else {
            return Ok(());
        };
        let _turn = turn.lock().await;
        let count = store::rebuild_conflicts(&self.pool, shop).await?;
        self.metrics
            .sku_conflicts
            .with_label_values(&[shop])
            .set(count);
        Ok(())
    }
}

/// How often every shop's conflicts are recomputed from the mirror and `items`: settling a SKU
/// keeps its conflicts current; this catches mappings WOS wrote in between.
const CONFLICT_REBUILD: std::time::Duration = std::time::Duration::from_secs(600);

/// Recomputes every shop's conflicts every [`CONFLICT_REBUILD`] (start did it once), until
/// `shutdown`.
async fn rebuild_conflicts_periodically(
    gauge: Arc<ConflictGauge>,
    shops: ShopDirectory,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(CONFLICT_REBUILD) => {}
        }
        for shop in shops.iter() {
            if let Err(err) = gauge.rebuild(&shop.domain).await {
                tracing::warn!(shop = %shop.domain, error = %err, "recomputing conflicts failed; retried later");
            }
        }
    }
}

/// The access token of every shop whose `access_token_env` is set. A shop without one still
/// ingests webhooks (see [`serve`]).
pub fn tokens_from_env(shops: &ShopDirectory) -> ShopTokens {
    ShopTokens::new(shops.iter().filter_map(|shop| {
        std::env::var(&shop.access_token_env)
            .ok()
            .filter(|token| !token.is_empty())
            .map(|token| (shop.domain.clone(), token))
    }))
}

/// Runs item-ingest until `shutdown`, with each shop's access token from the environment.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let tokens = tokens_from_env(&settings.shops);
    serve(settings, tokens, Metrics::new(), shutdown).await
}

/// [`run`] with the tokens and the metrics registry given (tests read the registry).
///
/// A shop without a token is served: webhooks need no token, only reading the variants a
/// webhook lists beyond the 100 it details does. Its absence is logged at start, and each such
/// read fails with the reason, leaving those SKUs unmapped and listed as conflicts
/// (`awaiting_shopify`) until the token is set and the service restarted.
pub async fn serve(
    settings: Settings,
    tokens: ShopTokens,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        !settings.shops.is_empty(),
        "no [[shops]] configured: item-ingest would dead-letter every webhook as from an unknown shop"
    );
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
    let refreshes = IntCounterVec::new(
        prometheus::Opts::new(
            "wos_sync_variant_refreshes_total",
            "Variants beyond the 100 a product webhook details, read from the Admin API, by \
             outcome (read, gone, superseded, failed).",
        ),
        &["shop", "outcome"],
    )?;
    metrics.registry.register(Box::new(refreshes.clone()))?;
    let http = shopify_admin::http_client().context("building the HTTP client")?;
    let refresh_wakers: BTreeMap<String, Arc<Notify>> = settings
        .shops
        .iter()
        .map(|shop| (shop.domain.clone(), Arc::new(Notify::new())))
        .collect();
    let conflicts = Arc::new(ConflictGauge::new(
        pool.clone(),
        metrics.clone(),
        &settings.shops,
    ));
    let handler = Arc::new(ItemIngest {
        pool: pool.clone(),
        shops: settings.shops.clone(),
        metrics: metrics.clone(),
        variants_without_sku,
        unreadable_fields,
        announce_exchange: settings.names().name(ITEM_MAPPINGS),
        outbox_wake: Arc::new(Notify::new()),
        refresh_wakers: refresh_wakers.clone(),
        conflicts: conflicts.clone(),
    });
    for shop in settings.shops.iter() {
        conflicts
            .rebuild(&shop.domain)
            .await
            .context("computing SKU conflicts")?;
    }

    let publisher = Publisher::new(settings.amqp.url.clone(), format!("{SERVICE}/outbox"));
    let relay = tokio::spawn(run_outbox_relay(
        pool.clone(),
        publisher,
        OutboxMetrics::new(&metrics, SERVICE),
        handler.outbox_wake.clone(),
        shutdown.clone(),
    ));
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(run_retention(
        Arc::new(IngestRetention {
            pool: pool.clone(),
            settings: settings.retention.clone(),
            announce_exchange: handler.announce_exchange.clone(),
        }),
        SERVICE,
        settings.retention.interval(),
        metrics.clone(),
        shutdown.clone(),
    ));
    tasks.spawn(rebuild_conflicts_periodically(
        conflicts.clone(),
        settings.shops.clone(),
        shutdown.clone(),
    ));
    for shop in settings.shops.iter() {
        let client = match tokens.get(&shop.domain) {
            Some(token) => Some(
                shopify_admin::ShopClient::new(http.clone(), shop, token.to_owned())
                    .with_metrics(metrics.clone()),
            ),
            None => {
                tracing::error!(
                    shop = %shop.domain,
                    variable = %shop.access_token_env,
                    "no Admin API access token (environment variable not set): webhooks are \
                     ingested, but variants beyond the 100 a product webhook details cannot be \
                     read; their SKUs stay unmapped and are listed as conflicts \
                     (awaiting_shopify) until the token is set and item-ingest restarted"
                );
                None
            }
        };
        tasks.spawn(
            ShopRefresher {
                pool: pool.clone(),
                shop: shop.clone(),
                client,
                metrics: metrics.clone(),
                refreshes: refreshes.clone(),
                announce_exchange: handler.announce_exchange.clone(),
                wake: refresh_wakers[&shop.domain].clone(),
                outbox_wake: handler.outbox_wake.clone(),
                conflicts: conflicts.clone(),
            }
            .run(shutdown.clone()),
        );
    }

    let config = ConsumerConfig {
        service: SERVICE.to_owned(),
        amqp_url: settings.amqp.url.clone(),
        names: settings.names(),
        queue: settings.names().item_ingest_queue(),
        settings: settings.consumer.clone(),
        retry: settings.retry.clone(),
    };
    run_consumer(config, handler, metrics, health, shutdown).await;
    while tasks.join_next().await.is_some() {}
    relay.await.context("outbox relay task")?;
    server.await.context("HTTP server task")?;
    Ok(())
}
