//! Small validation and quoting helpers shared by every parser in this crate.
//!
//! This module owns the few text rules that more than one input format enforces (the
//! control-character ban, the `*.myshopify.com` shop-domain pattern, environment variable
//! names) and the one way this crate echoes untrusted input inside an error message.
//! Keeping them in one place means the WOS transaction, the Shopify webhook and the TOML
//! configuration agree on what "a shop domain" or "a control character" is.

use std::fmt::Write as _;

/// How many characters of an untrusted value an error message echoes before cutting it off.
///
/// Error messages end up in a one-line AMQP header (`x-error`) and in logs; a 10 kB SKU
/// must not turn into a 10 kB header.
pub const ECHO_MAX_CHARS: usize = 64;

/// Whether `c` is one of the characters the WOS transaction schema forbids in strings:
/// U+0000–U+001F and U+007F (the schema's pattern `^[^\u0000-\u001f\u007f]*$`).
pub fn is_forbidden_control(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{1f}' | '\u{7f}')
}

/// The first forbidden control character in `s` as `(character index, char)`, if any.
///
/// The index counts Unicode characters, not bytes, so it matches what a person sees.
pub fn find_control_char(s: &str) -> Option<(usize, char)> {
    s.chars()
        .enumerate()
        .find(|&(_, c)| is_forbidden_control(c))
}

/// A human-readable problem statement for a control character found by
/// [`find_control_char`], e.g. "must not contain control characters (found U+000A at
/// character 3)".
pub fn control_char_problem(index: usize, c: char) -> String {
    format!(
        "must not contain control characters (found U+{:04X} at character {})",
        u32::from(c),
        index + 1
    )
}

/// The shop-domain pattern, as the schema and configuration errors quote it.
pub const SHOP_DOMAIN_PATTERN: &str = r"^[a-z0-9][a-z0-9-]*\.myshopify\.com$";

/// Whether `domain` matches the shop-domain pattern `^[a-z0-9][a-z0-9-]*\.myshopify\.com$`
/// used by the transaction schema and the configuration file.
pub fn is_shop_domain(domain: &str) -> bool {
    let Some(name) = domain.strip_suffix(".myshopify.com") else {
        return false;
    };
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    (first.is_ascii_lowercase() || first.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Whether `name` is usable as an environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
///
/// Lowercase letters are accepted because POSIX shells accept them, even though the
/// convention (and the configuration examples) use uppercase.
pub fn is_env_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Quotes an untrusted string for an error message: wrapped in double quotes, at most
/// [`ECHO_MAX_CHARS`] characters of it (then `…`), with quotes, backslashes and every
/// control or line-breaking character escaped as `\n`, `\t`, `\u{7f}` and so on.
///
/// The result is always a single line, whatever the input holds, because error messages
/// travel as one-line AMQP headers and log fields.
pub fn quote_untrusted(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(ECHO_MAX_CHARS * 2) + 2);
    out.push('"');
    push_escaped(&mut out, s, ECHO_MAX_CHARS, true);
    out.push('"');
    out
}

/// How many characters of a message built by a library from untrusted input (a serde error
/// naming an unknown key, say) [`one_line`] keeps.
pub const MESSAGE_MAX_CHARS: usize = 5 * ECHO_MAX_CHARS;

/// A message that may embed untrusted text, made fit for a one-line header or log field: at most
/// [`MESSAGE_MAX_CHARS`] characters (then `…`), every control or line-breaking character
/// escaped as [`quote_untrusted`] does. Quotes are kept as they are: the message is not quoted.
///
/// For messages this crate does not word itself (serde's "unknown field `…`" repeats a key
/// from the file as it is).
pub fn one_line(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(MESSAGE_MAX_CHARS * 2));
    push_escaped(&mut out, message, MESSAGE_MAX_CHARS, false);
    out
}

/// Appends at most `max_chars` characters of `s` (then `…`) with control and line-breaking
/// characters escaped, and quotes and backslashes too when `escape_quotes`.
fn push_escaped(out: &mut String, s: &str, max_chars: usize, escape_quotes: bool) {
    for (count, c) in s.chars().enumerate() {
        if count == max_chars {
            out.push('…');
            break;
        }
        match c {
            '"' if escape_quotes => out.push_str("\\\""),
            '\\' if escape_quotes => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            // C0/C1 controls, DEL, and the Unicode line/paragraph separators that some
            // log viewers render as line breaks.
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
}

/// Describes a JSON value for an error message ("got …"): scalars verbatim (strings via
/// [`quote_untrusted`]), containers by kind only, so nothing large or multi-line is echoed.
pub fn describe_json(value: &serde_json::Value) -> String {
    use serde_json::Value;
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        // Numbers have a bounded textual form; cut anyway in case of a huge literal.
        Value::Number(n) => truncate_chars(&n.to_string(), ECHO_MAX_CHARS),
        Value::String(s) => quote_untrusted(s),
        Value::Array(_) => "an array".to_owned(),
        Value::Object(_) => "an object".to_owned(),
    }
}

/// The JSON type name of `value` as JSON Schema spells it ("object", "array", …).
pub fn json_type_name(value: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn control_chars_are_exactly_c0_and_del() {
        for c in [
            '\u{0}', '\u{1}', '\n', '\r', '\t', '\u{1b}', '\u{1f}', '\u{7f}',
        ] {
            assert!(is_forbidden_control(c), "{c:?}");
        }
        // C1 controls and other odd characters are allowed by the schema's pattern.
        for c in [
            ' ', 'a', '~', '\u{80}', '\u{85}', '\u{9f}', 'é', '\u{2028}', '😀',
        ] {
            assert!(!is_forbidden_control(c), "{c:?}");
        }
    }

    #[test]
    fn find_control_char_reports_character_index() {
        assert_eq!(find_control_char("abc"), None);
        assert_eq!(find_control_char(""), None);
        assert_eq!(find_control_char("ééx\ty"), Some((3, '\t')));
        assert_eq!(find_control_char("\u{7f}"), Some((0, '\u{7f}')));
        assert_eq!(
            control_char_problem(3, '\t'),
            "must not contain control characters (found U+0009 at character 4)"
        );
    }

    #[test]
    fn shop_domain_pattern() {
        for ok in [
            "acme.myshopify.com",
            "a.myshopify.com",
            "0.myshopify.com",
            "acme-2.myshopify.com",
            "a--b.myshopify.com",
            "9shop-.myshopify.com",
        ] {
            assert!(is_shop_domain(ok), "{ok}");
        }
        for bad in [
            "",
            ".myshopify.com",
            "-acme.myshopify.com",
            "Acme.myshopify.com",
            "acme.MYSHOPIFY.com",
            "acme.myshopify.com.",
            "acme.shopify.com",
            "acme.example.com",
            "ac_me.myshopify.com",
            "ac.me.myshopify.com",
            "acme.myshopify.com\n",
            " acme.myshopify.com",
            "acmé.myshopify.com",
            "acme.myshopifyxcom",
        ] {
            assert!(!is_shop_domain(bad), "{bad:?}");
        }
    }

    #[test]
    fn env_var_names() {
        for ok in ["A", "_", "ACME_TOKEN", "acme_token", "A1", "_1"] {
            assert!(is_env_var_name(ok), "{ok}");
        }
        for bad in ["", "1A", "A-B", "A B", "A.B", "É", "A=B", "$A"] {
            assert!(!is_env_var_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn quote_untrusted_escapes_and_truncates() {
        assert_eq!(quote_untrusted("abc"), "\"abc\"");
        assert_eq!(quote_untrusted(""), "\"\"");
        assert_eq!(quote_untrusted("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(
            quote_untrusted("x\ny\r\tz\u{0}\u{7f}\u{85}\u{2028}"),
            "\"x\\ny\\r\\tz\\u{0}\\u{7f}\\u{85}\\u{2028}\""
        );
        let exactly = "é".repeat(ECHO_MAX_CHARS);
        assert_eq!(quote_untrusted(&exactly), format!("\"{exactly}\""));
        let long = "é".repeat(ECHO_MAX_CHARS + 1);
        assert_eq!(quote_untrusted(&long), format!("\"{exactly}…\""));
        // Escapes never leave a raw line break, even in the truncated part.
        let nasty = "\n".repeat(1000);
        let quoted = quote_untrusted(&nasty);
        assert!(!quoted.contains('\n'));
        assert_eq!(quoted, format!("\"{}…\"", "\\n".repeat(ECHO_MAX_CHARS)));
    }

    #[test]
    fn one_line_escapes_line_breaks_keeps_quotes_and_truncates() {
        assert_eq!(
            one_line("unknown field `a\nb`, expected `c`"),
            "unknown field `a\\nb`, expected `c`"
        );
        assert_eq!(one_line("got \"x\\y\""), "got \"x\\y\"");
        assert_eq!(one_line("\u{2028}\r\t"), "\\u{2028}\\r\\t");
        let exactly = "é".repeat(MESSAGE_MAX_CHARS);
        assert_eq!(one_line(&exactly), exactly);
        let long = "\n".repeat(10_000);
        let line = one_line(&long);
        assert!(!line.contains('\n'));
        assert_eq!(line, format!("{}…", "\\n".repeat(MESSAGE_MAX_CHARS)));
    }

    #[test]
    fn describe_json_values() {
        assert_eq!(describe_json(&json!(null)), "null");
        assert_eq!(describe_json(&json!(true)), "true");
        assert_eq!(describe_json(&json!(-3)), "-3");
        assert_eq!(describe_json(&json!(1.0)), "1.0");
        assert_eq!(describe_json(&json!("a\nb")), "\"a\\nb\"");
        assert_eq!(describe_json(&json!([1, 2])), "an array");
        assert_eq!(describe_json(&json!({"a": 1})), "an object");
    }

    #[test]
    fn json_type_names() {
        assert_eq!(json_type_name(&json!(null)), "null");
        assert_eq!(json_type_name(&json!(false)), "boolean");
        assert_eq!(json_type_name(&json!(1)), "integer");
        assert_eq!(json_type_name(&json!(-1)), "integer");
        assert_eq!(json_type_name(&json!(1.5)), "number");
        assert_eq!(json_type_name(&json!("")), "string");
        assert_eq!(json_type_name(&json!([])), "array");
        assert_eq!(json_type_name(&json!({})), "object");
    }

    #[test]
    fn truncate_chars_counts_characters() {
        assert_eq!(truncate_chars("abc", 3), "abc");
        assert_eq!(truncate_chars("abcd", 3), "abc…");
        assert_eq!(truncate_chars("ééé", 2), "éé…");
    }
}
