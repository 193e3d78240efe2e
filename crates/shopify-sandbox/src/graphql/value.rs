//! The response value: JSON whose object keys keep their insertion order.
//!
//! GraphQL responses list fields in selection order, and `serde_json::Map` (a sorted map in
//! this workspace) would reorder them. Keeping Shopify's order makes responses diffable
//! against the captured fixtures, and an idempotent replay byte-identical to the original.

use serde::{Serialize, Serializer, ser::SerializeMap, ser::SerializeSeq};

/// A JSON value with ordered object keys.
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    /// `null`.
    Null,
    /// `true`/`false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A string.
    Str(String),
    /// An array.
    List(Vec<Out>),
    /// An object, keys in order.
    Obj(Vec<(String, Out)>),
    /// A value kept as parsed (e.g. the variable value echoed in `INVALID_VARIABLE`).
    Json(serde_json::Value),
}

impl Out {
    /// A string value.
    pub fn str(s: impl Into<String>) -> Self {
        Self::Str(s.into())
    }

    /// An object from `(key, value)` pairs.
    pub fn obj<const N: usize>(pairs: [(&str, Out); N]) -> Self {
        Self::Obj(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }

    /// The value of `key` in an object.
    pub fn get(&self, key: &str) -> Option<&Out> {
        match self {
            Self::Obj(pairs) => pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Converts to a `serde_json::Value` (key order then depends on `serde_json`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// The JSON bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising this type cannot fail: every key is a string and there are no floats.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

impl Serialize for Out {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Null => serializer.serialize_none(),
            Self::Bool(b) => serializer.serialize_bool(*b),
            Self::Int(i) => serializer.serialize_i64(*i),
            Self::Str(s) => serializer.serialize_str(s),
            Self::List(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Self::Obj(pairs) => {
                let mut map = serializer.serialize_map(Some(pairs.len()))?;
                for (key, value) in pairs {
                    map.serialize_entry(key, value)?;
                }
                map.end()
            }
            Self::Json(value) => value.serialize(serializer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_their_order() {
        let value = Out::obj([
            ("zeta", Out::Int(1)),
            ("alpha", Out::List(vec![Out::Null, Out::Bool(true)])),
            ("mid", Out::str("x\"y")),
        ]);
        assert_eq!(
            String::from_utf8(value.to_bytes()).expect("utf8"),
            r#"{"zeta":1,"alpha":[null,true],"mid":"x\"y"}"#
        );
        assert_eq!(value.get("mid"), Some(&Out::str("x\"y")));
    }
}
