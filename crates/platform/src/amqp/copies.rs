//! The copies of a delivered message we publish: a retry copy (`Q.retry.<tier>`), a dead letter
//! (`Q.dlq`), and the copy `wos-sync dlq replay` puts back on a work queue.
//!
//! One rule for all of them ([`copied_headers`]): a copy keeps the message's own headers (the
//! publisher's, `traceparent` included) and drops the state earlier deliveries left on it:
//!
//! - **the broker's headers** (`x-delivery-count`, `x-acquired-count`, `x-death`,
//!   `x-first-death-*`, `x-last-death-*`). They describe the original's life in its queue, not
//!   the copy's: a copy that carried them would look to the runtime (and to `dlq show`) like a
//!   message that had already been delivered and dead-lettered, so a dead letter shovelled back
//!   to its work queue would be dead-lettered again without running.
//! - **our failure headers** (`x-attempts`, `x-last-error`, `x-error-*`, `x-failed-at`,
//!   `x-service`, `x-shop-domain`). Each copy writes the ones that describe it; a count copied
//!   from an earlier life never counts again.
//!
//! Attempts are counted in `x-attempts`, which only a retry copy carries as a live count: on a
//! dead letter (a message with `x-error-kind`) the same header is the contract's report of how
//! many attempts it failed, so a dead letter put back by hand (a shovel, the management UI)
//! starts again from the first attempt ([`previous_attempts`]).

use lapin::{BasicProperties, types::FieldTable};

use super::headers::{from_json, header_str, header_u64, set_str};

/// Header counting the handler attempts a message has already failed (CONTRACT `x-attempts`).
pub const ATTEMPTS_HEADER: &str = "x-attempts";
/// Header every dead letter carries (CONTRACT 3): its presence makes a message a dead letter.
pub const ERROR_KIND_HEADER: &str = "x-error-kind";

/// Why a message was dead-lettered (`x-error-kind`, CONTRACT 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The message cannot be understood: not JSON, wrong shape, unknown shop. Never retried.
    Malformed,
    /// Shopify refused it for good (unknown item or location, ...).
    Rejected,
    /// Transient failures went on for `max_attempts` attempts.
    Exhausted,
    /// Its item never got a Shopify mapping within the configured age.
    Unmapped,
}

impl ErrorKind {
    /// The `x-error-kind` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Rejected => "rejected",
            Self::Exhausted => "exhausted",
            Self::Unmapped => "unmapped",
        }
    }
}

/// Whether RabbitMQ wrote the header, on delivery (`x-delivery-count`, and `x-acquired-count`
/// from 4.3) or on dead-lettering (`x-death`, `x-first-death-*`, `x-last-death-*`).
pub fn is_broker_header(name: &str) -> bool {
    matches!(name, "x-delivery-count" | "x-acquired-count" | "x-death")
        || name.starts_with("x-first-death-")
        || name.starts_with("x-last-death-")
}

/// Whether the header records an earlier failure of the message (ours: the retry copy's count
/// and last error, the dead-letter headers of CONTRACT 3, the pusher's `x-shop-domain`).
pub fn is_failure_header(name: &str) -> bool {
    matches!(
        name,
        ATTEMPTS_HEADER | "x-last-error" | "x-failed-at" | "x-service" | "x-shop-domain"
    ) || name.starts_with("x-error")
}

/// Whether a copy leaves the header out: [`is_broker_header`] or [`is_failure_header`].
pub fn is_dropped_from_copies(name: &str) -> bool {
    is_broker_header(name) || is_failure_header(name)
}

/// The headers a copy starts from: the original's, without those [`is_dropped_from_copies`].
pub fn copied_headers(original: Option<&FieldTable>) -> FieldTable {
    let mut headers = FieldTable::default();
    for (name, value) in original.map(FieldTable::inner).into_iter().flatten() {
        if !is_dropped_from_copies(name.as_str()) {
            headers.insert(name.clone(), value.clone());
        }
    }
    headers
}

/// [`copied_headers`] for headers stored as JSON ([`super::headers::to_json`]): a copy published
/// later from a database row (the pusher's push-loop dead letters).
pub fn copied_json_headers(original: &serde_json::Value) -> serde_json::Value {
    let mut headers = original.as_object().cloned().unwrap_or_default();
    headers.retain(|name, _| !is_dropped_from_copies(name));
    serde_json::Value::Object(headers)
}

/// How many handler attempts the message already failed: our `x-attempts` on a retry copy; 0 on
/// a fresh message and on a dead letter put back by hand (its `x-attempts` reports an earlier
/// life and does not count again).
pub fn previous_attempts(headers: Option<&FieldTable>) -> u32 {
    if header_str(headers, ERROR_KIND_HEADER).is_some() {
        return 0;
    }
    header_u64(headers, ATTEMPTS_HEADER)
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(0)
}

/// The contract's dead-letter headers (CONTRACT 3), as a JSON object of strings and integers:
/// `x-error-kind`, `x-error` (one line), `x-attempts`, `x-failed-at` (RFC 3339), `x-service`.
pub fn dead_letter_fields(
    kind: ErrorKind,
    reason: &str,
    attempts: u32,
    service: &str,
    failed_at: chrono::DateTime<chrono::Utc>,
) -> serde_json::Value {
    serde_json::json!({
        ERROR_KIND_HEADER: kind.as_str(),
        "x-error": one_line(reason),
        ATTEMPTS_HEADER: attempts,
        "x-failed-at": failed_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "x-service": service,
    })
}

/// The contract's dead-letter headers added to a message's own headers.
pub fn dead_letter_headers(
    mut headers: FieldTable,
    kind: ErrorKind,
    reason: &str,
    attempts: u32,
    service: &str,
    failed_at: chrono::DateTime<chrono::Utc>,
) -> FieldTable {
    let fields = dead_letter_fields(kind, reason, attempts, service, failed_at);
    for (name, value) in from_json(&fields).inner() {
        headers.insert(name.clone(), value.clone());
    }
    headers
}

/// The message's properties for a copy we publish, with `headers` (built from
/// [`copied_headers`]): everything kept but the expiration (which would let a dead letter
/// vanish) and the user id (the broker refuses a publish whose user id is not the publishing
/// user's; it is kept as the `x-original-user-id` header).
pub fn republished(original: &BasicProperties, mut headers: FieldTable) -> BasicProperties {
    if let Some(user_id) = original.user_id() {
        set_str(&mut headers, "x-original-user-id", user_id.as_str());
    }
    let mut copy = BasicProperties::default().with_headers(headers);
    if let Some(v) = original.content_type() {
        copy = copy.with_content_type(v.clone());
    }
    if let Some(v) = original.content_encoding() {
        copy = copy.with_content_encoding(v.clone());
    }
    if let Some(v) = original.priority() {
        copy = copy.with_priority(*v);
    }
    if let Some(v) = original.correlation_id() {
        copy = copy.with_correlation_id(v.clone());
    }
    if let Some(v) = original.reply_to() {
        copy = copy.with_reply_to(v.clone());
    }
    if let Some(v) = original.message_id() {
        copy = copy.with_message_id(v.clone());
    }
    if let Some(v) = original.timestamp() {
        copy = copy.with_timestamp(*v);
    }
    if let Some(v) = original.kind() {
        copy = copy.with_type(v.clone());
    }
    if let Some(v) = original.app_id() {
        copy = copy.with_app_id(v.clone());
    }
    if let Some(v) = original.cluster_id() {
        copy = copy.with_cluster_id(v.clone());
    }
    copy
}

/// `x-error` is one line: newlines and other control characters become spaces, and it is cut
/// at 1000 characters so a huge error cannot blow up a header.
pub fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(1000)
        .collect()
}

#[cfg(test)]
mod tests {
    use lapin::types::AMQPValue;

    use super::*;
    use crate::amqp::headers::set_i64;

    #[test]
    fn dead_letter_headers_keep_the_original_ones_and_add_the_contract_fields() {
        let mut original = FieldTable::default();
        set_str(&mut original, "x-shopify-topic", "products/update");
        let at = chrono::DateTime::parse_from_rfc3339("2026-11-27T10:00:00Z")
            .expect("valid")
            .with_timezone(&chrono::Utc);
        let headers =
            dead_letter_headers(original, ErrorKind::Malformed, "bad\njson", 3, "svc", at);
        let get = |name| header_str(Some(&headers), name);
        assert_eq!(get("x-shopify-topic"), Some("products/update"));
        assert_eq!(get("x-error-kind"), Some("malformed"));
        assert_eq!(get("x-error"), Some("bad json"));
        assert_eq!(header_u64(Some(&headers), "x-attempts"), Some(3));
        assert_eq!(get("x-failed-at"), Some("2026-11-27T10:00:00.000Z"));
        assert_eq!(get("x-service"), Some("svc"));
    }

    #[test]
    fn copies_drop_the_broker_headers_and_earlier_failures_and_keep_the_rest() {
        let mut original = FieldTable::default();
        for name in [
            "x-shopify-topic",
            "traceparent",
            "x-original-user-id",
            "x-replayed-at",
            "x-first-death-queue",
            "x-first-death-reason",
            "x-last-death-exchange",
            "x-error-kind",
            "x-error",
            "x-failed-at",
            "x-service",
            "x-last-error",
            "x-shop-domain",
        ] {
            set_str(&mut original, name, "value");
        }
        set_i64(&mut original, "x-delivery-count", 3);
        set_i64(&mut original, "x-acquired-count", 4);
        set_i64(&mut original, "x-attempts", 8);
        original.insert("x-death".into(), AMQPValue::FieldArray(Default::default()));
        let copy = copied_headers(Some(&original));
        let mut kept: Vec<_> = copy.inner().keys().map(|k| k.as_str()).collect();
        kept.sort_unstable();
        assert_eq!(
            kept,
            [
                "traceparent",
                "x-original-user-id",
                "x-replayed-at",
                "x-shopify-topic"
            ]
        );
        assert_eq!(copied_headers(None), FieldTable::default());
    }

    #[test]
    fn stored_headers_are_copied_by_the_same_rule() {
        let stored = serde_json::json!({
            "x-wos-source": "wms",
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "x-delivery-count": 2,
            "x-first-death-queue": "adjustment-pusher.wos-transactions.retry.1",
            "x-attempts": 3,
            "x-last-error": "database unavailable",
        });
        assert_eq!(
            copied_json_headers(&stored),
            serde_json::json!({
                "x-wos-source": "wms",
                "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            })
        );
        assert_eq!(
            copied_json_headers(&serde_json::Value::Null),
            serde_json::json!({})
        );
    }

    #[test]
    fn attempts_count_on_retry_copies_and_not_on_dead_letters() {
        let mut retry_copy = FieldTable::default();
        set_i64(&mut retry_copy, ATTEMPTS_HEADER, 4);
        assert_eq!(previous_attempts(Some(&retry_copy)), 4);
        assert_eq!(previous_attempts(None), 0);
        let mut dead_letter = retry_copy.clone();
        set_str(&mut dead_letter, ERROR_KIND_HEADER, "exhausted");
        assert_eq!(previous_attempts(Some(&dead_letter)), 0);
    }

    #[test]
    fn republished_copies_drop_expiration_and_keep_the_rest() {
        let original = BasicProperties::default()
            .with_message_id("m-1".into())
            .with_content_type("application/json".into())
            .with_expiration("1000".into())
            .with_user_id("wos".into())
            .with_app_id("wos".into());
        let copy = republished(&original, FieldTable::default());
        assert_eq!(copy.message_id().as_ref().map(|s| s.as_str()), Some("m-1"));
        assert_eq!(
            copy.content_type().as_ref().map(|s| s.as_str()),
            Some("application/json")
        );
        assert_eq!(copy.app_id().as_ref().map(|s| s.as_str()), Some("wos"));
        assert_eq!(copy.expiration(), &None);
        assert_eq!(copy.user_id(), &None);
        assert_eq!(
            header_str(copy.headers().as_ref(), "x-original-user-id"),
            Some("wos")
        );
    }

    #[test]
    fn one_line_flattens_and_bounds_errors() {
        assert_eq!(one_line("a\r\nb\tc"), "a  b c");
        assert_eq!(one_line(&"x".repeat(5000)).len(), 1000);
    }
}
