//! Unit tests of `shopify`.

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
            group_id: "gid://shopify/InventoryAdjustmentGroup/5".into()
        }
    );
    assert_eq!(result.throttle.unwrap().currently_available, 1990.0);
    assert_eq!(result.requested_cost, Some(10.0));
}

#[test]
fn an_answer_without_group_nor_errors_proves_nothing() {
    // We never send a batch that sums to nothing, so a "no-op" answer cannot be one.
    let body = r#"{"data":{"inventoryAdjustQuantities":{"inventoryAdjustmentGroup":null,"userErrors":[]}}}"#;
    assert_eq!(maybe_applied(200, body), Some(true));
}

#[test]
fn variable_problems_name_the_change_they_are_about() {
    // The captured answer to a change without inventoryItemId (2025-01 parity probe).
    let fixture: Value = serde_json::from_str(include_str!(
        "../../../../contract/fixtures/shopify-admin/2025-01-inventory-adjust-quantities-parity.json"
    ))
    .unwrap();
    let response = fixture
        .pointer("/missingRequiredFieldProbes/missingInventoryItemId/response")
        .unwrap()
        .to_string();
    let CallOutcome::Rejected { errors } = outcome(200, &response) else {
        panic!("rejected")
    };
    assert_eq!(errors.len(), 1);
    assert_eq!(change_index(&errors[0]), Some(0));
    assert_eq!(
        errors[0].field,
        ["input", "changes", "0", "inventoryItemId"]
    );
    assert!(!refusal(&errors[0]).about_delta);
    // A sum outside Int, as the sandbox and Shopify refuse it: about the delta of change 1.
    let body = r#"{"errors":[{"message":"Variable $input of type InventoryAdjustQuantitiesInput! was provided invalid value for changes.1.delta (Could not coerce value 3000000000 to Int)","locations":[{"line":1,"column":24}],"extensions":{"code":"INVALID_VARIABLE","value":{},"problems":[{"path":["changes",1,"delta"],"explanation":"Could not coerce value 3000000000 to Int"}]}}]}"#;
    let CallOutcome::Rejected { errors } = outcome(200, body) else {
        panic!("rejected")
    };
    let refused = refusal(&errors[0]);
    assert_eq!(refused.change, Some(1));
    assert!(refused.about_delta);
    assert!(
        refused.message.contains("changes.1.delta"),
        "{}",
        refused.message
    );
    // A problem of another variable names no change.
    let key = r#"{"errors":[{"message":"Variable $idempotencyKey of type String! was provided invalid value","extensions":{"code":"INVALID_VARIABLE","problems":[{"path":[],"explanation":"Expected value to not be null"}]}}]}"#;
    let CallOutcome::Rejected { errors } = outcome(200, key) else {
        panic!("rejected")
    };
    assert_eq!(change_index(&errors[0]), None);
}

#[test]
fn quantity_errors_are_about_the_delta() {
    let body = r#"{"data":{"inventoryAdjustQuantities":{"inventoryAdjustmentGroup":null,"userErrors":[{"field":["input","changes","2","delta"],"message":"The quantity can't be higher than 2,000,000,000.","code":"INVALID_QUANTITY_TOO_HIGH"}]}}}"#;
    let CallOutcome::Rejected { errors } = outcome(200, body) else {
        panic!("rejected")
    };
    let refused = refusal(&errors[0]);
    assert_eq!(refused.change, Some(2));
    assert!(refused.about_delta);
}

#[test]
fn the_input_names_the_batch_and_every_change_in_order() {
    use model::ids::{InventoryItemId, LocationId};
    let changes = [Change {
        inventory_item_id: InventoryItemId(7),
        location_id: LocationId(9),
        delta: -3,
        adjustments: vec![1, 2],
    }];
    assert_eq!(
        adjust_input("s.myshopify.com", 42, "correction", &changes),
        json!({
            "name": "available",
            "reason": "correction",
            "referenceDocumentUri": "wos-sync://push-batch/s.myshopify.com/42",
            "changes": [{"delta": -3, "inventoryItemId": "gid://shopify/InventoryItem/7",
                         "locationId": "gid://shopify/Location/9", "changeFromQuantity": null}],
        })
    );
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
    // Only this batch waits for the request still running under its key.
    assert!(matches!(
        outcome(200, concurrent),
        CallOutcome::Transient {
            shop_wide: false,
            maybe_applied: false,
            retry_after: Some(_),
            ..
        }
    ));
    let failed = r#"{"errors":[{"message":"previous attempt failed","extensions":{"code":"IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED"}}]}"#;
    assert_eq!(outcome(200, failed), CallOutcome::PreviousAttemptFailed);
    let failed_user_error = r#"{"data":{"inventoryAdjustQuantities":{"inventoryAdjustmentGroup":null,"userErrors":[{"field":null,"message":"A previous request with this idempotency key failed. Retry with a new idempotency key.","code":"IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED"}]}}}"#;
    assert_eq!(
        outcome(200, failed_user_error),
        CallOutcome::PreviousAttemptFailed
    );
    // The key already ran: possibly applied, never a refusal.
    let mismatch = r#"{"data":{"inventoryAdjustQuantities":{"inventoryAdjustmentGroup":null,"userErrors":[{"field":null,"message":"mismatch","code":"IDEMPOTENCY_KEY_PARAMETER_MISMATCH"}]}}}"#;
    assert_eq!(
        outcome(200, mismatch),
        CallOutcome::KeyAlreadyUsed {
            reason: "IDEMPOTENCY_KEY_PARAMETER_MISMATCH: mismatch".into()
        }
    );
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
            shop_wide: true,
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
            group_id: "gid://shopify/InventoryAdjustmentGroup/9".into()
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
