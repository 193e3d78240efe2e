//! A local stand-in for the Shopify Admin GraphQL API, faithful where the sync depends on it.
//!
//! Start one in a test with [`Sandbox::start`], point a shop's `admin_base_url` at
//! [`SandboxHandle::base_url`], set it up and assert on it through the handle. The binary
//! `shopify-sandbox` serves the same thing for the quick start and benchmarks.
//!
//! | module | owns |
//! |---|---|
//! | [`handle`] | [`Sandbox::start`] and the [`SandboxHandle`] tests set up and inspect a sandbox with |
//! | [`store`] | what shops hold: apps (tokens), locations, products, variants, items, levels, the adjustment log |
//! | [`merchant`] | what a merchant does in Shopify's admin, each change announced by its webhook |
//! | [`state`] | what a running sandbox shares: the store, live throttle and fault rules, held calls |
//! | [`adjust`] | `inventoryAdjustQuantities`: Shopify's validation rules and applying a group |
//! | [`idempotency`] | `@idempotent(key:)`: replay, parameter mismatch, concurrent requests, retention |
//! | [`throttle`] | the cost-based leaky bucket (pure, time injected) |
//! | [`graphql`] | parsing, validation, variable coercion, cost, execution and response shaping |
//! | [`search`] | the `query:` search syntax (`sku:…`) |
//! | [`faults`] | fault rules: 5xx/429, delays, dropped connections, apply-then-drop/hang, holds |
//! | [`killable`] | connections a fault can cut (TCP reset, no response) |
//! | [`server`] / [`admin`] | the GraphQL endpoint / the `/sandbox` admin API |
//! | [`webhooks`] | signed `products/*` webhooks to the relay |
//! | [`client`] | a plain-HTTP client for tests, webhooks and the benchmark |
//! | [`config`] | [`SandboxConfig`]: API versions, limits, the seed |
//! | [`settings`] | the `[shopify_sandbox]` section of the configuration file, and [`run`] |
//! | [`mod@bench`] | the `bench` subcommand |
//!
//! What is modelled, the admin API, the fault knobs and the cost model are described in
//! `docs/shopify-sandbox.md`.

pub mod adjust;
pub mod admin;
pub mod client;
pub mod config;
pub mod faults;
pub mod graphql;
pub mod handle;
pub mod idempotency;
pub mod killable;
pub mod merchant;
pub mod search;
pub mod server;
pub mod settings;
pub mod state;
pub mod store;
pub mod throttle;
pub mod webhooks;

use platform::settings::Settings;
use tokio_util::sync::CancellationToken;

pub use crate::{
    config::{ApiVersions, SandboxConfig, ShopSeed},
    faults::{FaultAction, FaultConfig, FaultRule, FiredFault, Operations, Trigger},
    handle::{Sandbox, SandboxError, SandboxHandle},
    store::{
        AppliedChange, AppliedGroup, CreatedProduct, CreatedVariant, LevelSnapshot, ProductSpec,
        ProductUpdate, QuantityName, Stock, StoreError, VariantSpec, VariantUpdate,
    },
    throttle::{ThrottleConfig, ThrottleStatus},
    webhooks::WebhookDelivery,
};

/// The binary's service: the sandbox the configuration file describes
/// ([`settings::SandboxSettings`]; `settings` loaded with [`settings::SECTION`] among its own
/// sections), served until `shutdown` is cancelled.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let config = settings::SandboxSettings::from_settings(&settings)?.into_config(
        &settings.shops,
        settings.listen_or(settings::DEFAULT_LISTEN),
        |name| std::env::var(name).ok().filter(|v| !v.is_empty()),
    )?;
    let shops = config.seed.len();
    let handle = Sandbox::start(config).await?;
    tracing::info!(
        base_url = %handle.base_url(),
        seeded_shops = shops,
        "shopify sandbox ready (admin API under /sandbox)"
    );
    shutdown.cancelled().await;
    handle.shutdown().await;
    tracing::info!("shopify sandbox stopped");
    Ok(())
}
