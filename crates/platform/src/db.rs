//! PostgreSQL: the connection pool and the schema migrations.
//!
//! deadpool's timeouts all default to "wait forever", which turns a database outage into hung
//! consumers; every one of them is set here. Migrations live in the workspace's `migrations/`
//! folder, are embedded into the binary at compile time and applied by the program at start,
//! under an advisory lock so replicas starting together do not race.

use std::time::Duration;

use deadpool_postgres::{ManagerConfig, Pool, PoolConfig, RecyclingMethod, Runtime, Timeouts};
use serde::Deserialize;
use tokio_postgres::{NoTls, error::SqlState};

mod embedded {
    refinery::embed_migrations!("../../migrations");
}

pub use deadpool_postgres::{Object as PooledClient, Pool as PgPool, Transaction};

/// Pool settings (`[database]` in the configuration file).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// `postgres://user@host:port/db`; `DATABASE_URL` overrides it.
    pub url: String,
    /// Connections in the pool.
    pub max_connections: usize,
    /// How long a caller waits for a free connection before getting an error.
    pub wait_timeout_ms: u64,
    /// How long opening a new connection may take.
    pub connect_timeout_ms: u64,
    /// Per-statement limit, so a stuck query cannot hold a message forever.
    pub statement_timeout_ms: u64,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: "postgres://postgres@127.0.0.1:5432/wos_sync".to_owned(),
            max_connections: 16,
            wait_timeout_ms: 5_000,
            connect_timeout_ms: 5_000,
            statement_timeout_ms: 30_000,
        }
    }
}

/// Errors of the database layer. All of them are transient from a consumer's point of view.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("database configuration: {0}")]
    Config(String),
    #[error("migrations: {0}")]
    Migration(String),
}

/// Builds the pool. No connection is opened until the first use.
pub fn connect_pool(settings: &DatabaseSettings) -> Result<Pool, DbError> {
    let mut pg: tokio_postgres::Config = settings
        .url
        .parse()
        .map_err(|err: tokio_postgres::Error| DbError::Config(format!("DATABASE_URL: {err}")))?;
    pg.connect_timeout(Duration::from_millis(settings.connect_timeout_ms));
    pg.options(format!(
        "-c statement_timeout={}",
        settings.statement_timeout_ms
    ));
    if pg.get_application_name().is_none() {
        pg.application_name("wos-shopify-sync");
    }
    let manager = deadpool_postgres::Manager::from_config(
        pg,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let connect = Duration::from_millis(settings.connect_timeout_ms);
    Pool::builder(manager)
        .config(PoolConfig {
            max_size: settings.max_connections,
            timeouts: Timeouts {
                wait: Some(Duration::from_millis(settings.wait_timeout_ms)),
                create: Some(connect),
                recycle: Some(connect),
            },
            ..PoolConfig::default()
        })
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|err| DbError::Config(err.to_string()))
}

/// Arbitrary but fixed key of the advisory lock that serialises migrations across replicas.
const MIGRATION_LOCK_KEY: i64 = 0x776f_735f_6d69_6772; // "wos_migr"

/// Applies every pending migration from `migrations/`. Returns the versions applied now.
pub async fn migrate(pool: &Pool) -> Result<Vec<String>, DbError> {
    let mut client = pool.get().await?;
    // Waiting for another replica's migrations, and a long migration, must not hit the pool's
    // per-statement limit; the session setting goes away with the connection below.
    client.batch_execute("SET statement_timeout = 0").await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await?;
    let client_ref: &mut tokio_postgres::Client = &mut client;
    let result = embedded::migrations::runner().run_async(client_ref).await;
    // Unlock even when the run failed (a closed connection would release it anyway); the
    // migration's own error is the one to report.
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await;
    // The connection carries a session setting: never hand it back to the pool.
    let _ = deadpool_postgres::Object::take(client);
    let report = result.map_err(|err| DbError::Migration(err.to_string()))?;
    unlocked?;
    Ok(report
        .applied_migrations()
        .iter()
        .map(|m| m.to_string())
        .collect())
}

/// The embedded migrations the database has not applied yet (`V<n>__<name>`), oldest first:
/// what `migrate` would apply now. All of them on a database that was never migrated.
pub async fn pending_migrations(pool: &Pool) -> Result<Vec<String>, DbError> {
    let mut client = pool.get().await?;
    let runner = embedded::migrations::runner();
    let migrated = client
        .query_one(
            "SELECT to_regclass('refinery_schema_history') IS NOT NULL",
            &[],
        )
        .await?
        .get::<_, bool>(0);
    let applied: Vec<i64> = if migrated {
        let client_ref: &mut tokio_postgres::Client = &mut client;
        runner
            .get_applied_migrations_async(client_ref)
            .await
            .map_err(|err| DbError::Migration(err.to_string()))?
            .iter()
            .map(|m| i64::from(m.version()))
            .collect()
    } else {
        Vec::new()
    };
    let mut pending: Vec<_> = runner
        .get_migrations()
        .iter()
        .filter(|m| !applied.contains(&i64::from(m.version())))
        .map(|m| (m.version(), m.to_string()))
        .collect();
    pending.sort();
    Ok(pending.into_iter().map(|(_, name)| name).collect())
}

/// Creates the database `settings.url` names if it does not exist yet, so a fresh machine needs
/// no manual `createdb`. Where the role may not create databases (typical in production, where
/// the database is provisioned), the error says so and the service does not start.
pub async fn ensure_database(settings: &DatabaseSettings) -> Result<(), DbError> {
    let pg: tokio_postgres::Config = settings
        .url
        .parse()
        .map_err(|err: tokio_postgres::Error| DbError::Config(format!("DATABASE_URL: {err}")))?;
    let Some(name) = pg.get_dbname().map(str::to_owned) else {
        return Ok(()); // defaults to the user's database, which exists by definition
    };
    let admin = with_database(&settings.url, "postgres");
    let (client, connection) = tokio_postgres::connect(&admin, NoTls).await?;
    let driver = tokio::spawn(connection);
    let quoted = format!("\"{}\"", name.replace('"', "\"\""));
    // Services starting together race to create it: PostgreSQL refuses a CREATE DATABASE while
    // another copies the template (`55006`), or when the other one won (`42P04`, or `23505` on
    // the catalog's unique index when both got that far). Look again.
    let mut attempts = 0;
    let outcome = loop {
        attempts += 1;
        let exists = client
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .await?
            .is_some();
        if exists {
            break Ok(());
        }
        match client
            .batch_execute(&format!("CREATE DATABASE {quoted}"))
            .await
        {
            Ok(()) => {
                tracing::info!(database = %name, "created the database");
                break Ok(());
            }
            Err(err)
                if attempts < 10
                    && matches!(
                        err.code(),
                        Some(
                            &SqlState::DUPLICATE_DATABASE
                                | &SqlState::OBJECT_IN_USE
                                | &SqlState::UNIQUE_VIOLATION
                        )
                    ) =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(err) => {
                let reason = err
                    .as_db_error()
                    .map_or_else(|| err.to_string(), |db| db.message().to_owned());
                break Err(DbError::Config(format!(
                    "database `{name}` does not exist and cannot be created: {reason}"
                )));
            }
        }
    };
    drop(client);
    let _ = driver.await;
    outcome
}

/// `url` with its database name replaced by `database` (server, user and options kept).
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{server}/{database}?{query}"),
        None => format!("{server}/{database}"),
    }
}

/// Runs one statement on the `postgres` database of the server `url` points at (creating and
/// dropping scratch databases for benchmarks).
pub async fn admin_execute(url: &str, statement: &str) -> Result<(), DbError> {
    let (client, connection) =
        tokio_postgres::connect(&with_database(url, "postgres"), NoTls).await?;
    let driver = tokio::spawn(connection);
    client.batch_execute(statement).await?;
    drop(client);
    let _ = driver.await;
    Ok(())
}

/// Cheap liveness query used by `/readyz`.
pub async fn check(pool: &Pool) -> Result<(), DbError> {
    let client = pool.get().await?;
    client.simple_query("SELECT 1").await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_database_keeps_server_user_and_options() {
        assert_eq!(
            with_database("postgres://u@h:5432/wos_sync", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h:5432/wos_sync?sslmode=disable", "x"),
            "postgres://u:p@h:5432/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
    }
}
