//! `shopify-sandbox`: the local Shopify Admin GraphQL stand-in.
//! See `shopify_sandbox` and `docs/shopify-sandbox.md`.

use clap::Parser;
use platform::settings::CommonArgs;
use shopify_sandbox::settings::SECTION;

/// A local Shopify Admin GraphQL API: inventory adjustments with Shopify's validation,
/// idempotency and throttling, fault injection, an admin API under /sandbox, signed product
/// webhooks. Listens on 127.0.0.1:9470 by default; runs until SIGTERM/SIGINT.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    platform::entry::serve(&cli.common, &[SECTION], shopify_sandbox::run)
}
