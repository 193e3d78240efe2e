//! `webhook-relay`: Shopify's webhook endpoint. Verifies each webhook's signature and publishes
//! its raw bytes to `shopify.events`, answering 200 only once the broker confirmed.
//! See `webhook_relay` (the library) and docs/webhook-relay.md.

use clap::Parser;
use platform::settings::CommonArgs;

/// Receives Shopify webhooks on POST /webhooks/shopify, verifies their HMAC and publishes them,
/// unchanged, to the `shopify.events` exchange. Runs until SIGTERM/SIGINT.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    /// Address of /metrics, /healthz and /readyz, apart from the public webhook listener
    /// (default 0.0.0.0:9466; port 0 picks a free port).
    #[arg(long, env = "OPS_LISTEN_ADDR", value_name = "ADDR")]
    ops_listen: Option<std::net::SocketAddr>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut settings = platform::entry::load_settings(&cli.common, &[])?;
    if let Some(ops_listen) = cli.ops_listen {
        settings.http.ops_listen = Some(ops_listen);
    }
    platform::entry::serve_settings(settings, webhook_relay::run)
}
