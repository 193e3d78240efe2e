//! The services a benchmark starts as child processes. `wos-sync-bench serve <service>` runs one
//! through the same entry as its own binary, so a benchmark can read the memory of exactly that
//! service without needing the service's binary next to it.

use std::ffi::OsStr;

use anyhow::Context as _;

/// A service the benchmarks run in a child process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Service {
    AdjustmentPusher,
    ItemIngest,
    WebhookRelay,
}

impl Service {
    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Service::AdjustmentPusher => "adjustment-pusher",
            Service::ItemIngest => "item-ingest",
            Service::WebhookRelay => "webhook-relay",
        }
    }
}

/// `wos-sync-bench <common...> serve <service>`: `common` are the platform's flags
/// (`--config`, `--listen`, ...), which come before the subcommand.
pub fn serve_command<I, S>(service: Service, common: I) -> anyhow::Result<tokio::process::Command>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let program = std::env::current_exe().context("the benchmark binary's path")?;
    let mut command = tokio::process::Command::new(program);
    command.args(common).args(["serve", service.name()]);
    Ok(command)
}
