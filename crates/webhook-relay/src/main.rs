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
    /// Address of /metrics, /healthz and /readyz, apart from the public webhook listener
    /// (default 0.0.0.0:9466; port 0 picks a free port).
    #[arg(long, env = "OPS_LISTEN_ADDR", value_name = "ADDR")]
    ops_listen: Option<std::net::SocketAddr>,
    /// What to do; without one, the relay runs.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve webhooks until SIGTERM/SIGINT (the default).
    Run,
    /// Measure accepted webhooks per second (with confirms), the latency at half that rate, and
    /// the latency and memory under attack (slow headers, maximum-size unsigned bodies), with a
    /// relay on 127.0.0.1 and a load generator on loopback. Ends with a `RESULT ...` line.
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
        /// Phase 3: connections trickling a request head one byte a second.
        #[arg(long, default_value_t = 500)]
        slow_clients: usize,
        /// Phase 3: workers sending maximum-size bodies with a wrong signature back to back.
        #[arg(long, default_value_t = 200)]
        big_bodies: usize,
        /// Phase 3: signed webhooks per second while under attack.
        #[arg(long, default_value_t = 100.0)]
        signed_rate: f64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut settings = Settings::load(&cli.common)?;
    if let Some(ops_listen) = cli.ops_listen {
        settings.http.ops_listen = Some(ops_listen);
    }
    telemetry::init_tracing(settings.log.format);
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => webhook_relay::run(settings, shutdown::on_termination_signal()).await,
        Command::Bench {
            seconds,
            concurrency,
            body_bytes,
            slow_clients,
            big_bodies,
            signed_rate,
        } => {
            let options = BenchOptions {
                seconds,
                concurrency,
                body_bytes,
                slow_clients,
                big_bodies,
                signed_rate,
                relay_binary: None,
            };
            let report = bench::bench(&settings, options).await?;
            println!("{report}");
            Ok(())
        }
    }
}
