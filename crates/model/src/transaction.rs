//! The WOS inventory transaction: its typed form and its strict parser.
//!
//! This module owns what a message on `wos.transactions` means (CONTRACT §3.2) and the
//! validation rules of `contract/wos-inventory-transaction.v1.schema.json`, implemented by
//! hand so that every refusal names the field and the reason in one line (it becomes the
//! `x-error` header of a `malformed` dead letter). The schema is authoritative; the two
//! deliberate differences are documented on [`parse_transaction`].

use chrono::{DateTime, FixedOffset, SecondsFormat};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

use crate::validate::{
    SHOP_DOMAIN_PATTERN, control_char_problem, describe_json, find_control_char, is_shop_domain,
    json_type_name,
};

/// The largest quantity the schema allows in `quantity`, `previous_quantity` and
/// `counted_quantity`.
pub const MAX_QUANTITY: u32 = 1_000_000_000;

/// One WOS inventory transaction, validated against the v1 schema.
///
/// Fields that the schema allows but that do not apply to the transaction's type (e.g. a
/// `quantity` on a `cycle_count`) are type-checked by the parser and then dropped: they have
/// no meaning for the delta rules.
///
/// There is deliberately no `Deserialize`: [`parse_transaction`] is the only way in, so the
/// schema's rules cannot be bypassed. `Serialize` writes the contract's JSON shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryTransaction {
    /// WOS's id; unique per shop; the idempotency key of the whole pipeline.
    pub transaction_id: String,
    /// The Shopify store the item belongs to, e.g. `acme.myshopify.com`.
    pub shop_domain: String,
    /// What happened, with the fields that belong to that type.
    pub kind: TransactionKind,
    /// The WOS item code.
    pub sku: String,
    /// WOS warehouse code (mapped to a Shopify location by the shop's configuration).
    pub warehouse: String,
    /// WOS bin within the warehouse; may be the empty string (the schema allows it).
    pub location: Option<String>,
    /// When it happened in WOS, with the offset WOS sent.
    pub occurred_at: DateTime<FixedOffset>,
    /// Who did it, if WOS said.
    pub user: Option<String>,
}

/// The type of an [`InventoryTransaction`] and the fields that only that type carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransactionKind {
    /// Stock put away into the warehouse.
    Put {
        /// Units added, 1..=[`MAX_QUANTITY`].
        quantity: u32,
    },
    /// Stock pulled out of the warehouse (not for an order).
    Pull {
        /// Units removed, 1..=[`MAX_QUANTITY`].
        quantity: u32,
    },
    /// A count of one bin: the difference between what WOS believed and what was counted.
    CycleCount {
        /// What WOS believed was there, 0..=[`MAX_QUANTITY`].
        previous_quantity: u32,
        /// What was counted, 0..=[`MAX_QUANTITY`].
        counted_quantity: u32,
    },
    /// Stock moved from `warehouse`/`location` to `to_warehouse`/`to_location`.
    Move {
        /// Units moved, 1..=[`MAX_QUANTITY`].
        quantity: u32,
        /// Destination warehouse code.
        to_warehouse: String,
        /// Destination bin; may be the empty string.
        to_location: Option<String>,
    },
    /// Stock picked for an order.
    Pick {
        /// Units picked, 1..=[`MAX_QUANTITY`].
        quantity: u32,
        /// The sales channel of the order, e.g. `shopify`.
        order_source: String,
        /// The order's id in that channel, if WOS said.
        order_id: Option<String>,
    },
}

impl TransactionKind {
    /// Every type name, in schema order (for pre-registering metric labels).
    pub const TYPE_NAMES: [&'static str; 5] = ["put", "pull", "cycle_count", "move", "pick"];

    /// The schema's `type` value: `put`, `pull`, `cycle_count`, `move` or `pick`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Put { .. } => "put",
            Self::Pull { .. } => "pull",
            Self::CycleCount { .. } => "cycle_count",
            Self::Move { .. } => "move",
            Self::Pick { .. } => "pick",
        }
    }
}

impl InventoryTransaction {
    /// The schema's `type` value of this transaction (see [`TransactionKind::type_name`]).
    pub fn type_name(&self) -> &'static str {
        self.kind.type_name()
    }
}

impl Serialize for InventoryTransaction {
    /// Writes the contract's JSON shape, so that [`parse_transaction`] of the output gives
    /// back an equal value (tests and the sandbox publish transactions this way).
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("transaction_id", &self.transaction_id)?;
        map.serialize_entry("shop_domain", &self.shop_domain)?;
        map.serialize_entry("type", self.type_name())?;
        map.serialize_entry("sku", &self.sku)?;
        map.serialize_entry("warehouse", &self.warehouse)?;
        if let Some(location) = &self.location {
            map.serialize_entry("location", location)?;
        }
        match &self.kind {
            TransactionKind::Put { quantity } | TransactionKind::Pull { quantity } => {
                map.serialize_entry("quantity", quantity)?;
            }
            TransactionKind::CycleCount {
                previous_quantity,
                counted_quantity,
            } => {
                map.serialize_entry("previous_quantity", previous_quantity)?;
                map.serialize_entry("counted_quantity", counted_quantity)?;
            }
            TransactionKind::Move {
                quantity,
                to_warehouse,
                to_location,
            } => {
                map.serialize_entry("quantity", quantity)?;
                map.serialize_entry("to_warehouse", to_warehouse)?;
                if let Some(to_location) = to_location {
                    map.serialize_entry("to_location", to_location)?;
                }
            }
            TransactionKind::Pick {
                quantity,
                order_source,
                order_id,
            } => {
                map.serialize_entry("quantity", quantity)?;
                map.serialize_entry("order_source", order_source)?;
                if let Some(order_id) = order_id {
                    map.serialize_entry("order_id", order_id)?;
                }
            }
        }
        // `Z` for UTC, the original offset otherwise; sub-second digits only when present.
        let occurred_at = self
            .occurred_at
            .to_rfc3339_opts(SecondsFormat::AutoSi, true);
        map.serialize_entry("occurred_at", &occurred_at)?;
        if let Some(user) = &self.user {
            map.serialize_entry("user", user)?;
        }
        map.end()
    }
}

/// Why a body is not a valid WOS inventory transaction. `Display` is one line, safe to put
/// in an AMQP header: echoed input is escaped and cut to a few dozen characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransactionError {
    /// The body is not UTF-8 (JSON must be).
    #[error("body is not UTF-8 (invalid byte at offset {offset})")]
    NotUtf8 {
        /// Byte offset of the first invalid sequence.
        offset: usize,
    },
    /// The body is not well-formed JSON; carries `serde_json`'s position-only message.
    #[error("body is not JSON: {0}")]
    NotJson(String),
    /// The body is JSON but not an object.
    #[error("body must be a JSON object, got {found}")]
    NotObject {
        /// The JSON type found instead ("array", "string", …).
        found: &'static str,
    },
    /// One field breaks the schema.
    #[error("field `{field}`: {problem}")]
    Field {
        /// The schema property name, e.g. `quantity`.
        field: &'static str,
        /// What is wrong, e.g. "must be an integer between 1 and 1000000000, got -3".
        problem: String,
    },
}

impl TransactionError {
    /// The offending field, when the error is about one field.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Self::Field { field, .. } => Some(*field),
            _ => None,
        }
    }
}

/// The properties the schema requires for every type, in schema order.
const REQUIRED: [&str; 6] = [
    "transaction_id",
    "shop_domain",
    "type",
    "sku",
    "warehouse",
    "occurred_at",
];

/// Parses and validates one WOS inventory transaction (a message body on `wos.transactions`).
///
/// Rules are the v1 JSON Schema's, checked in a fixed order so the reported error is
/// deterministic: body (UTF-8, JSON, object), then missing always-required properties, then
/// every present property's type and format in schema order, then the per-type requirements.
/// Only the first problem is reported. Unknown properties, and known ones that do not apply
/// to the type, are accepted (the schema has no `additionalProperties: false`); the latter are
/// still type-checked because the schema's `properties` apply whatever the type. Optional
/// properties given as JSON `null` are refused: the schema types them as strings.
///
/// Deliberate differences from a generic JSON Schema validator:
/// - integers must be written as JSON integers: `1.0` and `1e2` are refused although JSON
///   Schema's `integer` would accept them. WOS writes integers; anything else is a sender bug
///   that should be dead-lettered, not rounded.
/// - `occurred_at` is checked with `chrono`'s RFC 3339 parser, which also accepts a space
///   instead of the `T` (RFC 3339 §5.6 allows it "for readability").
///
/// Duplicate keys: the last occurrence wins (`serde_json`'s behaviour).
pub fn parse_transaction(bytes: &[u8]) -> Result<InventoryTransaction, TransactionError> {
    let text = std::str::from_utf8(bytes).map_err(|e| TransactionError::NotUtf8 {
        offset: e.valid_up_to(),
    })?;
    let value: Value =
        serde_json::from_str(text).map_err(|e| TransactionError::NotJson(e.to_string()))?;
    let Value::Object(obj) = &value else {
        return Err(TransactionError::NotObject {
            found: json_type_name(&value),
        });
    };
    let fields = Fields(obj);

    if let Some(missing) = REQUIRED.iter().find(|field| !obj.contains_key(**field)) {
        return Err(field_error(missing, "is required".to_owned()));
    }

    // Every present property, in schema order.
    let transaction_id = fields.text("transaction_id", 1, 128)?;
    let shop_domain = fields.shop_domain("shop_domain")?;
    // `type` decides the rest, and its presence is already checked.
    let type_name = always_required("type", fields.type_name("type")?)?;
    let sku = fields.text("sku", 1, 255)?;
    let warehouse = fields.text("warehouse", 1, 64)?;
    let location = fields.text("location", 0, 64)?;
    let quantity = fields.integer("quantity", 1)?;
    let previous_quantity = fields.integer("previous_quantity", 0)?;
    let counted_quantity = fields.integer("counted_quantity", 0)?;
    let to_warehouse = fields.text("to_warehouse", 1, 64)?;
    let to_location = fields.text("to_location", 0, 64)?;
    let order_source = fields.text("order_source", 1, 64)?;
    let order_id = fields.text("order_id", 0, 128)?;
    let occurred_at = fields.date_time("occurred_at")?;
    let user = fields.text("user", 0, 128)?;

    // The schema's `allOf` conditionals, in schema order.
    let kind = match type_name {
        "put" => TransactionKind::Put {
            quantity: required_for("quantity", quantity, type_name)?,
        },
        "pull" => TransactionKind::Pull {
            quantity: required_for("quantity", quantity, type_name)?,
        },
        "pick" => TransactionKind::Pick {
            quantity: required_for("quantity", quantity, type_name)?,
            order_source: required_for("order_source", order_source, type_name)?,
            order_id,
        },
        "move" => TransactionKind::Move {
            quantity: required_for("quantity", quantity, type_name)?,
            to_warehouse: required_for("to_warehouse", to_warehouse, type_name)?,
            to_location,
        },
        // `type_name` is one of the five names; the schema's enum was checked above.
        _ => TransactionKind::CycleCount {
            previous_quantity: required_for("previous_quantity", previous_quantity, type_name)?,
            counted_quantity: required_for("counted_quantity", counted_quantity, type_name)?,
        },
    };

    Ok(InventoryTransaction {
        transaction_id: always_required("transaction_id", transaction_id)?,
        shop_domain: always_required("shop_domain", shop_domain)?,
        kind,
        sku: always_required("sku", sku)?,
        warehouse: always_required("warehouse", warehouse)?,
        location,
        occurred_at: always_required("occurred_at", occurred_at)?,
        user,
    })
}

fn field_error(field: &'static str, problem: String) -> TransactionError {
    TransactionError::Field { field, problem }
}

/// Unwraps an always-required property. Presence was checked before any property was read,
/// so the error branch is only a guard against the two lists drifting apart.
fn always_required<T>(field: &'static str, value: Option<T>) -> Result<T, TransactionError> {
    value.ok_or_else(|| field_error(field, "is required".to_owned()))
}

fn required_for<T>(
    field: &'static str,
    value: Option<T>,
    type_name: &str,
) -> Result<T, TransactionError> {
    value.ok_or_else(|| field_error(field, format!("is required when type is `{type_name}`")))
}

/// Typed, schema-checked access to the properties of the body object. Each accessor returns
/// `Ok(None)` for an absent property and an error for a present one that breaks its rule.
struct Fields<'a>(&'a Map<String, Value>);

impl<'a> Fields<'a> {
    fn string(&self, field: &'static str) -> Result<Option<&'a str>, TransactionError> {
        match self.0.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(field_error(
                field,
                format!("must be a string, got {}", describe_json(other)),
            )),
        }
    }

    /// A string with `min..=max` characters (Unicode scalar values, as JSON Schema counts)
    /// and no control characters.
    fn text(
        &self,
        field: &'static str,
        min: usize,
        max: usize,
    ) -> Result<Option<String>, TransactionError> {
        let Some(s) = self.string(field)? else {
            return Ok(None);
        };
        let length = s.chars().count();
        if length < min {
            let problem = if min == 1 {
                "must not be empty".to_owned()
            } else {
                format!("must be at least {min} characters, got {length}")
            };
            return Err(field_error(field, problem));
        }
        if length > max {
            return Err(field_error(
                field,
                format!("must be at most {max} characters, got {length}"),
            ));
        }
        if let Some((index, c)) = find_control_char(s) {
            return Err(field_error(field, control_char_problem(index, c)));
        }
        Ok(Some(s.to_owned()))
    }

    fn shop_domain(&self, field: &'static str) -> Result<Option<String>, TransactionError> {
        match self.string(field)? {
            None => Ok(None),
            Some(s) if is_shop_domain(s) => Ok(Some(s.to_owned())),
            Some(s) => Err(field_error(
                field,
                format!(
                    "must match `{SHOP_DOMAIN_PATTERN}`, got {}",
                    describe_json(&Value::String(s.to_owned()))
                ),
            )),
        }
    }

    /// The `type` enum; returns the canonical `'static` name.
    fn type_name(&self, field: &'static str) -> Result<Option<&'static str>, TransactionError> {
        let Some(value) = self.0.get(field) else {
            return Ok(None);
        };
        let known = TransactionKind::TYPE_NAMES
            .iter()
            .find(|name| value.as_str() == Some(**name));
        match known {
            Some(name) => Ok(Some(*name)),
            None => Err(field_error(
                field,
                format!(
                    "must be one of {}, got {}",
                    TransactionKind::TYPE_NAMES.join(", "),
                    describe_json(value)
                ),
            )),
        }
    }

    /// A JSON integer in `min..=MAX_QUANTITY`. Floats (even `1.0`) are refused: see
    /// [`parse_transaction`].
    fn integer(&self, field: &'static str, min: u32) -> Result<Option<u32>, TransactionError> {
        let Some(value) = self.0.get(field) else {
            return Ok(None);
        };
        value
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| (min..=MAX_QUANTITY).contains(n))
            .map(Some)
            .ok_or_else(|| {
                field_error(
                    field,
                    format!(
                        "must be an integer between {min} and {MAX_QUANTITY}, got {}",
                        describe_json(value)
                    ),
                )
            })
    }

    fn date_time(
        &self,
        field: &'static str,
    ) -> Result<Option<DateTime<FixedOffset>>, TransactionError> {
        let Some(s) = self.string(field)? else {
            return Ok(None);
        };
        DateTime::parse_from_rfc3339(s).map(Some).map_err(|_| {
            field_error(
                field,
                format!(
                    "must be an RFC 3339 date-time such as 2026-11-26T14:03:11Z, got {}",
                    describe_json(&Value::String(s.to_owned()))
                ),
            )
        })
    }
}

#[cfg(test)]
mod tests;
