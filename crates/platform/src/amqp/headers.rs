//! Reading and writing AMQP header tables without repeating lapin's value enum everywhere.

use lapin::types::{AMQPValue, FieldTable, LongString};

/// A header's value as text, for string-typed headers (long or short strings).
pub fn header_str<'a>(headers: Option<&'a FieldTable>, name: &str) -> Option<&'a str> {
    match headers?.inner().get(name)? {
        AMQPValue::LongString(value) => std::str::from_utf8(value.as_bytes()).ok(),
        AMQPValue::ShortString(value) => Some(value.as_str()),
        _ => None,
    }
}

/// A header's value as an unsigned integer, accepting every integer width and numeric strings
/// (publishers in other languages pick different AMQP integer types for the same number).
pub fn header_u64(headers: Option<&FieldTable>, name: &str) -> Option<u64> {
    let value = headers?.inner().get(name)?;
    let number = match value {
        AMQPValue::ShortShortInt(v) => i64::from(*v),
        AMQPValue::ShortShortUInt(v) => i64::from(*v),
        AMQPValue::ShortInt(v) => i64::from(*v),
        AMQPValue::ShortUInt(v) => i64::from(*v),
        AMQPValue::LongInt(v) => i64::from(*v),
        AMQPValue::LongUInt(v) => i64::from(*v),
        AMQPValue::LongLongInt(v) => *v,
        AMQPValue::LongString(_) | AMQPValue::ShortString(_) => {
            return header_str(Some(headers?), name)?.trim().parse().ok();
        }
        _ => return None,
    };
    u64::try_from(number).ok()
}

/// Sets a string header.
pub fn set_str(table: &mut FieldTable, name: &str, value: impl Into<String>) {
    table.insert(
        name.into(),
        AMQPValue::LongString(LongString::from(value.into())),
    );
}

/// Sets an integer header.
pub fn set_i64(table: &mut FieldTable, name: &str, value: i64) {
    table.insert(name.into(), AMQPValue::LongLongInt(value));
}

/// String and integer headers as a JSON object (other value types are left out), for storing a
/// message's headers in PostgreSQL.
pub fn to_json(table: Option<&FieldTable>) -> serde_json::Value {
    let mut object = serde_json::Map::new();
    for (name, value) in table.map(FieldTable::inner).into_iter().flatten() {
        let json = match value {
            AMQPValue::LongString(_) | AMQPValue::ShortString(_) => {
                header_str(table, name.as_str())
                    .map(|text| serde_json::Value::from(text.to_owned()))
            }
            _ => header_u64(table, name.as_str())
                .map(serde_json::Value::from)
                .or_else(|| match value {
                    AMQPValue::LongLongInt(n) => Some(serde_json::Value::from(*n)),
                    AMQPValue::LongInt(n) => Some(serde_json::Value::from(*n)),
                    _ => None,
                }),
        };
        if let Some(json) = json {
            object.insert(name.to_string(), json);
        }
    }
    serde_json::Value::Object(object)
}

/// The header table of a JSON object written by [`to_json`] (strings and integers).
pub fn from_json(headers: &serde_json::Value) -> FieldTable {
    let mut table = FieldTable::default();
    for (name, value) in headers.as_object().into_iter().flatten() {
        match value {
            serde_json::Value::String(text) => set_str(&mut table, name, text.as_str()),
            serde_json::Value::Number(n) => {
                if let Some(n) = n.as_i64() {
                    set_i64(&mut table, name, n);
                }
            }
            _ => {}
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_strings_and_integers_of_any_width() {
        let mut table = FieldTable::default();
        set_str(&mut table, "s", "hello");
        set_i64(&mut table, "n", 7);
        table.insert("small".into(), AMQPValue::ShortShortUInt(3));
        table.insert("text-number".into(), AMQPValue::LongString("12".into()));
        table.insert("negative".into(), AMQPValue::LongInt(-1));
        let headers = Some(&table);
        assert_eq!(header_str(headers, "s"), Some("hello"));
        assert_eq!(header_str(headers, "n"), None);
        assert_eq!(header_u64(headers, "n"), Some(7));
        assert_eq!(header_u64(headers, "small"), Some(3));
        assert_eq!(header_u64(headers, "text-number"), Some(12));
        assert_eq!(header_u64(headers, "negative"), None);
        assert_eq!(header_u64(headers, "missing"), None);
        assert_eq!(header_u64(None, "n"), None);
    }

    #[test]
    fn headers_round_trip_through_json() {
        let mut table = FieldTable::default();
        set_str(&mut table, "x-shopify-topic", "products/update");
        set_i64(&mut table, "x-attempts", 3);
        table.insert("flag".into(), AMQPValue::Boolean(true));
        let json = to_json(Some(&table));
        assert_eq!(
            json,
            serde_json::json!({"x-shopify-topic": "products/update", "x-attempts": 3})
        );
        let back = from_json(&json);
        assert_eq!(
            header_str(Some(&back), "x-shopify-topic"),
            Some("products/update")
        );
        assert_eq!(header_u64(Some(&back), "x-attempts"), Some(3));
        assert!(!back.contains_key("flag"));
    }
}
