//! One `[[shops]]` table: its serde type and the rules that make it a [`ShopSettings`].
//!
//! Serde reads the table's shape: which keys exist, that each holds a string or a table, and no
//! others. The rules here then check what serde cannot say precisely: required keys, the shop
//! domain pattern, quarterly API versions, the base URL, environment variable names (and a
//! Shopify secret pasted where its variable's name belongs, refused without echoing it), the
//! previous webhook secret's companion, warehouse codes and location ids, field policies.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, SeqAccess, Visitor};

use super::admin_url::normalize_admin_base_url;
use super::policies::read_field_policies;
use super::section::{ConfigError, describe_toml, key_path};
use super::{MAX_WAREHOUSE_CODE_CHARS, MIN_API_VERSION, ShopSettings};
use crate::delta::LocationMap;
use crate::ids::LocationId;
use crate::validate::{
    SHOP_DOMAIN_PATTERN, control_char_problem, find_control_char, is_env_var_name, is_shop_domain,
    quote_untrusted,
};

/// The `shops` key: an array of `[[shops]]` tables. (A single `[shops]` table, a common slip,
/// is refused with that spelling in the message.)
#[derive(Debug)]
pub(super) struct ShopTables(pub(super) Vec<ShopTable>);

impl<'de> Deserialize<'de> for ShopTables {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Tables;
        impl<'de> Visitor<'de> for Tables {
            type Value = Vec<ShopTable>;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("an array of tables ([[shops]])")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut tables = Vec::new();
                while let Some(table) = seq.next_element()? {
                    tables.push(table);
                }
                Ok(tables)
            }
        }
        deserializer.deserialize_seq(Tables).map(Self)
    }
}

/// A `[[shops]]` table as the file spells it. The required keys are `Option` so that a missing
/// one is refused under its own key ("`shops[0].domain`: is required"). Locations and field
/// policies are maps whose keys come from the operator (warehouse codes, field names): their
/// values are checked by [`ShopTable::validate`] to name the key and what it holds.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [[shops]] table")]
pub(super) struct ShopTable {
    domain: Option<String>,
    api_version: Option<String>,
    admin_base_url: Option<String>,
    access_token_env: Option<String>,
    webhook_secret_env: Option<String>,
    previous_webhook_secret_env: Option<String>,
    #[serde(default)]
    locations: BTreeMap<String, toml::Value>,
    #[serde(default)]
    fields: BTreeMap<String, toml::Value>,
}

impl ShopTable {
    /// Applies every rule to the table found at `key` (`shops[0]`).
    pub(super) fn validate(self, key: &str) -> Result<ShopSettings, ConfigError> {
        let refuse = |name: &str, reason: String| ConfigError::new(key_path(key, name), reason);
        let required = |value: Option<String>, name: &str| {
            value.ok_or_else(|| refuse(name, "is required".to_owned()))
        };

        let domain = required(self.domain, "domain")?;
        check_domain(&domain).map_err(|reason| refuse("domain", reason))?;
        let api_version = required(self.api_version, "api_version")?;
        check_api_version(&api_version).map_err(|reason| refuse("api_version", reason))?;
        let admin_base_url = required(self.admin_base_url, "admin_base_url")?;
        let admin_base_url = normalize_admin_base_url(&admin_base_url)
            .map_err(|reason| refuse("admin_base_url", reason))?;

        let env_var = |value: Option<String>, name: &str| match value {
            None => Ok(None),
            Some(value) => match check_env_var_name(&value) {
                Ok(()) => Ok(Some(value)),
                Err(reason) => Err(refuse(name, reason)),
            },
        };
        let access_token_env = required(
            env_var(self.access_token_env, "access_token_env")?,
            "access_token_env",
        )?;
        let webhook_secret_env = env_var(self.webhook_secret_env, "webhook_secret_env")?;
        let previous_webhook_secret_env = env_var(
            self.previous_webhook_secret_env,
            "previous_webhook_secret_env",
        )?;
        if let Some(previous) = &previous_webhook_secret_env {
            match &webhook_secret_env {
                None => {
                    return Err(refuse(
                        "previous_webhook_secret_env",
                        "needs webhook_secret_env: the previous secret only complements the \
                         current one"
                            .to_owned(),
                    ));
                }
                Some(current) if current == previous => {
                    return Err(refuse(
                        "previous_webhook_secret_env",
                        "names the same variable as webhook_secret_env".to_owned(),
                    ));
                }
                Some(_) => {}
            }
        }

        let locations = read_locations(self.locations, &key_path(key, "locations"))?;
        let fields = read_field_policies(self.fields, &key_path(key, "fields"))?;
        Ok(ShopSettings {
            domain,
            api_version,
            admin_base_url,
            access_token_env,
            webhook_secret_env,
            previous_webhook_secret_env,
            locations,
            fields,
        })
    }
}

/// `name.myshopify.com`, lowercase.
fn check_domain(domain: &str) -> Result<(), String> {
    if is_shop_domain(domain) {
        Ok(())
    } else {
        Err(format!(
            "must match `{SHOP_DOMAIN_PATTERN}` (lowercase), got {}",
            quote_untrusted(domain)
        ))
    }
}

/// Checks `YYYY-MM`: a quarterly Shopify release, [`MIN_API_VERSION`] or later.
fn check_api_version(version: &str) -> Result<(), String> {
    if version == "unstable" {
        return Err(format!(
            "\"unstable\" is refused: it changes without notice; pin a release such as \
             {MIN_API_VERSION} or later"
        ));
    }
    let parsed = version
        .split_once('-')
        .filter(|(year, month)| {
            year.len() == 4
                && month.len() == 2
                && year
                    .bytes()
                    .chain(month.bytes())
                    .all(|b| b.is_ascii_digit())
        })
        .and_then(|(_, month)| month.parse::<u8>().ok());
    let Some(month) = parsed else {
        return Err(format!(
            "must be a Shopify API version YYYY-MM such as {MIN_API_VERSION}, got {}",
            quote_untrusted(version)
        ));
    };
    // Shopify releases quarterly; another month names a version that does not exist.
    if ![1, 4, 7, 10].contains(&month) {
        return Err(format!(
            "Shopify API versions are quarterly (YYYY-01, -04, -07 or -10), got {}",
            quote_untrusted(version)
        ));
    }
    // Fixed-width `YYYY-MM` strings order like the versions they name.
    if version < MIN_API_VERSION {
        return Err(format!(
            "must be {MIN_API_VERSION} or later, got {}",
            quote_untrusted(version)
        ));
    }
    Ok(())
}

/// An environment variable name. A value that looks like a Shopify secret is refused without
/// being echoed, so the secret does not end up in logs.
fn check_env_var_name(value: &str) -> Result<(), String> {
    if looks_like_shopify_secret(value) {
        return Err(
            "looks like a Shopify secret itself; put the secret in an environment \
                    variable and give that variable's name here"
                .to_owned(),
        );
    }
    if !is_env_var_name(value) {
        return Err(format!(
            "must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*), got {}",
            quote_untrusted(value)
        ));
    }
    Ok(())
}

/// Shopify prefixes its secrets (`shpat_` access tokens, `shpss_` shared secrets, …); such a
/// value where an environment variable *name* belongs is the secret itself.
fn looks_like_shopify_secret(value: &str) -> bool {
    ["shpat_", "shpca_", "shppa_", "shpss_"]
        .iter()
        .any(|prefix| value.starts_with(prefix))
}

/// Reads the `[shops.locations]` table at `key`: WOS warehouse code → Shopify location id.
fn read_locations(
    table: BTreeMap<String, toml::Value>,
    key: &str,
) -> Result<LocationMap, ConfigError> {
    table
        .into_iter()
        .map(|(code, value)| {
            let refuse = |reason: String| ConfigError::new(key_path(key, &code), reason);
            check_warehouse_code(&code).map_err(refuse)?;
            let id = match value {
                toml::Value::Integer(n) => u64::try_from(n).ok().filter(|&n| n > 0),
                _ => None,
            };
            match id {
                Some(id) => Ok((code, LocationId(id))),
                None => Err(refuse(format!(
                    "location id must be a positive integer, got {}",
                    describe_toml(&value)
                ))),
            }
        })
        .collect()
}

/// A warehouse code a WOS transaction can carry: not empty, no control characters, at most
/// [`MAX_WAREHOUSE_CODE_CHARS`] characters (a longer one could never match).
fn check_warehouse_code(code: &str) -> Result<(), String> {
    if code.is_empty() {
        return Err("warehouse code must not be empty".to_owned());
    }
    if let Some((index, c)) = find_control_char(code) {
        return Err(format!("warehouse code {}", control_char_problem(index, c)));
    }
    let length = code.chars().count();
    if length > MAX_WAREHOUSE_CODE_CHARS {
        return Err(format!(
            "warehouse code must be at most {MAX_WAREHOUSE_CODE_CHARS} characters \
             (the transaction schema's limit), got {length}"
        ));
    }
    Ok(())
}
