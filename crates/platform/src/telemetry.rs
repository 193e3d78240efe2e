//! Tracing setup: JSON lines for log collectors, readable text for a person at a terminal, and
//! (feature `otlp`, `[log] otlp_endpoint`) the spans exported to an OpenTelemetry collector
//! (`crate::otlp`).
//!
//! A JSON line carries the fields of every span it was written in (`spans`), not only the
//! innermost one: the `trace_id` of a delivery's `message` span (`crate::trace`) must reach the
//! lines a handler writes in spans of its own.

use std::{
    io::IsTerminal,
    sync::{Mutex, PoisonError},
};

use serde::Deserialize;
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::settings::LogSettings;

/// How log lines are written to standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Readable text when standard error is a terminal, JSON otherwise (containers, CI).
    #[default]
    Auto,
    /// One JSON object per line.
    Json,
    /// Human-readable, coloured when on a terminal.
    Text,
}

/// What [`init_tracing`] started besides the log lines: the OpenTelemetry span exporter when
/// `[log] otlp_endpoint` is set (feature `otlp`). Dropping it (or [`Tracing::shutdown`]) exports
/// the spans still queued and stops the exporter: keep it until the program's work is done.
#[derive(Debug, Default)]
#[must_use = "dropping it stops the span exporter"]
pub struct Tracing {
    #[cfg(feature = "otlp")]
    exporter: Option<crate::otlp::Exporter>,
}

impl Tracing {
    /// Exports what is queued and stops the exporter (blocks, at most the SDK's shutdown
    /// timeout of 5 s when the collector does not answer).
    pub fn shutdown(self) {
        drop(self);
    }
}

/// The subscriber's layers sit on the filtered registry.
type Filtered = tracing_subscriber::layer::Layered<EnvFilter, tracing_subscriber::Registry>;
type BoxedLayer = Box<dyn tracing_subscriber::Layer<Filtered> + Send + Sync>;

/// Installs the global tracing subscriber: log lines in `log.format`, and the spans exported to
/// `log.otlp_endpoint` when set (feature `otlp`; the settings refuse an endpoint without it).
/// The filter comes from `RUST_LOG` (default `info`).
///
/// Calling it twice is harmless (the second call keeps the first subscriber, and starts no
/// exporter), which lets tests and `wos-sync up` start several services in one process.
pub fn init_tracing(log: &LogSettings) -> anyhow::Result<Tracing> {
    let json = match log.format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let lines: BoxedLayer = if json {
        fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(std::io::stderr)
            .boxed()
    } else {
        fmt::layer().with_writer(std::io::stderr).boxed()
    };
    #[allow(unused_mut)] // without the feature, the lines are the only layer
    let mut layers = vec![lines];
    #[allow(unused_mut)]
    let mut tracing = Tracing::default();
    #[cfg(feature = "otlp")]
    if !log.otlp_endpoint.is_empty() {
        let exporter = crate::otlp::Exporter::start(&log.otlp_endpoint)?;
        layers.push(exporter.layer().boxed());
        tracing.exporter = Some(exporter);
    }
    let result = tracing_subscriber::registry()
        .with(default_filter())
        .with(layers)
        .try_init();
    match result {
        Ok(()) => Ok(tracing),
        // Already initialised: keep the existing subscriber (an exporter started here would
        // receive nothing; dropping it stops it).
        Err(_) => Ok(Tracing::default()),
    }
}

/// `RUST_LOG`, else `info`.
fn default_filter() -> EnvFilter {
    // lapin logs every returned (unroutable) message at WARN with its body: webhook bodies do
    // not belong in logs (whatever RUST_LOG says), and an unbound topic is normal for the relay.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    match "lapin::returned_messages=error".parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    }
}

/// Tracing for tests: lines go through the test harness's output capture, so a passing test
/// stays quiet and a failing one shows its service's logs. The same lines, as the JSON a
/// deployment writes, are kept in memory for [`captured_log_lines`].
pub fn init_test_tracing() {
    let _ = tracing_subscriber::registry()
        .with(default_filter())
        .with(fmt::layer().with_test_writer())
        .with(
            fmt::layer()
                .json()
                .with_current_span(true)
                .with_span_list(true)
                .with_writer(CaptureWriter::default),
        )
        .try_init();
}

/// Lines kept by the test subscriber: the latest [`CAPTURE_LIMIT`].
static CAPTURED: Mutex<std::collections::VecDeque<String>> =
    Mutex::new(std::collections::VecDeque::new());

/// Enough for every line of a test binary's run; a bound all the same.
const CAPTURE_LIMIT: usize = 200_000;

/// The JSON log lines written since [`init_test_tracing`] that contain `needle` (a test's own
/// trace id, shop or SKU: tests of one binary share the subscriber).
pub fn captured_log_lines(needle: &str) -> Vec<serde_json::Value> {
    CAPTURED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter(|line| line.contains(needle))
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// Collects one event's formatted bytes and stores them as a line when dropped (the formatter
/// writes an event through one writer).
#[derive(Debug, Default)]
struct CaptureWriter(Vec<u8>);

impl std::io::Write for CaptureWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for CaptureWriter {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.0);
        let mut captured = CAPTURED.lock().unwrap_or_else(PoisonError::into_inner);
        for line in text.lines().filter(|line| !line.is_empty()) {
            if captured.len() == CAPTURE_LIMIT {
                captured.pop_front();
            }
            captured.push_back(line.to_owned());
        }
    }
}
