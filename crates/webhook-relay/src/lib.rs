//! The webhook relay: Shopify's webhooks in, confirmed messages on `shopify.events` out.
//!
//! - [`webhook`]: the `POST /webhooks/shopify` handler (limits, headers, signature, topic,
//!   publish);
//! - [`server`]: the public listener's HTTP server (header-read and idle timeouts, connection
//!   limit);
//! - [`secrets`]: every shop's webhook secrets, read from the environment at start;
//! - [`config`]: the `[webhook_relay]` table (limits, time budgets, published topics);
//! - [`client`] and [`bench`]: a signed-webhook HTTP client and the load benchmark
//!   (`webhook-relay bench`).
//!
//! The relay holds no state of its own: a webhook is answered 200 only after the broker
//! confirmed its message, so a crash or a broker outage at any point costs Shopify a retry,
//! never a lost webhook. It starts and answers (503) even while the broker is down, and
//! reconnects by itself.
//!
//! It listens twice: the public address (`--listen`) serves only the webhook route; `/metrics`,
//! `/healthz` and `/readyz` are on the ops address (`--ops-listen`), which is not exposed.
//!
//! On SIGTERM `/readyz` answers 503 at once while both listeners keep serving for
//! `[http] pre_stop_delay_ms` (5 s); then the public listener stops accepting, every request
//! already accepted is answered, and the broker connection closes.

pub mod client;
pub mod secrets;
pub mod server;
pub mod settings;
pub mod webhook;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use axum::{Router, routing::post};
use platform::{
    amqp::{
        publisher::{Publisher, PublisherOptions},
        topology::{Names, SHOPIFY_EVENTS, declare_exchanges},
    },
    http::{self, Health},
    metrics::Metrics,
    settings::{Settings, SettingsError},
    shutdown::{CancellationToken, pre_stop},
};
use tokio::task::JoinHandle;

use crate::{
    secrets::ShopSecrets,
    server::ConnectionLimits,
    settings::RelaySettings,
    webhook::{RelayMetrics, RelayState},
};

/// The relay's default public (webhook) address (CONTRACT 1).
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
/// The relay's default ops address: `/metrics`, `/healthz`, `/readyz` (CONTRACT 1).
pub const DEFAULT_OPS_LISTEN: &str = "0.0.0.0:9466";

/// How often the relay checks its broker connection (and reconnects when it is down), which is
/// also how stale `/readyz` can be.
const KEEPER_INTERVAL: Duration = Duration::from_millis(500);

/// A started relay.
#[derive(Debug)]
pub struct Relay {
    /// The public (webhook) address it listens on (the chosen port when configured with 0).
    pub addr: SocketAddr,
    /// The ops address (`/metrics`, `/healthz`, `/readyz`).
    pub ops_addr: SocketAddr,
    /// Its metrics registry (also served on `/metrics`).
    pub metrics: Metrics,
    /// Its broker publisher.
    pub publisher: Publisher,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Relay {
    /// Waits until the relay stopped (after its shutdown token was cancelled and open requests
    /// were answered).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await.context("relay task")?
    }
}

/// Runs the relay until `shutdown`, with the webhook secrets from the environment.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let secrets = ShopSecrets::from_env(&settings.shops).context("reading webhook secrets")?;
    start(settings, secrets, shutdown).await?.wait().await
}

/// Binds the HTTP address and starts serving; returns once the relay accepts requests. The
/// broker is connected in the background (requests are answered 503 until it is).
pub async fn start(
    settings: Settings,
    secrets: ShopSecrets,
    shutdown: CancellationToken,
) -> anyhow::Result<Relay> {
    let config: RelaySettings = settings.service_section("webhook_relay")?;
    config.validate().map_err(|(key, reason)| SettingsError {
        file: settings
            .source
            .as_ref()
            .map_or_else(|| "(defaults)".to_owned(), |p| p.display().to_string()),
        key: Some(key),
        reason,
    })?;
    let names = settings.names();
    let exchange = names.name(SHOPIFY_EVENTS);
    let metrics = Metrics::new();
    let relay_metrics = RelayMetrics::register(&metrics).context("registering relay metrics")?;
    let health = Health::new(None);
    let publisher = Publisher::with_options(
        settings.amqp.url.clone(),
        connection_name(&names),
        PublisherOptions {
            connect_timeout: config.connect_timeout(),
            max_in_flight: config.max_in_flight_publishes,
            // Webhooks arrive all the time: find the broker again within a second.
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
        },
        Some(declare_on_connect(names.clone())),
    );

    let default_listen: SocketAddr = DEFAULT_LISTEN.parse().context("default address")?;
    let listen = settings.listen_or(default_listen);
    let listener = http::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let addr = listener.local_addr().context("bound address")?;
    let default_ops: SocketAddr = DEFAULT_OPS_LISTEN.parse().context("default ops address")?;
    let ops_listen = settings.http.ops_listen.unwrap_or(default_ops);
    let ops_listener = http::bind(ops_listen)
        .await
        .with_context(|| format!("binding the ops address {ops_listen}"))?;
    let ops_addr = ops_listener.local_addr().context("bound ops address")?;

    let shops = settings.shops.len();
    let limits = ConnectionLimits {
        header_read_timeout: config.header_read_timeout(),
        idle_timeout: config.idle_timeout(),
        max_connections: config.max_connections,
    };
    let state = Arc::new(RelayState::new(
        secrets,
        publisher.clone(),
        exchange.clone(),
        config,
        metrics.clone(),
        relay_metrics,
    ));
    // The public listener knows one route; everything else is a 404 there.
    let router = Router::new()
        .route(webhook::PATH, post(webhook::receive))
        .with_state(state);
    let ops_router = http::ops_router(metrics.clone(), health.clone());
    tracing::info!(listen = %addr, ops_listen = %ops_addr, exchange, shops, "webhook relay serving");

    // At the caller's shutdown /readyz fails at once, and the relay goes on answering webhooks
    // for the pre-stop delay (the ingress still sends some until the endpoint removal reaches
    // it); then it stops accepting and answers what it has accepted. Our own child token, so a
    // failing server can stop the keeper without cancelling the caller's.
    let stop = pre_stop(&shutdown, &health, settings.http.pre_stop_delay()).child_token();
    let keeper = tokio::spawn(keep_connected(
        publisher.clone(),
        health.clone(),
        stop.clone(),
    ));
    let ops = tokio::spawn(http::serve(ops_listener, ops_router, stop.clone()));
    let closing = publisher.clone();
    let task = tokio::spawn(async move {
        // Graceful: stops accepting, then waits for open requests (each bounded by the
        // request budget) before the broker connection is closed under them.
        server::serve(listener, router, limits, stop.clone()).await;
        stop.cancel();
        let _ = keeper.await;
        let ops_served = ops.await;
        closing.close().await;
        tracing::info!("webhook relay stopped");
        ops_served
            .context("ops server task")?
            .context("ops HTTP server")
    });
    Ok(Relay {
        addr,
        ops_addr,
        metrics,
        publisher,
        task,
    })
}

/// The broker connection name: the service, and the name prefix when there is one (tests,
/// benchmarks), so `rabbitmqctl list_connections` tells them apart.
fn connection_name(names: &Names) -> String {
    if names.prefix().is_empty() {
        "webhook-relay".to_owned()
    } else {
        format!("webhook-relay/{}", names.prefix())
    }
}

/// Declares the contract's exchanges at every (re)connect (idempotent), so the relay can start
/// on an empty broker and repairs a broker that lost its definitions.
fn declare_on_connect(names: Names) -> platform::amqp::publisher::OnConnect {
    Publisher::on_connect(move |channel| {
        let names = names.clone();
        async move { declare_exchanges(&channel, &names).await }
    })
}

/// Keeps the broker connection open while no webhook arrives (so the first one after an outage
/// need not pay for the connect) and reports it to `/readyz`.
async fn keep_connected(publisher: Publisher, health: Health, stop: CancellationToken) {
    loop {
        if !publisher.is_connected() {
            // Failures are logged by the publisher, which also spaces out the attempts.
            let _ = publisher.ensure_connected().await;
        }
        health.set_broker_connected(publisher.is_connected());
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(KEEPER_INTERVAL) => {}
        }
    }
    health.set_broker_connected(false);
}
