//! Shop configuration: the `[[shops]]` tables of the configuration file (CONTRACT §2).
//!
//! This module owns what a shop's configuration means and every rule that makes it valid:
//! the shop domain, the Admin API version and base URL, which environment variables hold
//! its secrets, its warehouse → location map and its item field policies. It works on an
//! already-parsed TOML document: the platform reads the file, parses it, owns the other
//! top-level keys, and prefixes errors with the file name. Validation is strict, including
//! unknown keys, because a typo in a shop's configuration must stop the service at start,
//! not silently push stock to the wrong place.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::delta::LocationMap;
use crate::ids::LocationId;
use crate::validate::{
    SHOP_DOMAIN_PATTERN, control_char_problem, find_control_char, is_env_var_name, is_shop_domain,
    quote_untrusted,
};

/// The oldest Shopify Admin API version the services speak (CONTRACT §2).
pub const MIN_API_VERSION: &str = "2026-04";

/// The longest warehouse code a WOS transaction can carry (the schema's `warehouse`
/// `maxLength`); a longer code in the configuration could never match.
pub const MAX_WAREHOUSE_CODE_CHARS: usize = 64;

/// One Shopify store the services work for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShopConfig {
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

impl ShopConfig {
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

/// Who owns an item field: whether Shopify updates may write it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum FieldPolicy {
    /// Overwritten by every newer Shopify update (the default).
    #[default]
    Shopify,
    /// Never written from Shopify.
    Wos,
    /// Written when the WOS item is created, WOS-owned after.
    ShopifyInitial,
}

impl FieldPolicy {
    /// Every policy.
    pub const ALL: [FieldPolicy; 3] = [Self::Shopify, Self::Wos, Self::ShopifyInitial];

    /// The configuration spelling: `shopify`, `wos` or `shopify_initial`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Shopify => "shopify",
            Self::Wos => "wos",
            Self::ShopifyInitial => "shopify_initial",
        }
    }

    /// Reads the configuration spelling (exact, lowercase).
    pub fn parse(name: &str) -> Option<Self> {
        find_by_name(&Self::ALL, name, Self::as_str)
    }

    /// Whether a Shopify update may write the field, given whether it is creating the WOS
    /// item (`item_is_new`) or updating an existing one. Staleness ("older events never
    /// overwrite newer state") is a separate check the caller makes first.
    pub fn shopify_may_write(self, item_is_new: bool) -> bool {
        match self {
            Self::Shopify => true,
            Self::Wos => false,
            Self::ShopifyInitial => item_is_new,
        }
    }
}

impl fmt::Display for FieldPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The descriptive item fields a field policy can govern (columns of the `items` table).
///
/// `custom_fields` is never written from Shopify. `inventory_item_id` is not one of these: it
/// follows the SKU mapping rules (CONTRACT §5) unless the shop pins it
/// ([`FieldPolicies::mapping`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemField {
    /// `description`.
    Description,
    /// `barcode`.
    Barcode,
    /// `price`.
    Price,
    /// `vendor`.
    Vendor,
    /// `product_type`.
    ProductType,
}

impl ItemField {
    /// Every configurable field.
    pub const ALL: [ItemField; 5] = [
        Self::Description,
        Self::Barcode,
        Self::Price,
        Self::Vendor,
        Self::ProductType,
    ];

    /// The column / configuration key name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Description => "description",
            Self::Barcode => "barcode",
            Self::Price => "price",
            Self::Vendor => "vendor",
            Self::ProductType => "product_type",
        }
    }

    /// Reads a column / configuration key name (exact, lowercase).
    pub fn parse(name: &str) -> Option<Self> {
        find_by_name(&Self::ALL, name, Self::as_str)
    }
}

impl fmt::Display for ItemField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn find_by_name<T: Copy>(all: &[T], name: &str, as_str: fn(T) -> &'static str) -> Option<T> {
    all.iter().copied().find(|&item| as_str(item) == name)
}

/// Why a column that looks like an item field cannot have a policy, if it is one of those.
fn unconfigurable_field_reason(name: &str) -> Option<&'static str> {
    match name {
        "custom_fields" => Some("custom_fields is never written from Shopify"),
        _ => None,
    }
}

/// The `[shops.fields]` key that pins `inventory_item_id`.
pub const MAPPING_FIELD: &str = "inventory_item_id";

/// A shop's field policies (`[shops.fields]`); fields not named are [`FieldPolicy::Shopify`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldPolicies {
    fields: BTreeMap<ItemField, FieldPolicy>,
    mapping: FieldPolicy,
}

impl FieldPolicies {
    /// The policy for `field`; [`FieldPolicy::Shopify`] unless configured otherwise.
    pub fn policy(&self, field: ItemField) -> FieldPolicy {
        self.fields.get(&field).copied().unwrap_or_default()
    }

    /// Sets the policy for `field` (builder style, for tests and tools).
    pub fn with(mut self, field: ItemField, policy: FieldPolicy) -> Self {
        self.fields.insert(field, policy);
        self
    }

    /// The explicitly configured policies of the descriptive fields, in field order.
    pub fn configured(&self) -> impl Iterator<Item = (ItemField, FieldPolicy)> + '_ {
        self.fields.iter().map(|(&field, &policy)| (field, policy))
    }

    /// Who writes `inventory_item_id` (the seed's option of pinning it):
    /// [`FieldPolicy::Shopify`] (the default): item-ingest, by the mapping rules;
    /// [`FieldPolicy::ShopifyInitial`]: item-ingest fills it while it is empty, then only WOS
    /// changes it; [`FieldPolicy::Wos`]: item-ingest never writes it.
    pub fn mapping(&self) -> FieldPolicy {
        self.mapping
    }

    /// Sets who writes `inventory_item_id` (builder style).
    pub fn with_mapping(mut self, policy: FieldPolicy) -> Self {
        self.mapping = policy;
        self
    }
}

/// An invalid configuration value: the TOML path of the key and why. The platform adds
/// the file name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{key}`: {reason}")]
pub struct ConfigError {
    /// TOML path, e.g. `shops[0].locations.MAIN`.
    pub key: String,
    /// Why the value is refused, e.g. "location id must be a positive integer, got -5".
    pub reason: String,
}

impl ConfigError {
    fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// The keys a `[[shops]]` table may have.
const SHOP_KEYS: [&str; 8] = [
    "domain",
    "api_version",
    "admin_base_url",
    "access_token_env",
    "webhook_secret_env",
    "previous_webhook_secret_env",
    "locations",
    "fields",
];

/// Reads and validates the `shops` array of tables of an already-parsed configuration
/// document. Other top-level keys are ignored (they belong to the platform).
///
/// An absent `shops` key yields an empty list: tools such as `wos-sync migrate` need no
/// shop, so a service that does must check for an empty list itself. The first problem found
/// is returned, with the TOML path of the key (e.g. `shops[1].api_version`).
pub fn parse_shops(doc: &toml::Table) -> Result<Vec<ShopConfig>, ConfigError> {
    let Some(shops) = doc.get("shops") else {
        return Ok(Vec::new());
    };
    let toml::Value::Array(shops) = shops else {
        return Err(ConfigError::new(
            "shops",
            format!(
                "must be an array of tables ([[shops]]), got {}",
                describe_toml(shops)
            ),
        ));
    };
    let configs = shops
        .iter()
        .enumerate()
        .map(|(i, shop)| {
            let key = format!("shops[{i}]");
            match shop {
                toml::Value::Table(table) => parse_shop(table, &key),
                other => Err(ConfigError::new(
                    key,
                    format!("must be a table, got {}", describe_toml(other)),
                )),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    check_unique_domains(&configs)?;
    Ok(configs)
}

/// Refuses a second shop with the same domain, naming both positions.
fn check_unique_domains(shops: &[ShopConfig]) -> Result<(), ConfigError> {
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

fn parse_shop(table: &toml::Table, prefix: &str) -> Result<ShopConfig, ConfigError> {
    let shop = Section { table, prefix };
    if let Some(unknown) = table.keys().find(|k| !SHOP_KEYS.contains(&k.as_str())) {
        return Err(ConfigError::new(
            shop.key(unknown),
            format!("unknown key (expected one of {})", SHOP_KEYS.join(", ")),
        ));
    }

    let domain = shop.required_string("domain")?;
    if !is_shop_domain(&domain) {
        return Err(shop.error(
            "domain",
            format!(
                "must match `{SHOP_DOMAIN_PATTERN}` (lowercase), got {}",
                quote_untrusted(&domain)
            ),
        ));
    }

    let api_version = shop.required_string("api_version")?;
    check_api_version(&api_version).map_err(|reason| shop.error("api_version", reason))?;

    let admin_base_url = shop.required_string("admin_base_url")?;
    let admin_base_url = normalize_base_url(&admin_base_url)
        .map_err(|reason| shop.error("admin_base_url", reason))?;

    let access_token_env = shop
        .env_var_name("access_token_env")?
        .ok_or_else(|| shop.error("access_token_env", "is required"))?;
    let webhook_secret_env = shop.env_var_name("webhook_secret_env")?;
    let previous_webhook_secret_env = shop.env_var_name("previous_webhook_secret_env")?;
    if let Some(previous) = &previous_webhook_secret_env {
        match &webhook_secret_env {
            None => {
                return Err(shop.error(
                    "previous_webhook_secret_env",
                    "needs webhook_secret_env: the previous secret only complements the current one",
                ));
            }
            Some(current) if current == previous => {
                return Err(shop.error(
                    "previous_webhook_secret_env",
                    "names the same variable as webhook_secret_env",
                ));
            }
            Some(_) => {}
        }
    }

    let locations = match shop.optional_table("locations")? {
        None => LocationMap::new(),
        Some(table) => parse_locations(table, &shop.key("locations"))?,
    };
    let fields = match shop.optional_table("fields")? {
        None => FieldPolicies::default(),
        Some(table) => parse_field_policies(table, &shop.key("fields"))?,
    };

    Ok(ShopConfig {
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

fn parse_locations(table: &toml::Table, prefix: &str) -> Result<LocationMap, ConfigError> {
    let section = Section { table, prefix };
    table
        .iter()
        .map(|(code, value)| {
            let error = |reason: String| section.error(code, reason);
            if code.is_empty() {
                return Err(error("warehouse code must not be empty".to_owned()));
            }
            if let Some((index, c)) = find_control_char(code) {
                return Err(error(format!(
                    "warehouse code {}",
                    control_char_problem(index, c)
                )));
            }
            let length = code.chars().count();
            if length > MAX_WAREHOUSE_CODE_CHARS {
                return Err(error(format!(
                    "warehouse code must be at most {MAX_WAREHOUSE_CODE_CHARS} characters \
                     (the transaction schema's limit), got {length}"
                )));
            }
            match value {
                toml::Value::Integer(n) => u64::try_from(*n).ok().filter(|&n| n > 0),
                _ => None,
            }
            .map(|id| (code.clone(), LocationId(id)))
            .ok_or_else(|| {
                error(format!(
                    "location id must be a positive integer, got {}",
                    describe_toml(value)
                ))
            })
        })
        .collect()
}

fn parse_field_policies(table: &toml::Table, prefix: &str) -> Result<FieldPolicies, ConfigError> {
    let section = Section { table, prefix };
    let mut policies = FieldPolicies::default();
    for (name, value) in table {
        if let Some(reason) = unconfigurable_field_reason(name) {
            return Err(section.error(name, reason));
        }
        let field = ItemField::parse(name);
        if field.is_none() && name != MAPPING_FIELD {
            return Err(section.error(
                name,
                format!(
                    "unknown item field (expected one of {}, \"{MAPPING_FIELD}\")",
                    names(&ItemField::ALL, ItemField::as_str)
                ),
            ));
        }
        let policy = value.as_str().and_then(FieldPolicy::parse).ok_or_else(|| {
            section.error(
                name,
                format!(
                    "field policy must be one of {}, got {}",
                    names(&FieldPolicy::ALL, FieldPolicy::as_str),
                    describe_toml(value)
                ),
            )
        })?;
        policies = match field {
            Some(field) => policies.with(field, policy),
            None => policies.with_mapping(policy),
        };
    }
    Ok(policies)
}

fn names<T: Copy>(all: &[T], as_str: fn(T) -> &'static str) -> String {
    all.iter()
        .map(|&item| format!("\"{}\"", as_str(item)))
        .collect::<Vec<_>>()
        .join(", ")
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

/// Checks `http(s)://host[:port]` (an optional single trailing slash is dropped) and
/// returns it normalised: lowercase scheme, no trailing slash. Paths, queries, fragments
/// and credentials are refused: the services append `/admin/api/...` themselves, and
/// secrets only ever come from the environment.
fn normalize_base_url(url: &str) -> Result<String, String> {
    let refuse = |why: &str| {
        Err(format!(
            "must be http(s)://host[:port] {why}, got {}",
            quote_untrusted(url)
        ))
    };
    let Some((scheme, rest)) = url.split_once("://") else {
        return refuse("(missing scheme)");
    };
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return refuse("(scheme must be http or https)");
    }
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '?', '#']) {
        return refuse("with no path, query or fragment");
    }
    if authority.contains('@') {
        return refuse("with no credentials");
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        // IPv6 literal: `[::1]` or `[::1]:8080`.
        let Some((inside, after)) = bracketed.split_once(']') else {
            return refuse("(unclosed IPv6 bracket)");
        };
        if inside.is_empty()
            || !inside
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return refuse("(invalid IPv6 address)");
        }
        match after {
            "" => (inside, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (inside, Some(port)),
                None => return refuse("(invalid text after the IPv6 address)"),
            },
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let valid_host = |h: &str| {
        !h.is_empty()
            && h.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == ':')
    };
    if !valid_host(host) {
        return refuse("(invalid host)");
    }
    if let Some(port) = port {
        let valid = !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u16>().is_ok_and(|p| p > 0);
        if !valid {
            return refuse("(invalid port)");
        }
    }
    // The access token travels in a header: in plaintext only to this machine (the sandbox).
    if scheme == "http" && !is_loopback(host) {
        return refuse(
            "with https:// except on loopback (the access token must not travel in plaintext)",
        );
    }
    Ok(format!("{scheme}://{authority}"))
}

/// `localhost`, `127.0.0.0/8` or `::1`: the machine itself.
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Shopify prefixes its secrets (`shpat_` access tokens, `shpss_` shared secrets, …); such a
/// value where an environment variable *name* belongs is the secret itself.
fn looks_like_shopify_secret(value: &str) -> bool {
    ["shpat_", "shpca_", "shppa_", "shpss_"]
        .iter()
        .any(|prefix| value.starts_with(prefix))
}

/// A TOML value for an error message: strings quoted and escaped, scalars as written,
/// containers by kind.
fn describe_toml(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => quote_untrusted(s),
        toml::Value::Integer(n) => n.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(d) => d.to_string(),
        toml::Value::Array(_) => "an array".to_owned(),
        toml::Value::Table(_) => "a table".to_owned(),
    }
}

/// A key as it appears in a TOML path: bare when it can be, quoted (and escaped) otherwise.
fn toml_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_owned()
    } else {
        quote_untrusted(key)
    }
}

/// One TOML table and its path, with typed accessors that produce path-named errors.
struct Section<'a> {
    table: &'a toml::Table,
    prefix: &'a str,
}

impl Section<'_> {
    fn key(&self, name: &str) -> String {
        format!("{}.{}", self.prefix, toml_key(name))
    }

    fn error(&self, name: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::new(self.key(name), reason)
    }

    fn optional_string(&self, name: &str) -> Result<Option<String>, ConfigError> {
        match self.table.get(name) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(self.error(
                name,
                format!("must be a string, got {}", describe_toml(other)),
            )),
        }
    }

    fn required_string(&self, name: &str) -> Result<String, ConfigError> {
        self.optional_string(name)?
            .ok_or_else(|| self.error(name, "is required"))
    }

    /// An environment variable name. A value that looks like a Shopify secret is refused
    /// without being echoed, so the secret does not end up in logs.
    fn env_var_name(&self, name: &str) -> Result<Option<String>, ConfigError> {
        let Some(value) = self.optional_string(name)? else {
            return Ok(None);
        };
        if looks_like_shopify_secret(&value) {
            return Err(self.error(
                name,
                "looks like a Shopify secret itself; put the secret in an environment variable \
                 and give that variable's name here",
            ));
        }
        if !is_env_var_name(&value) {
            return Err(self.error(
                name,
                format!(
                    "must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*), got {}",
                    quote_untrusted(&value)
                ),
            ));
        }
        Ok(Some(value))
    }

    fn optional_table(&self, name: &str) -> Result<Option<&toml::Table>, ConfigError> {
        match self.table.get(name) {
            None => Ok(None),
            Some(toml::Value::Table(t)) => Ok(Some(t)),
            Some(other) => Err(self.error(
                name,
                format!("must be a table, got {}", describe_toml(other)),
            )),
        }
    }
}

/// The configured shops, looked up by domain. Built once at start from [`parse_shops`].
#[derive(Debug, Clone, Default)]
pub struct ShopDirectory {
    shops: Vec<ShopConfig>,
    by_domain: BTreeMap<String, usize>,
}

impl ShopDirectory {
    /// Builds the directory, refusing duplicate domains (as [`parse_shops`] does) so a
    /// hand-built list cannot make lookups ambiguous.
    pub fn new(shops: Vec<ShopConfig>) -> Result<Self, ConfigError> {
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
    pub fn get(&self, domain: &str) -> Option<&ShopConfig> {
        self.by_domain.get(domain).and_then(|&i| self.shops.get(i))
    }

    /// The shops in configuration order.
    pub fn iter(&self) -> std::slice::Iter<'_, ShopConfig> {
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
    type Item = &'a ShopConfig;
    type IntoIter = std::slice::Iter<'a, ShopConfig>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = r#"
        [[shops]]
        domain = "acme.myshopify.com"
        api_version = "2026-07"
        admin_base_url = "https://acme.myshopify.com"
        access_token_env = "ACME_SHOPIFY_TOKEN"
        webhook_secret_env = "ACME_WEBHOOK_SECRET"
        previous_webhook_secret_env = "ACME_WEBHOOK_SECRET_OLD"

        [shops.locations]
        MAIN = 68845568042
        EAST = 68845600810

        [shops.fields]
        barcode = "shopify_initial"
    "#;

    fn doc(text: &str) -> toml::Table {
        text.parse::<toml::Table>().expect("valid TOML")
    }

    fn parse(text: &str) -> Result<Vec<ShopConfig>, ConfigError> {
        parse_shops(&doc(text))
    }

    /// A minimal valid shop with `extra` lines appended to its table.
    fn shop_with(extra: &str) -> String {
        format!(
            "[[shops]]\ndomain = \"acme.myshopify.com\"\napi_version = \"2026-04\"\n\
             admin_base_url = \"https://acme.myshopify.com\"\naccess_token_env = \"TOKEN\"\n{extra}"
        )
    }

    /// The minimal shop with one key's line replaced (or removed when `line` is empty).
    fn shop_replacing(key: &str, line: &str) -> String {
        shop_with("")
            .lines()
            .map(|l| {
                if l.starts_with(&format!("{key} =")) {
                    line
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn refusal(text: &str) -> ConfigError {
        parse(text).expect_err("config should be refused")
    }

    fn err(key: &str, reason: &str) -> ConfigError {
        ConfigError::new(key, reason)
    }

    #[test]
    fn contracts_example_parses() {
        let contract = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../contract/README.md"
        ))
        .expect("read contract/README.md");
        let example = contract
            .split("```toml")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("a toml block in contract/README.md");
        let from_contract = parse(example).expect("the contract's example is valid");
        assert_eq!(from_contract, parse(VALID).expect("valid"));
        let shop = &from_contract[0];
        assert_eq!(
            shop,
            &ShopConfig {
                domain: "acme.myshopify.com".into(),
                api_version: "2026-07".into(),
                admin_base_url: "https://acme.myshopify.com".into(),
                access_token_env: "ACME_SHOPIFY_TOKEN".into(),
                webhook_secret_env: Some("ACME_WEBHOOK_SECRET".into()),
                previous_webhook_secret_env: Some("ACME_WEBHOOK_SECRET_OLD".into()),
                locations: LocationMap::from([
                    ("MAIN".into(), LocationId(68845568042)),
                    ("EAST".into(), LocationId(68845600810)),
                ]),
                fields: FieldPolicies::default()
                    .with(ItemField::Barcode, FieldPolicy::ShopifyInitial),
            }
        );
        assert_eq!(
            shop.graphql_url(),
            "https://acme.myshopify.com/admin/api/2026-07/graphql.json"
        );
        assert_eq!(shop.location_for("MAIN"), Some(LocationId(68845568042)));
        assert_eq!(shop.location_for("main"), None);
        assert_eq!(
            shop.fields.policy(ItemField::Barcode),
            FieldPolicy::ShopifyInitial
        );
        assert_eq!(shop.fields.policy(ItemField::Price), FieldPolicy::Shopify);
    }

    #[test]
    fn minimal_shop_and_defaults() {
        let shops = parse(&shop_with("")).expect("valid");
        assert_eq!(
            shops,
            vec![ShopConfig {
                domain: "acme.myshopify.com".into(),
                api_version: "2026-04".into(),
                admin_base_url: "https://acme.myshopify.com".into(),
                access_token_env: "TOKEN".into(),
                webhook_secret_env: None,
                previous_webhook_secret_env: None,
                locations: LocationMap::new(),
                fields: FieldPolicies::default(),
            }]
        );
        for field in ItemField::ALL {
            assert_eq!(shops[0].fields.policy(field), FieldPolicy::Shopify);
        }
    }

    #[test]
    fn no_shops_is_an_empty_list_and_other_top_level_keys_are_ignored() {
        assert_eq!(parse(""), Ok(vec![]));
        assert_eq!(parse("shops = []"), Ok(vec![]));
        let text = format!(
            "amqp_url = \"amqp://x\"\n[database]\nurl = \"postgres://x\"\n{}",
            shop_with("")
        );
        assert_eq!(parse(&text).map(|s| s.len()), Ok(1));
    }

    #[test]
    fn several_shops_keep_their_order() {
        let text = format!(
            "{}\n{}",
            shop_with(""),
            shop_with("").replace("acme.myshopify.com\"\n", "beta.myshopify.com\"\n")
        );
        let shops = parse(&text).expect("valid");
        let domains: Vec<_> = shops.iter().map(|s| s.domain.as_str()).collect();
        assert_eq!(domains, ["acme.myshopify.com", "beta.myshopify.com"]);
    }

    #[test]
    fn shops_must_be_an_array_of_tables() {
        assert_eq!(
            refusal("shops = \"acme\""),
            err(
                "shops",
                "must be an array of tables ([[shops]]), got \"acme\""
            )
        );
        assert_eq!(
            refusal("[shops]\ndomain = \"acme.myshopify.com\""),
            err(
                "shops",
                "must be an array of tables ([[shops]]), got a table"
            )
        );
        assert_eq!(
            refusal("shops = [1]"),
            err("shops[0]", "must be a table, got 1")
        );
    }

    #[test]
    fn required_keys() {
        for key in [
            "domain",
            "api_version",
            "admin_base_url",
            "access_token_env",
        ] {
            assert_eq!(
                refusal(&shop_replacing(key, "")),
                err(&format!("shops[0].{key}"), "is required"),
                "{key}"
            );
        }
    }

    #[test]
    fn string_keys_must_be_strings() {
        for key in [
            "domain",
            "api_version",
            "admin_base_url",
            "access_token_env",
            "webhook_secret_env",
            "previous_webhook_secret_env",
        ] {
            let text =
                shop_replacing(key, "").replace("[[shops]]\n", &format!("[[shops]]\n{key} = 5\n"));
            assert_eq!(
                refusal(&text),
                err(&format!("shops[0].{key}"), "must be a string, got 5"),
                "{key}"
            );
        }
    }

    #[test]
    fn unknown_shop_keys_are_refused() {
        let expected = "unknown key (expected one of domain, api_version, admin_base_url, \
                        access_token_env, webhook_secret_env, previous_webhook_secret_env, \
                        locations, fields)";
        for (line, key) in [
            ("webhook_secret = \"X\"", "shops[0].webhook_secret"),
            ("location = {}", "shops[0].location"),
            ("Domain = \"x\"", "shops[0].Domain"),
            ("\"odd key\" = 1", "shops[0].\"odd key\""),
        ] {
            assert_eq!(refusal(&shop_with(line)), err(key, expected), "{line}");
        }
    }

    #[test]
    fn domain_rules() {
        for bad in [
            "Acme.myshopify.com",
            "acme.com",
            "",
            "acme.myshopify.com/",
            "https://acme.myshopify.com",
        ] {
            let text = shop_replacing("domain", &format!("domain = {bad:?}"));
            assert_eq!(
                refusal(&text),
                err(
                    "shops[0].domain",
                    &format!(
                        r"must match `^[a-z0-9][a-z0-9-]*\.myshopify\.com$` (lowercase), got {}",
                        quote_untrusted(bad)
                    )
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn duplicate_domains_are_refused() {
        let text = format!(
            "{}\n{}\n{}",
            shop_with(""),
            shop_with("").replace("acme.", "beta."),
            shop_with("")
        );
        assert_eq!(
            refusal(&text),
            err(
                "shops[2].domain",
                "duplicate shop domain \"acme.myshopify.com\" (already configured in shops[0])"
            )
        );
    }

    #[test]
    fn api_version_rules() {
        for ok in ["2026-04", "2026-07", "2026-10", "2027-01", "2099-04"] {
            let text = shop_replacing("api_version", &format!("api_version = {ok:?}"));
            assert_eq!(
                parse(&text).map(|s| s[0].api_version.clone()),
                Ok(ok.to_owned())
            );
        }
        let cases = [
            ("2026-01", "must be 2026-04 or later, got \"2026-01\""),
            ("2025-10", "must be 2026-04 or later, got \"2025-10\""),
            ("1999-04", "must be 2026-04 or later, got \"1999-04\""),
            (
                "2026-05",
                "Shopify API versions are quarterly (YYYY-01, -04, -07 or -10), got \"2026-05\"",
            ),
            (
                "2026-00",
                "Shopify API versions are quarterly (YYYY-01, -04, -07 or -10), got \"2026-00\"",
            ),
            (
                "2026-13",
                "Shopify API versions are quarterly (YYYY-01, -04, -07 or -10), got \"2026-13\"",
            ),
            (
                "unstable",
                "\"unstable\" is refused: it changes without notice; pin a release such as 2026-04 or later",
            ),
        ];
        for (bad, reason) in cases {
            let text = shop_replacing("api_version", &format!("api_version = {bad:?}"));
            assert_eq!(refusal(&text), err("shops[0].api_version", reason), "{bad}");
        }
        for bad in [
            "2026-4",
            "26-04",
            "2026/04",
            "2026-04-01",
            "v2026-04",
            "",
            " 2026-04",
            "２０２６-04",
            "+026-04",
        ] {
            let text = shop_replacing("api_version", &format!("api_version = {bad:?}"));
            assert_eq!(
                refusal(&text),
                err(
                    "shops[0].api_version",
                    &format!(
                        "must be a Shopify API version YYYY-MM such as 2026-04, got {}",
                        quote_untrusted(bad)
                    )
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn admin_base_url_rules() {
        for (input, normalized) in [
            ("https://acme.myshopify.com", "https://acme.myshopify.com"),
            ("https://acme.myshopify.com/", "https://acme.myshopify.com"),
            ("HTTPS://acme.myshopify.com", "https://acme.myshopify.com"),
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("http://localhost:65535/", "http://localhost:65535"),
            ("http://127.1.2.3", "http://127.1.2.3"),
            ("https://sandbox", "https://sandbox"),
            ("http://[::1]:8080", "http://[::1]:8080"),
            ("http://[::1]", "http://[::1]"),
        ] {
            let text = shop_replacing("admin_base_url", &format!("admin_base_url = {input:?}"));
            let shops = parse(&text).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(shops[0].admin_base_url, normalized);
        }
        for (bad, why) in [
            ("acme.myshopify.com", "(missing scheme)"),
            ("ftp://acme.myshopify.com", "(scheme must be http or https)"),
            (
                "https://acme.myshopify.com/admin",
                "with no path, query or fragment",
            ),
            (
                "https://acme.myshopify.com//",
                "with no path, query or fragment",
            ),
            (
                "https://acme.myshopify.com?x=1",
                "with no path, query or fragment",
            ),
            (
                "https://acme.myshopify.com#top",
                "with no path, query or fragment",
            ),
            ("https://user:pw@acme.myshopify.com", "with no credentials"),
            ("https://", "(invalid host)"),
            ("https:///", "(invalid host)"),
            ("https://acme .com", "(invalid host)"),
            ("https://acme_shop.com", "(invalid host)"),
            ("http://host:", "(invalid port)"),
            ("http://host:0", "(invalid port)"),
            ("http://host:65536", "(invalid port)"),
            ("http://host:80a", "(invalid port)"),
            ("http://:8080", "(invalid host)"),
            ("http://[::1", "(unclosed IPv6 bracket)"),
            ("http://[]:80", "(invalid IPv6 address)"),
            ("http://[::1]x", "(invalid text after the IPv6 address)"),
            ("http://[::1]:", "(invalid port)"),
            (
                "http://acme.myshopify.com",
                "with https:// except on loopback (the access token must not travel in plaintext)",
            ),
            (
                "http://sandbox:9470",
                "with https:// except on loopback (the access token must not travel in plaintext)",
            ),
            (
                "http://10.0.0.7",
                "with https:// except on loopback (the access token must not travel in plaintext)",
            ),
            (
                "http://[::2]",
                "with https:// except on loopback (the access token must not travel in plaintext)",
            ),
        ] {
            let text = shop_replacing("admin_base_url", &format!("admin_base_url = {bad:?}"));
            assert_eq!(
                refusal(&text),
                err(
                    "shops[0].admin_base_url",
                    &format!(
                        "must be http(s)://host[:port] {why}, got {}",
                        quote_untrusted(bad)
                    )
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn env_var_name_rules() {
        for key in ["access_token_env", "webhook_secret_env"] {
            let replace = |value: &str| {
                let text = shop_replacing(key, "");
                format!("{text}\n{key} = {value:?}")
            };
            for ok in ["TOKEN", "acme_token", "_X1"] {
                assert!(parse(&replace(ok)).is_ok(), "{key} = {ok}");
            }
            for bad in [
                "",
                "1TOKEN",
                "ACME-TOKEN",
                "ACME TOKEN",
                "$TOKEN",
                "TOKEN\n",
            ] {
                assert_eq!(
                    refusal(&replace(bad)),
                    err(
                        &format!("shops[0].{key}"),
                        &format!(
                            "must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*), got {}",
                            quote_untrusted(bad)
                        )
                    ),
                    "{key} = {bad:?}"
                );
            }
            // A secret pasted where its variable's name belongs is refused and not echoed.
            let secret = "shpat_0123456789abcdef0123456789abcdef";
            let e = refusal(&replace(secret));
            assert_eq!(e.key, format!("shops[0].{key}"));
            assert!(
                e.reason.starts_with("looks like a Shopify secret itself"),
                "{e}"
            );
            assert!(!e.to_string().contains("0123456789"), "{e}");
        }
    }

    #[test]
    fn previous_webhook_secret_rules() {
        assert_eq!(
            refusal(&shop_with("previous_webhook_secret_env = \"OLD\"")),
            err(
                "shops[0].previous_webhook_secret_env",
                "needs webhook_secret_env: the previous secret only complements the current one"
            )
        );
        assert_eq!(
            refusal(&shop_with(
                "webhook_secret_env = \"SECRET\"\nprevious_webhook_secret_env = \"SECRET\""
            )),
            err(
                "shops[0].previous_webhook_secret_env",
                "names the same variable as webhook_secret_env"
            )
        );
        assert_eq!(
            refusal(&shop_with(
                "webhook_secret_env = \"SECRET\"\nprevious_webhook_secret_env = \"9OLD\""
            ))
            .key,
            "shops[0].previous_webhook_secret_env"
        );
        let shops = parse(&shop_with(
            "webhook_secret_env = \"SECRET\"\nprevious_webhook_secret_env = \"OLD\"",
        ))
        .expect("valid");
        assert_eq!(shops[0].previous_webhook_secret_env.as_deref(), Some("OLD"));
    }

    #[test]
    fn location_rules() {
        let ok = parse(&shop_with(
            "[shops.locations]\nMAIN = 1\n\"bay 7\" = 9223372036854775807\nANNEX = 1\n\"é\" = 2",
        ))
        .expect("valid");
        assert_eq!(
            ok[0].locations,
            LocationMap::from([
                ("MAIN".into(), LocationId(1)),
                ("ANNEX".into(), LocationId(1)),
                ("bay 7".into(), LocationId(i64::MAX as u64)),
                ("é".into(), LocationId(2)),
            ])
        );
        let long = "W".repeat(MAX_WAREHOUSE_CODE_CHARS);
        assert!(parse(&shop_with(&format!("[shops.locations]\n{long} = 1"))).is_ok());

        let cases = [
            (
                "MAIN = -5",
                "shops[0].locations.MAIN",
                "location id must be a positive integer, got -5",
            ),
            (
                "MAIN = 0",
                "shops[0].locations.MAIN",
                "location id must be a positive integer, got 0",
            ),
            (
                "MAIN = \"68845568042\"",
                "shops[0].locations.MAIN",
                "location id must be a positive integer, got \"68845568042\"",
            ),
            (
                "MAIN = \"gid://shopify/Location/1\"",
                "shops[0].locations.MAIN",
                "location id must be a positive integer, got \"gid://shopify/Location/1\"",
            ),
            (
                "MAIN = 1.5",
                "shops[0].locations.MAIN",
                "location id must be a positive integer, got 1.5",
            ),
            (
                "MAIN = true",
                "shops[0].locations.MAIN",
                "location id must be a positive integer, got true",
            ),
            (
                "MAIN = [1]",
                "shops[0].locations.MAIN",
                "location id must be a positive integer, got an array",
            ),
            (
                "MAIN = { id = 1 }",
                "shops[0].locations.MAIN",
                "location id must be a positive integer, got a table",
            ),
            (
                "\"\" = 1",
                "shops[0].locations.\"\"",
                "warehouse code must not be empty",
            ),
            (
                "\"A\\tB\" = 1",
                "shops[0].locations.\"A\\tB\"",
                "warehouse code must not contain control characters (found U+0009 at character 2)",
            ),
            (
                "\"A\\u007f\" = 1",
                "shops[0].locations.\"A\\u{7f}\"",
                "warehouse code must not contain control characters (found U+007F at character 2)",
            ),
        ];
        for (line, key, reason) in cases {
            assert_eq!(
                refusal(&shop_with(&format!("[shops.locations]\n{line}"))),
                err(key, reason),
                "{line}"
            );
        }
        let too_long = "W".repeat(MAX_WAREHOUSE_CODE_CHARS + 1);
        assert_eq!(
            refusal(&shop_with(&format!("[shops.locations]\n{too_long} = 1"))),
            err(
                &format!("shops[0].locations.{too_long}"),
                "warehouse code must be at most 64 characters (the transaction schema's limit), got 65"
            )
        );
        assert_eq!(
            refusal(&shop_with("locations = [1]")),
            err("shops[0].locations", "must be a table, got an array")
        );
    }

    #[test]
    fn field_policy_rules() {
        let ok = parse(&shop_with(
            "[shops.fields]\ndescription = \"wos\"\nbarcode = \"shopify_initial\"\nprice = \"shopify\"\n\
             vendor = \"wos\"\nproduct_type = \"shopify_initial\"",
        ))
        .expect("valid");
        let fields = &ok[0].fields;
        assert_eq!(fields.policy(ItemField::Description), FieldPolicy::Wos);
        assert_eq!(
            fields.policy(ItemField::Barcode),
            FieldPolicy::ShopifyInitial
        );
        assert_eq!(fields.policy(ItemField::Price), FieldPolicy::Shopify);
        assert_eq!(fields.policy(ItemField::Vendor), FieldPolicy::Wos);
        assert_eq!(
            fields.policy(ItemField::ProductType),
            FieldPolicy::ShopifyInitial
        );
        assert_eq!(fields.configured().count(), 5);
        assert_eq!(
            fields.mapping(),
            FieldPolicy::Shopify,
            "the mapping rules by default"
        );
        for policy in FieldPolicy::ALL {
            let pinned = parse(&shop_with(&format!(
                "[shops.fields]\ninventory_item_id = \"{policy}\""
            )))
            .expect("inventory_item_id takes a field policy");
            assert_eq!(pinned[0].fields.mapping(), policy);
            assert_eq!(pinned[0].fields.configured().count(), 0);
        }

        let bad_value = |got: &str| {
            format!(
                "field policy must be one of \"shopify\", \"wos\", \"shopify_initial\", got {got}"
            )
        };
        let cases = [
            (
                "custom_fields = \"shopify\"",
                "shops[0].fields.custom_fields",
                "custom_fields is never written from Shopify".to_owned(),
            ),
            (
                "title = \"wos\"",
                "shops[0].fields.title",
                "unknown item field (expected one of \"description\", \"barcode\", \"price\", \
                 \"vendor\", \"product_type\", \"inventory_item_id\")"
                    .to_owned(),
            ),
            (
                "Barcode = \"wos\"",
                "shops[0].fields.Barcode",
                "unknown item field (expected one of \"description\", \"barcode\", \"price\", \
                 \"vendor\", \"product_type\", \"inventory_item_id\")"
                    .to_owned(),
            ),
            (
                "barcode = \"WOS\"",
                "shops[0].fields.barcode",
                bad_value("\"WOS\""),
            ),
            (
                "barcode = \"never\"",
                "shops[0].fields.barcode",
                bad_value("\"never\""),
            ),
            (
                "barcode = \"\"",
                "shops[0].fields.barcode",
                bad_value("\"\""),
            ),
            ("barcode = 1", "shops[0].fields.barcode", bad_value("1")),
            (
                "barcode = false",
                "shops[0].fields.barcode",
                bad_value("false"),
            ),
        ];
        for (line, key, reason) in cases {
            assert_eq!(
                refusal(&shop_with(&format!("[shops.fields]\n{line}"))),
                err(key, &reason),
                "{line}"
            );
        }
        assert_eq!(
            refusal(&shop_with("[shops.fields]\ninventory_item_id = \"never\"")),
            err("shops[0].fields.inventory_item_id", &bad_value("\"never\""))
        );
        assert_eq!(
            refusal(&shop_with("fields = \"wos\"")),
            err("shops[0].fields", "must be a table, got \"wos\"")
        );
    }

    #[test]
    fn errors_name_the_right_shop() {
        let text = format!(
            "{}\n{}",
            shop_with(""),
            shop_with("[shops.locations]\nMAIN = -5").replace("acme.", "beta.")
        );
        let e = refusal(&text);
        assert_eq!(
            e,
            err(
                "shops[1].locations.MAIN",
                "location id must be a positive integer, got -5"
            )
        );
        assert_eq!(
            e.to_string(),
            "`shops[1].locations.MAIN`: location id must be a positive integer, got -5"
        );
    }

    #[test]
    fn field_policy_semantics() {
        assert!(FieldPolicy::Shopify.shopify_may_write(true));
        assert!(FieldPolicy::Shopify.shopify_may_write(false));
        assert!(!FieldPolicy::Wos.shopify_may_write(true));
        assert!(!FieldPolicy::Wos.shopify_may_write(false));
        assert!(FieldPolicy::ShopifyInitial.shopify_may_write(true));
        assert!(!FieldPolicy::ShopifyInitial.shopify_may_write(false));
        assert_eq!(FieldPolicy::default(), FieldPolicy::Shopify);
    }

    #[test]
    fn names_round_trip() {
        for (policy, name) in [
            (FieldPolicy::Shopify, "shopify"),
            (FieldPolicy::Wos, "wos"),
            (FieldPolicy::ShopifyInitial, "shopify_initial"),
        ] {
            assert_eq!(policy.as_str(), name);
            assert_eq!(policy.to_string(), name);
            assert_eq!(FieldPolicy::parse(name), Some(policy));
            assert_eq!(
                serde_json::to_value(policy).expect("ser"),
                serde_json::json!(name)
            );
        }
        for (field, name) in [
            (ItemField::Description, "description"),
            (ItemField::Barcode, "barcode"),
            (ItemField::Price, "price"),
            (ItemField::Vendor, "vendor"),
            (ItemField::ProductType, "product_type"),
        ] {
            assert_eq!(field.as_str(), name);
            assert_eq!(field.to_string(), name);
            assert_eq!(ItemField::parse(name), Some(field));
            assert_eq!(
                serde_json::to_value(field).expect("ser"),
                serde_json::json!(name)
            );
        }
        assert_eq!(ItemField::parse("custom_fields"), None);
        assert_eq!(FieldPolicy::parse("Shopify"), None);
    }

    #[test]
    fn toml_keys_in_paths() {
        assert_eq!(toml_key("MAIN"), "MAIN");
        assert_eq!(toml_key("main-2_b"), "main-2_b");
        assert_eq!(toml_key("A.B"), "\"A.B\"");
        assert_eq!(toml_key(""), "\"\"");
        assert_eq!(toml_key("a\"b"), "\"a\\\"b\"");
    }

    #[test]
    fn shop_directory() {
        let shops = parse(&format!(
            "{}\n{}",
            shop_with(""),
            shop_with("").replace("acme.", "beta.")
        ))
        .expect("valid");
        let directory = ShopDirectory::new(shops.clone()).expect("unique");
        assert_eq!(directory.len(), 2);
        assert!(!directory.is_empty());
        assert_eq!(directory.get("beta.myshopify.com"), Some(&shops[1]));
        assert_eq!(directory.get("acme.myshopify.com"), Some(&shops[0]));
        assert_eq!(directory.get("ACME.myshopify.com"), None);
        assert_eq!(directory.get("gamma.myshopify.com"), None);
        let order: Vec<_> = directory.iter().map(|s| s.domain.as_str()).collect();
        assert_eq!(order, ["acme.myshopify.com", "beta.myshopify.com"]);
        assert_eq!((&directory).into_iter().count(), 2);

        let empty = ShopDirectory::new(vec![]).expect("empty is fine");
        assert!(empty.is_empty());
        assert_eq!(empty.len(), 0);
        assert_eq!(ShopDirectory::default().len(), 0);

        let duplicate =
            ShopDirectory::new(vec![shops[0].clone(), shops[1].clone(), shops[0].clone()])
                .expect_err("duplicate");
        assert_eq!(duplicate.key, "shops[2].domain");
    }
}
