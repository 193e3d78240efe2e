//! Item field policies: who owns each descriptive item field and `inventory_item_id`
//! (`[shops.fields]`, CONTRACT §5), and the rules that read them from the configuration.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::section::{ConfigError, describe_toml, key_path};

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

/// Reads the `[shops.fields]` table at `key`: each key an item field or [`MAPPING_FIELD`], each
/// value a policy. The names are checked here rather than by serde so that a refusal can say
/// why (`custom_fields` is never written from Shopify) and list what is allowed.
pub(super) fn read_field_policies(
    table: BTreeMap<String, toml::Value>,
    key: &str,
) -> Result<FieldPolicies, ConfigError> {
    let mut policies = FieldPolicies::default();
    for (name, value) in table {
        let error = |reason: String| ConfigError::new(key_path(key, &name), reason);
        if let Some(reason) = unconfigurable_field_reason(&name) {
            return Err(error(reason.to_owned()));
        }
        let field = ItemField::parse(&name);
        if field.is_none() && name != MAPPING_FIELD {
            return Err(error(format!(
                "unknown item field (expected one of {}, \"{MAPPING_FIELD}\")",
                names(&ItemField::ALL, ItemField::as_str)
            )));
        }
        let policy = value.as_str().and_then(FieldPolicy::parse).ok_or_else(|| {
            error(format!(
                "field policy must be one of {}, got {}",
                names(&FieldPolicy::ALL, FieldPolicy::as_str),
                describe_toml(&value)
            ))
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
