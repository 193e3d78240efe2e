//! The log of applied adjustment groups: every `inventoryAdjustQuantities` call a shop
//! applied, as Shopify reports it, kept for tests, `wos-sync up` and the admin API to inspect.

use chrono::{DateTime, Utc};
use model::ids::{InventoryItemId, LocationId};
use serde::{Deserialize, Serialize};

use super::QuantityName;

/// One change of an applied adjustment group, as Shopify reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedChange {
    /// Quantity name (`available`, `on_hand`, …).
    pub name: QuantityName,
    /// Signed change.
    pub delta: i64,
    /// The inventory item.
    pub inventory_item_id: InventoryItemId,
    /// The location.
    pub location_id: LocationId,
    /// The ledger document, for names other than `available`.
    pub ledger_document_uri: Option<String>,
}

/// An applied `inventoryAdjustQuantities` call: what the sandbox logged for tests to check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedGroup {
    /// `gid://shopify/InventoryAdjustmentGroup/<id>`.
    pub id: u64,
    /// When it was applied.
    pub created_at: DateTime<Utc>,
    /// The app (access token) that applied it.
    pub app_id: u64,
    /// The API version of the request.
    pub api_version: String,
    /// The `@idempotent(key:)` it was applied under, if any.
    pub idempotency_key: Option<String>,
    /// The quantity name the input adjusted.
    pub name: QuantityName,
    /// The reason.
    pub reason: String,
    /// The reference document, if any.
    pub reference_document_uri: Option<String>,
    /// Every change, in Shopify's order: the adjusted name's changes in input order, then the
    /// `on_hand` mirrors in the same order (fixture `2025-01-…-parity.json`).
    pub changes: Vec<AppliedChange>,
}

impl AppliedGroup {
    /// The changes of one quantity name, e.g. `available`.
    pub fn changes_named(&self, name: QuantityName) -> impl Iterator<Item = &AppliedChange> {
        self.changes.iter().filter(move |c| c.name == name)
    }
}
