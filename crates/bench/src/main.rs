//! `wos-sync-bench`: every benchmark of wos-shopify-sync. See the library and the README's
//! Benchmarks section.

use std::{net::SocketAddr, time::Duration};

use bench::{Figures, ingest, pusher, relay, runtime, sandbox, serve::Service};
use clap::{Args, Parser, Subcommand};
use platform::settings::{CommonArgs, Settings};

/// Benchmarks of wos-shopify-sync, each on a scratch queue namespace and database of the
/// configured RabbitMQ and PostgreSQL (removed afterwards; a deployment's data is never
/// touched). Each prints its figures, then one `RESULT name=value ...` line for scripts.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The consumer runtime (inbox commit + ack per message, the probe's handler) next to a
    /// bare consume-and-ack loop on the same broker.
    Runtime(RuntimeArgs),
    /// item-ingest's variant upserts per second and its peak RSS (the service runs as a child
    /// process).
    Ingest(IngestArgs),
    /// adjustment-pusher end to end against an in-process Shopify sandbox, batched and one call
    /// per transaction: throughput, calls per transaction, throttle-bound ratio, lag.
    Pusher(pusher::BenchArgs),
    /// webhook-relay: accepted webhooks per second (with confirms), latency at half that rate,
    /// and latency and memory under attack (slow headers, maximum-size unsigned bodies).
    Relay(relay::BenchOptions),
    /// The Shopify sandbox's requests per second (250-change adjustments, throttling off).
    Sandbox(SandboxArgs),
    /// Every benchmark above with its defaults, then one `RESULT` line with all their figures.
    All,
    /// Runs one service as the benchmarks' child process (used by `ingest` and `relay`).
    #[command(hide = true)]
    Serve {
        service: Service,
        /// The relay's ops address (as its own `--ops-listen`).
        #[arg(long, env = "OPS_LISTEN_ADDR")]
        ops_listen: Option<SocketAddr>,
    },
}

#[derive(Debug, Clone, Args)]
struct RuntimeArgs {
    /// Messages per measurement.
    #[arg(long, default_value_t = 20_000)]
    messages: u64,
    /// Body size in bytes.
    #[arg(long, default_value_t = 128)]
    body_bytes: usize,
}

#[derive(Debug, Clone, Args)]
struct IngestArgs {
    /// Products to ingest (each a products/create webhook).
    #[arg(long, default_value_t = 500)]
    products: u64,
    /// Variants per product, each with its own SKU.
    #[arg(long, default_value_t = 20)]
    variants: u64,
}

#[derive(Debug, Clone, Args)]
struct SandboxArgs {
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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::Serve {
        service,
        ops_listen,
    } = cli.command
    {
        return serve(&cli.common, service, ops_listen);
    }
    let settings = platform::entry::load_settings(&cli.common, &[])?;
    platform::telemetry::init_tracing(settings.log.format);
    let figures = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(measure(&settings, cli.command))?;
    println!("{}", figures.result_line());
    Ok(())
}

/// Runs the benchmark `command` names, printing its report; returns its headline figures.
async fn measure(settings: &Settings, command: Command) -> anyhow::Result<Figures> {
    match command {
        Command::Runtime(args) => {
            let report = runtime::bench(settings, args.messages, args.body_bytes).await?;
            println!("{report}");
            Ok(report.figures())
        }
        Command::Ingest(args) => {
            let report = ingest::bench(settings, args.products, args.variants).await?;
            println!("{report}");
            Ok(report.figures())
        }
        Command::Pusher(args) => pusher::run(settings, &args).await,
        Command::Relay(options) => {
            let report = relay::bench(settings, options).await?;
            println!("{}", report.to_string().trim_end());
            Ok(report.figures())
        }
        Command::Sandbox(args) => {
            let report = sandbox::run(sandbox::BenchOptions {
                clients: args.clients,
                requests: args.requests,
                max_duration: Duration::from_secs(args.seconds),
                changes: args.changes,
            })
            .await?;
            println!("{report}");
            Ok(report.figures())
        }
        Command::All => {
            let mut all = Figures::default();
            for (title, command) in every_benchmark() {
                println!("== {title} ==");
                let figures = Box::pin(measure(settings, command)).await?;
                println!("{}", figures.result_line());
                all.extend(figures);
            }
            Ok(all)
        }
        Command::Serve { .. } => anyhow::bail!("`serve` runs a service, it measures nothing"),
    }
}

/// Each benchmark with its defaults, in the order `all` runs them.
fn every_benchmark() -> Vec<(&'static str, Command)> {
    let defaults = |args: &[&str]| {
        Cli::try_parse_from(std::iter::once("wos-sync-bench").chain(args.iter().copied()))
            .map(|cli| cli.command)
            .expect("every benchmark parses with its defaults")
    };
    vec![
        ("runtime", defaults(&["runtime"])),
        ("ingest", defaults(&["ingest"])),
        ("pusher", defaults(&["pusher"])),
        ("relay", defaults(&["relay"])),
        ("sandbox", defaults(&["sandbox"])),
    ]
}

/// `serve <service>`: the service, through its binary's own entry.
fn serve(
    common: &CommonArgs,
    service: Service,
    ops_listen: Option<SocketAddr>,
) -> anyhow::Result<()> {
    let mut settings = platform::entry::load_settings(common, &[])?;
    match service {
        Service::ItemIngest => platform::entry::serve_settings(settings, item_ingest::run),
        Service::WebhookRelay => {
            if let Some(ops_listen) = ops_listen {
                settings.http.ops_listen = Some(ops_listen);
            }
            platform::entry::serve_settings(settings, webhook_relay::run)
        }
    }
}
