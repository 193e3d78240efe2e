//! `wos-sync-bench`: every benchmark of wos-shopify-sync. See the library and the README's
//! Benchmarks section.

use std::net::SocketAddr;

use bench::{Figures, backlog, fair, ingest, pusher, relay, runtime, sandbox, serve::Service};
use clap::{Parser, Subcommand};
use platform::settings::{CommonArgs, Settings};
use shopify_sandbox::settings::SECTION as SANDBOX_SECTION;

/// Benchmarks of wos-shopify-sync. Those that need RabbitMQ or PostgreSQL use a scratch queue
/// prefix and database of the configured servers (removed afterwards; a deployment's data is
/// never touched). Each prints its figures, then one `RESULT name=value ...` line for scripts.
/// The common flags (`--config`, ...) come before the subcommand.
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
    Runtime(runtime::Args),
    /// item-ingest's variant upserts per second and its peak RSS (the service runs as a child
    /// process).
    Ingest(ingest::Args),
    /// adjustment-pusher end to end against an in-process Shopify sandbox, batched and one call
    /// per transaction: throughput, calls per transaction, throttle-bound ratio, lag.
    Pusher(pusher::Args),
    /// One adjustment-pusher (a child process) serving many shops: one with a backlog under a
    /// Standard bucket, the others with a trickle: their lag, the pusher's database
    /// connections and RSS, and the backlog shop's throughput meanwhile.
    Fair(fair::Args),
    /// The adjustment-pusher (a child process) with a million transactions queued before it
    /// starts: its RSS over the run (flat or not), what it took in, what is left.
    Backlog(backlog::Args),
    /// webhook-relay: accepted webhooks per second (with confirms), latency at half that rate,
    /// and latency and memory under attack (slow headers, maximum-size unsigned bodies).
    Relay(relay::Args),
    /// The Shopify sandbox's requests per second (250-change adjustments, throttling off; no
    /// broker or database needed).
    Sandbox(sandbox::Args),
    /// Every benchmark above with its defaults, then one `RESULT` line with all their figures.
    All,
    /// Runs one service as the benchmarks' child process (used by `ingest`, `fair`, `backlog` and `relay`).
    #[command(hide = true)]
    Serve {
        service: Service,
        /// The relay's ops address (its own `--ops-listen`).
        #[arg(long, value_name = "ADDR")]
        ops_listen: Option<SocketAddr>,
    },
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
    // The sandbox's section is accepted, so a `--config` that seeds a sandbox can be reused.
    let settings = platform::entry::load_settings(&cli.common, &[SANDBOX_SECTION])?;
    let figures = platform::entry::run_with_tracing(&settings.log, async {
        measure(&settings, cli.command).await
    })?;
    println!("{}", figures.result_line());
    Ok(())
}

/// Runs the benchmark `command` names (which prints its report); returns its headline figures.
async fn measure(settings: &Settings, command: Command) -> anyhow::Result<Figures> {
    match command {
        Command::Runtime(args) => runtime::run(settings, &args).await,
        Command::Ingest(args) => ingest::run(settings, &args).await,
        Command::Pusher(args) => pusher::run(settings, &args).await,
        Command::Fair(args) => fair::run(settings, &args).await,
        Command::Backlog(args) => backlog::run(settings, &args).await,
        Command::Relay(args) => relay::run(settings, &args).await,
        Command::Sandbox(args) => sandbox::run(&args).await,
        Command::All => {
            let mut all = Figures::default();
            for (title, command) in every_benchmark() {
                println!("== {title} ==");
                let figures = Box::pin(measure(settings, command)).await?;
                println!("{}", figures.result_line());
                all.extend(figures)?;
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
        ("fair", defaults(&["fair"])),
        ("backlog", defaults(&["backlog"])),
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
    if ops_listen.is_some() && service != Service::WebhookRelay {
        anyhow::bail!("--ops-listen is the relay's; {} has none", service.name());
    }
    match service {
        Service::AdjustmentPusher => {
            platform::entry::serve_settings(settings, adjustment_pusher::run)
        }
        Service::ItemIngest => platform::entry::serve_settings(settings, item_ingest::run),
        Service::WebhookRelay => {
            if let Some(ops_listen) = ops_listen {
                settings.http.ops_listen = Some(ops_listen);
            }
            platform::entry::serve_settings(settings, webhook_relay::run)
        }
    }
}
