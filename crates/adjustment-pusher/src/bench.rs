//! `adjustment-pusher bench` (filled in with the sandbox).

/// Benchmark arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {}

/// Runs the benchmark.
pub async fn run(
    _settings: &platform::settings::Settings,
    _args: &BenchArgs,
) -> anyhow::Result<()> {
    anyhow::bail!("the adjustment-pusher benchmark needs the shopify-sandbox crate")
}
