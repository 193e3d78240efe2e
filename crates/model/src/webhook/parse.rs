//! Reading a product webhook body: the parser behind [`parse_product_event`].
//!
//! Lenient where Shopify varies, exact where a mistake would be silent (see the parent module).
//! `Obj` gives typed access to one JSON object with its path, so every error names the field
//! (`variants[3].id`); descriptive fields that do not parse are collected as unreadable instead.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset, Utc};
use serde_json::{Map, Value};

use super::{
    DescriptiveField, ProductEvent, ProductPayload, ProductTopic, UnreadableField, VariantPayload,
    WebhookError,
};
use crate::ids::{InventoryItemId, ProductId, VariantId, parse_positive_decimal};
use crate::validate::{describe_json, json_type_name};

/// Parses a product webhook body for `topic` (`products/create` or `products.create`, etc.).
///
/// The topic is checked first: any other topic is [`WebhookError::UnsupportedTopic`]
/// whatever the body. See [`ProductPayload`] and [`VariantPayload`] for what is read and how
/// missing values are represented. Required: `id` (all topics), and for create/update
/// `variants` (an array; a payload without it cannot say which variants exist).
pub fn parse_product_event(topic: &str, bytes: &[u8]) -> Result<ProductEvent, WebhookError> {
    let topic = ProductTopic::parse(topic).ok_or_else(|| WebhookError::UnsupportedTopic {
        topic: topic.to_owned(),
    })?;
    let text = std::str::from_utf8(bytes).map_err(|e| WebhookError::NotUtf8 {
        offset: e.valid_up_to(),
    })?;
    let value: Value =
        serde_json::from_str(text).map_err(|e| WebhookError::NotJson(e.to_string()))?;
    let Value::Object(map) = &value else {
        return Err(WebhookError::NotObject {
            found: json_type_name(&value),
        });
    };
    let product = Obj {
        map,
        path: String::new(),
    };
    match topic {
        ProductTopic::Delete => Ok(ProductEvent::Delete {
            product_id: ProductId(product.required_id("id")?),
        }),
        ProductTopic::Create | ProductTopic::Update => {
            parse_product(&product).map(|payload| ProductEvent::Upsert(Box::new(payload)))
        }
    }
}

fn parse_product(product: &Obj<'_>) -> Result<ProductPayload, WebhookError> {
    let mut unreadable = Vec::new();
    let id = ProductId(product.required_id("id")?);
    let title = match product.map.get("title") {
        Some(Value::String(title)) => Some(title.clone()),
        other => {
            unreadable.push(UnreadableField {
                field: DescriptiveField::ProductTitle,
                path: product.path_of("title"),
                problem: match other {
                    None => "missing".to_owned(),
                    Some(value) => format!("expected a string, got {}", describe_json(value)),
                },
            });
            None
        }
    };
    let mut descriptive = |key, field| product.descriptive_string(key, field, &mut unreadable);
    let body_html = descriptive("body_html", DescriptiveField::BodyHtml);
    let vendor = descriptive("vendor", DescriptiveField::Vendor);
    let product_type = descriptive("product_type", DescriptiveField::ProductType);
    let status = descriptive("status", DescriptiveField::Status);
    let created_at = product.optional_timestamp("created_at")?;
    let updated_at = product.optional_timestamp("updated_at")?;
    let variants = product
        .required_array("variants")?
        .iter()
        .enumerate()
        .map(|(i, v)| parse_variant(v, format!("variants[{i}]"), &mut unreadable))
        .collect::<Result<Vec<_>, _>>()?;
    let (listed_variant_ids, listed_updated_at) = match listed_variant_ids(product)? {
        Some((ids, updated)) => (Some(ids), updated),
        None => (None, BTreeMap::new()),
    };
    Ok(ProductPayload {
        id,
        title,
        body_html,
        vendor,
        product_type,
        status,
        created_at,
        updated_at,
        variants,
        listed_variant_ids,
        listed_updated_at,
        unreadable,
    })
}

fn parse_variant(
    value: &Value,
    path: String,
    unreadable: &mut Vec<UnreadableField>,
) -> Result<VariantPayload, WebhookError> {
    let Value::Object(map) = value else {
        return Err(invalid(
            path,
            format!("expected an object, got {}", describe_json(value)),
        ));
    };
    let variant = Obj { map, path };
    let first_unreadable = unreadable.len();
    let id = VariantId(variant.required_id("id")?);
    let product_id = variant.optional_id("product_id")?.map(ProductId);
    let sku = sku_or_none(variant.optional_string("sku")?);
    let inventory_item_id = variant
        .optional_id("inventory_item_id")?
        .map(InventoryItemId);
    let created_at = variant.optional_timestamp("created_at")?;
    let updated_at = variant.optional_timestamp("updated_at")?;
    let title = variant.descriptive_string("title", DescriptiveField::VariantTitle, unreadable);
    let barcode = variant.descriptive_string("barcode", DescriptiveField::Barcode, unreadable);
    let price = variant.descriptive_price("price", unreadable);
    let position = variant.descriptive_u32("position", DescriptiveField::Position, unreadable);
    Ok(VariantPayload {
        id,
        product_id,
        title,
        sku,
        barcode,
        price,
        inventory_item_id,
        position,
        created_at,
        updated_at,
        unreadable: unreadable[first_unreadable..]
            .iter()
            .map(|u| u.field)
            .collect(),
    })
}

/// A SKU as the WOS item key: verbatim, but `None` when empty or only whitespace (no SKU).
pub fn sku_or_none(sku: Option<String>) -> Option<String> {
    sku.filter(|sku| !sku.trim().is_empty())
}

/// Every variant of a product as the payload lists it, with the `updated_at` of the entries
/// that carry one.
type Listing = (Vec<VariantId>, BTreeMap<VariantId, DateTime<Utc>>);

/// `variant_gids` (current versions) or else `variant_ids` (older versions); a null list is
/// treated as absent so the other one is still consulted.
fn listed_variant_ids(product: &Obj<'_>) -> Result<Option<Listing>, WebhookError> {
    for key in ["variant_gids", "variant_ids"] {
        let Some(value) = product.non_null(key) else {
            continue;
        };
        let path = product.path_of(key);
        let Value::Array(items) = value else {
            return Err(invalid(
                path,
                format!("expected an array, got {}", describe_json(value)),
            ));
        };
        let mut ids = Vec::with_capacity(items.len());
        let mut updated = BTreeMap::new();
        for (i, item) in items.iter().enumerate() {
            let (id, updated_at) = variant_reference(item, &format!("{path}[{i}]"))?;
            ids.push(id);
            if let Some(updated_at) = updated_at {
                // Listed twice: the newer time holds.
                let entry = updated.entry(id).or_insert(updated_at);
                *entry = (*entry).max(updated_at);
            }
        }
        return Ok(Some((ids, updated)));
    }
    Ok(None)
}

/// One entry of `variant_gids`/`variant_ids`, with its `updated_at` when it has one. Shopify
/// has used several shapes over the versions; all of them are accepted:
/// `{"admin_graphql_api_id": "gid://…", "updated_at": …}`, `{"id": 123}`, a bare integer, a
/// numeric string, or a bare gid string.
fn variant_reference(
    item: &Value,
    path: &str,
) -> Result<(VariantId, Option<DateTime<Utc>>), WebhookError> {
    match item {
        Value::Object(map) => {
            let entry = Obj {
                map,
                path: path.to_owned(),
            };
            let id = match (entry.non_null("admin_graphql_api_id"), entry.non_null("id")) {
                (Some(gid), _) => variant_gid(gid, &entry.path_of("admin_graphql_api_id"))?,
                (None, Some(_)) => VariantId(entry.required_id("id")?),
                (None, None) => {
                    return Err(WebhookError::MissingField {
                        path: entry.path_of("admin_graphql_api_id"),
                    });
                }
            };
            let updated_at = entry
                .optional_timestamp("updated_at")?
                .map(|t| t.with_timezone(&Utc));
            Ok((id, updated_at))
        }
        Value::String(s) if s.starts_with("gid://") => Ok((variant_gid(item, path)?, None)),
        other => Ok((VariantId(id_value(other, path)?), None)),
    }
}

fn variant_gid(value: &Value, path: &str) -> Result<VariantId, WebhookError> {
    value
        .as_str()
        .and_then(|s| VariantId::parse_gid(s).ok())
        .ok_or_else(|| {
            invalid(
                path.to_owned(),
                format!(
                    "expected a gid://shopify/ProductVariant/<id>, got {}",
                    describe_json(value)
                ),
            )
        })
}

/// An id given as a JSON integer (read exactly as `u64`) or, defensively, a string of
/// digits. Zero, negatives, floats (even `1.0`: a float may already have lost digits) and
/// anything else are refused.
fn id_value(value: &Value, path: &str) -> Result<u64, WebhookError> {
    let id = match value {
        Value::Number(n) => n.as_u64().filter(|&n| n > 0),
        Value::String(s) => parse_positive_decimal(s),
        _ => None,
    };
    id.ok_or_else(|| {
        invalid(
            path.to_owned(),
            format!(
                "expected a positive integer id, got {}",
                describe_json(value)
            ),
        )
    })
}

fn invalid(path: String, problem: String) -> WebhookError {
    WebhookError::InvalidField { path, problem }
}

/// Whether `s` is a plain non-negative decimal (a price as Shopify writes it): digits,
/// optionally `.` and more digits.
pub fn is_decimal(s: &str) -> bool {
    let (whole, fraction) = s.split_once('.').unwrap_or((s, "0"));
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    digits(whole) && digits(fraction)
}

/// Reads a Shopify timestamp, accepting the spellings seen across API versions and
/// examples:
///
/// - RFC 3339: `2021-12-31T19:00:00-05:00`, `2024-01-01T00:00:00Z`,
///   `2022-01-01T00:00:00.000Z` (fractional seconds of any length; `t`/`z` in any case);
/// - an offset without colon or without minutes: `2021-12-31T19:00:00-0500`, `…+05`;
/// - a space instead of `T`, and optionally before the offset (Ruby's `Time#to_s`):
///   `2021-12-31 19:00:00 -0500`, `2021-12-31 19:00:00 UTC`;
/// - slashes in the date (ActiveSupport's legacy JSON format): `2021/12/31 19:00:00 -0500`.
///
/// Surrounding whitespace is ignored. A timestamp without an offset is refused (`None`):
/// it cannot be placed on the timeline, and ordering updates is what timestamps are for.
pub fn parse_shopify_timestamp(input: &str) -> Option<DateTime<FixedOffset>> {
    const FORMATS: [&str; 5] = [
        "%Y-%m-%dT%H:%M:%S%.f%#z",
        "%Y-%m-%dT%H:%M:%S%.f %#z",
        "%Y-%m-%d %H:%M:%S%.f%#z",
        "%Y-%m-%d %H:%M:%S%.f %#z",
        "%Y/%m/%d %H:%M:%S%.f %#z",
    ];
    let s = input.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t);
    }
    // Spell a trailing UTC designator as an offset so one set of formats covers both.
    let normalized = ["UTC", "Z", "z"]
        .iter()
        .find_map(|suffix| s.strip_suffix(suffix))
        .map(|rest| format!("{}+00:00", rest.trim_end()));
    let s = normalized.as_deref().unwrap_or(s);
    FORMATS
        .iter()
        .find_map(|format| DateTime::parse_from_str(s, format).ok())
}

/// Typed access to one JSON object of the payload, with its path for error messages.
struct Obj<'a> {
    map: &'a Map<String, Value>,
    /// Path of this object; empty for the payload's root.
    path: String,
}

impl<'a> Obj<'a> {
    fn path_of(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// The value of `key` unless absent or null (Shopify uses both for "no value").
    fn non_null(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn invalid_type(&self, key: &str, expected: &str, got: &Value) -> WebhookError {
        invalid(
            self.path_of(key),
            format!("expected {expected}, got {}", describe_json(got)),
        )
    }

    fn required_id(&self, key: &str) -> Result<u64, WebhookError> {
        match self.map.get(key) {
            None => Err(WebhookError::MissingField {
                path: self.path_of(key),
            }),
            Some(value) => id_value(value, &self.path_of(key)),
        }
    }

    fn optional_id(&self, key: &str) -> Result<Option<u64>, WebhookError> {
        self.non_null(key)
            .map(|value| id_value(value, &self.path_of(key)))
            .transpose()
    }

    fn optional_string(&self, key: &str) -> Result<Option<String>, WebhookError> {
        match self.non_null(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(self.invalid_type(key, "a string or null", other)),
        }
    }

    fn required_array(&self, key: &str) -> Result<&'a Vec<Value>, WebhookError> {
        match self.map.get(key) {
            None => Err(WebhookError::MissingField {
                path: self.path_of(key),
            }),
            Some(Value::Array(items)) => Ok(items),
            Some(other) => Err(self.invalid_type(key, "an array", other)),
        }
    }

    /// A descriptive string: `None` when absent or null, and when not a string (then reported
    /// in `unreadable`).
    fn descriptive_string(
        &self,
        key: &str,
        field: DescriptiveField,
        unreadable: &mut Vec<UnreadableField>,
    ) -> Option<String> {
        match self.non_null(key)? {
            Value::String(s) => Some(s.clone()),
            other => {
                self.report(key, field, "a string or null", other, unreadable);
                None
            }
        }
    }

    /// A descriptive non-negative integer (a variant's `position`).
    fn descriptive_u32(
        &self,
        key: &str,
        field: DescriptiveField,
        unreadable: &mut Vec<UnreadableField>,
    ) -> Option<u32> {
        let value = self.non_null(key)?;
        let read = value.as_u64().and_then(|n| u32::try_from(n).ok());
        if read.is_none() {
            self.report(key, field, "a non-negative integer", value, unreadable);
        }
        read
    }

    /// A price: a decimal string such as `"19.99"`. A JSON number is accepted defensively
    /// when its text is a plain decimal (`19.99`, not `1e3`). Anything else is unreadable.
    fn descriptive_price(
        &self,
        key: &str,
        unreadable: &mut Vec<UnreadableField>,
    ) -> Option<String> {
        let value = self.non_null(key)?;
        let text = match value {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        match text {
            Some(text) if is_decimal(&text) => Some(text),
            _ => {
                self.report(
                    key,
                    DescriptiveField::Price,
                    "a decimal price such as \"19.99\"",
                    value,
                    unreadable,
                );
                None
            }
        }
    }

    fn report(
        &self,
        key: &str,
        field: DescriptiveField,
        expected: &str,
        got: &Value,
        unreadable: &mut Vec<UnreadableField>,
    ) {
        unreadable.push(UnreadableField {
            field,
            path: self.path_of(key),
            problem: format!("expected {expected}, got {}", describe_json(got)),
        });
    }

    /// A timestamp in any spelling [`parse_shopify_timestamp`] reads; null, absent and the
    /// empty string all mean "not given".
    fn optional_timestamp(&self, key: &str) -> Result<Option<DateTime<FixedOffset>>, WebhookError> {
        match self.non_null(key) {
            None => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(value @ Value::String(s)) => parse_shopify_timestamp(s)
                .map(Some)
                .ok_or_else(|| self.invalid_type(key, "an ISO 8601 timestamp with offset", value)),
            Some(other) => Err(self.invalid_type(key, "a timestamp string or null", other)),
        }
    }
}
