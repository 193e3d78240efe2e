//! The binary's service: settings (`[shopify_sandbox]`, `[[shops]]`) to a running sandbox
//! that stops on the shutdown token.
//!
//! With `seed_shops` (the default) every configured shop is created with the access token
//! and webhook secret its environment variables hold, and one location per warehouse with the
//! configured id, so the services of the quick start find exactly the shops and locations
//! their own configuration names.

use std::net::SocketAddr;

use anyhow::{Context, bail};
use platform::settings::Settings;
use tokio_util::sync::CancellationToken;

use crate::{
    Sandbox, SandboxConfig, ShopSeed,
    config::{DEFAULT_LISTEN, SandboxSection},
    inventory::{ProductSpec, Stock, VariantSpec},
};

/// Builds the sandbox configuration from the service settings; `env` looks environment
/// variables up (tests pass a map).
pub fn config_from_settings(
    settings: &Settings,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<SandboxConfig> {
    let section: SandboxSection = settings.service_section("shopify_sandbox")?;
    let default_listen: SocketAddr = DEFAULT_LISTEN
        .parse()
        .context("the default listen address")?;
    let mut config = SandboxConfig {
        listen: settings.listen_or(default_listen),
        throttle: section.throttle,
        faults: section.faults,
        api_versions: section.api_versions,
        webhook_url: section.webhook_url,
        ..SandboxConfig::default()
    };
    if let Some(secs) = section.idempotency_retention_secs {
        config.idempotency_retention = std::time::Duration::from_secs(secs);
    }
    if let Some(version) = section.webhook_api_version {
        config.webhook_api_version = version;
    }
    if let Some(base) = section.id_base {
        config.id_base = base;
    }
    config
        .api_versions
        .validate()
        .map_err(|e| anyhow::anyhow!("shopify_sandbox.{e}"))?;
    config
        .faults
        .validate()
        .map_err(|e| anyhow::anyhow!("shopify_sandbox.faults.{e}"))?;

    if section.seed_shops.unwrap_or(true) {
        for shop in &settings.shops {
            let access_token = env(&shop.access_token_env).with_context(|| {
                format!(
                    "shop {}: environment variable {} (its access token) is not set",
                    shop.domain, shop.access_token_env
                )
            })?;
            let webhook_secret = shop.webhook_secret_env.as_deref().and_then(&env);
            let products = section
                .products
                .iter()
                .filter(|p| p.shop == shop.domain)
                .map(|p| {
                    let variants = p
                        .variants
                        .iter()
                        .map(|v| {
                            let stock = v
                                .available
                                .iter()
                                .map(|(warehouse, available)| {
                                    let location_id = shop.location_for(warehouse).with_context(|| {
                                        format!(
                                            "shopify_sandbox.products {:?}: warehouse {warehouse} has no location in shop {}",
                                            p.title, shop.domain
                                        )
                                    })?;
                                    Ok(Stock {
                                        location_id,
                                        available: *available,
                                    })
                                })
                                .collect::<anyhow::Result<Vec<_>>>()?;
                            Ok(VariantSpec {
                                stock,
                                ..VariantSpec::sku(v.sku.clone())
                            })
                        })
                        .collect::<anyhow::Result<Vec<_>>>()?;
                    Ok(ProductSpec {
                        title: p.title.clone(),
                        variants,
                        ..ProductSpec::default()
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            config.seed.push(ShopSeed {
                domain: shop.domain.clone(),
                access_token,
                webhook_secret,
                locations: shop
                    .locations
                    .iter()
                    .map(|(warehouse, id)| (*id, warehouse.clone()))
                    .collect(),
                products,
            });
        }
    }
    if let Some(p) = section
        .products
        .iter()
        .find(|p| !config.seed.iter().any(|s| s.domain == p.shop))
    {
        bail!(
            "shopify_sandbox.products {:?}: shop {} is not a seeded [[shops]] entry",
            p.title,
            p.shop
        );
    }
    Ok(config)
}

/// Serves until `shutdown` is cancelled.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let config = config_from_settings(&settings, |name| {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    })?;
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const FILE: &str = r#"
        [[shops]]
        domain = "acme.myshopify.com"
        api_version = "2026-04"
        admin_base_url = "http://127.0.0.1:9470"
        access_token_env = "ACME_TOKEN"
        webhook_secret_env = "ACME_SECRET"
        [shops.locations]
        MAIN = 68845568042

        [shopify_sandbox]
        webhook_url = "http://127.0.0.1:8080/webhooks/shopify"
        [shopify_sandbox.throttle]
        enabled = false
        [[shopify_sandbox.products]]
        shop = "acme.myshopify.com"
        title = "Tee"
        variants = [{ sku = "T-1", available = { MAIN = 5 } }]
    "#;

    fn env(name: &str) -> Option<String> {
        match name {
            "ACME_TOKEN" => Some("shpat_test".into()),
            "ACME_SECRET" => Some("secret".into()),
            _ => None,
        }
    }

    #[test]
    fn shops_locations_and_products_are_seeded_from_the_file() {
        let settings = Settings::from_toml_str(FILE, "t.toml").unwrap();
        let config = config_from_settings(&settings, env).unwrap();
        assert!(!config.throttle.enabled);
        assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
        let seed = &config.seed[0];
        assert_eq!(seed.access_token, "shpat_test");
        assert_eq!(seed.webhook_secret.as_deref(), Some("secret"));
        assert_eq!(seed.locations[0].0.0, 68_845_568_042);
        assert_eq!(seed.products[0].variants[0].stock[0].available, 5);
    }

    #[test]
    fn a_missing_token_or_unknown_warehouse_is_refused() {
        let settings = Settings::from_toml_str(FILE, "t.toml").unwrap();
        let err = config_from_settings(&settings, |_| None).unwrap_err();
        assert!(err.to_string().contains("ACME_TOKEN"), "{err}");
        let bad = FILE.replace("MAIN = 5", "EAST = 5");
        let settings = Settings::from_toml_str(&bad, "t.toml").unwrap();
        let err = config_from_settings(&settings, env).unwrap_err();
        assert!(err.to_string().contains("EAST"), "{err}");
    }
}
