//! The start of a service with a database, in the order that keeps it observable: the ops
//! server first (so `/healthz` answers, and `/readyz` says "not ready", while a migration waits
//! for a lock or the database is slow), then the database (created only when allowed), then the
//! migrations. And its stop: [`Prepared::stop`] is the caller's shutdown token delayed by the
//! pre-stop delay (`platform::shutdown::pre_stop`), which everything the service runs takes.

use std::net::SocketAddr;

use anyhow::Context as _;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{
    db::{self, PgPool},
    http::{self, Health},
    metrics::Metrics,
    settings::Settings,
    shutdown::pre_stop,
};

/// What a service holds once its database is ready.
#[derive(Debug)]
pub struct Prepared {
    /// The pool (migrated database).
    pub pool: PgPool,
    /// `/readyz`'s state: the database is probed through `pool`; the broker is reported by the
    /// consumer runtime, so the service reads "not ready" until it consumes.
    pub health: Health,
    /// The ops server task (`/metrics`, `/healthz`, `/readyz`), running until `stop`.
    pub ops_server: JoinHandle<()>,
    /// What the service drains on: cancelled `[http] pre_stop_delay_ms` after the caller's
    /// shutdown token, whose cancellation makes `/readyz` answer 503 at once. Consumers,
    /// background loops and servers take this token, so they serve on meanwhile.
    pub stop: CancellationToken,
}

/// Binds and serves the ops routes on the configured address (or `default_listen`), then
/// prepares the database: [`db::ensure_database`] and the migrations with the configured
/// `lock_timeout`.
pub async fn serve_ops_and_prepare_database(
    settings: &Settings,
    default_listen: SocketAddr,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> anyhow::Result<Prepared> {
    let pool = db::connect_pool(&settings.database)?;
    let health = Health::new(Some(pool.clone()));
    let stop = pre_stop(&shutdown, &health, settings.http.pre_stop_delay());
    let ops_server = match http::spawn_ops_server(
        settings.listen_or(default_listen),
        metrics,
        health.clone(),
        stop.clone(),
    )
    .await
    {
        Ok(server) => server,
        Err(err) => {
            stop.cancel();
            return Err(err).context("binding HTTP");
        }
    };
    let prepared = async {
        db::ensure_database(&settings.database)
            .await
            .context("preparing the database")?;
        db::migrate_with_lock_timeout(&pool, settings.database.migration_lock_timeout_ms)
            .await
            .context("applying migrations")?;
        anyhow::Ok(())
    }
    .await;
    if let Err(err) = prepared {
        // The service is not starting: nothing should keep answering for it.
        ops_server.abort();
        stop.cancel();
        return Err(err);
    }
    Ok(Prepared {
        pool,
        health,
        ops_server,
        stop,
    })
}
