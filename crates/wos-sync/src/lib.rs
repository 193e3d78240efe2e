//! `wos-sync`, the operator CLI: what an operator (or a runbook, or a test) does to a running
//! wos-shopify-sync system, and a one-process start of the whole system.
//!
//! | module | owns |
//! |---|---|
//! | [`cli`] | every command and flag, with its `--help` |
//! | [`context`] | settings loaded like the services', database, broker and Shopify connections |
//! | [`output`] | tables, JSON, progress bars, exit statuses |
//! | [`dead_letters`] | reading a DLQ without losing anything, filters, replay copies |
//! | [`commands`] | one module per command |
//!
//! The database logic of the services' tables stays in the services
//! (`adjustment_pusher::operator`, `item_ingest::operator`); this crate calls it.

pub mod cli;
pub mod commands;
pub mod context;
pub mod dead_letters;
pub mod output;

use std::process::ExitCode;

use crate::{
    cli::{Cli, Command},
    context::Context,
    output::{Reported, UsageError},
};

/// Runs one command line; the exit status is 0 on success, 1 on failure, 2 on a usage error.
pub async fn run(cli: Cli) -> ExitCode {
    init_logging(&cli);
    match dispatch(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if err.downcast_ref::<UsageError>().is_some() => {
            eprintln!("error: {err}");
            ExitCode::from(2)
        }
        Err(err) if err.downcast_ref::<Reported>().is_some() => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    if let Command::Check(args) = &cli.command {
        // `check` reports a bad configuration as one of its lines.
        return commands::check::run(&cli, args.json).await;
    }
    let context = Context::load(&cli)?;
    match cli.command {
        Command::Migrate(args) => commands::setup::migrate(&context, args.json).await,
        Command::Topology(args) => commands::setup::topology(&context, args.json).await,
        Command::Check(_) => Ok(()),
        Command::Dlq(command) => commands::dlq::run(&context, command).await,
        Command::Parked(command) => commands::parked::run(&context, command).await,
        Command::Conflicts(args) => commands::conflicts::run(&context, &args).await,
        Command::BackfillMappings(args) => commands::backfill::run(&context, &args).await,
        Command::Publish(args) => commands::publish::run(&context, args).await,
        Command::Status(args) => commands::status::run(&context, &args).await,
        Command::Up(args) => {
            // `up` logs like the services, as its configuration says (the OpenTelemetry
            // exporter of `[log] otlp_endpoint` included), once the configuration is read.
            let tracing = platform::telemetry::init_tracing(&context.settings.log)?;
            let result = commands::up::run(context, &args).await;
            // The spans still queued are exported before the process exits.
            tokio::task::spawn_blocking(move || tracing.shutdown()).await?;
            result
        }
    }
}

/// The commands other than `up` (which logs like the services once its settings are read, in
/// [`dispatch`]) print their results on standard output and only warnings and errors on
/// standard error.
fn init_logging(cli: &Cli) {
    if matches!(cli.command, Command::Up(_)) {
        return;
    }
    use tracing_subscriber::{EnvFilter, fmt, prelude::*};
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    // A passive declare of a missing queue is how `check` and `status` look; lapin logs the
    // broker closing that channel as an error.
    let filter = ["lapin::returned_messages=error", "lapin::channel=off"]
        .into_iter()
        .filter_map(|d| d.parse().ok())
        .fold(filter, |filter, directive| filter.add_directive(directive));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt::layer().with_writer(std::io::stderr))
        .try_init();
}
