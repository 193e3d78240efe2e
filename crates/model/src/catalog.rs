//! The Shopify catalog mirror and the SKU mapping rules (CONTRACT 5), as pure functions.
//!
//! item-ingest keeps a mirror of every Shopify variant it has seen ([`MirroredVariant`]) and
//! derives each WOS item's `inventory_item_id` from it. The decisions that live here:
//!
//! - [`apply_product_event`]: how one product webhook changes the mirror, given what the mirror
//!   already holds for that product. Delivery is at least once and unordered, so every variant
//!   carries the version ([`Version`]: timestamp, trigger time, event kind) of the newest event
//!   applied to it, and an older event changes nothing for it (stale). A variant missing from a
//!   newer event's complete listing is gone; a deleted product stays deleted. A variant listed
//!   beyond the 100 Shopify details keeps its state, unless the listing says it changed or it
//!   is unknown: then it must be read from Shopify ([`RefreshRequest`]), and
//!   [`apply_fetched`] applies what Shopify answers.
//! - [`resolve_mapping`]: which variant a SKU's item points at when zero, one or several live
//!   variants carry the SKU (a cloned product): keep the current one while it still carries the
//!   SKU, else the only candidate, else the oldest. This makes the seed's clone walkthrough come
//!   out right without anyone touching the original product. [`resolve_mapping_under`] applies
//!   the shop's policy for `inventory_item_id` (pinning) and holds a SKU while a variant that
//!   carried it is being read; [`conflict_reasons`] says what an operator should look at.
//! - [`item_fields`] / [`merge_item_fields`]: the item columns a variant supplies, and how the
//!   shop's field policies combine them with what WOS already has.
//!
//! | module | owns |
//! |---|---|
//! | `version` | ordering events: [`Version`], [`EventKind`], [`EventClock`] |
//! | `mirror` | a product event applied to the mirror |
//! | `refresh` | variants read from Shopify: what to read, and applying the answer |
//! | `mapping` | the SKU mapping rules, pinning, conflicts |
//! | `columns` | the item columns a variant supplies, merged under the field policies |

mod columns;
mod mapping;
mod mirror;
mod refresh;
#[cfg(test)]
mod tests;
mod version;

pub use columns::{ItemFields, item_fields, merge_item_fields};
pub use mapping::{
    Candidate, ConflictReason, CurrentMapping, MappingBasis, MappingDecision, conflict_reasons,
    resolve_mapping, resolve_mapping_under,
};
pub use mirror::{CatalogChange, MirroredVariant, ProductRecord, apply_product_event};
pub use refresh::{FetchedVariant, RefreshRequest, apply_fetched};
pub use version::{EventClock, EventKind, Version};

/// Shopify's title of the only variant of a product without options.
pub const DEFAULT_VARIANT_TITLE: &str = "Default Title";

/// Shopify puts full details of at most this many variants in a product webhook.
pub const MAX_DETAILED_VARIANTS: usize = 100;
