//! What a Shopify Admin GraphQL answer says besides its data: the cost and throttle status in
//! `extensions.cost`, the errors (top-level GraphQL errors and `userErrors` share one shape
//! here), and how long Shopify asks us to wait.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

/// `extensions.cost.throttleStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ThrottleStatus {
    pub maximum_available: f64,
    pub currently_available: f64,
    pub restore_rate: f64,
}

/// The throttle status and requested cost of an answer, when it has them.
pub fn cost_of(document: &Value) -> (Option<ThrottleStatus>, Option<f64>) {
    let cost = document.pointer("/extensions/cost");
    let throttle = cost
        .and_then(|c| c.get("throttleStatus"))
        .and_then(|t| serde_json::from_value::<ThrottleStatus>(t.clone()).ok());
    let requested = cost
        .and_then(|c| c.get("requestedQueryCost"))
        .and_then(Value::as_f64);
    (throttle, requested)
}

/// A user error or GraphQL error Shopify returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShopifyError {
    pub code: Option<String>,
    pub message: String,
    /// For user errors: the path into the input, e.g. `["input","changes","3","inventoryItemId"]`.
    pub field: Vec<String>,
}

impl ShopifyError {
    /// One line for logs and `x-error`.
    pub fn describe(&self) -> String {
        match &self.code {
            Some(code) => format!("{code}: {}", self.message),
            None => self.message.clone(),
        }
    }
}

/// Every error of a list (`errors` or `userErrors`); the code is read from `code` or
/// `extensions.code`, the path from `field`.
pub fn errors_of(list: Option<&Value>) -> Vec<ShopifyError> {
    list.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|error| ShopifyError {
            code: error
                .get("code")
                .or_else(|| error.pointer("/extensions/code"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            message: error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("(no message)")
                .to_owned(),
            field: error
                .get("field")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|part| match part {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect(),
        })
        .collect()
}

/// Several errors in one line.
pub fn describe_all(errors: &[ShopifyError]) -> String {
    errors
        .iter()
        .map(ShopifyError::describe)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Whether the top-level errors say `THROTTLED` (the call did not run).
pub fn is_throttled(document: &Value) -> bool {
    errors_of(document.get("errors"))
        .iter()
        .any(|e| e.code.as_deref() == Some("THROTTLED"))
}

/// How long a `THROTTLED` answer asks us to wait: until the bucket holds the requested cost.
pub fn throttled_wait(
    throttle: Option<ThrottleStatus>,
    requested_cost: Option<f64>,
) -> Option<Duration> {
    throttle.map(|t| {
        let needed = requested_cost.unwrap_or(10.0) - t.currently_available;
        clamp_wait(Duration::from_secs_f64(
            needed.max(1.0) / t.restore_rate.max(1.0),
        ))
    })
}

/// `Retry-After` in seconds (Shopify sends whole or fractional seconds), clamped.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|secs| secs.is_finite() && *secs >= 0.0)
        .map(|secs| clamp_wait(Duration::from_secs_f64(secs.min(300.0))))
}

/// Shopify's waits are honoured, within reason: a huge `Retry-After` would stall the shop for
/// ever (or overflow), a zero one would spin.
pub fn clamp_wait(wait: Duration) -> Duration {
    wait.clamp(Duration::from_millis(50), Duration::from_secs(300))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_code_from_either_place_and_field_paths_as_strings() {
        let list: Value = serde_json::json!([
            {"message": "a", "code": "X", "field": ["input", "changes", 3]},
            {"message": "b", "extensions": {"code": "Y"}},
            {}
        ]);
        let errors = errors_of(Some(&list));
        assert_eq!(errors[0].code.as_deref(), Some("X"));
        assert_eq!(errors[0].field, ["input", "changes", "3"]);
        assert_eq!(errors[1].describe(), "Y: b");
        assert_eq!(errors[2].describe(), "(no message)");
    }

    #[test]
    fn throttled_waits_for_the_missing_points() {
        let status = ThrottleStatus {
            maximum_available: 2000.0,
            currently_available: 4.0,
            restore_rate: 100.0,
        };
        assert_eq!(
            throttled_wait(Some(status), Some(10.0)),
            Some(Duration::from_millis(60))
        );
    }

    #[test]
    fn retry_after_is_parsed_and_clamped() {
        assert_eq!(parse_retry_after(" 2 "), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after("0"), Some(Duration::from_millis(50)));
        assert_eq!(parse_retry_after("1e12"), Some(Duration::from_secs(300)));
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }
}
