//! `adjustment-pusher`: WOS inventory transactions become exactly-once delta adjustments in
//! Shopify. See the library for how.

use clap::Parser;
use platform::settings::CommonArgs;

/// Consumes WOS inventory transactions (`adjustment-pusher.wos-transactions`), turns each into
/// delta adjustments and pushes them to Shopify with inventoryAdjustQuantities: idempotently, in
/// batches, within Shopify's rate limits. Runs until SIGTERM/SIGINT.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    platform::entry::serve(&cli.common, &[], adjustment_pusher::run)
}
