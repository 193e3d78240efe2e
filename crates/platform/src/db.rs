//! PostgreSQL: the connection pool, TLS, the schema migrations.
//!
//! - deadpool's timeouts all default to "wait forever", which turns a database outage into hung
//!   consumers; every one of them is set here.
//! - `DATABASE_URL` is read as libpq reads it, TLS included ([`DatabaseTarget`]): `sslmode`
//!   `disable`, `prefer` (the default), `require`, `verify-ca`, `verify-full`, and `sslrootcert`
//!   (a CA file, or `system` for the platform's roots), with rustls.
//! - Works behind PgBouncer and on servers where the service's role may only use its own
//!   database: it connects to that database first (creating it only when it does not exist and
//!   `create_if_missing` allows), and sets `statement_timeout` with `SET` after connecting instead
//!   of the `options` startup parameter PgBouncer refuses.
//! - Migrations live in the workspace's `migrations/` folder, are embedded into the binary at
//!   compile time and applied by the program at start, under an advisory lock so replicas
//!   starting together do not race, and with a `lock_timeout`, since `items` is shared with WOS.

use std::{path::PathBuf, sync::Arc, time::Duration};

use deadpool_postgres::{
    Hook, HookError, ManagerConfig, Pool, PoolConfig, RecyclingMethod, Runtime, Timeouts,
};
use serde::Deserialize;
use tokio_postgres::error::SqlState;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::tls::{TrustRoots, Verification};

mod embedded {
    refinery::embed_migrations!("../../migrations");
}

pub use deadpool_postgres::{Object as PooledClient, Pool as PgPool, Transaction};

/// Pool settings (`[database]` in the configuration file).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// `postgres://user@host:port/db?sslmode=...&sslrootcert=...`; `DATABASE_URL` overrides it.
    pub url: String,
    /// Create the database when it does not exist (the role needs `CREATEDB`). Off by default:
    /// in production the database is provisioned, and a typo in its name must not create a new,
    /// empty one.
    pub create_if_missing: bool,
    /// Connections in the pool.
    pub max_connections: usize,
    /// How long a caller waits for a free connection before getting an error.
    pub wait_timeout_ms: u64,
    /// How long opening a new connection may take.
    pub connect_timeout_ms: u64,
    /// Per-statement limit, so a stuck query cannot hold a message forever.
    pub statement_timeout_ms: u64,
    /// How long a migration waits for a table lock (WOS uses `items` too) before it fails, and
    /// the service with it; a restart tries again.
    pub migration_lock_timeout_ms: u64,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: "postgres://postgres@127.0.0.1:5432/wos_sync".to_owned(),
            create_if_missing: false,
            max_connections: 16,
            wait_timeout_ms: 5_000,
            connect_timeout_ms: 5_000,
            statement_timeout_ms: 30_000,
            migration_lock_timeout_ms: 10_000,
        }
    }
}

impl std::fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("url", &crate::settings::redact_url(&self.url))
            .field("create_if_missing", &self.create_if_missing)
            .field("max_connections", &self.max_connections)
            .field("wait_timeout_ms", &self.wait_timeout_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("statement_timeout_ms", &self.statement_timeout_ms)
            .field("migration_lock_timeout_ms", &self.migration_lock_timeout_ms)
            .finish()
    }
}

/// `sslmode` of a PostgreSQL URL, as libpq defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plaintext only.
    Disable,
    /// TLS when the server offers it, plaintext otherwise; the certificate is not checked (the
    /// default, as in libpq).
    Prefer,
    /// TLS or no connection; the certificate is not checked (unless `sslrootcert` is given:
    /// then as `verify-ca`, as in libpq).
    Require,
    /// TLS, certificate signed by a trusted CA, any host name.
    VerifyCa,
    /// TLS, certificate signed by a trusted CA and issued for the host connected to. The
    /// recommended production setting.
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            _ => return None,
        })
    }
}

/// `DATABASE_URL` understood: the connection parameters, and the TLS it asks for.
#[derive(Clone)]
pub struct DatabaseTarget {
    config: tokio_postgres::Config,
    mode: SslMode,
    verification: Verification,
    tls: MakeRustlsConnect,
}

impl std::fmt::Debug for DatabaseTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // tokio_postgres::Config's Debug leaves the password out.
        f.debug_struct("DatabaseTarget")
            .field("config", &self.config)
            .field("mode", &self.mode)
            .field("verification", &self.verification)
            .finish_non_exhaustive()
    }
}

impl DatabaseTarget {
    /// Parses `url` (a `postgres://` URL, or libpq's `key=value` form without the `verify-*`
    /// modes) and builds its TLS configuration, reading `sslrootcert`. Refused, with the reason:
    /// an unknown `sslmode`, `verify-*` without `sslrootcert`, `sslrootcert=system` with a mode
    /// weaker than `verify-full` (as libpq), client certificates (`sslcert`, `sslkey`), and a CA
    /// file that cannot be used.
    pub fn parse(url: &str) -> Result<Self, DbError> {
        let refuse = |reason: String| DbError::Config(format!("DATABASE_URL: {reason}"));
        let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
        let mut mode = None;
        let mut root_cert = None;
        let mut kept = url.to_owned();
        if is_url {
            let (base, query) = url.split_once('?').unwrap_or((url, ""));
            let mut rest = Vec::new();
            for raw in query.split('&').filter(|pair| !pair.is_empty()) {
                let decoded = crate::settings::query_pairs(&format!("?{raw}"));
                let Some((key, value)) = decoded.into_iter().next() else {
                    continue;
                };
                match key.as_str() {
                    "sslmode" => {
                        mode = Some(SslMode::parse(&value).ok_or_else(|| {
                            refuse(format!(
                                "sslmode `{value}` is not one of disable, prefer, require, \
                     verify-ca, verify-full"
                            ))
                        })?);
                    }
                    "sslrootcert" => root_cert = Some(value),
                    "sslcert" | "sslkey" | "sslpassword" | "sslcrl" | "sslcrldir" => {
                        return Err(refuse(format!(
                            "`{key}` is not supported (no client certificates); authenticate \
                             with a password"
                        )));
                    }
                    _ => rest.push(raw),
                }
            }
            kept = if rest.is_empty() {
                base.to_owned()
            } else {
                format!("{base}?{}", rest.join("&"))
            };
        }
        let mut config: tokio_postgres::Config = kept
            .parse()
            .map_err(|err: tokio_postgres::Error| refuse(err.to_string()))?;
        let mode = mode.unwrap_or(match config.get_ssl_mode() {
            tokio_postgres::config::SslMode::Disable => SslMode::Disable,
            tokio_postgres::config::SslMode::Require => SslMode::Require,
            _ => SslMode::Prefer,
        });
        let roots = match root_cert.as_deref() {
            None => None,
            Some("") => return Err(refuse("`sslrootcert` needs a file name or `system`".into())),
            Some("system") => {
                if mode != SslMode::VerifyFull {
                    return Err(refuse(
                        "`sslrootcert=system` needs `sslmode=verify-full` (as in libpq): any \
                         public certificate would pass a weaker check"
                            .into(),
                    ));
                }
                Some(TrustRoots::Platform)
            }
            Some(file) => Some(TrustRoots::File(PathBuf::from(file))),
        };
        let verification = match (mode, roots) {
            (SslMode::Disable | SslMode::Prefer, _) | (SslMode::Require, None) => {
                Verification::EncryptionOnly
            }
            (SslMode::Require | SslMode::VerifyCa, Some(roots)) => Verification::ChainOnly(roots),
            (SslMode::VerifyFull, Some(roots)) => Verification::Full(roots),
            (SslMode::VerifyCa | SslMode::VerifyFull, None) => {
                return Err(refuse(
                    "`sslmode=verify-ca`/`verify-full` needs `sslrootcert` (a CA file, or \
                     `system` for the platform's roots)"
                        .into(),
                ));
            }
        };
        config.ssl_mode(match mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        });
        let client_config =
            crate::tls::client_config(&verification).map_err(|err| refuse(err.to_string()))?;
        Ok(Self {
            config,
            mode,
            verification,
            tls: MakeRustlsConnect::new(client_config),
        })
    }

    /// The `sslmode` in effect.
    pub fn ssl_mode(&self) -> SslMode {
        self.mode
    }

    /// The database name, when the URL names one.
    pub fn database(&self) -> Option<&str> {
        self.config.get_dbname()
    }

    /// The same server and TLS, another database.
    pub fn with_database(&self, database: &str) -> Self {
        let mut other = self.clone();
        other.config.dbname(database);
        other
    }

    /// Opens one connection (outside the pool) and drives it in a task that ends when the
    /// client is dropped.
    pub async fn connect(
        &self,
    ) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), DbError> {
        let (client, connection) = self.config.connect(self.tls.clone()).await?;
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok((client, driver))
    }
}

/// Errors of the database layer. All of them are transient from a consumer's point of view.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// With the causes: tokio-postgres' own text is often just "db error" or "error performing
    /// TLS handshake".
    #[error("database: {}", with_causes(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error("database configuration: {0}")]
    Config(String),
    #[error("migrations: {0}")]
    Migration(String),
}

impl DbError {
    /// Whether the database was unavailable or busy (no connection, connection lost, shutting
    /// down, out of resources, a deadlock or serialization failure, a statement timeout), as
    /// opposed to refusing what a statement carried (a constraint, a value out of range). A
    /// group of messages failing the first way is retried whole; failing the second way, it is
    /// handled message by message, so only the message at fault is retried or dead-lettered.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Pool(_) => true,
            // A value the database cannot take (an id beyond bigint), a setup problem: not an
            // outage.
            Self::Config(_) | Self::Migration(_) => false,
            Self::Postgres(err) => match err.code() {
                // No SQLSTATE: the connection failed or closed.
                None => true,
                Some(code) => {
                    let class = &code.code()[..2];
                    // 08 connection exception, 40 transaction rollback (serialization failure,
                    // deadlock), 53 insufficient resources, 57 operator intervention (shutdown,
                    // statement timeout), 58 system error.
                    matches!(class, "08" | "40" | "53" | "57" | "58")
                }
            },
        }
    }
}

/// Builds the pool. No connection is opened until the first use; each new connection gets the
/// `statement_timeout` by `SET` (PgBouncer refuses the `options` startup parameter).
pub fn connect_pool(settings: &DatabaseSettings) -> Result<Pool, DbError> {
    let target = DatabaseTarget::parse(&settings.url)?;
    let mut pg = target.config.clone();
    pg.connect_timeout(Duration::from_millis(settings.connect_timeout_ms));
    if pg.get_application_name().is_none() {
        pg.application_name("wos-shopify-sync");
    }
    let manager = deadpool_postgres::Manager::from_config(
        pg,
        target.tls.clone(),
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let set_timeout: Arc<str> =
        format!("SET statement_timeout = {}", settings.statement_timeout_ms).into();
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
        .post_create(Hook::async_fn(move |client, _| {
            let set_timeout = Arc::clone(&set_timeout);
            Box::pin(async move {
                client
                    .batch_execute(&set_timeout)
                    .await
                    .map_err(HookError::Backend)
            })
        }))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|err| DbError::Config(err.to_string()))
}

/// Arbitrary but fixed key of the advisory lock that serialises migrations across replicas.
pub const MIGRATION_LOCK_KEY: i64 = 0x776f_735f_6d69_6772; // "wos_migr"

/// Applies every pending migration from `migrations/`. Returns the versions applied now.
pub async fn migrate(pool: &Pool) -> Result<Vec<String>, DbError> {
    migrate_with_lock_timeout(pool, DatabaseSettings::default().migration_lock_timeout_ms).await
}

/// [`migrate`] with the migrations' `lock_timeout` (`[database] migration_lock_timeout_ms`).
pub async fn migrate_with_lock_timeout(
    pool: &Pool,
    lock_timeout_ms: u64,
) -> Result<Vec<String>, DbError> {
    let mut client = pool.get().await?;
    // Waiting for another replica's migrations, and a long migration, must not hit the pool's
    // per-statement limit; the session setting goes away with the connection below.
    client.batch_execute("SET statement_timeout = 0").await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await?;
    // Only now (waiting for the advisory lock is a lock wait too): a migration that needs a
    // table WOS holds locked gives up instead of queueing every query on that table behind it.
    client
        .batch_execute(&format!("SET lock_timeout = {lock_timeout_ms}"))
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
    let report = result.map_err(|err| DbError::Migration(with_causes(&err)))?;
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

/// `err` and each of its sources, so "db error" says which (a lock timeout, a syntax error).
fn with_causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Makes sure the database `settings.url` names exists: connects to it first (all a role that
/// may only use its own database, or PgBouncer, allows); only when PostgreSQL answers that it
/// does not exist, and `create_if_missing` is on, creates it through the server's `postgres`
/// database. Otherwise the error says what is missing and the service does not start.
pub async fn ensure_database(settings: &DatabaseSettings) -> Result<(), DbError> {
    let target = DatabaseTarget::parse(&settings.url)?;
    let Some(name) = target.database().map(str::to_owned) else {
        return Ok(()); // defaults to the user's database, which exists by definition
    };
    match target.connect().await {
        Ok((client, driver)) => {
            drop(client);
            let _ = driver.await;
            return Ok(());
        }
        Err(DbError::Postgres(err)) if err.code() == Some(&SqlState::INVALID_CATALOG_NAME) => {}
        Err(err) => return Err(err),
    }
    if !settings.create_if_missing {
        return Err(DbError::Config(format!(
            "database `{name}` does not exist: create it, or set `[database] create_if_missing = \
             true` to let the service create it"
        )));
    }
    let (client, driver) = target.with_database("postgres").connect().await?;
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
    let (client, driver) = DatabaseTarget::parse(url)?
        .with_database("postgres")
        .connect()
        .await?;
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

    fn refusal(url: &str) -> String {
        DatabaseTarget::parse(url).expect_err(url).to_string()
    }

    #[test]
    fn sslmode_is_read_as_libpq_reads_it() {
        let target =
            |url: &str| DatabaseTarget::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(
            target("postgres://u@h/db").ssl_mode(),
            SslMode::Prefer,
            "libpq's default"
        );
        let disabled = target("postgres://u@h/db?sslmode=disable&application_name=x");
        assert_eq!(disabled.ssl_mode(), SslMode::Disable);
        assert_eq!(
            disabled.config.get_application_name(),
            Some("x"),
            "other options kept"
        );
        let require = target("postgres://u@h/db?sslmode=require");
        assert_eq!(require.verification, Verification::EncryptionOnly);
        assert_eq!(
            require.config.get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );
        let full = target("postgresql://u:p@h:5433/db?sslmode=verify-full&sslrootcert=system");
        assert_eq!(full.verification, Verification::Full(TrustRoots::Platform));
        assert_eq!(
            full.config.get_ssl_mode(),
            tokio_postgres::config::SslMode::Require,
            "verify modes are TLS or nothing"
        );
        assert_eq!(full.database(), Some("db"));
        // libpq's key=value form keeps working for the modes tokio-postgres knows.
        assert_eq!(
            target("host=h dbname=db sslmode=require").ssl_mode(),
            SslMode::Require
        );
    }

    #[test]
    fn tls_that_cannot_be_honoured_is_refused_with_the_reason() {
        assert!(refusal("postgres://u@h/db?sslmode=verify").contains("is not one of"));
        assert!(refusal("postgres://u@h/db?sslmode=verify-full").contains("needs `sslrootcert`"));
        assert!(refusal("postgres://u@h/db?sslmode=verify-ca").contains("needs `sslrootcert`"));
        assert!(
            refusal("postgres://u@h/db?sslmode=require&sslrootcert=system")
                .contains("needs `sslmode=verify-full`")
        );
        assert!(refusal("postgres://u@h/db?sslcert=/c.pem").contains("not supported"));
        assert!(
            refusal("postgres://u@h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem")
                .contains("/nonexistent/ca.pem: cannot read")
        );
        let err = refusal("postgres://u:s3cret@h/db?sslmode=bogus");
        assert!(!err.contains("s3cret"), "{err}");
    }

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
