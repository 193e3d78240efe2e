//! The Shopify Admin GraphQL client: one `inventoryAdjustQuantities` call, and what its answer
//! means for the batch that was sent.
//!
//! Every answer is sorted into exactly one [`CallOutcome`], because the push loop's whole
//! correctness rests on that sorting:
//! - `Applied`: Shopify applied the batch (it answered the adjustment group); never send it
//!   again.
//! - `Rejected`: Shopify refused it (`userErrors`, or a GraphQL error before execution);
//!   nothing was applied, so its changes may be sent again in another batch with a new key.
//! - `PreviousAttemptFailed`: Shopify says an earlier attempt with this key failed and nothing
//!   was applied; the same changes go again under a new key.
//! - `KeyAlreadyUsed`: `IDEMPOTENCY_KEY_PARAMETER_MISMATCH`: the key already ran, possibly
//!   applied; the changes must never go out again under another key (dead-lettered as
//!   `exhausted`, for an operator to check).
//! - `Transient`: anything else (timeout, dropped connection, 5xx, 429, `THROTTLED`,
//!   `IDEMPOTENCY_CONCURRENT_REQUEST`, an answer with neither group nor error): the outcome may
//!   be unknown, so the batch is resent unchanged, with the same key, until one of the answers
//!   above arrives.
//!
//! The call's `input` is built here too ([`adjust_input`]), from the changes
//! `model::batch::form_batch` formed.

use std::time::Duration;

use model::batch::{Change, Refusal};
use serde_json::{Value, json};
use shopify_admin::{
    Answer, Reservation, ShopClient, ShopifyError, ThrottleStatus,
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

/// The mutation's `input` for a formed batch: one reason, Shopify's `available` name, our
/// batch's reference, and the changes in order (index i is `changes[i]`).
pub fn adjust_input(shop: &str, batch_id: i64, reason: &str, changes: &[Change]) -> Value {
    let changes: Vec<Value> = changes
        .iter()
        .map(|change| {
            json!({
                "delta": change.delta,
                "inventoryItemId": change.inventory_item_id.gid(),
                "locationId": change.location_id.gid(),
                // Always present and explicitly null: required from 2026-04, and we push deltas,
                // never compare-and-set (CONTRACT 4).
                "changeFromQuantity": Value::Null,
            })
        })
        .collect();
    json!({
        "name": "available",
        "reason": reason,
        // Names our batch, so a Shopify adjustment group leads back to it (and through it to
        // every source transaction).
        "referenceDocumentUri": reference_document_uri(shop, batch_id),
        "changes": changes,
    })
}

/// `wos-sync://push-batch/<shop>/<batch id>`: what a batch's adjustment group is found by in
/// Shopify.
pub fn reference_document_uri(shop: &str, batch_id: i64) -> String {
    format!("wos-sync://push-batch/{shop}/{batch_id}")
}

/// The index into `input.changes` an error is about, if any.
pub fn change_index(error: &ShopifyError) -> Option<usize> {
    match error.field.as_slice() {
        [input, changes, index, ..] if input == "input" && changes == "changes" => {
            index.parse().ok()
        }
        _ => None,
    }
}

/// Quantity codes Shopify gives for a delta it would not take (the result out of range).
const DELTA_CODES: [&str; 2] = ["INVALID_QUANTITY_TOO_HIGH", "INVALID_QUANTITY_TOO_LOW"];

/// An error of a refused call, as batching sees it: the change it names, and whether it is
/// about that change's delta (then the adjustments summed into it are worth trying alone).
pub fn refusal(error: &ShopifyError) -> Refusal {
    let about_delta = error.field.last().is_some_and(|leaf| leaf == "delta")
        || error
            .code
            .as_deref()
            .is_some_and(|code| DELTA_CODES.contains(&code));
    Refusal {
        change: change_index(error),
        about_delta,
        message: error.describe(),
    }
}

/// Top-level errors with each `extensions.problems[]` of a variable error (`INVALID_VARIABLE`)
/// as an error of its own, its `path` made a field path into the input (`["changes", 0,
/// "delta"]` of `$input` is `["input", "changes", "0", "delta"]`), so a variable Shopify
/// refused is traced to the change it names.
fn with_variable_problems(document: &Value, errors: Vec<ShopifyError>) -> Vec<ShopifyError> {
    let raw = document
        .get("errors")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut out = Vec::new();
    for (error, raw) in errors
        .into_iter()
        .zip(raw.iter().map(Some).chain(std::iter::repeat(None)))
    {
        let problems = raw
            .and_then(|r| r.pointer("/extensions/problems"))
            .and_then(Value::as_array)
            .filter(|problems| !problems.is_empty());
        let Some(problems) = problems else {
            out.push(error);
            continue;
        };
        // "Variable $input of type ... was provided invalid value ...": which variable.
        let of_input = error.message.starts_with("Variable $input ");
        for problem in problems {
            let path: Vec<String> = problem
                .get("path")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|part| match part {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            let explanation = problem
                .get("explanation")
                .and_then(Value::as_str)
                .unwrap_or("invalid value");
            out.push(ShopifyError {
                code: error.code.clone(),
                message: format!("variable {}: {explanation}", path.join(".")),
                field: if of_input {
                    std::iter::once("input".to_owned()).chain(path).collect()
                } else {
                    Vec::new()
                },
            });
        }
    }
    out
}

/// What one call means for its batch.
#[derive(Debug, Clone, PartialEq)]
pub enum CallOutcome {
    Applied {
        group_id: String,
    },
    Rejected {
        errors: Vec<ShopifyError>,
    },
    PreviousAttemptFailed,
    /// Shopify says the key already ran with other parameters: what ran under it may have been
    /// applied, and nothing tells us.
    KeyAlreadyUsed {
        reason: String,
    },
    /// `maybe_applied`: this attempt may have been applied (a timeout, a dropped connection, a
    /// 5xx, an answer that proves nothing); false when Shopify refused it before running
    /// anything (429, `THROTTLED`, a refused connection, access denied,
    /// `IDEMPOTENCY_CONCURRENT_REQUEST`). `shop_wide`: the wait is Shopify's for the whole shop
    /// (`Retry-After`, the cost bucket), not only for this batch.
    Transient {
        reason: String,
        retry_after: Option<Duration>,
        shop_wide: bool,
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

/// Sends one batch through the shop's client (which records it and settles the call's cost,
/// reserved beforehand from the shop's pacer with `Pacer::reserve`, by the answer): `input` is
/// the mutation's input, `key` its idempotency key.
pub async fn adjust(
    client: &ShopClient,
    reservation: Reservation,
    input: &Value,
    key: &str,
    timeout: Duration,
) -> CallResult {
    let request = json!({
        "query": ADJUST_MUTATION,
        "operationName": "AdjustInventory",
        "variables": { "input": input, "idempotencyKey": key },
    });
    let Answer { reply, .. } = client
        .send_reserved(reservation, OPERATION, &request, timeout)
        .await;
    match reply {
        Ok(reply) => interpret(reply.status, reply.retry_after, &reply.body),
        Err(failure) => CallResult {
            // A refused connection sent nothing; anything later may have been applied.
            outcome: CallOutcome::Transient {
                reason: failure.reason,
                retry_after: None,
                shop_wide: false,
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
    // Shopify's waits (Retry-After, the bucket) hold the whole shop; our backoff only the batch.
    let transient = |reason: String, retry_after: Option<Duration>, maybe_applied: bool| {
        result(CallOutcome::Transient {
            reason,
            shop_wide: retry_after.is_some(),
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
            group_id: group.to_owned(),
        });
    }
    let user_errors = errors_of(payload.and_then(|p| p.get("userErrors")));
    let all: Vec<&ShopifyError> = top_level.iter().chain(&user_errors).collect();
    let has = |code: &str| all.iter().any(|e| e.code.as_deref() == Some(code));
    if has("IDEMPOTENCY_CONCURRENT_REQUEST") {
        // This attempt did not run; the one still running under the key may apply. Only this
        // batch waits for it.
        return result(CallOutcome::Transient {
            reason: "IDEMPOTENCY_CONCURRENT_REQUEST".to_owned(),
            retry_after: Some(Duration::from_millis(500)),
            shop_wide: false,
            maybe_applied: false,
        });
    }
    if has("IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED") {
        return result(CallOutcome::PreviousAttemptFailed);
    }
    if has("IDEMPOTENCY_KEY_PARAMETER_MISMATCH") {
        let reason = all
            .iter()
            .map(|e| e.describe())
            .collect::<Vec<_>>()
            .join("; ");
        return result(CallOutcome::KeyAlreadyUsed { reason });
    }
    if payload.is_some() {
        // The mutation ran: refused with userErrors. Without them and without a group the
        // answer proves nothing (we never send a batch that sums to nothing): unknown.
        return if user_errors.is_empty() {
            let reason = if top_level.is_empty() {
                "no adjustment group and no errors".to_owned()
            } else {
                format!(
                    "no adjustment group and errors: {}",
                    describe_all(&top_level)
                )
            };
            transient(reason, None, true)
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
        return result(CallOutcome::Rejected {
            errors: with_variable_problems(&document, top_level),
        });
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
mod tests;
