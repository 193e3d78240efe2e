//! The Shopify Admin GraphQL client: one `inventoryAdjustQuantities` call, and what its answer
//! means for the batch that was sent.
//!
//! Every answer is sorted into exactly one [`CallOutcome`], because the push loop's whole
//! correctness rests on that sorting:
//! - `Applied`: Shopify applied the batch (or it was a no-op); never send it again.
//! - `Rejected`: Shopify refused it (`userErrors`, or a GraphQL error before execution);
//!   nothing was applied, so its changes may be sent again in another batch with a new key.
//! - `PreviousAttemptFailed`: Shopify says an earlier attempt with this key failed and nothing
//!   was applied; the same changes go again under a new key.
//! - `Transient`: anything else (timeout, dropped connection, 5xx, 429, `THROTTLED`,
//!   `IDEMPOTENCY_CONCURRENT_REQUEST`): the outcome may be unknown, so the batch is resent
//!   unchanged, with the same key, until one of the answers above arrives.

use std::time::Duration;

use serde_json::{Value, json};
use shopify_admin::{
    Answer, ShopClient, ShopifyError, ThrottleStatus,
    answer::{clamp_wait, describe_all, errors_of, throttled_wait},
};

/// The mutation, with `@idempotent` (required from 2026-04) and the fields we audit.
/// `staffMember` is deliberately not selected (CONTRACT 4).
pub const ADJUST_MUTATION: &str =
    "mutation AdjustInventory($input: InventoryAdjustQuantitiesInput!, $idempotencyKey: String!) {
  inventoryAdjustQuantities(input: $input) @idempotent(key: $idempotencyKey) {
    inventoryAdjustmentGroup { id createdAt reason referenceDocumentUri }
    userErrors { field message code }
  }
}";

/// The operation label of metrics.
pub const OPERATION: &str = "inventoryAdjustQuantities";

/// The index into `input.changes` a user error is about, if any.
pub fn change_index(error: &ShopifyError) -> Option<usize> {
    match error.field.as_slice() {
        [input, changes, index, ..] if input == "input" && changes == "changes" => {
            index.parse().ok()
        }
        _ => None,
    }
}

/// What one call means for its batch.
#[derive(Debug, Clone, PartialEq)]
pub enum CallOutcome {
    Applied {
        group_id: Option<String>,
    },
    Rejected {
        errors: Vec<ShopifyError>,
    },
    PreviousAttemptFailed,
    /// `maybe_applied`: this attempt may have been applied (a timeout, a dropped connection, a
    /// 5xx); false when Shopify refused it before running anything (429, `THROTTLED`, a refused
    /// connection, access denied).
    Transient {
        reason: String,
        retry_after: Option<Duration>,
        maybe_applied: bool,
    },
}

/// One call's answer.
#[derive(Debug, Clone)]
pub struct CallResult {
    pub outcome: CallOutcome,
    pub throttle: Option<ThrottleStatus>,
    pub requested_cost: Option<f64>,
}

/// Sends one batch through the shop's client (which paces and records it): `input` is the
/// mutation's input, `key` its idempotency key.
pub async fn adjust(
    client: &ShopClient,
    input: &Value,
    key: &str,
    timeout: Duration,
) -> CallResult {
    let request = json!({
        "query": ADJUST_MUTATION,
        "operationName": "AdjustInventory",
        "variables": { "input": input, "idempotencyKey": key },
    });
    let Answer { reply, .. } = client.send(OPERATION, &request, timeout).await;
    match reply {
        Ok(reply) => interpret(reply.status, reply.retry_after, &reply.body),
        Err(failure) => CallResult {
            // A refused connection sent nothing; anything later may have been applied.
            outcome: CallOutcome::Transient {
                reason: failure.reason,
                retry_after: None,
                maybe_applied: !failure.not_sent,
            },
            throttle: None,
            requested_cost: None,
        },
    }
}

/// Sorts an HTTP answer into a [`CallResult`] (pure; unit-tested on Shopify's shapes).
pub fn interpret(status: u16, retry_after: Option<Duration>, body: &str) -> CallResult {
    let document: Option<Value> = serde_json::from_str(body).ok();
    let (throttle, requested_cost) = document
        .as_ref()
        .map(shopify_admin::answer::cost_of)
        .unwrap_or_default();
    let retry_after = retry_after.map(clamp_wait);
    let result = |outcome| CallResult {
        outcome,
        throttle,
        requested_cost,
    };
    let transient = |reason: String, retry_after: Option<Duration>, maybe_applied: bool| {
        result(CallOutcome::Transient {
            reason,
            retry_after,
            maybe_applied,
        })
    };
    if status != 200 {
        return match status {
            // Shopify refuses these before running anything.
            429 => transient("rate limited (429)".to_owned(), retry_after, false),
            401 | 403 => transient(
                format!("access refused ({status}): check the shop's access token and scopes"),
                retry_after,
                false,
            ),
            400..=499 if status != 408 => transient(format!("HTTP {status}"), retry_after, false),
            // 5xx (a gateway may answer after the change was made), 408: unknown.
            _ => transient(format!("HTTP {status}"), retry_after, true),
        };
    }
    let Some(document) = document else {
        return transient(
            "HTTP 200 with a body that is not JSON".to_owned(),
            None,
            true,
        );
    };

    let top_level = errors_of(document.get("errors"));
    let has_top = |code: &str| top_level.iter().any(|e| e.code.as_deref() == Some(code));
    if has_top("THROTTLED") {
        let wait = throttled_wait(throttle, requested_cost);
        return transient("THROTTLED".to_owned(), wait, false);
    }
    // `null` (the mutation did not run or failed) is no payload at all.
    let payload = document
        .pointer("/data/inventoryAdjustQuantities")
        .filter(|p| p.is_object());
    if let Some(group) = payload
        .and_then(|p| p.pointer("/inventoryAdjustmentGroup/id"))
        .and_then(Value::as_str)
    {
        // Applied. Errors beside a group (a field we could not read) do not undo that.
        for error in &top_level {
            tracing::warn!(error = %error.describe(), "Shopify applied the batch but reported an error");
        }
        return result(CallOutcome::Applied {
            group_id: Some(group.to_owned()),
        });
    }
    let user_errors = errors_of(payload.and_then(|p| p.get("userErrors")));
    let all: Vec<&ShopifyError> = top_level.iter().chain(&user_errors).collect();
    let has = |code: &str| all.iter().any(|e| e.code.as_deref() == Some(code));
    if has("IDEMPOTENCY_CONCURRENT_REQUEST") {
        // This attempt did not run; the one still running under the key may apply.
        return transient(
            "IDEMPOTENCY_CONCURRENT_REQUEST".to_owned(),
            Some(Duration::from_millis(500)),
            false,
        );
    }
    if has("IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED") {
        return result(CallOutcome::PreviousAttemptFailed);
    }
    if let Some(payload) = payload {
        // The mutation ran: refused with userErrors, or a no-op (no group, no errors).
        return if user_errors.is_empty() {
            if !top_level.is_empty() {
                let reason = describe_all(&top_level);
                return transient(
                    format!("no adjustment group and errors: {reason}"),
                    None,
                    true,
                );
            }
            let _ = payload;
            result(CallOutcome::Applied { group_id: None })
        } else {
            result(CallOutcome::Rejected {
                errors: user_errors,
            })
        };
    }
    let refused_before_running = !top_level.is_empty()
        && top_level.iter().all(|e| {
            matches!(
                e.code.as_deref(),
                Some(
                    "BAD_REQUEST"
                        | "INVALID_VARIABLE"
                        | "INVALID_FIELD_ARGUMENTS"
                        | "GRAPHQL_VALIDATION_FAILED"
                        | "MAX_COST_EXCEEDED"
                        | "undefinedField"
                        | "argumentLiteralsIncompatible"
                        | "missingRequiredArguments"
                )
            )
        });
    if refused_before_running {
        // Validation of the request itself: nothing ran, and sending it again cannot help.
        return result(CallOutcome::Rejected { errors: top_level });
    }
    if has_top("ACCESS_DENIED") || has_top("UNAUTHORIZED") || has_top("FORBIDDEN") {
        let reason = format!("{} (check the token's scopes)", describe_all(&top_level));
        return transient(reason, None, false);
    }
    let reason = if top_level.is_empty() {
        "HTTP 200 without data.inventoryAdjustQuantities".to_owned()
    } else {
        describe_all(&top_level)
    };
    transient(reason, None, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const COST: &str = r#""extensions":{"cost":{"requestedQueryCost":10,"actualQueryCost":10,"throttleStatus":{"maximumAvailable":2000.0,"currentlyAvailable":1990,"restoreRate":100.0}}}"#;

    fn outcome(status: u16, body: &str) -> CallOutcome {
        interpret(status, None, body).outcome
    }

    #[test]
    fn an_applied_group_is_applied_and_throttle_status_is_read() {
        let body = format!(
            r#"{{"data":{{"inventoryAdjustQuantities":{{"inventoryAdjustmentGroup":{{"id":"gid://shopify/InventoryAdjustmentGroup/5"}},"userErrors":[]}}}},{COST}}}"#
        );
        let result = interpret(200, None, &body);
        assert_eq!(
            result.outcome,
            CallOutcome::Applied {
                group_id: Some("gid://shopify/InventoryAdjustmentGroup/5".into())
            }
        );
        assert_eq!(result.throttle.unwrap().currently_available, 1990.0);
        assert_eq!(result.requested_cost, Some(10.0));
    }

    #[test]
    fn a_no_op_is_applied_without_a_group() {
        let body = r#"{"data":{"inventoryAdjustQuantities":{"inventoryAdjustmentGroup":null,"userErrors":[]}}}"#;
        assert_eq!(outcome(200, body), CallOutcome::Applied { group_id: None });
    }

    #[test]
    fn user_errors_are_rejections_with_the_change_index() {
        // Shape of the fixture unknownIdValidation/adjustUnknownInventoryItem.
        let body = r#"{"data":{"inventoryAdjustQuantities":{"inventoryAdjustmentGroup":null,"userErrors":[{"field":["input","changes","3","inventoryItemId"],"message":"The specified inventory item could not be found.","code":"INVALID_INVENTORY_ITEM"}]}}}"#;
        let CallOutcome::Rejected { errors } = outcome(200, body) else {
            panic!("rejected")
        };
        assert_eq!(change_index(&errors[0]), Some(3));
        assert_eq!(
            errors[0].describe(),
            "INVALID_INVENTORY_ITEM: The specified inventory item could not be found."
        );
    }

    #[test]
    fn graphql_errors_before_execution_are_rejections() {
        // Shape of the fixture missingAdjustChangeFromQuantity.
        let body = r#"{"errors":[{"message":"InventoryChangeInput must include the following argument: changeFromQuantity.","extensions":{"code":"INVALID_FIELD_ARGUMENTS"}}]}"#;
        let CallOutcome::Rejected { errors } = outcome(200, body) else {
            panic!("rejected")
        };
        assert_eq!(errors[0].code.as_deref(), Some("INVALID_FIELD_ARGUMENTS"));
    }

    #[test]
    fn throttled_waits_for_the_missing_points() {
        let body = r#"{"errors":[{"message":"Throttled","extensions":{"code":"THROTTLED"}}],"extensions":{"cost":{"requestedQueryCost":10,"actualQueryCost":null,"throttleStatus":{"maximumAvailable":2000.0,"currentlyAvailable":4,"restoreRate":100.0}}}}"#;
        let CallOutcome::Transient { retry_after, .. } = outcome(200, body) else {
            panic!("transient")
        };
        assert_eq!(retry_after, Some(Duration::from_millis(60)));
    }

    #[test]
    fn idempotency_codes_are_sorted() {
        let concurrent = r#"{"data":{"inventoryAdjustQuantities":{"inventoryAdjustmentGroup":null,"userErrors":[{"field":null,"message":"in progress","code":"IDEMPOTENCY_CONCURRENT_REQUEST"}]}}}"#;
        assert!(matches!(
            outcome(200, concurrent),
            CallOutcome::Transient { .. }
        ));
        let failed = r#"{"errors":[{"message":"previous attempt failed","extensions":{"code":"IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED"}}]}"#;
        assert_eq!(outcome(200, failed), CallOutcome::PreviousAttemptFailed);
        let mismatch = r#"{"data":{"inventoryAdjustQuantities":{"inventoryAdjustmentGroup":null,"userErrors":[{"field":null,"message":"mismatch","code":"IDEMPOTENCY_KEY_PARAMETER_MISMATCH"}]}}}"#;
        assert!(matches!(
            outcome(200, mismatch),
            CallOutcome::Rejected { .. }
        ));
    }

    /// `Some(maybe_applied)` for a transient outcome, `None` otherwise.
    fn maybe_applied(status: u16, body: &str) -> Option<bool> {
        match outcome(status, body) {
            CallOutcome::Transient { maybe_applied, .. } => Some(maybe_applied),
            _ => None,
        }
    }

    #[test]
    fn http_failures_are_transient_and_say_whether_they_may_have_applied() {
        let result = interpret(429, Some(Duration::from_secs(2)), "");
        assert_eq!(
            result.outcome,
            CallOutcome::Transient {
                reason: "rate limited (429)".into(),
                retry_after: Some(Duration::from_secs(2)),
                maybe_applied: false,
            }
        );
        for status in [500, 502, 503, 504, 408] {
            assert_eq!(maybe_applied(status, "oops"), Some(true), "{status}");
        }
        for status in [400, 401, 403, 404, 413] {
            assert_eq!(maybe_applied(status, "oops"), Some(false), "{status}");
        }
        assert_eq!(maybe_applied(200, "<html>"), Some(true));
        let internal = r#"{"errors":[{"message":"Internal error","extensions":{"code":"INTERNAL_SERVER_ERROR"}}]}"#;
        assert_eq!(maybe_applied(200, internal), Some(true));
    }

    #[test]
    fn a_null_payload_is_never_applied_nor_refused() {
        // The mutation failed while running, without a code: outcome unknown.
        let failed = r#"{"data":{"inventoryAdjustQuantities":null},"errors":[{"message":"Internal error","path":["inventoryAdjustQuantities"]}]}"#;
        assert_eq!(maybe_applied(200, failed), Some(true));
        // No payload and no error: unknown too, never "applied".
        assert_eq!(
            maybe_applied(200, r#"{"data":{"inventoryAdjustQuantities":null}}"#),
            Some(true)
        );
    }

    #[test]
    fn access_denied_is_retried_not_dead_lettered() {
        let denied = r#"{"data":{"inventoryAdjustQuantities":null},"errors":[{"message":"Access denied","extensions":{"code":"ACCESS_DENIED"}}]}"#;
        assert_eq!(maybe_applied(200, denied), Some(false));
    }

    #[test]
    fn a_group_beside_an_error_is_applied() {
        // Shopify applied it and could not render a field (the sandbox's staffMember case).
        let partial = r#"{"data":{"inventoryAdjustQuantities":{"inventoryAdjustmentGroup":{"id":"gid://shopify/InventoryAdjustmentGroup/9","staffMember":null},"userErrors":[]}},"errors":[{"message":"Access denied for staffMember field.","extensions":{"code":"ACCESS_DENIED"}}]}"#;
        assert_eq!(
            outcome(200, partial),
            CallOutcome::Applied {
                group_id: Some("gid://shopify/InventoryAdjustmentGroup/9".into())
            }
        );
    }

    #[test]
    fn waits_are_clamped() {
        let huge = interpret(503, Some(Duration::from_secs(10_000_000)), "");
        assert!(
            matches!(huge.outcome, CallOutcome::Transient { retry_after: Some(wait), .. } if wait == Duration::from_secs(300))
        );
        let zero = interpret(429, Some(Duration::ZERO), "");
        assert!(
            matches!(zero.outcome, CallOutcome::Transient { retry_after: Some(wait), .. } if wait == Duration::from_millis(50))
        );
    }
}
