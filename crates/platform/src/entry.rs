//! The binaries' shared `main`: settings from the command line and the environment, tracing, a
//! multi-threaded tokio runtime, and the service run until SIGTERM/SIGINT.
//!
//! Every service binary is a clap `Parser` with [`CommonArgs`] flattened in, and one call:
//! `platform::entry::serve(&cli.common, &[], item_ingest::run)`. The few that adjust their
//! settings from their own flags first (the relay's `--ops-listen`) load them with
//! [`load_settings`] and hand them to [`serve_settings`].

use std::future::Future;

use crate::{
    settings::{CommonArgs, LogSettings, Settings},
    shutdown::{self, CancellationToken},
    telemetry,
};

/// Loads the settings (`own_sections`: the binary's own top-level configuration sections, which
/// the platform would otherwise refuse as unknown).
pub fn load_settings(common: &CommonArgs, own_sections: &[&str]) -> anyhow::Result<Settings> {
    Ok(Settings::load_with_sections(common, own_sections)?)
}

/// Loads the settings and runs `service` until SIGTERM/SIGINT (see [`serve_settings`]).
pub fn serve<F, Fut>(common: &CommonArgs, own_sections: &[&str], service: F) -> anyhow::Result<()>
where
    F: FnOnce(Settings, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    serve_settings(load_settings(common, own_sections)?, service)
}

/// Installs tracing as configured, starts the runtime and runs `service` with a token that
/// SIGTERM/SIGINT cancel. The process exits with the service's result.
pub fn serve_settings<F, Fut>(settings: Settings, service: F) -> anyhow::Result<()>
where
    F: FnOnce(Settings, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let log = settings.log.clone();
    run_with_tracing(&log, async move {
        // Inside the runtime: the signal listener is a task.
        let shutdown = shutdown::on_termination_signal();
        service(settings, shutdown).await
    })
}

/// Installs tracing as `log` says and runs `work` to its end on a multi-threaded runtime (what
/// [`serve_settings`] does for a service; the benchmarks use it for a measurement). The spans
/// still queued for an OpenTelemetry collector are exported before it returns.
pub fn run_with_tracing<T>(
    log: &LogSettings,
    work: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let tracing = telemetry::init_tracing(log)?;
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(work);
    // After the runtime: the exporter's flush blocks.
    tracing.shutdown();
    result
}
