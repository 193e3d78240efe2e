//! `inventoryAdjustQuantities`: Shopify's validation and the application of a group.
//!
//! Every rule is grounded in a captured response in `contract/fixtures/shopify-admin/`:
//! - the quantity-name allowlist and its message (`inventory-adjust-name-allowlist.json`);
//! - the 17 reasons and their message (`inventory-reason-validation.json`);
//! - the ledger-document rules (`inventory-adjust-ledger-document-validation.json`);
//! - unknown items and locations (`inventory-quantity-contracts-2026-04.json`);
//! - zero deltas are skipped, and a call with nothing left returns a null group
//!   (`inventory-adjust-zero-delta-noop.json`);
//! - every name but `incoming` is mirrored into `on_hand`, the mirrors listed after the
//!   adjusted name's changes (`inventory-adjust-on-hand-name-mirrors.json`,
//!   `2025-01-inventory-adjust-quantities-parity.json`).
//!
//! All user errors of a call are collected (Shopify reports several at once, e.g. an invalid
//! name and a missing ledger document); nothing is applied when there is any. The
//! version-dependent checks (`changeFromQuantity` present, `@idempotent` present, 250
//! changes at most) are top-level errors and live in the GraphQL layer.

use std::{collections::HashMap, sync::Arc};

use chrono::{DateTime, SubsecRound, Utc};
use model::ids::{InventoryItemId, LocationId};
use serde_json::Value;

use crate::store::{AppliedChange, AppliedGroup, IdAllocator, QuantityName, ShopState};

/// The reasons Shopify accepts, in its error-message order.
pub const REASONS: [&str; 17] = [
    "correction",
    "cycle_count_available",
    "damaged",
    "movement_canceled",
    "movement_created",
    "movement_received",
    "movement_updated",
    "other",
    "promotion",
    "quality_control",
    "received",
    "reservation_created",
    "reservation_deleted",
    "reservation_updated",
    "restock",
    "safety_stock",
    "shrinkage",
];

/// The most changes one call may carry.
pub const MAX_CHANGES: usize = 250;

/// The bound on a resulting quantity (`INVALID_QUANTITY_TOO_HIGH`/`_TOO_LOW`).
pub const QUANTITY_LIMIT: i64 = 2_000_000_000;

/// A user error (`userErrors[]` of the payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserError {
    /// Path into the input, e.g. `["input", "changes", "0", "locationId"]`.
    pub field: Option<Vec<String>>,
    /// Shopify's message.
    pub message: String,
    /// Shopify's code, e.g. `INVALID_LOCATION`.
    pub code: &'static str,
}

impl UserError {
    fn at(field: &[&str], message: impl Into<String>, code: &'static str) -> Self {
        Self {
            field: Some(field.iter().map(|s| (*s).to_owned()).collect()),
            message: message.into(),
            code,
        }
    }

    fn at_change(index: usize, leaf: &str, message: impl Into<String>, code: &'static str) -> Self {
        Self {
            field: Some(vec![
                "input".to_owned(),
                "changes".to_owned(),
                index.to_string(),
                leaf.to_owned(),
            ]),
            message: message.into(),
            code,
        }
    }

    /// `IDEMPOTENCY_CONCURRENT_REQUEST`.
    pub fn concurrent_request() -> Self {
        Self {
            field: None,
            message: "This request is currently in progress, please try again.".into(),
            code: "IDEMPOTENCY_CONCURRENT_REQUEST",
        }
    }

    /// `IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED` (Shopify's message, in `InventoryAdjustQuantitiesUserErrorCode`'s
    /// sibling enums: retry with a new key).
    pub fn previous_attempt_failed() -> Self {
        Self {
            field: None,
            message: "A previous request with this idempotency key failed. Retry with a new \
                      idempotency key."
                .into(),
            code: "IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED",
        }
    }

    /// `IDEMPOTENCY_KEY_PARAMETER_MISMATCH`.
    pub fn parameter_mismatch() -> Self {
        Self {
            field: None,
            message: "The same idempotency key cannot be used with different operation parameters."
                .into(),
            code: "IDEMPOTENCY_KEY_PARAMETER_MISMATCH",
        }
    }
}

/// What a call did; what an idempotency key replays.
#[derive(Debug, Clone, PartialEq)]
pub enum AdjustOutcome {
    /// A group was applied.
    Applied(Arc<AppliedGroup>),
    /// Every delta was zero: nothing applied, `inventoryAdjustmentGroup: null`, no errors.
    NoOp,
    /// Refused; nothing applied.
    UserErrors(Arc<Vec<UserError>>),
}

/// `changeFromQuantity` as given: absent, explicit `null`, or a value to compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeFrom {
    /// Not in the input (an error from 2026-04 on, checked by the GraphQL layer).
    Absent,
    /// `null`: no compare-and-swap.
    Null,
    /// Apply only if the quantity is this.
    Value(i64),
}

/// One change of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRequest {
    /// Signed change.
    pub delta: i64,
    /// `gid://shopify/InventoryItem/<n>` as given.
    pub inventory_item_id: String,
    /// `gid://shopify/Location/<n>` as given.
    pub location_id: String,
    /// Ledger document, required for every name but `available`.
    pub ledger_document_uri: Option<String>,
    /// Compare-and-swap value.
    pub change_from_quantity: ChangeFrom,
}

/// `InventoryAdjustQuantitiesInput`, read from the coerced argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdjustRequest {
    /// Quantity name to adjust.
    pub name: String,
    /// Reason.
    pub reason: String,
    /// Reference document.
    pub reference_document_uri: Option<String>,
    /// The changes.
    pub changes: Vec<ChangeRequest>,
}

impl AdjustRequest {
    /// Reads the argument after input coercion (so the types are already right); `None` if
    /// it is not shaped like `InventoryAdjustQuantitiesInput`.
    pub fn from_coerced(input: &Value) -> Option<Self> {
        let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
        let changes = input
            .get("changes")?
            .as_array()?
            .iter()
            .map(|change| {
                Some(ChangeRequest {
                    delta: change.get("delta")?.as_i64()?,
                    inventory_item_id: text(change.get("inventoryItemId"))?,
                    location_id: text(change.get("locationId"))?,
                    ledger_document_uri: text(change.get("ledgerDocumentUri")),
                    change_from_quantity: match change.get("changeFromQuantity") {
                        None => ChangeFrom::Absent,
                        Some(Value::Null) => ChangeFrom::Null,
                        Some(v) => ChangeFrom::Value(v.as_i64()?),
                    },
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            name: text(input.get("name"))?,
            reason: text(input.get("reason"))?,
            reference_document_uri: text(input.get("referenceDocumentUri")),
            changes,
        })
    }
}

/// Who is adjusting, for the log.
#[derive(Debug, Clone, Copy)]
pub struct AdjustContext<'a> {
    /// The app (access token).
    pub app_id: u64,
    /// The request's API version.
    pub api_version: &'a str,
    /// The `@idempotent` key, if any.
    pub idempotency_key: Option<&'a str>,
    /// The time to stamp.
    pub now: DateTime<Utc>,
}

/// Whether `uri` is an absolute URI: a scheme (`ALPHA *(ALPHA / DIGIT / + / - / .)`), a
/// colon, and something after it, without whitespace or control characters.
pub fn is_uri(uri: &str) -> bool {
    let Some((scheme, rest)) = uri.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    let scheme_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    scheme_ok && !rest.is_empty() && !uri.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn name_error() -> UserError {
    let names: Vec<&str> = QuantityName::ADJUSTABLE
        .iter()
        .map(|n| n.as_str())
        .collect();
    UserError::at(
        &["input", "name"],
        format!(
            "The specified quantity name is invalid. Valid values are: {}.",
            names.join(", ")
        ),
        "INVALID_QUANTITY_NAME",
    )
}

fn reason_error() -> UserError {
    UserError::at(
        &["input", "reason"],
        format!(
            "The specified reason is invalid. Valid values are: {}.",
            REASONS.join(", ")
        ),
        "INVALID_REASON",
    )
}

/// A change whose ids resolved.
struct Resolved {
    index: usize,
    item: InventoryItemId,
    location: LocationId,
    delta: i64,
    change_from: ChangeFrom,
    ledger: Option<String>,
}

/// Validates and, if everything is valid, applies one call. Never panics on input.
pub fn adjust_quantities(
    state: &mut ShopState,
    ids: &IdAllocator,
    request: &AdjustRequest,
    context: AdjustContext<'_>,
) -> AdjustOutcome {
    let mut errors = Vec::new();
    let name = QuantityName::parse(&request.name).filter(|n| n.is_adjustable());
    if name.is_none() {
        errors.push(name_error());
    }
    if !REASONS.contains(&request.reason.as_str()) {
        errors.push(reason_error());
    }
    if let Some(uri) = &request.reference_document_uri
        && !is_uri(uri)
    {
        errors.push(UserError::at(
            &["input", "referenceDocumentUri"],
            "The specified reference document is invalid.",
            "INVALID_REFERENCE_DOCUMENT",
        ));
    }
    let adjusting_available = name == Some(QuantityName::Available);

    let mut resolved = Vec::with_capacity(request.changes.len());
    for (index, change) in request.changes.iter().enumerate() {
        let item = InventoryItemId::parse_gid(&change.inventory_item_id)
            .ok()
            .filter(|id| state.items.contains_key(id));
        if item.is_none() {
            errors.push(UserError::at_change(
                index,
                "inventoryItemId",
                "The specified inventory item could not be found.",
                "INVALID_INVENTORY_ITEM",
            ));
        }
        let location = LocationId::parse_gid(&change.location_id)
            .ok()
            .filter(|id| state.locations.contains_key(id));
        if location.is_none() {
            errors.push(UserError::at_change(
                index,
                "locationId",
                "The specified location could not be found.",
                "INVALID_LOCATION",
            ));
        }
        if let (Some(item), Some(location)) = (item, location)
            && !state.levels.contains_key(&(item, location))
        {
            errors.push(UserError::at_change(
                index,
                "locationId",
                "The inventory item is not stocked at the location.",
                "ITEM_NOT_STOCKED_AT_LOCATION",
            ));
        }
        if let Some(error) =
            ledger_error(adjusting_available, change.ledger_document_uri.as_deref())
        {
            errors.push(UserError::at_change(
                index,
                "ledgerDocumentUri",
                error.0,
                error.1,
            ));
        }
        if let (Some(item), Some(location)) = (item, location) {
            resolved.push(Resolved {
                index,
                item,
                location,
                delta: change.delta,
                change_from: change.change_from_quantity,
                ledger: change.ledger_document_uri.clone(),
            });
        }
    }
    let mut ledgers: Vec<&str> = request
        .changes
        .iter()
        .filter_map(|c| c.ledger_document_uri.as_deref())
        .collect();
    ledgers.sort_unstable();
    ledgers.dedup();
    if ledgers.len() > 1 {
        errors.push(UserError::at(
            &["input", "changes"],
            "All changes must have the same ledger document URI or, in the case of adjusting \
             available, no ledger document URI.",
            "MAX_ONE_LEDGER_DOCUMENT",
        ));
    }
    let Some(name) = name else {
        return AdjustOutcome::UserErrors(Arc::new(errors));
    };
    if !errors.is_empty() {
        return AdjustOutcome::UserErrors(Arc::new(errors));
    }

    // Compare-and-swap and range checks, in input order, as if the earlier changes of the
    // same call had been applied (two changes of one pair in one call chain).
    let mut pending: HashMap<(InventoryItemId, LocationId), i64> = HashMap::new();
    let nonzero: Vec<&Resolved> = resolved.iter().filter(|c| c.delta != 0).collect();
    for change in &nonzero {
        let pair = (change.item, change.location);
        let current = state
            .quantity(change.item, change.location, name)
            .unwrap_or(0)
            + pending.get(&pair).copied().unwrap_or(0);
        if let ChangeFrom::Value(expected) = change.change_from
            && expected != current
        {
            errors.push(UserError::at_change(
                change.index,
                "changeFromQuantity",
                "The changeFromQuantity argument no longer matches the persisted quantity.",
                "CHANGE_FROM_QUANTITY_STALE",
            ));
        }
        let after = current.saturating_add(change.delta);
        if after > QUANTITY_LIMIT {
            errors.push(UserError::at_change(
                change.index,
                "delta",
                "The quantity can't be higher than 2,000,000,000.",
                "INVALID_QUANTITY_TOO_HIGH",
            ));
        } else if after < -QUANTITY_LIMIT {
            errors.push(UserError::at_change(
                change.index,
                "delta",
                "The quantity can't be lower than -2,000,000,000.",
                "INVALID_QUANTITY_TOO_LOW",
            ));
        }
        *pending.entry(pair).or_insert(0) += change.delta;
    }
    if !errors.is_empty() {
        return AdjustOutcome::UserErrors(Arc::new(errors));
    }
    if nonzero.is_empty() {
        return AdjustOutcome::NoOp;
    }

    let now = context.now.trunc_subsecs(0);
    let mut changes = Vec::with_capacity(nonzero.len() * 2);
    for change in &nonzero {
        if let Some(level) = state.levels.get_mut(&(change.item, change.location)) {
            level.add(name, change.delta);
        }
        changes.push(AppliedChange {
            name,
            delta: change.delta,
            inventory_item_id: change.item,
            location_id: change.location,
            ledger_document_uri: change.ledger.clone(),
        });
    }
    if name.counts_in_on_hand() {
        for change in &nonzero {
            changes.push(AppliedChange {
                name: QuantityName::OnHand,
                delta: change.delta,
                inventory_item_id: change.item,
                location_id: change.location,
                ledger_document_uri: None,
            });
        }
    }
    let group = Arc::new(AppliedGroup {
        id: ids.next(),
        created_at: now,
        app_id: context.app_id,
        api_version: context.api_version.to_owned(),
        idempotency_key: context.idempotency_key.map(str::to_owned),
        name,
        reason: request.reason.clone(),
        reference_document_uri: request.reference_document_uri.clone(),
        changes,
    });
    state.groups.push(Arc::clone(&group));
    AdjustOutcome::Applied(group)
}

/// The ledger-document rule a change breaks, if any: `(message, code)`.
fn ledger_error(
    adjusting_available: bool,
    ledger: Option<&str>,
) -> Option<(&'static str, &'static str)> {
    match (adjusting_available, ledger) {
        (true, None) => None,
        (true, Some(_)) => Some((
            "A ledger document URI is not allowed when adjusting available.",
            "INVALID_AVAILABLE_DOCUMENT",
        )),
        (false, None) => Some((
            "A ledger document URI is required except when adjusting available.",
            "INVALID_QUANTITY_DOCUMENT",
        )),
        (false, Some(uri)) if uri.starts_with("gid://shopify/") => Some((
            "Internal (gid://shopify/) ledger documents are not allowed to be adjusted via API.",
            "INTERNAL_LEDGER_DOCUMENT",
        )),
        (false, Some(uri)) if !is_uri(uri) => Some((
            "The specified ledger document is invalid.",
            "INVALID_LEDGER_DOCUMENT",
        )),
        (false, Some(_)) => None,
    }
}

#[cfg(test)]
mod tests;
