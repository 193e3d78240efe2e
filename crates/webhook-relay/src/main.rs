//! `webhook-relay`: Shopify's webhook endpoint. Verifies each webhook's signature and publishes
//! its raw bytes to `shopify.events`, answering 200 only once the broker confirmed.
//! See `webhook_relay` (the library) and docs/webhook-relay.md.

use clap::{Parser, Subcommand};
use platform::{
    settings::{CommonArgs, Settings},
    shutdown, telemetry,
};
use webhook_relay::bench::{self, BenchOptions};

/// Receives Shopify webhooks on POST /webhooks/shopify, verifies their HMAC and publishes them,
/// unchanged, to the `shopify.events` exchange.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    /// What to do; without one, the relay runs.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve webhooks until SIGTERM/SIGINT (the default).
    Run,
    /// Measure accepted webhooks per second (with confirms) and the latency at half that rate,
    /// with a relay started in this process on 127.0.0.1 and a load generator on loopback.
    Bench {
        /// Length of each measured phase, in seconds.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Concurrent workers of the throughput phase.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Size of each webhook body in bytes.
        #[arg(long, default_value_t = 4096)]
        body_bytes: usize,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load(&cli.common)?;
    telemetry::init_tracing(settings.log.format);
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => webhook_relay::run(settings, shutdown::on_termination_signal()).await,
        Command::Bench {
            seconds,
            concurrency,
            body_bytes,
        } => {
            let options = BenchOptions {
                seconds,
                concurrency,
                body_bytes,
            };
            let report = bench::bench(&settings, options).await?;
            println!("{report}");
            Ok(())
        }
    }
}
