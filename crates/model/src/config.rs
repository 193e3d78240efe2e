//! Shop configuration: the `[[shops]]` tables of the configuration file (CONTRACT §2).
//!
//! This module owns what a shop's configuration means and every rule that makes it valid:
//! the shop domain, the Admin API version and base URL, which environment variables hold
//! its secrets, its warehouse → location map and its item field policies. It works on an
//! already-parsed TOML document: the platform reads the file, parses it, owns the other
//! top-level keys, and prefixes errors with the file name. Validation is strict, including
//! unknown keys, because a typo in a shop's configuration must stop the service at start,
//! not silently push stock to the wrong place.
//!
//! It also owns how every section of the file is read, the platform's and the services' too
//! ([`deserialize_section`]): serde types first, which fix the keys and their types and refuse
//! unknown ones, with the exact key of a problem in the error; then the section's rules. The
//! shops' rules are what serde cannot say precisely (see `shop`).
//!
//! | module | owns |
//! |---|---|
//! | `section` | reading any section with serde, the exact key in [`ConfigError`], key paths |
//! | `shop` | the `[[shops]]` table's serde type and its rules (domain, API version, secrets' variable names, locations) |
//! | `admin_url` | `admin_base_url`: parsed with the `url` crate, https except on loopback |
//! | `policies` | item field policies ([`FieldPolicy`], [`FieldPolicies`]) and `[shops.fields]` |

use std::collections::BTreeMap;

use crate::delta::LocationMap;
use crate::ids::LocationId;
use crate::validate::quote_untrusted;

mod admin_url;
mod policies;
mod section;
mod shop;
#[cfg(test)]
mod tests;

pub use policies::{FieldPolicies, FieldPolicy, ItemField, MAPPING_FIELD};
pub use section::{ConfigError, deserialize_section, key_path};

/// The oldest Shopify Admin API version the services speak (CONTRACT §2).
pub const MIN_API_VERSION: &str = "2026-04";

/// The longest warehouse code a WOS transaction can carry (the schema's `warehouse`
/// `maxLength`); a longer code in the configuration could never match.
pub const MAX_WAREHOUSE_CODE_CHARS: usize = 64;

/// One Shopify store the services work for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShopSettings {
    /// `name.myshopify.com`, lowercase; the key everything else is filed under.
    pub domain: String,
    /// Admin API version, `YYYY-MM`, [`MIN_API_VERSION`] or later.
    pub api_version: String,
    /// `http(s)://host[:port]` without a trailing slash (the sandbox's URL in tests).
    pub admin_base_url: String,
    /// Name of the environment variable holding the Admin API access token.
    pub access_token_env: String,
    /// Name of the environment variable holding the webhook signing secret. Optional here
    /// because only the relay needs it; the relay refuses to start for a shop without it.
    pub webhook_secret_env: Option<String>,
    /// Name of the environment variable holding the previous webhook secret, accepted too
    /// during a rotation window.
    pub previous_webhook_secret_env: Option<String>,
    /// WOS warehouse code → Shopify location.
    pub locations: LocationMap,
    /// Who owns each item field.
    pub fields: FieldPolicies,
}

impl ShopSettings {
    /// The Admin GraphQL endpoint: `{admin_base_url}/admin/api/{api_version}/graphql.json`.
    pub fn graphql_url(&self) -> String {
        format!(
            "{}/admin/api/{}/graphql.json",
            self.admin_base_url, self.api_version
        )
    }

    /// The Shopify location of a WOS warehouse, if configured.
    pub fn location_for(&self, warehouse: &str) -> Option<LocationId> {
        self.locations.get(warehouse).copied()
    }
}

/// Reads and validates the `shops` array of tables of an already-parsed configuration
/// document. Other top-level keys are ignored (they belong to the platform).
///
/// An absent `shops` key yields an empty list: tools such as `wos-sync migrate` need no
/// shop, so a service that does must check for an empty list itself. The first problem found
/// is returned, with the TOML path of the key (e.g. `shops[1].api_version`).
pub fn parse_shops(doc: &toml::Table) -> Result<Vec<ShopSettings>, ConfigError> {
    let Some(shops) = doc.get("shops") else {
        return Ok(Vec::new());
    };
    let shop::ShopTables(tables) = deserialize_section("shops", shops.clone())?;
    let shops = tables
        .into_iter()
        .enumerate()
        .map(|(i, table)| table.validate(&format!("shops[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    check_unique_domains(&shops)?;
    Ok(shops)
}

/// Refuses a second shop with the same domain, naming both positions.
fn check_unique_domains(shops: &[ShopSettings]) -> Result<(), ConfigError> {
    let mut seen = BTreeMap::new();
    for (i, shop) in shops.iter().enumerate() {
        if let Some(first) = seen.insert(shop.domain.as_str(), i) {
            return Err(ConfigError::new(
                format!("shops[{i}].domain"),
                format!(
                    "duplicate shop domain {} (already configured in shops[{first}])",
                    quote_untrusted(&shop.domain)
                ),
            ));
        }
    }
    Ok(())
}

/// The configured shops, looked up by domain. Built once at start from [`parse_shops`].
#[derive(Debug, Clone, Default)]
pub struct ShopDirectory {
    shops: Vec<ShopSettings>,
    by_domain: BTreeMap<String, usize>,
}

impl ShopDirectory {
    /// Builds the directory, refusing duplicate domains (as [`parse_shops`] does) so a
    /// hand-built list cannot make lookups ambiguous.
    pub fn new(shops: Vec<ShopSettings>) -> Result<Self, ConfigError> {
        check_unique_domains(&shops)?;
        let by_domain = shops
            .iter()
            .enumerate()
            .map(|(i, shop)| (shop.domain.clone(), i))
            .collect();
        Ok(Self { shops, by_domain })
    }

    /// The shop with exactly this domain (domains are validated lowercase; callers holding a
    /// header value can lowercase it first).
    pub fn get(&self, domain: &str) -> Option<&ShopSettings> {
        self.by_domain.get(domain).and_then(|&i| self.shops.get(i))
    }

    /// The shops in configuration order.
    pub fn iter(&self) -> std::slice::Iter<'_, ShopSettings> {
        self.shops.iter()
    }

    /// How many shops are configured.
    pub fn len(&self) -> usize {
        self.shops.len()
    }

    /// Whether no shop is configured.
    pub fn is_empty(&self) -> bool {
        self.shops.is_empty()
    }
}

impl<'a> IntoIterator for &'a ShopDirectory {
    type Item = &'a ShopSettings;
    type IntoIter = std::slice::Iter<'a, ShopSettings>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}
