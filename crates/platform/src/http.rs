//! The operations HTTP server every service runs: `/metrics`, `/healthz`, `/readyz`.
//!
//! `/healthz` answers 200 while the process is serving (liveness: restart me only if this
//! fails). `/readyz` answers 200 only when the broker connection is up and the database answers
//! (readiness: a service that cannot reach either should get no traffic and shows red on the
//! dashboard), with a JSON body naming each dependency's state (`ok`, `disconnected`,
//! `unavailable`: never the database's error text, which is logged instead). The result is
//! cached for [`READINESS_CACHE`], so probes arriving fast (several kubelets, a scraper, an
//! attacker on a misrouted port) cost one database query a second at most.
//!
//! Once the service is stopping ([`Health::stop_readiness`], at SIGTERM: see
//! `platform::shutdown::pre_stop`) `/readyz` answers 503 `{"ready":false,"stopping":true}` at
//! once, cache or not, while the server goes on serving until the pre-stop delay is over.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::time::Instant;

use axum::{Json, Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use deadpool_postgres::Pool;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// How long a readiness result is served before it is checked again.
pub const READINESS_CACHE: Duration = Duration::from_secs(1);

/// What `/readyz` checks. Cheap to clone; shared by the consumer runtime (which reports the
/// broker) and the HTTP server (which asks the database, at most once per
/// [`READINESS_CACHE`]).
#[derive(Debug, Clone)]
pub struct Health {
    broker_connected: Arc<AtomicBool>,
    database: Option<Pool>,
    /// The last result and when it was taken.
    cached: Arc<Mutex<Option<(Instant, bool, serde_json::Value)>>>,
    /// Whether the last database check failed (its error is logged once per outage).
    database_failing: Arc<AtomicBool>,
    /// Cancelled when the service starts stopping: readiness fails from then on.
    stopping: CancellationToken,
}

impl Health {
    /// `database`: the pool to probe, or `None` for a service without a database (the relay).
    pub fn new(database: Option<Pool>) -> Self {
        Self {
            broker_connected: Arc::new(AtomicBool::new(false)),
            database,
            cached: Arc::new(Mutex::new(None)),
            database_failing: Arc::new(AtomicBool::new(false)),
            stopping: CancellationToken::new(),
        }
    }

    /// The service is stopping: `/readyz` answers 503 from now on, so the orchestrator takes it
    /// out of its endpoints while it still serves.
    pub fn stop_readiness(&self) {
        self.stopping.cancel();
    }

    /// Whether [`Health::stop_readiness`] was called.
    pub fn is_stopping(&self) -> bool {
        self.stopping.is_cancelled()
    }

    /// The token [`Health::stop_readiness`] cancels (for a task that must not hold the
    /// `Health` itself, and with it the database pool).
    pub fn stopping_token(&self) -> CancellationToken {
        self.stopping.clone()
    }

    /// Records whether the service's broker connection is up.
    pub fn set_broker_connected(&self, connected: bool) {
        self.broker_connected.store(connected, Ordering::Relaxed);
    }

    /// Whether the broker connection is up.
    pub fn broker_connected(&self) -> bool {
        self.broker_connected.load(Ordering::Relaxed)
    }

    /// The readiness `(ready, body)`: the cached result when it is younger than
    /// [`READINESS_CACHE`], otherwise every check runs again.
    pub async fn readiness(&self) -> (bool, serde_json::Value) {
        self.readiness_at(Instant::now()).await
    }

    /// [`Health::readiness`] as of `now` (tests pass their own clock).
    pub async fn readiness_at(&self, now: Instant) -> (bool, serde_json::Value) {
        if self.is_stopping() {
            return (false, json!({ "ready": false, "stopping": true }));
        }
        if let Ok(cached) = self.cached.lock()
            && let Some((taken, ready, body)) = cached.as_ref()
            && now.saturating_duration_since(*taken) < READINESS_CACHE
        {
            return (*ready, body.clone());
        }
        let (ready, body) = self.check().await;
        if let Ok(mut cached) = self.cached.lock() {
            *cached = Some((now, ready, body.clone()));
        }
        (ready, body)
    }

    async fn check(&self) -> (bool, serde_json::Value) {
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
        if let Some(database) = &database {
            // The error goes to the log (once per outage), never into the answer: the caller
            // of /readyz learns "unavailable", not the server's name, user or message.
            let failing = database.is_err();
            let was_failing = self.database_failing.swap(failing, Ordering::Relaxed);
            match database {
                Err(err) if !was_failing => {
                    tracing::warn!(error = %err, "readiness: the database does not answer");
                }
                Ok(()) if was_failing => tracing::info!("readiness: the database answers again"),
                _ => {}
            }
        }
        let ready = broker && database.as_ref().is_none_or(Result::is_ok);
        let mut body = json!({
            "ready": ready,
            "broker": if broker { "ok" } else { "disconnected" },
        });
        if let Some(database) = database {
            body["database"] = json!(if database.is_ok() {
                "ok"
            } else {
                "unavailable"
            });
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{DatabaseSettings, connect_pool};

    /// A pool whose server refuses every connection (nothing listens on port 1).
    fn unreachable_pool() -> Pool {
        connect_pool(&DatabaseSettings {
            url: "postgres://wos:s3cret@127.0.0.1:1/wos_sync".into(),
            connect_timeout_ms: 500,
            wait_timeout_ms: 500,
            ..DatabaseSettings::default()
        })
        .expect("pool")
    }

    #[tokio::test]
    async fn the_database_error_text_is_never_in_the_answer() {
        let health = Health::new(Some(unreachable_pool()));
        health.set_broker_connected(true);
        let (ready, body) = health.readiness().await;
        assert!(!ready);
        assert_eq!(body["database"], "unavailable", "{body}");
        let text = body.to_string();
        for leak in ["refused", "127.0.0.1", "wos", "error", "s3cret"] {
            assert!(!text.contains(leak), "`{leak}` in {text}");
        }
    }

    #[tokio::test]
    async fn a_stopping_service_is_not_ready_at_once_whatever_the_cache_says() {
        let health = Health::new(None);
        health.set_broker_connected(true);
        let start = Instant::now();
        assert!(health.readiness_at(start).await.0);
        health.stop_readiness();
        let (ready, body) = health.readiness_at(start).await;
        assert!(!ready, "the cached 200 must not outlive the stop: {body}");
        assert_eq!(body["stopping"], true, "{body}");
    }

    #[tokio::test]
    async fn readiness_is_cached_for_a_second() {
        let health = Health::new(None);
        let start = Instant::now();
        assert!(!health.readiness_at(start).await.0);
        health.set_broker_connected(true);
        let soon = start + READINESS_CACHE - Duration::from_millis(1);
        assert!(!health.readiness_at(soon).await.0, "served from the cache");
        assert!(
            health.readiness_at(start + READINESS_CACHE).await.0,
            "checked again after the cache time"
        );
    }
}
