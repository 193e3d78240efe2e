//! `shopify-sandbox`: the local Shopify Admin GraphQL stand-in (serve, or benchmark it).
//! See `shopify_sandbox` and `docs/shopify-sandbox.md`.

use std::time::Duration;

use clap::{Parser, Subcommand};
use platform::{
    settings::{CommonArgs, Settings},
    shutdown, telemetry,
};
use shopify_sandbox::{bench, settings::SECTION};

/// A local Shopify Admin GraphQL API: inventory adjustments with Shopify's validation,
/// idempotency and throttling, fault injection, an admin API under /sandbox, signed product
/// webhooks. Listens on 127.0.0.1:9470 by default.
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
    /// Serve until SIGTERM/SIGINT (the default).
    Serve,
    /// Measure requests/s of 250-change adjustments against an in-process sandbox
    /// (throttling off, 127.0.0.1 only).
    Bench {
        /// Concurrent clients.
        #[arg(long, default_value_t = 8)]
        clients: usize,
        /// Requests to send (after a warm-up of one per client).
        #[arg(long, default_value_t = 4000)]
        requests: u64,
        /// Time limit in seconds.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Changes per request (1..=250).
        #[arg(long, default_value_t = 250)]
        changes: usize,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load_with_sections(&cli.common, &[SECTION])?;
    telemetry::init_tracing(settings.log.format);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => shopify_sandbox::run(settings, shutdown::on_termination_signal()).await,
        Command::Bench {
            clients,
            requests,
            seconds,
            changes,
        } => {
            let report = bench::run(bench::BenchOptions {
                clients,
                requests,
                max_duration: Duration::from_secs(seconds),
                changes,
            })
            .await?;
            println!("{report}");
            Ok(())
        }
    }
}
