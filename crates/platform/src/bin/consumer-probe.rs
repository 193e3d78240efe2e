//! `consumer-probe`: checks a deployment's broker and database plumbing end to end, and
//! measures the consumer runtime's throughput. See `platform::probe`.

use std::time::Duration;

use clap::{Parser, Subcommand};
use platform::{
    probe::{self, ProbeOptions},
    settings::{CommonArgs, Settings},
    shutdown, telemetry,
};

/// The smallest service on the wos-shopify-sync platform: consumes its own queue
/// (`platform-probe`), records each message in the inbox with one effect row, acknowledges.
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
    /// Consume the probe queue until SIGTERM/SIGINT.
    Run {
        /// Extra milliseconds each message takes (keeps messages in flight, for shutdown drills).
        #[arg(long, default_value_t = 0)]
        handler_delay_ms: u64,
        /// Abort the process right after committing a first delivery that carries the
        /// `x-probe-crash-after-commit` header (a crash between commit and ack, for drills).
        #[arg(long)]
        crash_after_commit: bool,
    },
    /// Measure consume -> inbox commit -> ack through the runtime next to a bare
    /// consume-and-ack loop, on a fresh queue namespace and database (removed afterwards).
    Bench {
        /// Messages per measurement.
        #[arg(long, default_value_t = 20_000)]
        messages: u64,
        /// Body size in bytes.
        #[arg(long, default_value_t = 128)]
        body_bytes: usize,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load(&cli.common)?;
    telemetry::init_tracing(settings.log.format);
    match cli.command {
        Command::Run {
            handler_delay_ms,
            crash_after_commit,
        } => {
            let options = ProbeOptions {
                handler_delay: Duration::from_millis(handler_delay_ms),
                crash_after_commit,
            };
            probe::run(settings, options, shutdown::on_termination_signal()).await
        }
        Command::Bench {
            messages,
            body_bytes,
        } => {
            let report = probe::bench(&settings, messages, body_bytes).await?;
            println!("{report}");
            Ok(())
        }
    }
}
