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
mod tests {
    use super::*;
    use serde_json::json;

    fn base(type_name: &str) -> Value {
        let mut v = json!({
            "transaction_id": "t-1",
            "shop_domain": "acme.myshopify.com",
            "type": type_name,
            "sku": "20A642-XL",
            "warehouse": "MAIN",
            "occurred_at": "2026-11-26T14:03:11Z",
        });
        let extra = match type_name {
            "put" | "pull" => json!({"quantity": 5}),
            "cycle_count" => json!({"previous_quantity": 10, "counted_quantity": 8}),
            "move" => json!({"quantity": 3, "to_warehouse": "EAST"}),
            "pick" => json!({"quantity": 1, "order_source": "shopify"}),
            _ => json!({}),
        };
        for (k, val) in extra.as_object().expect("object") {
            v[k] = val.clone();
        }
        v
    }

    fn parse_value(v: &Value) -> Result<InventoryTransaction, TransactionError> {
        parse_transaction(&serde_json::to_vec(v).expect("serialize"))
    }

    fn with(mut v: Value, field: &str, value: Value) -> Value {
        v[field] = value;
        v
    }

    fn without(mut v: Value, field: &str) -> Value {
        v.as_object_mut().expect("object").remove(field);
        v
    }

    fn field_err(field: &'static str, problem: &str) -> TransactionError {
        TransactionError::Field {
            field,
            problem: problem.to_owned(),
        }
    }

    fn ts(s: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(s).expect("timestamp")
    }

    #[test]
    fn schema_examples_parse() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../contract/wos-inventory-transaction.v1.schema.json"
        );
        let text = std::fs::read_to_string(path).expect("read the contract's schema");
        let schema: Value = serde_json::from_str(&text).expect("schema is JSON");
        let examples = schema["examples"].as_array().expect("examples");
        assert_eq!(examples.len(), 3);
        let parsed: Vec<_> = examples
            .iter()
            .map(|e| parse_value(e).expect("example parses"))
            .collect();
        assert_eq!(
            parsed[0],
            InventoryTransaction {
                transaction_id: "cc-2026-11-26-000173".into(),
                shop_domain: "acme.myshopify.com".into(),
                kind: TransactionKind::CycleCount {
                    previous_quantity: 10,
                    counted_quantity: 8
                },
                sku: "20A642-XL".into(),
                warehouse: "MAIN".into(),
                location: Some("A-01-03".into()),
                occurred_at: ts("2026-11-26T14:03:11Z"),
                user: Some("jdoe".into()),
            }
        );
        assert_eq!(parsed[1].kind, TransactionKind::Put { quantity: 24 });
        assert_eq!(parsed[1].user, None);
        assert_eq!(
            parsed[2].kind,
            TransactionKind::Pick {
                quantity: 1,
                order_source: "shopify".into(),
                order_id: Some("#1042".into())
            }
        );
    }

    #[test]
    fn every_type_parses_to_its_kind() {
        let cases = [
            ("put", TransactionKind::Put { quantity: 5 }),
            ("pull", TransactionKind::Pull { quantity: 5 }),
            (
                "cycle_count",
                TransactionKind::CycleCount {
                    previous_quantity: 10,
                    counted_quantity: 8,
                },
            ),
            (
                "move",
                TransactionKind::Move {
                    quantity: 3,
                    to_warehouse: "EAST".into(),
                    to_location: None,
                },
            ),
            (
                "pick",
                TransactionKind::Pick {
                    quantity: 1,
                    order_source: "shopify".into(),
                    order_id: None,
                },
            ),
        ];
        for (type_name, kind) in cases {
            let tx = parse_value(&base(type_name)).expect(type_name);
            assert_eq!(tx.kind, kind);
            assert_eq!(tx.type_name(), type_name);
            assert_eq!(tx.kind.type_name(), type_name);
            assert_eq!(tx.transaction_id, "t-1");
            assert_eq!(tx.shop_domain, "acme.myshopify.com");
            assert_eq!(tx.sku, "20A642-XL");
            assert_eq!(tx.warehouse, "MAIN");
            assert_eq!(tx.location, None);
            assert_eq!(tx.occurred_at, ts("2026-11-26T14:03:11Z"));
        }
        assert_eq!(
            TransactionKind::TYPE_NAMES,
            ["put", "pull", "cycle_count", "move", "pick"]
        );
    }

    #[test]
    fn optional_fields_are_kept() {
        let v = json!({
            "transaction_id": "mv-1",
            "shop_domain": "acme.myshopify.com",
            "type": "move",
            "sku": "S",
            "warehouse": "MAIN",
            "location": "",
            "quantity": 2,
            "to_warehouse": "EAST",
            "to_location": "B-1",
            "occurred_at": "2026-11-26T09:03:11.250-05:00",
            "user": "jdoe",
        });
        let tx = parse_value(&v).expect("valid");
        assert_eq!(tx.location.as_deref(), Some(""));
        assert_eq!(tx.user.as_deref(), Some("jdoe"));
        assert_eq!(
            tx.kind,
            TransactionKind::Move {
                quantity: 2,
                to_warehouse: "EAST".into(),
                to_location: Some("B-1".into())
            }
        );
        assert_eq!(tx.occurred_at.offset().local_minus_utc(), -5 * 3600);
        assert_eq!(tx.occurred_at, ts("2026-11-26T14:03:11.25Z"));
    }

    #[test]
    fn inapplicable_and_unknown_fields_are_accepted_and_dropped() {
        let v = with(
            with(base("cycle_count"), "quantity", json!(7)),
            "order_source",
            json!("pos"),
        );
        let v = with(v, "extra", json!({"nested": [1, 2]}));
        let tx = parse_value(&v).expect("valid");
        assert_eq!(
            tx.kind,
            TransactionKind::CycleCount {
                previous_quantity: 10,
                counted_quantity: 8
            }
        );
    }

    #[test]
    fn inapplicable_fields_are_still_type_checked() {
        let v = with(base("cycle_count"), "quantity", json!(0));
        assert_eq!(
            parse_value(&v),
            Err(field_err(
                "quantity",
                "must be an integer between 1 and 1000000000, got 0"
            ))
        );
        let v = with(base("put"), "to_warehouse", json!(""));
        assert_eq!(
            parse_value(&v),
            Err(field_err("to_warehouse", "must not be empty"))
        );
        let v = with(base("put"), "previous_quantity", json!(-1));
        assert_eq!(
            parse_value(&v).map_err(|e| e.field()),
            Err(Some("previous_quantity"))
        );
    }

    #[test]
    fn body_level_errors() {
        assert_eq!(
            parse_transaction(b"\xff\xfe{}"),
            Err(TransactionError::NotUtf8 { offset: 0 })
        );
        assert_eq!(
            parse_transaction(b"{\"sku\": \"a\xc3\"}"),
            Err(TransactionError::NotUtf8 { offset: 10 })
        );
        for body in [
            &b""[..],
            b"{",
            b"{\"a\":}",
            b"nul",
            b"{} {}",
            b"\xef\xbb\xbf{}",
        ] {
            let err = parse_transaction(body).expect_err("not JSON");
            assert!(matches!(err, TransactionError::NotJson(_)), "{err:?}");
            assert!(err.to_string().starts_with("body is not JSON: "), "{err}");
        }
        for (body, found) in [
            ("[]", "array"),
            ("\"x\"", "string"),
            ("1", "integer"),
            ("1.5", "number"),
            ("null", "null"),
            ("true", "boolean"),
        ] {
            let err = parse_transaction(body.as_bytes()).expect_err(body);
            assert_eq!(err, TransactionError::NotObject { found });
            assert_eq!(
                err.to_string(),
                format!("body must be a JSON object, got {found}")
            );
            assert_eq!(err.field(), None);
        }
    }

    #[test]
    fn always_required_fields() {
        for field in REQUIRED {
            for type_name in TransactionKind::TYPE_NAMES {
                let err = parse_value(&without(base(type_name), field)).expect_err(field);
                assert_eq!(err, field_err(field, "is required"));
                assert_eq!(err.to_string(), format!("field `{field}`: is required"));
            }
        }
        // Missing fields are reported before problems in present ones.
        let v = with(without(base("put"), "sku"), "quantity", json!(-1));
        assert_eq!(parse_value(&v), Err(field_err("sku", "is required")));
    }

    #[test]
    fn conditional_requirements() {
        let cases: [(&str, &str); 8] = [
            ("put", "quantity"),
            ("pull", "quantity"),
            ("pick", "quantity"),
            ("pick", "order_source"),
            ("move", "quantity"),
            ("move", "to_warehouse"),
            ("cycle_count", "previous_quantity"),
            ("cycle_count", "counted_quantity"),
        ];
        for (type_name, field) in cases {
            let err = parse_value(&without(base(type_name), field)).expect_err(field);
            assert_eq!(
                err.to_string(),
                format!("field `{field}`: is required when type is `{type_name}`")
            );
            assert_eq!(err.field(), Some(field));
        }
        // Optional per-type fields really are optional.
        for (type_name, field) in [("move", "to_location"), ("pick", "order_id")] {
            assert!(parse_value(&without(base(type_name), field)).is_ok());
        }
    }

    #[test]
    fn type_enum() {
        for bad in [
            json!("PUT"),
            json!("drop"),
            json!(""),
            json!(1),
            json!(null),
            json!(["put"]),
        ] {
            let err = parse_value(&with(base("put"), "type", bad.clone())).expect_err("bad type");
            assert_eq!(
                err,
                field_err(
                    "type",
                    &format!(
                        "must be one of put, pull, cycle_count, move, pick, got {}",
                        describe_json(&bad)
                    )
                )
            );
        }
    }

    #[test]
    fn integer_rules() {
        let quantity_fields: [(&'static str, &str, u32); 3] = [
            ("quantity", "put", 1),
            ("previous_quantity", "cycle_count", 0),
            ("counted_quantity", "cycle_count", 0),
        ];
        for (field, type_name, min) in quantity_fields {
            let problem =
                |got: &str| format!("must be an integer between {min} and 1000000000, got {got}");
            for ok in [u64::from(min), 1, 999, 1_000_000_000] {
                let tx = parse_value(&with(base(type_name), field, json!(ok))).expect("in range");
                let value = match tx.kind {
                    TransactionKind::Put { quantity } => quantity,
                    TransactionKind::CycleCount {
                        previous_quantity,
                        counted_quantity,
                    } => {
                        if field == "previous_quantity" {
                            previous_quantity
                        } else {
                            counted_quantity
                        }
                    }
                    other => panic!("unexpected kind {other:?}"),
                };
                assert_eq!(u64::from(value), ok);
            }
            let mut bad = vec![
                (json!(1_000_000_001), "1000000001".to_owned()),
                (json!(u64::MAX), u64::MAX.to_string()),
                (json!(-3), "-3".to_owned()),
                (json!(i64::MIN), i64::MIN.to_string()),
                (json!(1.0), "1.0".to_owned()),
                (json!(2.5), "2.5".to_owned()),
                (json!("5"), "\"5\"".to_owned()),
                (json!(null), "null".to_owned()),
                (json!(true), "true".to_owned()),
                (json!([5]), "an array".to_owned()),
                (json!({"n": 5}), "an object".to_owned()),
            ];
            if min == 1 {
                bad.push((json!(0), "0".to_owned()));
            }
            for (value, shown) in bad {
                let err =
                    parse_value(&with(base(type_name), field, value)).expect_err("out of range");
                assert_eq!(err, field_err(field, &problem(&shown)));
            }
        }
        // Exponent and float literals straight from the wire.
        for literal in ["1e2", "5.0", "100000000000000000000000"] {
            let body = format!(
                r#"{{"transaction_id":"t","shop_domain":"a.myshopify.com","type":"put","sku":"s","warehouse":"W","occurred_at":"2026-01-01T00:00:00Z","quantity":{literal}}}"#
            );
            let err = parse_transaction(body.as_bytes()).expect_err(literal);
            assert_eq!(err.field(), Some("quantity"), "{literal}");
        }
        assert_eq!(
            field_err(
                "quantity",
                "must be an integer between 1 and 1000000000, got -3"
            )
            .to_string(),
            "field `quantity`: must be an integer between 1 and 1000000000, got -3"
        );
    }

    #[test]
    fn string_length_rules_count_characters() {
        // (field, type that makes it meaningful, min, max)
        let string_fields: [(&'static str, &str, usize, usize); 10] = [
            ("transaction_id", "put", 1, 128),
            ("sku", "put", 1, 255),
            ("warehouse", "put", 1, 64),
            ("location", "put", 0, 64),
            ("to_warehouse", "move", 1, 64),
            ("to_location", "move", 0, 64),
            ("order_source", "pick", 1, 64),
            ("order_id", "pick", 0, 128),
            ("user", "put", 0, 128),
            // Also checked on a type it does not apply to.
            ("order_id", "put", 0, 128),
        ];
        for (field, type_name, min, max) in string_fields {
            // Multi-byte characters: the limit is in characters, not bytes.
            let at_max = "é".repeat(max);
            assert!(
                parse_value(&with(base(type_name), field, json!(at_max))).is_ok(),
                "{field} at max"
            );
            let over = "é".repeat(max + 1);
            assert_eq!(
                parse_value(&with(base(type_name), field, json!(over))),
                Err(field_err(
                    field,
                    &format!("must be at most {max} characters, got {}", max + 1)
                )),
            );
            let empty = parse_value(&with(base(type_name), field, json!("")));
            if min == 0 {
                assert!(empty.is_ok(), "{field} may be empty");
            } else {
                assert_eq!(empty, Err(field_err(field, "must not be empty")));
            }
            for (value, shown) in [
                (json!(12), "12"),
                (json!(null), "null"),
                (json!(false), "false"),
                (json!(["a"]), "an array"),
            ] {
                assert_eq!(
                    parse_value(&with(base(type_name), field, value)),
                    Err(field_err(field, &format!("must be a string, got {shown}"))),
                );
            }
        }
        // Characters outside the BMP count once each.
        let emoji = "😀".repeat(64);
        assert!(parse_value(&with(base("put"), "warehouse", json!(emoji))).is_ok());
    }

    #[test]
    fn control_characters_are_refused_in_every_string() {
        let fields = [
            ("transaction_id", "put"),
            ("sku", "put"),
            ("warehouse", "put"),
            ("location", "put"),
            ("to_warehouse", "move"),
            ("to_location", "move"),
            ("order_source", "pick"),
            ("order_id", "pick"),
            ("user", "put"),
        ];
        for (field, type_name) in fields {
            for (c, code) in [
                ('\u{0}', "0000"),
                ('\n', "000A"),
                ('\u{1f}', "001F"),
                ('\u{7f}', "007F"),
            ] {
                let value = format!("ab{c}c");
                assert_eq!(
                    parse_value(&with(base(type_name), field, json!(value))),
                    Err(field_err(
                        field,
                        &format!(
                            "must not contain control characters (found U+{code} at character 3)"
                        )
                    )),
                );
            }
            // Characters just outside the forbidden ranges pass.
            for ok in ["a b", "\u{80}", "\u{2028}", "~"] {
                assert!(
                    parse_value(&with(base(type_name), field, json!(ok))).is_ok(),
                    "{ok:?}"
                );
            }
        }
        // The domain and the timestamp refuse them through their own formats.
        let v = with(base("put"), "shop_domain", json!("acme\n.myshopify.com"));
        assert_eq!(
            parse_value(&v).map_err(|e| e.field()),
            Err(Some("shop_domain"))
        );
        let v = with(base("put"), "occurred_at", json!("2026-11-26T14:03:11Z\n"));
        assert_eq!(
            parse_value(&v).map_err(|e| e.field()),
            Err(Some("occurred_at"))
        );
    }

    #[test]
    fn shop_domain_rule() {
        for ok in ["acme.myshopify.com", "0-a.myshopify.com"] {
            assert!(parse_value(&with(base("put"), "shop_domain", json!(ok))).is_ok());
        }
        for bad in [
            "Acme.myshopify.com",
            "acme.com",
            "",
            "-a.myshopify.com",
            "acme.myshopify.com ",
        ] {
            assert_eq!(
                parse_value(&with(base("put"), "shop_domain", json!(bad))),
                Err(field_err(
                    "shop_domain",
                    &format!(
                        r"must match `^[a-z0-9][a-z0-9-]*\.myshopify\.com$`, got {}",
                        describe_json(&json!(bad))
                    )
                )),
            );
        }
        assert_eq!(
            parse_value(&with(base("put"), "shop_domain", json!(5))),
            Err(field_err("shop_domain", "must be a string, got 5"))
        );
    }

    #[test]
    fn occurred_at_rule() {
        for (ok, utc) in [
            ("2026-11-26T14:03:11Z", "2026-11-26T14:03:11Z"),
            ("2026-11-26T14:03:11z", "2026-11-26T14:03:11Z"),
            ("2026-11-26t14:03:11+00:00", "2026-11-26T14:03:11Z"),
            ("2026-11-26T09:03:11-05:00", "2026-11-26T14:03:11Z"),
            (
                "2026-11-26T14:03:11.123456789Z",
                "2026-11-26T14:03:11.123456789Z",
            ),
            ("2026-11-26 14:03:11Z", "2026-11-26T14:03:11Z"),
        ] {
            let tx = parse_value(&with(base("put"), "occurred_at", json!(ok))).expect(ok);
            assert_eq!(tx.occurred_at, ts(utc), "{ok}");
        }
        for bad in [
            "2026-11-26",
            "2026-11-26T14:03:11",
            "2026-11-26T14:03Z",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "26-11-26T14:03:11Z",
            "2026-11-26T14:03:11+0500",
            "1764165791",
            "",
        ] {
            assert_eq!(
                parse_value(&with(base("put"), "occurred_at", json!(bad))),
                Err(field_err(
                    "occurred_at",
                    &format!(
                        "must be an RFC 3339 date-time such as 2026-11-26T14:03:11Z, got {}",
                        describe_json(&json!(bad))
                    )
                )),
                "{bad}"
            );
        }
        assert_eq!(
            parse_value(&with(base("put"), "occurred_at", json!(1764165791))),
            Err(field_err("occurred_at", "must be a string, got 1764165791"))
        );
    }

    #[test]
    fn errors_are_one_line_and_bounded() {
        let long_evil = format!("{}\n{}", "x".repeat(10), "y".repeat(10_000));
        let v = with(base("put"), "shop_domain", json!(long_evil));
        let message = parse_value(&v).expect_err("bad domain").to_string();
        assert!(!message.contains('\n'), "{message}");
        assert!(message.chars().count() < 200, "{message}");
        assert!(message.contains("xxxxxxxxxx\\nyyy"), "{message}");
        assert!(message.ends_with("…\""), "{message}");
    }

    #[test]
    fn fields_are_checked_in_schema_order() {
        // Both `sku` and `user` are wrong: `sku` comes first in the schema.
        let v = with(with(base("put"), "user", json!(1)), "sku", json!(""));
        assert_eq!(parse_value(&v), Err(field_err("sku", "must not be empty")));
        // A type error beats a per-type requirement.
        let v = with(without(base("move"), "to_warehouse"), "user", json!(1));
        assert_eq!(parse_value(&v).map_err(|e| e.field()), Err(Some("user")));
    }

    #[test]
    fn duplicate_keys_keep_the_last() {
        let body = br#"{"transaction_id":"t","shop_domain":"a.myshopify.com","type":"put","sku":"s","warehouse":"W","occurred_at":"2026-01-01T00:00:00Z","quantity":1,"quantity":2}"#;
        let tx = parse_transaction(body).expect("valid");
        assert_eq!(tx.kind, TransactionKind::Put { quantity: 2 });
    }

    #[test]
    fn serialize_round_trips_every_shape() {
        let full = |kind: TransactionKind| InventoryTransaction {
            transaction_id: "t-9".into(),
            shop_domain: "acme.myshopify.com".into(),
            kind,
            sku: "S\"Q".into(),
            warehouse: "MAIN".into(),
            location: Some("A-1".into()),
            occurred_at: ts("2026-11-26T09:03:11.5-05:00"),
            user: Some("jdoe".into()),
        };
        let kinds = [
            TransactionKind::Put { quantity: 1 },
            TransactionKind::Pull {
                quantity: MAX_QUANTITY,
            },
            TransactionKind::CycleCount {
                previous_quantity: 0,
                counted_quantity: 7,
            },
            TransactionKind::Move {
                quantity: 2,
                to_warehouse: "EAST".into(),
                to_location: Some("B".into()),
            },
            TransactionKind::Move {
                quantity: 2,
                to_warehouse: "EAST".into(),
                to_location: None,
            },
            TransactionKind::Pick {
                quantity: 3,
                order_source: "pos".into(),
                order_id: Some("#1".into()),
            },
            TransactionKind::Pick {
                quantity: 3,
                order_source: "shopify".into(),
                order_id: None,
            },
        ];
        for kind in kinds {
            let mut tx = full(kind);
            let json = serde_json::to_vec(&tx).expect("serialize");
            assert_eq!(parse_transaction(&json), Ok(tx.clone()));
            tx.location = None;
            tx.user = None;
            let json = serde_json::to_vec(&tx).expect("serialize");
            assert_eq!(parse_transaction(&json), Ok(tx));
        }
    }

    #[test]
    fn serialize_shape_is_the_contracts() {
        let tx = parse_value(&base("cycle_count")).expect("valid");
        assert_eq!(
            serde_json::to_value(&tx).expect("serialize"),
            json!({
                "transaction_id": "t-1",
                "shop_domain": "acme.myshopify.com",
                "type": "cycle_count",
                "sku": "20A642-XL",
                "warehouse": "MAIN",
                "previous_quantity": 10,
                "counted_quantity": 8,
                "occurred_at": "2026-11-26T14:03:11Z",
            })
        );
        let tx = parse_value(&with(
            base("put"),
            "occurred_at",
            json!("2026-11-26T09:03:11.250-05:00"),
        ))
        .expect("valid");
        assert_eq!(
            serde_json::to_value(&tx).expect("serialize")["occurred_at"],
            json!("2026-11-26T09:03:11.250-05:00")
        );
    }
}
