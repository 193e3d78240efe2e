//! Reading a section of the configuration file: serde types first, validation after, and the
//! exact key of the first problem in the error.
//!
//! Every section is read the same way, the platform's (`[amqp]`, `[database]`, …), a service's
//! own table and the `[[shops]]` array alike. [`deserialize_section`] runs serde over the
//! section's TOML value: the types say which keys exist and what they hold, and refuse unknown
//! keys (`deny_unknown_fields`); `serde_path_to_error` records where serde stopped. The section's
//! own validation then runs on the typed result and names keys with [`key_path`]. Either way
//! the error is a [`ConfigError`]: the TOML path of the key and why, on one line.

use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;

use crate::validate::{one_line, quote_untrusted};

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
    /// The error for the key at `key` (a path such as [`key_path`] builds).
    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// Deserialises `value`, the TOML found at `key` in the file (`amqp`, `shops`), as `T`.
///
/// A refusal names the exact key below `key` where serde stopped
/// (`amqp.urll`, `shops[1].locations`) and serde's reason, made one line and bounded because
/// it can repeat a key or a string from the file.
pub fn deserialize_section<T: DeserializeOwned>(
    key: &str,
    value: toml::Value,
) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err
            .path()
            .iter()
            .fold(key.to_owned(), |path, segment| match segment {
                Segment::Seq { index } => format!("{path}[{index}]"),
                Segment::Map { key } => key_path(&path, key),
                Segment::Enum { variant } => key_path(&path, variant),
                // Nothing to name: the path stops at the last key it knows.
                Segment::Unknown => path,
            });
        ConfigError::new(path, one_line(err.inner().message()))
    })
}

/// The path of key `name` in the table at `parent`: `parent.name`, with `name` quoted when
/// TOML needs it to be (`shops[0].locations."bay 7"`).
pub fn key_path(parent: &str, name: &str) -> String {
    format!("{parent}.{}", toml_key(name))
}

/// A key as it appears in a TOML path: bare when it can be, quoted (and escaped) otherwise.
pub(super) fn toml_key(key: &str) -> String {
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

/// A TOML value for an error message: strings quoted and escaped, scalars as written,
/// containers by kind.
pub(super) fn describe_toml(value: &toml::Value) -> String {
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
