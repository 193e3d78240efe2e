//! Settings: the TOML configuration file, environment overrides and the common flags.
//!
//! Precedence, lowest first: built-in defaults (a local RabbitMQ and PostgreSQL), the file
//! (`--config FILE` or `WOS_SYNC_CONFIG`), the environment (`AMQP_URL`, `DATABASE_URL`,
//! `OTEL_EXPORTER_OTLP_ENDPOINT`, `LISTEN_ADDR`), the command line (`--listen`). A bad file is refused as a whole with the
//! file, the key and the reason; no service starts half-configured. Secrets (Shopify tokens,
//! webhook secrets) are never in the file: it names the environment variables that hold them.

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use model::config::{ConfigError, ShopDirectory, deserialize_section, parse_shops};
use serde::Deserialize;

use crate::{
    amqp::{
        consumer::ConsumerSettings,
        endpoint::Endpoint,
        topology::{Names, RetryPolicy},
    },
    db::DatabaseSettings,
    retention::RetentionSettings,
    telemetry::LogFormat,
};

/// Flags every long-running binary accepts (flatten into the binary's clap parser).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CommonArgs {
    /// Configuration file (TOML). Without one, defaults for a local broker and database apply.
    #[arg(long, env = "WOS_SYNC_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// HTTP address for /metrics, /healthz and /readyz (port 0 picks a free port).
    #[arg(long, env = "LISTEN_ADDR", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Log format: auto (text on a terminal, JSON otherwise), json or text.
    #[arg(long, env = "LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
}

/// `[amqp]`.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AmqpSettings {
    /// `amqp://user:password@host:port/vhost`; `AMQP_URL` overrides it.
    pub url: String,
    /// Prefix for every exchange and queue name; empty in production (the contract's names).
    pub name_prefix: String,
}

impl std::fmt::Debug for AmqpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpSettings")
            .field("url", &redact_url(&self.url))
            .field("name_prefix", &self.name_prefix)
            .finish()
    }
}

impl Default for AmqpSettings {
    fn default() -> Self {
        Self {
            url: "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned(),
            name_prefix: String::new(),
        }
    }
}

/// `[http]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// The service's HTTP address; each service has its own default (CONTRACT 1).
    pub listen: Option<SocketAddr>,
    /// The relay's address for `/metrics`, `/healthz` and `/readyz`, apart from its public
    /// webhook listener (`--ops-listen` / `OPS_LISTEN_ADDR`; default `0.0.0.0:9466`).
    pub ops_listen: Option<SocketAddr>,
    /// After SIGTERM, how long `/readyz` answers 503 while the service keeps serving (and
    /// consuming) before it drains: the time Kubernetes needs to take the pod out of its
    /// Service's endpoints (`platform::shutdown::pre_stop`). 0 drains at once.
    pub pre_stop_delay_ms: u64,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            listen: None,
            ops_listen: None,
            pre_stop_delay_ms: 5_000,
        }
    }
}

impl HttpSettings {
    /// [`HttpSettings::pre_stop_delay_ms`] as a duration.
    pub fn pre_stop_delay(&self) -> Duration {
        Duration::from_millis(self.pre_stop_delay_ms)
    }
}

/// `[log]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    pub format: LogFormat,
    /// The OpenTelemetry collector the spans are exported to (OTLP over HTTP/protobuf): its
    /// base URL, `http://collector:4318` (`/v1/traces` is appended);
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` overrides it. Empty: no export. Needs a build with the
    /// `platform` feature `otlp`; a build without it refuses a configured endpoint.
    pub otlp_endpoint: String,
}

impl LogSettings {
    /// The endpoint must be usable by this build: refused, not ignored, when the exporter is
    /// not compiled in.
    fn validate(&self) -> Result<(), (String, String)> {
        let endpoint = self.otlp_endpoint.as_str();
        let refuse = |reason: &str| {
            Err((
                "log.otlp_endpoint".to_owned(),
                format!("{reason} (set by the file or OTEL_EXPORTER_OTLP_ENDPOINT)"),
            ))
        };
        if endpoint.is_empty() {
            Ok(())
        } else if !cfg!(feature = "otlp") {
            refuse(
                "an OpenTelemetry collector is configured, but this program was built without \
                 the otlp feature; rebuild with --features platform/otlp, or remove the endpoint",
            )
        } else if !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
            || endpoint.contains(char::is_whitespace)
        {
            refuse("must be the collector's http:// or https:// base URL (http://collector:4318)")
        } else {
            Ok(())
        }
    }
}

/// Service-specific tables a configuration file may carry; each service parses its own. Other
/// programs that share the file name their own tables when they load it
/// ([`Settings::load_with_sections`]).
pub const SERVICE_SECTIONS: &[&str] = &["item_ingest", "adjustment_pusher", "webhook_relay"];

/// The sections the platform itself reads.
const PLATFORM_SECTIONS: &[&str] = &[
    "amqp",
    "database",
    "consumer",
    "retry",
    "http",
    "log",
    "retention",
    "shops",
];

/// Everything a service is configured with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The file the settings came from, for messages.
    pub source: Option<PathBuf>,
    pub amqp: AmqpSettings,
    pub database: DatabaseSettings,
    pub consumer: ConsumerSettings,
    pub retry: RetryPolicy,
    pub http: HttpSettings,
    pub log: LogSettings,
    pub retention: RetentionSettings,
    pub shops: ShopDirectory,
    /// The service-specific tables ([`SERVICE_SECTIONS`]) present in the file, and those the
    /// loading program named as its own ([`Settings::load_with_sections`]), unparsed.
    pub services: toml::Table,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            source: None,
            amqp: AmqpSettings::default(),
            database: DatabaseSettings::default(),
            consumer: ConsumerSettings::default(),
            retry: RetryPolicy::default(),
            http: HttpSettings::default(),
            log: LogSettings::default(),
            retention: RetentionSettings::default(),
            shops: ShopDirectory::default(),
            services: toml::Table::new(),
        }
    }
}

/// A refused configuration: which file, which key, why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration {file}: {}{reason}", key.as_ref().map(|k| format!("`{k}`: ")).unwrap_or_default())]
pub struct SettingsError {
    pub file: String,
    pub key: Option<String>,
    pub reason: String,
}

impl SettingsError {
    /// A refused key of `file`: what every section's reading and rules report.
    pub fn at_key(file: &str, err: ConfigError) -> Self {
        Self {
            file: file.to_owned(),
            key: Some(err.key),
            reason: err.reason,
        }
    }
}

impl Settings {
    /// Loads the settings a binary was started with: the file (if any), then the environment,
    /// then the flags.
    pub fn load(args: &CommonArgs) -> Result<Self, SettingsError> {
        Self::load_with_sections(args, &[])
    }

    /// [`Settings::load`] for a program that reads tables of its own from the same file:
    /// `own` names them (the platform knows only its own sections and the services'), and they
    /// are kept unparsed in [`Settings::services`] for the program to read. Any other unknown
    /// section is still refused.
    pub fn load_with_sections(args: &CommonArgs, own: &[&str]) -> Result<Self, SettingsError> {
        let mut settings = match &args.config {
            Some(path) => Self::read_file(path, own)?,
            None => Self::default(),
        };
        settings.apply_env(|name| std::env::var(name).ok().filter(|v| !v.is_empty()));
        if let Some(listen) = args.listen {
            settings.http.listen = Some(listen);
        }
        if let Some(format) = args.log_format {
            settings.log.format = format;
        }
        // Again with the environment applied: a bad AMQP_URL is refused like a bad file.
        settings.validate().map_err(|(key, reason)| SettingsError {
            file: settings.source_name(),
            key: Some(key),
            reason,
        })?;
        Ok(settings)
    }

    /// Reads and validates a configuration file.
    pub fn from_file(path: &Path) -> Result<Self, SettingsError> {
        Self::read_file(path, &[])
    }

    fn read_file(path: &Path, own: &[&str]) -> Result<Self, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|err| SettingsError {
            file: path.display().to_string(),
            key: None,
            reason: format!("cannot read: {err}"),
        })?;
        Self::from_toml_str_with_sections(&text, &path.display().to_string(), own)
    }

    /// Parses and validates configuration text; `file` names it in errors (and becomes
    /// [`Settings::source`], so the errors of the sections read later name it too).
    pub fn from_toml_str(text: &str, file: &str) -> Result<Self, SettingsError> {
        Self::from_toml_str_with_sections(text, file, &[])
    }

    /// [`Settings::from_toml_str`] accepting the tables named in `own` as well (see
    /// [`Settings::load_with_sections`]).
    pub fn from_toml_str_with_sections(
        text: &str,
        file: &str,
        own: &[&str],
    ) -> Result<Self, SettingsError> {
        let refuse = |key: Option<String>, reason: String| SettingsError {
            file: file.to_owned(),
            key,
            reason,
        };
        let mut doc: toml::Table = text.parse().map_err(|err: toml::de::Error| {
            refuse(None, format!("not valid TOML: {}", err.message()))
        })?;

        let services: BTreeSet<&str> = SERVICE_SECTIONS.iter().chain(own).copied().collect();
        let known: BTreeSet<&str> = PLATFORM_SECTIONS
            .iter()
            .copied()
            .chain(services.iter().copied())
            .collect();
        if let Some(unknown) = doc.keys().find(|key| !known.contains(key.as_str())) {
            return Err(refuse(
                Some(unknown.clone()),
                format!(
                    "unknown section; expected one of {}",
                    known.into_iter().collect::<Vec<_>>().join(", ")
                ),
            ));
        }

        let shops = parse_shops(&doc)
            .and_then(ShopDirectory::new)
            .map_err(|err| SettingsError::at_key(file, err))?;
        let mut settings = Self {
            source: Some(PathBuf::from(file)),
            shops,
            ..Self::default()
        };
        settings.amqp = section(&mut doc, "amqp", file)?;
        settings.database = section(&mut doc, "database", file)?;
        settings.consumer = section(&mut doc, "consumer", file)?;
        settings.retry = section(&mut doc, "retry", file)?;
        settings.http = section(&mut doc, "http", file)?;
        settings.log = section(&mut doc, "log", file)?;
        settings.retention = section(&mut doc, "retention", file)?;
        settings.services = doc
            .into_iter()
            .filter(|(key, _)| services.contains(key.as_str()))
            .collect();
        settings
            .validate()
            .map_err(|(key, reason)| refuse(Some(key), reason))?;
        Ok(settings)
    }

    /// Applies `AMQP_URL`, `DATABASE_URL` and `OTEL_EXPORTER_OTLP_ENDPOINT` (looked up through
    /// `lookup`, so tests need not touch the process environment).
    pub fn apply_env(&mut self, lookup: impl Fn(&str) -> Option<String>) {
        if let Some(url) = lookup("AMQP_URL") {
            self.amqp.url = url;
        }
        if let Some(url) = lookup("DATABASE_URL") {
            self.database.url = url;
        }
        if let Some(url) = lookup("OTEL_EXPORTER_OTLP_ENDPOINT") {
            self.log.otlp_endpoint = url;
        }
    }

    /// Cross-field checks of the platform's own sections.
    fn validate(&self) -> Result<(), (String, String)> {
        self.consumer.validate()?;
        self.retry.validate()?;
        self.retention.validate()?;
        self.log.validate()?;
        let database = [
            (
                "database.max_connections",
                self.database.max_connections as u64,
            ),
            ("database.wait_timeout_ms", self.database.wait_timeout_ms),
            (
                "database.connect_timeout_ms",
                self.database.connect_timeout_ms,
            ),
            // 0 would mean "no limit" to PostgreSQL: the guard against stuck queries gone.
            (
                "database.statement_timeout_ms",
                self.database.statement_timeout_ms,
            ),
            (
                "database.migration_lock_timeout_ms",
                self.database.migration_lock_timeout_ms,
            ),
        ];
        if let Some((key, _)) = database.iter().find(|(_, value)| *value == 0) {
            return Err(((*key).into(), "must be at least 1".into()));
        }
        // sslmode/sslrootcert that cannot be honoured: refused now, not at the first connect.
        crate::db::DatabaseTarget::parse(&self.database.url).map_err(|err| {
            let reason = match err {
                crate::db::DbError::Config(reason) => reason,
                other => other.to_string(),
            };
            ("database.url".into(), reason)
        })?;
        if !self.amqp.url.starts_with("amqp://") && !self.amqp.url.starts_with("amqps://") {
            return Err((
                "amqp.url".into(),
                "must start with amqp:// or amqps://".into(),
            ));
        }
        // What could never connect securely is refused now, not at the first reconnect.
        let endpoint =
            Endpoint::parse(&self.amqp.url).map_err(|err| ("amqp.url".into(), err.to_string()))?;
        endpoint
            .check()
            .map_err(|err| ("amqp.url".into(), err.to_string()))?;
        let prefix_ok = self
            .amqp
            .name_prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        if !prefix_ok {
            return Err((
                "amqp.name_prefix".into(),
                "may contain only letters, digits, '.', '-' and '_'".into(),
            ));
        }
        Ok(())
    }

    /// The exchange and queue names, with this deployment's prefix.
    pub fn names(&self) -> Names {
        Names::new(self.amqp.name_prefix.clone())
    }

    /// The HTTP address: configured, or the service's default.
    pub fn listen_or(&self, default: SocketAddr) -> SocketAddr {
        self.http.listen.unwrap_or(default)
    }

    /// A service's own table, deserialised (its defaults when the file has none); an error
    /// names the exact key, as for the platform's sections.
    pub fn service_section<T: for<'de> Deserialize<'de> + Default>(
        &self,
        name: &str,
    ) -> Result<T, SettingsError> {
        match self.services.get(name) {
            None => Ok(T::default()),
            Some(value) => deserialize_section(name, value.clone())
                .map_err(|err| SettingsError::at_key(&self.source_name(), err)),
        }
    }

    /// The file the settings came from, as errors name it (`(defaults)` without one).
    pub fn source_name(&self) -> String {
        self.source
            .as_ref()
            .map_or_else(|| "(defaults)".to_owned(), |p| p.display().to_string())
    }
}

/// Deserialises one platform section (its defaults when the file has none), naming the exact
/// key in errors (`amqp.urll`): every section, `[[shops]]` included, is read the same way.
fn section<T: for<'de> Deserialize<'de> + Default>(
    doc: &mut toml::Table,
    name: &str,
    file: &str,
) -> Result<T, SettingsError> {
    match doc.remove(name) {
        None => Ok(T::default()),
        Some(value) => {
            deserialize_section(name, value).map_err(|err| SettingsError::at_key(file, err))
        }
    }
}

/// The `key=value` pairs of a URL's query string, percent-decoded, in order.
pub fn query_pairs(url: &str) -> Vec<(String, String)> {
    let Some((_, query)) = url.split_once('?') else {
        return Vec::new();
    };
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

/// `%XX` sequences decoded (invalid UTF-8 replaced); anything else kept as is.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied(),
            bytes.get(i + 2).copied(),
        ) {
            (b'%', Some(high), Some(low)) if hex(high).is_some() && hex(low).is_some() => {
                let value = hex(high).unwrap_or(0) * 16 + hex(low).unwrap_or(0);
                decoded.push(u8::try_from(value).unwrap_or(b'?'));
                i += 3;
            }
            (byte, _, _) => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// `url` with its password replaced by `***`, for logs, errors and `Debug`: the one in the user
/// information and a `password=` query parameter (libpq accepts both).
pub fn redact_url(url: &str) -> String {
    let (url, query) = url
        .split_once('?')
        .map_or((url, None), |(u, q)| (u, Some(q)));
    let redacted = redact_userinfo(url);
    match query {
        None => redacted,
        Some(query) => {
            let pairs: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if percent_decode(key).eq_ignore_ascii_case("password") => {
                        format!("{key}=***")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{redacted}?{}", pairs.join("&"))
        }
    }
}

fn redact_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, None), |(a, p)| (a, Some(p)));
    let redacted = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    match path {
        Some(path) => format!("{scheme}://{redacted}/{path}"),
        None => format!("{scheme}://{redacted}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Settings, SettingsError> {
        Settings::from_toml_str(text, "test.toml")
    }

    fn refused_key(text: &str) -> Option<String> {
        load(text).expect_err("must be refused").key
    }

    #[test]
    fn an_empty_file_gives_the_local_defaults() {
        let settings = load("").expect("valid");
        assert_eq!(settings.amqp.url, "amqp://guest:guest@127.0.0.1:5672/%2f");
        assert_eq!(
            settings.database.url,
            "postgres://postgres@127.0.0.1:5432/wos_sync"
        );
        assert_eq!(settings.names().prefix(), "");
        assert!(settings.shops.is_empty());
        assert_eq!(settings.consumer, ConsumerSettings::default());
        assert_eq!(settings.retry, RetryPolicy::default());
    }

    #[test]
    fn sections_override_defaults() {
        let settings = load(
            r#"
            [amqp]
            url = "amqp://u:p@broker:5672/%2f"
            name_prefix = "staging."
            [consumer]
            prefetch = 10
            concurrency = 5
            [retry]
            base_delay_ms = 200
            [http]
            listen = "127.0.0.1:0"
            [item_ingest]
            anything = 1
            "#,
        )
        .expect("valid");
        assert_eq!(settings.amqp.url, "amqp://u:p@broker:5672/%2f");
        assert_eq!(
            settings.names().name("shopify.events"),
            "staging.shopify.events"
        );
        assert_eq!(settings.consumer.prefetch, 10);
        assert_eq!(settings.consumer.concurrency, 5);
        assert_eq!(settings.retry.base_delay_ms, 200);
        assert_eq!(settings.retry.tiers, RetryPolicy::default().tiers);
        assert_eq!(
            settings.http.listen,
            Some("127.0.0.1:0".parse().expect("addr"))
        );
        assert!(settings.services.contains_key("item_ingest"));
    }

    #[test]
    fn the_environment_overrides_the_file() {
        let mut settings = load("[amqp]\nurl = \"amqp://file\"").expect("valid");
        settings.apply_env(|name| match name {
            "AMQP_URL" => Some("amqp://env".into()),
            "DATABASE_URL" => Some("postgres://env/db".into()),
            _ => None,
        });
        assert_eq!(settings.amqp.url, "amqp://env");
        assert_eq!(settings.database.url, "postgres://env/db");
    }

    /// A collector endpoint is taken by a build with the exporter, refused by one without (never
    /// silently ignored), whether it comes from the file or the environment.
    #[test]
    fn an_otlp_endpoint_needs_the_otlp_feature() {
        let text = "[log]\notlp_endpoint = \"http://collector:4318\"";
        let from_env = || {
            let mut settings = load("").expect("valid");
            settings.apply_env(|name| {
                (name == "OTEL_EXPORTER_OTLP_ENDPOINT").then(|| "http://env:4318".to_owned())
            });
            settings
        };
        assert_eq!(from_env().log.otlp_endpoint, "http://env:4318");
        if cfg!(feature = "otlp") {
            let settings = load(text).expect("taken with the feature");
            assert_eq!(settings.log.otlp_endpoint, "http://collector:4318");
            assert_eq!(from_env().validate(), Ok(()));
            assert_eq!(
                refused_key("[log]\notlp_endpoint = \"collector:4318\""),
                Some("log.otlp_endpoint".into())
            );
        } else {
            let err = load(text).expect_err("refused without the feature");
            assert_eq!(err.key.as_deref(), Some("log.otlp_endpoint"));
            assert!(
                err.reason.contains(
                    "built without the otlp feature; rebuild with --features platform/otlp"
                ),
                "{err}"
            );
            let (key, _) = from_env()
                .validate()
                .expect_err("refused from the environment");
            assert_eq!(key, "log.otlp_endpoint");
        }
        assert_eq!(
            load("[log]\notlp_endpoint = \"\"").map(|s| s.log),
            Ok(LogSettings::default())
        );
    }

    #[test]
    fn bad_files_are_refused_with_file_key_and_reason() {
        let err = load("[amqp\n").expect_err("bad toml");
        assert_eq!(err.file, "test.toml");
        assert!(err.reason.starts_with("not valid TOML"), "{err}");

        assert_eq!(refused_key("[amqpp]\nurl = \"x\""), Some("amqpp".into()));
        assert_eq!(
            refused_key("[amqp]\nurll = \"x\""),
            Some("amqp.urll".into())
        );
        assert_eq!(
            refused_key("[amqp]\nurl = \"http://x\""),
            Some("amqp.url".into())
        );
        assert_eq!(
            refused_key("[amqp]\nname_prefix = \"a b\""),
            Some("amqp.name_prefix".into())
        );
        assert_eq!(
            refused_key("[consumer]\nprefetch = 0"),
            Some("consumer.prefetch".into())
        );
        assert_eq!(
            refused_key("[consumer]\nprefetch = 4\nconcurrency = 8"),
            Some("consumer.concurrency".into())
        );
        assert_eq!(
            refused_key("[retry]\nmax_attempts = 0"),
            Some("retry.max_attempts".into())
        );
        assert_eq!(
            refused_key("[database]\nstatement_timeout_ms = 0"),
            Some("database.statement_timeout_ms".into())
        );
        assert_eq!(
            refused_key("[consumer]\npublish_timeout_ms = 0"),
            Some("consumer.publish_timeout_ms".into())
        );
        assert_eq!(
            refused_key("[consumer]\nmax_message_bytes = 0"),
            Some("consumer.max_message_bytes".into())
        );
        assert_eq!(
            refused_key("[database]\nmax_connections = 0"),
            Some("database.max_connections".into())
        );
        assert_eq!(
            refused_key("[database]\nmigration_lock_timeout_ms = 0"),
            Some("database.migration_lock_timeout_ms".into())
        );
        assert_eq!(
            refused_key("[retention]\ninbox_days = 0"),
            Some("retention.inbox_days".into())
        );
        assert_eq!(
            refused_key("[retention]\ninbox = 3"),
            Some("retention.inbox".into())
        );
        assert_eq!(
            refused_key("[database]\nurl = \"postgres://h/db?sslmode=verify-full\""),
            Some("database.url".into())
        );
        assert_eq!(
            refused_key("[http]\nlisten = \"nowhere\""),
            Some("http.listen".into())
        );

        let err = load("[consumer]\nprefetch = 0").expect_err("refused");
        assert_eq!(
            err.to_string(),
            "configuration test.toml: `consumer.prefetch`: must be at least 1"
        );
    }

    #[test]
    fn a_program_names_its_own_sections_and_every_other_stays_unknown() {
        let text = "[my_tool]\nanything = 1\n[amqp]\nname_prefix = \"x.\"";
        assert_eq!(refused_key(text), Some("my_tool".into()));
        let settings =
            Settings::from_toml_str_with_sections(text, "test.toml", &["my_tool"]).expect("valid");
        assert_eq!(settings.names().prefix(), "x.");
        assert_eq!(
            settings
                .services
                .get("my_tool")
                .and_then(|t| t.get("anything")),
            Some(&toml::Value::Integer(1))
        );
        let err = Settings::from_toml_str_with_sections(
            "[my_tool]\n[other_tool]\n",
            "test.toml",
            &["my_tool"],
        )
        .expect_err("other_tool is nobody's");
        assert_eq!(err.key.as_deref(), Some("other_tool"));
    }

    #[test]
    fn shop_errors_carry_the_shop_key() {
        let err = load("[[shops]]\ndomain = \"Not A Shop\"").expect_err("refused");
        assert!(
            err.key
                .as_deref()
                .is_some_and(|k| k.starts_with("shops[0]")),
            "{err}"
        );
    }

    #[test]
    fn every_section_reports_the_file_the_key_path_and_the_reason() {
        let message = |text: &str| load(text).expect_err("refused").to_string();
        assert_eq!(
            message("[amqp]\nurll = \"x\""),
            "configuration test.toml: `amqp.urll`: unknown field `urll`, expected `url` or \
             `name_prefix`"
        );
        assert_eq!(
            message("[retry]\nbase_delay_ms = \"1s\""),
            "configuration test.toml: `retry.base_delay_ms`: invalid type: string \"1s\", \
             expected u64"
        );
        assert_eq!(
            message(
                "[[shops]]\ndomain = \"acme.myshopify.com\"\napi_version = \"2026-04\"\n\
                 admin_base_url = \"https://acme.myshopify.com\"\naccess_token_env = \"T\"\n\
                 [shops.locations]\nMAIN = -5"
            ),
            "configuration test.toml: `shops[0].locations.MAIN`: location id must be a positive \
             integer, got -5"
        );

        /// A service's own table, declared as the services declare theirs.
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        struct ServiceTable {
            #[allow(dead_code)]
            batch_size: u32,
        }
        let mut settings = load("[item_ingest]\nbatch_size = 0\nbatch = 1").expect("valid");
        settings.source = Some("/etc/wos-sync.toml".into());
        let err = settings
            .service_section::<ServiceTable>("item_ingest")
            .expect_err("refused");
        assert_eq!(
            err.to_string(),
            "configuration /etc/wos-sync.toml: `item_ingest.batch`: unknown field `batch`, \
             expected `batch_size`"
        );
    }

    #[test]
    fn the_contract_example_configuration_loads() {
        let settings = load(
            r#"
            [[shops]]
            domain = "acme.myshopify.com"
            api_version = "2026-07"
            admin_base_url = "https://acme.myshopify.com"
            access_token_env = "ACME_SHOPIFY_TOKEN"
            webhook_secret_env = "ACME_WEBHOOK_SECRET"
            previous_webhook_secret_env = "ACME_WEBHOOK_SECRET_OLD"

            [shops.locations]
            MAIN = 68845568042
            EAST = 68845600810

            [shops.fields]
            barcode = "shopify_initial"
            "#,
        )
        .expect("the CONTRACT's example is valid");
        assert!(settings.shops.get("acme.myshopify.com").is_some());
    }

    #[test]
    fn the_documented_example_file_loads_and_matches_the_defaults() {
        let text = include_str!("../../../docs/config.example.toml");
        let settings = load(text).expect("docs/config.example.toml is valid");
        let defaults = Settings::default();
        assert_eq!(settings.amqp, defaults.amqp);
        assert_eq!(settings.consumer, defaults.consumer);
        assert_eq!(settings.retry, defaults.retry);
        assert_eq!(settings.database.url, defaults.database.url);
        assert_eq!(settings.http, defaults.http);
        assert_eq!(settings.retention, defaults.retention);
        assert_eq!(settings.shops.len(), 1);
        assert!(settings.services.contains_key("webhook_relay"));
        assert!(settings.services.contains_key("adjustment_pusher"));
    }

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            redact_url("amqp://guest:secret@host:5672/%2f"),
            "amqp://guest:***@host:5672/%2f"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1/db"),
            "postgres://postgres@127.0.0.1/db"
        );
        assert_eq!(redact_url("postgres://u:p@h"), "postgres://u:***@h");
        assert_eq!(redact_url("not a url"), "not a url");
        assert_eq!(
            redact_url("postgres://u@h/db?sslmode=require&password=pw&x=1"),
            "postgres://u@h/db?sslmode=require&password=***&x=1"
        );
    }

    #[test]
    fn no_settings_type_shows_a_password_in_debug() {
        let mut settings = load(
            "[amqp]\nurl = \"amqp://wos:amqp-s3cret@broker.example.com/%2f\"\n\
             [database]\nurl = \"postgres://wos:db-s3cret@db.example.com/wos_sync?password=db-s3cret\"",
        )
        .expect("valid");
        settings.source = Some("/etc/wos-sync.toml".into());
        let consumer = crate::amqp::consumer::ConsumerConfig {
            service: "svc".into(),
            amqp_url: settings.amqp.url.clone(),
            names: settings.names(),
            queue: settings.names().item_ingest_queue(),
            settings: settings.consumer.clone(),
            retry: settings.retry.clone(),
        };
        let publisher =
            crate::amqp::publisher::Publisher::new(settings.amqp.url.clone(), "p".into());
        let endpoint = Endpoint::parse(&settings.amqp.url).expect("valid");
        let database = crate::db::DatabaseTarget::parse(&settings.database.url).expect("valid");
        let printed = [
            format!("{settings:?}"),
            format!("{settings:#?}"),
            format!("{:?}", settings.amqp),
            format!("{:?}", settings.database),
            format!("{consumer:?}"),
            format!("{publisher:?}"),
            format!("{endpoint:?}"),
            format!("{database:?}"),
        ];
        for text in printed {
            assert!(
                !text.contains("s3cret"),
                "a password in Debug output: {text}"
            );
        }
        assert!(format!("{:?}", settings.amqp).contains("wos:***@broker.example.com"));
    }
}
