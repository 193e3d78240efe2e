//! Tracing setup: JSON lines for log collectors, readable text for a person at a terminal.

use std::io::IsTerminal;

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
/// stays quiet and a failing one shows its service's logs.
pub fn init_test_tracing() {
    let _ = tracing_subscriber::registry()
        .with(default_filter())
        .with(fmt::layer().with_test_writer())
        .try_init();
}
