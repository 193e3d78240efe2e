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
}
