//! `item-ingest`: Shopify product webhooks become WOS items. See the library for how.

use clap::Parser;
use platform::{
    settings::{CommonArgs, Settings},
    shutdown, telemetry,
};

/// Consumes Shopify product events (`item-ingest.shopify-products`) and keeps the WOS `items`
/// table current: fields under the shop's policies, and each item's Shopify inventory item,
/// resolved from a mirror of every variant seen so clones and duplicated SKUs map correctly.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load(&cli.common)?;
    telemetry::init_tracing(settings.log.format);
    item_ingest::run(settings, shutdown::on_termination_signal()).await
}
