//! `item-ingest`: Shopify product webhooks become WOS items. See the library for how.

use clap::Parser;
use platform::settings::CommonArgs;

/// Consumes Shopify product events (`item-ingest.shopify-products`) and keeps the WOS `items`
/// table current: fields under the shop's policies, and each item's Shopify inventory item,
/// resolved from a mirror of every variant seen so clones and duplicated SKUs map correctly.
/// Runs until SIGTERM/SIGINT.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    platform::entry::serve(&cli.common, &[], item_ingest::run)
}
