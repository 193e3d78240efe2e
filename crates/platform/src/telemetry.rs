//! Tracing setup: JSON lines for log collectors, readable text for a person at a terminal.
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

/// Installs the global tracing subscriber. The filter comes from `RUST_LOG` (default `info`).
///
/// Calling it twice is harmless (the second call keeps the first subscriber), which lets tests
/// and `wos-sync up` start several services in one process.
pub fn init_tracing(format: LogFormat) {
    let filter = default_filter();
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let registry = tracing_subscriber::registry().with(filter);
    let result = if json {
        registry
            .with(
                fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(true)
                    .with_writer(std::io::stderr),
            )
            .try_init()
    } else {
        registry
            .with(fmt::layer().with_writer(std::io::stderr))
            .try_init()
    };
    // Already initialised: keep the existing subscriber.
    drop(result);
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
