//! The item mapping announcement: item-ingest's message that an item's `inventory_item_id`
//! was set, changed or cleared (exchange `wos-sync.item-mappings`, docs/item-mappings.md).
//!
//! It is a hint, delivered at least once and possibly out of order: a consumer (the
//! adjustment-pusher releasing parked adjustments) reads the item's mapping from the `items`
//! table when it acts, rather than trusting `inventory_item_id` here.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{InventoryItemId, VariantId};

/// What happened to the mapping; also the routing key (`mapping.<kind>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MappingChange {
    /// NULL -> an inventory item.
    Set,
    /// One inventory item -> another.
    Changed,
    /// An inventory item -> NULL.
    Cleared,
}

impl MappingChange {
    /// The change from `previous` to `current`; `None` when they are equal.
    pub fn between(
        previous: Option<InventoryItemId>,
        current: Option<InventoryItemId>,
    ) -> Option<Self> {
        match (previous, current) {
            (None, Some(_)) => Some(Self::Set),
            (Some(a), Some(b)) if a != b => Some(Self::Changed),
            (Some(_), None) => Some(Self::Cleared),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Set => "set",
            Self::Changed => "changed",
            Self::Cleared => "cleared",
        }
    }

    /// `mapping.set`, `mapping.changed` or `mapping.cleared`.
    pub fn routing_key(self) -> String {
        format!("mapping.{}", self.as_str())
    }
}

/// The announcement body (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappingAnnouncement {
    pub shop_domain: String,
    pub sku: String,
    pub change: MappingChange,
    pub inventory_item_id: Option<InventoryItemId>,
    pub previous_inventory_item_id: Option<InventoryItemId>,
    /// The Shopify variant now mapped, when known.
    pub variant_id: Option<VariantId>,
    /// Why the mapping came out this way (`only_candidate`, `oldest`, ...).
    pub basis: String,
    pub changed_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_classified_and_routed() {
        let a = Some(InventoryItemId(1));
        let b = Some(InventoryItemId(2));
        assert_eq!(MappingChange::between(None, a), Some(MappingChange::Set));
        assert_eq!(MappingChange::between(a, b), Some(MappingChange::Changed));
        assert_eq!(
            MappingChange::between(a, None),
            Some(MappingChange::Cleared)
        );
        assert_eq!(MappingChange::between(a, a), None);
        assert_eq!(MappingChange::between(None, None), None);
        assert_eq!(MappingChange::Changed.routing_key(), "mapping.changed");
    }

    #[test]
    fn the_body_round_trips_with_large_ids() {
        let announcement = MappingAnnouncement {
            shop_domain: "acme.myshopify.com".into(),
            sku: "20A642-XL".into(),
            change: MappingChange::Set,
            inventory_item_id: Some(InventoryItemId(9_007_199_254_740_993)),
            previous_inventory_item_id: None,
            variant_id: Some(VariantId(42)),
            basis: "only_candidate".into(),
            changed_at: DateTime::parse_from_rfc3339("2026-11-27T10:00:00Z")
                .unwrap()
                .to_utc(),
        };
        let json = serde_json::to_string(&announcement).unwrap();
        assert!(
            json.contains("\"inventory_item_id\":9007199254740993"),
            "{json}"
        );
        assert!(json.contains("\"change\":\"set\""), "{json}");
        let back: MappingAnnouncement = serde_json::from_str(&json).unwrap();
        assert_eq!(back, announcement);
    }
}
