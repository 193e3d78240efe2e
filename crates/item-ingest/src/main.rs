//! `item-ingest`: Shopify product webhooks become WOS items. See the library for how.

use clap::{Parser, Subcommand};
use platform::{
    settings::{CommonArgs, Settings},
    shutdown, telemetry,
};

/// Consumes Shopify product events (`item-ingest.shopify-products`) and keeps the WOS `items`
/// table current: fields under the shop's policies, and each item's Shopify inventory item,
/// resolved from a mirror of every variant seen so clones and duplicated SKUs map correctly.
/// Without a subcommand it runs the service until SIGTERM/SIGINT.
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
    /// Measure variant upserts per second and the service's peak RSS, on a scratch queue
    /// namespace and database (removed afterwards).
    Bench {
        /// Products to ingest (each a products/create webhook).
        #[arg(long, default_value_t = 500)]
        products: u64,
        /// Variants per product, each with its own SKU.
        #[arg(long, default_value_t = 20)]
        variants: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load(&cli.common)?;
    telemetry::init_tracing(settings.log.format);
    match cli.command {
        None => item_ingest::run(settings, shutdown::on_termination_signal()).await,
        Some(Command::Bench { products, variants }) => {
            let report = item_ingest::bench::bench(&settings, products, variants).await?;
            println!("{report}");
            Ok(())
        }
    }
}
