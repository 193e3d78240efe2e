//! `wos-sync`: the operator CLI of wos-shopify-sync. See the library and docs/operations.md.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    wos_sync::run(wos_sync::cli::Cli::parse()).await
}
