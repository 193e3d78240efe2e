//! `adjustment-pusher`: WOS inventory transactions become exactly-once delta adjustments in
//! Shopify. See the library for how.

use clap::{Parser, Subcommand};
use platform::{
    settings::{CommonArgs, Settings},
    shutdown, telemetry,
};

/// Consumes WOS inventory transactions (`adjustment-pusher.wos-transactions`), turns each into
/// delta adjustments and pushes them to Shopify with inventoryAdjustQuantities: idempotently, in
/// batches, within Shopify's rate limits. Without a subcommand it runs until SIGTERM/SIGINT.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure end-to-end throughput, calls per transaction and lag against an in-process
    /// Shopify sandbox, batched and one call per transaction, on a scratch namespace and database.
    Bench(adjustment_pusher::bench::BenchArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load(&cli.common)?;
    telemetry::init_tracing(settings.log.format);
    match cli.command {
        None => adjustment_pusher::run(settings, shutdown::on_termination_signal()).await,
        Some(Command::Bench(args)) => adjustment_pusher::bench::run(&settings, &args).await,
    }
}
