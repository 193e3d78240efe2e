//! The sandbox's part of the configuration file: its own `[shopify_sandbox]` section, and the
//! seed it makes of the file's `[[shops]]`, turned into the library's [`SandboxConfig`].
//!
//! The platform's settings do not know the section: the sandbox binary and `wos-sync` name it
//! when they load the file ([`Settings::load_with_sections`]), and the sandbox reads it here as
//! every section is read (serde types, then the rules serde cannot check), refusing unknown keys
//! and bad values with the file and the key's full path. The services refuse the section like any unknown one: the
//! sandbox is never part of their deployment.
//!
//! With `seed_shops` (the default) every configured shop is created with the access token and
//! webhook secret its environment variables hold, and one location per warehouse with the
//! configured id, so the services of the quick start find exactly the shops and locations
//! their own configuration names.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Duration,
};

use anyhow::Context as _;
use model::config::{ConfigError, ShopDirectory, key_path};
use platform::settings::{Settings, SettingsError};
use serde::Deserialize;

use crate::{
    ApiVersions, FaultConfig, ProductSpec, SandboxConfig, ShopSeed, Stock, ThrottleConfig,
    VariantSpec,
};

/// The name of the sandbox's table in the configuration file.
pub const SECTION: &str = "shopify_sandbox";

/// The binary's default address (next to the consumer probe's 9469).
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9470);

/// `[shopify_sandbox]`. Every key is optional.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxSettings {
    /// Throttling (`enabled`, `bucket_size`, `restore_rate`).
    pub throttle: ThrottleConfig,
    /// Faults active from the start (`seed`, `rules`).
    pub faults: FaultConfig,
    /// API versions served (`oldest`, `latest`).
    pub api_versions: ApiVersions,
    /// Idempotency key retention in seconds (default 86400).
    pub idempotency_retention_secs: Option<u64>,
    /// Where product webhooks go (the relay), e.g. `http://127.0.0.1:8080/webhooks/shopify`.
    pub webhook_url: Option<String>,
    /// `X-Shopify-API-Version` of emitted webhooks (default 2026-07).
    pub webhook_api_version: Option<String>,
    /// First id handed out.
    pub id_base: Option<u64>,
    /// Create the `[[shops]]` of the file (domain, token and webhook secret from their
    /// environment variables, one location per warehouse with the configured id). Default
    /// true.
    pub seed_shops: Option<bool>,
    /// Products to create in the seeded shops.
    pub products: Vec<SeedProductSettings>,
}

/// A product of `[[shopify_sandbox.products]]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedProductSettings {
    /// The shop (one of `[[shops]]`).
    pub shop: String,
    /// Title.
    pub title: String,
    /// Variants.
    pub variants: Vec<SeedVariantSettings>,
}

/// A variant of a seeded product.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedVariantSettings {
    /// SKU.
    pub sku: String,
    /// Initial `available` per WOS warehouse code (mapped through the shop's locations).
    #[serde(default)]
    pub available: BTreeMap<String, i64>,
}

impl SandboxSettings {
    /// The `[shopify_sandbox]` table of the file `settings` came from (the defaults when there
    /// is none), checked against the file's `[[shops]]`. `settings` must have been loaded with
    /// [`SECTION`] among its own sections.
    pub fn from_settings(settings: &Settings) -> Result<Self, SettingsError> {
        let section: Self = settings.service_section(SECTION)?;
        section.validate(&settings.shops).map_err(|(key, reason)| {
            SettingsError::at_key(
                &settings.source_name(),
                ConfigError::new(format!("{SECTION}.{key}"), reason),
            )
        })?;
        Ok(section)
    }

    /// What serde cannot check: release names, fault rules, and products of seeded shops
    /// stocked at warehouses those shops map. `Err((key, reason))`, the key relative to the
    /// section.
    fn validate(&self, shops: &ShopDirectory) -> Result<(), (String, String)> {
        self.api_versions
            .validate()
            .map_err(|(key, reason)| (format!("api_versions.{key}"), reason))?;
        self.faults
            .validate()
            .map_err(|(key, reason)| (format!("faults.{key}"), reason))?;
        let seeded = self.seed_shops.unwrap_or(true);
        for (i, product) in self.products.iter().enumerate() {
            let shop = shops.get(&product.shop).filter(|_| seeded).ok_or_else(|| {
                (
                    format!("products[{i}].shop"),
                    format!("{} is not a seeded [[shops]] entry", product.shop),
                )
            })?;
            for (j, variant) in product.variants.iter().enumerate() {
                if let Some(warehouse) = variant
                    .available
                    .keys()
                    .find(|w| shop.location_for(w).is_none())
                {
                    return Err((
                        key_path(&format!("products[{i}].variants[{j}].available"), warehouse),
                        format!(
                            "shop {} has no location for warehouse {warehouse}",
                            shop.domain
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The library configuration: listening on `listen`, seeded (unless `seed_shops = false`)
    /// with `shops`, their tokens and webhook secrets looked up with `env` (tests pass a map).
    pub fn into_config(
        self,
        shops: &ShopDirectory,
        listen: SocketAddr,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<SandboxConfig> {
        let mut config = SandboxConfig {
            listen,
            throttle: self.throttle,
            faults: self.faults,
            api_versions: self.api_versions,
            webhook_url: self.webhook_url,
            ..SandboxConfig::default()
        };
        if let Some(secs) = self.idempotency_retention_secs {
            config.idempotency_retention = Duration::from_secs(secs);
        }
        if let Some(version) = self.webhook_api_version {
            config.webhook_api_version = version;
        }
        if let Some(base) = self.id_base {
            config.id_base = base;
        }
        if !self.seed_shops.unwrap_or(true) {
            return Ok(config);
        }
        for shop in shops.iter() {
            let access_token = env(&shop.access_token_env).with_context(|| {
                format!(
                    "shop {}: environment variable {} (its access token) is not set",
                    shop.domain, shop.access_token_env
                )
            })?;
            let mut products = Vec::new();
            for product in self.products.iter().filter(|p| p.shop == shop.domain) {
                let mut variants = Vec::with_capacity(product.variants.len());
                for variant in &product.variants {
                    let mut stock = Vec::with_capacity(variant.available.len());
                    for (warehouse, available) in &variant.available {
                        let location_id = shop.location_for(warehouse).with_context(|| {
                            format!(
                                "{SECTION}.products {:?}: warehouse {warehouse} has no location in shop {}",
                                product.title, shop.domain
                            )
                        })?;
                        stock.push(Stock {
                            location_id,
                            available: *available,
                        });
                    }
                    variants.push(VariantSpec {
                        stock,
                        ..VariantSpec::sku(variant.sku.clone())
                    });
                }
                products.push(ProductSpec {
                    title: product.title.clone(),
                    variants,
                    ..ProductSpec::default()
                });
            }
            config.seed.push(ShopSeed {
                domain: shop.domain.clone(),
                access_token,
                webhook_secret: shop.webhook_secret_env.as_deref().and_then(&env),
                locations: shop
                    .locations
                    .iter()
                    .map(|(warehouse, id)| (*id, warehouse.clone()))
                    .collect(),
                products,
            });
        }
        if let Some(product) = self
            .products
            .iter()
            .find(|p| !config.seed.iter().any(|s| s.domain == p.shop))
        {
            anyhow::bail!(
                "{SECTION}.products {:?}: shop {} is not a seeded [[shops]] entry",
                product.title,
                product.shop
            );
        }
        Ok(config)
    }
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
        [[shopify_sandbox.faults.rules]]
        action = { kind = "status", status = 503, retry_after_secs = 1 }
        trigger = { probability = 0.05 }
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

    fn load(text: &str) -> Result<(Settings, SandboxSettings), SettingsError> {
        let settings = Settings::from_toml_str_with_sections(text, "t.toml", &[SECTION])?;
        let section = SandboxSettings::from_settings(&settings)?;
        Ok((settings, section))
    }

    fn refused_key(text: &str) -> String {
        let err = load(text).expect_err("refused");
        assert_eq!(err.file, "t.toml", "{err}");
        err.key.unwrap_or_default()
    }

    #[test]
    fn the_section_parses_from_the_file() {
        let (_, section) = load(FILE).unwrap();
        assert!(!section.throttle.enabled);
        assert_eq!(section.faults.rules.len(), 1);
        assert_eq!(section.products[0].variants[0].available["MAIN"], 5);
        let (_, defaults) = load("").unwrap();
        assert_eq!(defaults, SandboxSettings::default());
    }

    #[test]
    fn shops_locations_and_products_are_seeded_from_the_file() {
        let (settings, section) = load(FILE).unwrap();
        let config = section
            .into_config(&settings.shops, DEFAULT_LISTEN, env)
            .unwrap();
        assert!(!config.throttle.enabled);
        assert_eq!(config.listen.to_string(), "127.0.0.1:9470");
        let seed = &config.seed[0];
        assert_eq!(seed.access_token, "shpat_test");
        assert_eq!(seed.webhook_secret.as_deref(), Some("secret"));
        assert_eq!(seed.locations[0].0.0, 68_845_568_042);
        assert_eq!(seed.products[0].variants[0].stock[0].available, 5);
    }

    #[test]
    fn a_missing_token_or_unknown_warehouse_is_refused() {
        let (settings, section) = load(FILE).unwrap();
        let err = section
            .into_config(&settings.shops, DEFAULT_LISTEN, |_| None)
            .unwrap_err();
        assert!(err.to_string().contains("ACME_TOKEN"), "{err}");
        let bad = FILE.replace("MAIN = 5", "EAST = 5");
        let err = load(&bad).expect_err("EAST has no location");
        assert_eq!(
            err.key.as_deref(),
            Some("shopify_sandbox.products[0].variants[0].available.EAST")
        );
        assert!(err.reason.contains("EAST"), "{err}");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_with_the_file_and_the_key() {
        assert_eq!(
            refused_key("[shopify_sandbox]\nbogus = 1"),
            "shopify_sandbox.bogus"
        );
        assert_eq!(
            refused_key("[shopify_sandbox.throttle]\nenabled = \"no\""),
            "shopify_sandbox.throttle.enabled"
        );
        assert_eq!(
            refused_key("[shopify_sandbox.api_versions]\noldest = \"2026-05\""),
            "shopify_sandbox.api_versions.oldest"
        );
        assert_eq!(
            refused_key(
                "[[shopify_sandbox.faults.rules]]\naction = { kind = \"drop\" }\ntrigger = { probability = 2.0 }"
            ),
            "shopify_sandbox.faults.rules[0].trigger"
        );
        assert_eq!(
            refused_key(&FILE.replace(
                "acme.myshopify.com\"\n        title",
                "other.myshopify.com\"\n        title"
            )),
            "shopify_sandbox.products[0].shop"
        );
        assert_eq!(
            refused_key(&format!("{FILE}\n[shopify_sandbox_typo]\n")),
            "shopify_sandbox_typo"
        );
        let err = load("[shopify_sandbox]\nid_base = -1").expect_err("negative");
        assert_eq!(
            err.to_string(),
            format!(
                "configuration t.toml: `shopify_sandbox.id_base`: {}",
                err.reason
            )
        );
    }

    #[test]
    fn the_services_refuse_the_section_and_the_repositorys_files_load() {
        assert!(Settings::from_toml_str(FILE, "t.toml").is_err());
        let quick_start = include_str!("../../../config/local.toml");
        let (settings, section) = load(quick_start).unwrap();
        assert_eq!(section.products.len(), 1);
        section
            .into_config(&settings.shops, DEFAULT_LISTEN, |_| Some("x".into()))
            .unwrap();
        // docker-compose: the services share one file without the section, the sandbox
        // container has its own, with the same shops.
        let services: toml::Table = include_str!("../../../deploy/compose/wos-sync.toml")
            .parse()
            .unwrap();
        let sandbox: toml::Table = include_str!("../../../deploy/compose/shopify-sandbox.toml")
            .parse()
            .unwrap();
        assert!(!services.contains_key(SECTION));
        assert_eq!(sandbox["shops"], services["shops"]);
        let section: SandboxSettings = sandbox[SECTION].clone().try_into().unwrap();
        assert_eq!(section.products.len(), 1);
    }
}
