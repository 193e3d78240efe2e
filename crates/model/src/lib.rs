//! Pure types and rules of wos-shopify-sync. No I/O: nothing here reads files, opens
//! sockets or awaits; everything is a function of its arguments, so it is unit-tested
//! exhaustively and shared by every service.
//!
//! | module | owns |
//! |---|---|
//! | [`transaction`] | the WOS inventory transaction and its strict schema validation (CONTRACT §3.2) |
//! | [`delta`] | the delta rules: transaction + warehouse map → Shopify `available` changes or skips |
//! | [`batch`] | batch forming (one reason per call, sums per item and location, the 250 cut, the Int bound) and tracing a refusal back to its adjustments |
//! | [`webhook`] | Shopify product webhook payloads (CONTRACT §3.1) |
//! | [`announcement`] | the item mapping announcement item-ingest publishes for the adjustment-pusher |
//! | [`catalog`] | the Shopify variant mirror, SKU mapping resolution and item field policies (CONTRACT §5) |
//! | [`config`] | the `[[shops]]` configuration and item field policies (CONTRACT §2, §5); reading any configuration section with the exact key in errors |
//! | [`ids`] | typed Shopify ids and their `gid://shopify/...` form |
//! | [`signature`] | Shopify webhook HMAC signatures (sign and constant-time verify) |
//! | [`validate`] | the text rules and error-message quoting the parsers share |
//!
//! Every parser reports the first problem as one line naming the field (JSON path or TOML
//! key) and echoing at most a few dozen escaped characters of the input, so the message can
//! go straight into an `x-error` AMQP header or a start-up error.
//!
//! A module's unit tests live beside it in `module/tests.rs` once they outgrow a screen or two
//! (`catalog`, `config`, `delta`, `transaction`, `webhook`); short ones stay at the end of the
//! module. A module too long to read in one go is a directory of concepts (`catalog/`,
//! `config/`, `webhook/`), its root file saying which file owns what.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod announcement;
pub mod batch;
pub mod catalog;
pub mod config;
pub mod delta;
pub mod ids;
pub mod signature;
pub mod transaction;
pub mod validate;
pub mod webhook;

pub use config::{
    ConfigError, FieldPolicies, FieldPolicy, ItemField, ShopDirectory, ShopSettings, parse_shops,
};
pub use delta::{
    AdjustmentPlan, AdjustmentReason, LocationMap, PlannedChange, Skip, plan_adjustments,
};
pub use ids::{GidError, InventoryItemId, LocationId, ProductId, VariantId};
pub use transaction::{InventoryTransaction, TransactionError, TransactionKind, parse_transaction};
pub use webhook::{
    ProductEvent, ProductPayload, ProductTopic, VariantPayload, WebhookError, parse_product_event,
    parse_shopify_timestamp,
};
