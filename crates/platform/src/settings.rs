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
        topology::{Names, RetrySettings},
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
    pub retry: RetrySettings,
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
            retry: RetrySettings::default(),
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
mod tests;
