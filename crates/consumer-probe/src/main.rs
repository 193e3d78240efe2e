//! `consumer-probe`: checks a deployment's broker and database plumbing end to end.
//! See `consumer_probe`.

use std::time::Duration;

use clap::Parser;
use consumer_probe::ProbeOptions;
use platform::settings::CommonArgs;

/// The smallest service on the wos-shopify-sync platform: consumes its own queue
/// (`platform-probe`), records each message in the inbox with one effect row, acknowledges.
/// Runs until SIGTERM/SIGINT.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    /// Extra milliseconds each message takes (keeps messages in flight, for shutdown drills).
    #[arg(long, default_value_t = 0)]
    handler_delay_ms: u64,
    /// Abort the process right after committing a first delivery that carries the
    /// `x-probe-crash-after-commit` header (a crash between commit and ack, for drills).
    #[arg(long)]
    crash_after_commit: bool,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let options = ProbeOptions {
        handler_delay: Duration::from_millis(cli.handler_delay_ms),
        crash_after_commit: cli.crash_after_commit,
    };
    platform::entry::serve(&cli.common, &[], |settings, shutdown| {
        consumer_probe::run(settings, options, shutdown)
    })
}
