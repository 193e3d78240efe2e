//! The operations HTTP server every service runs: `/metrics`, `/healthz`, `/readyz`.
//!
//! `/healthz` answers 200 while the process is serving (liveness: restart me only if this
//! fails). `/readyz` answers 200 only when the broker connection is up and the database answers
//! (readiness: a service that cannot reach either should get no traffic and shows red on the
//! dashboard), with a JSON body naming each dependency's state. Services can merge their own
//! routes (the relay's webhook endpoint) into the same server.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{Json, Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use deadpool_postgres::Pool;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// What `/readyz` checks. Cheap to clone; shared by the consumer runtime (which reports the
/// broker) and the HTTP server (which asks the database on each probe).
#[derive(Debug, Clone)]
pub struct Health {
    broker_connected: Arc<AtomicBool>,
    database: Option<Pool>,
}

impl Health {
    /// `database`: the pool to probe, or `None` for a service without a database (the relay).
    pub fn new(database: Option<Pool>) -> Self {
        Self {
            broker_connected: Arc::new(AtomicBool::new(false)),
            database,
        }
    }

    /// Records whether the service's broker connection is up.
    pub fn set_broker_connected(&self, connected: bool) {
        self.broker_connected.store(connected, Ordering::Relaxed);
    }

    /// Whether the broker connection is up.
    pub fn broker_connected(&self) -> bool {
        self.broker_connected.load(Ordering::Relaxed)
    }

    /// Runs every check; `(ready, body)`.
    pub async fn readiness(&self) -> (bool, serde_json::Value) {
        let broker = self.broker_connected();
        let database = match &self.database {
            None => None,
            Some(pool) => Some(
                match tokio::time::timeout(Duration::from_secs(2), crate::db::check(pool)).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(err)) => Err(err.to_string()),
                    Err(_) => Err("no answer within 2 s".to_owned()),
                },
            ),
        };
        let ready = broker && database.as_ref().is_none_or(Result::is_ok);
        let mut body = json!({
            "ready": ready,
            "broker": if broker { "ok" } else { "disconnected" },
        });
        if let Some(database) = database {
            body["database"] = match database {
                Ok(()) => json!("ok"),
                Err(err) => json!(err),
            };
        }
        (ready, body)
    }
}

#[derive(Debug, Clone)]
struct OpsState {
    metrics: Metrics,
    health: Health,
}

/// The `/metrics`, `/healthz` and `/readyz` routes; merge a service's own routes into it.
pub fn ops_router(metrics: Metrics, health: Health) -> Router {
    Router::new()
        .route("/metrics", get(serve_metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(serve_readiness))
        .with_state(OpsState { metrics, health })
}

async fn serve_metrics(State(state): State<OpsState>) -> impl IntoResponse {
    (
        [("content-type", "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

async fn serve_readiness(State(state): State<OpsState>) -> impl IntoResponse {
    let (ready, body) = state.health.readiness().await;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

/// Binds `addr` (port 0 picks a free port) and logs the address actually chosen.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tracing::info!(listen = %local, "HTTP server listening");
    Ok(listener)
}

/// Binds `addr` and serves the ops routes in a task until `shutdown`: what every consumer
/// service runs. A server failure is logged (the service keeps consuming; `/healthz` going
/// silent is what the orchestrator acts on).
pub async fn spawn_ops_server(
    addr: SocketAddr,
    metrics: Metrics,
    health: Health,
    shutdown: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = bind(addr).await?;
    let router = ops_router(metrics, health);
    Ok(tokio::spawn(async move {
        if let Err(err) = serve(listener, router, shutdown).await {
            tracing::error!(error = %err, "HTTP server failed");
        }
    }))
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then finishes open requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
