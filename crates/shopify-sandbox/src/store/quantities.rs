//! Inventory levels: an inventory item stocked at a location, with its named quantities.
//! `on_hand` is never stored: it is the sum of its parts, so it mirrors every change of them,
//! and `incoming` is not one of them.

use std::collections::BTreeMap;

use model::ids::{InventoryItemId, LocationId};
use serde::{Deserialize, Serialize};

use super::{ShopState, StoreError, catalog::Variant};

/// A named inventory quantity of an inventory level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuantityName {
    /// Sellable stock; what the sync adjusts.
    Available,
    /// Reserved by unfulfilled orders (set by Shopify itself, never adjustable via API).
    Committed,
    /// Unavailable: damaged.
    Damaged,
    /// On its way; not part of `on_hand`.
    Incoming,
    /// Unavailable: quality control.
    QualityControl,
    /// Unavailable: reserved.
    Reserved,
    /// Unavailable: safety stock.
    SafetyStock,
    /// `available + committed + damaged + quality_control + reserved + safety_stock`;
    /// computed, never stored, so it mirrors every change of its parts.
    OnHand,
}

/// The quantities stored per level (every name but the computed `on_hand`).
const STORED: [QuantityName; 7] = [
    QuantityName::Available,
    QuantityName::Committed,
    QuantityName::Damaged,
    QuantityName::Incoming,
    QuantityName::QualityControl,
    QuantityName::Reserved,
    QuantityName::SafetyStock,
];

impl QuantityName {
    /// Every name, in the order Shopify lists them in the fixtures' level reads.
    pub const ALL: [QuantityName; 8] = [
        Self::Available,
        Self::OnHand,
        Self::Committed,
        Self::Incoming,
        Self::Reserved,
        Self::Damaged,
        Self::QualityControl,
        Self::SafetyStock,
    ];

    /// The names `inventoryAdjustQuantities` accepts, in Shopify's error-message order
    /// (fixture `inventory-adjust-name-allowlist.json`).
    pub const ADJUSTABLE: [QuantityName; 6] = [
        Self::Available,
        Self::Damaged,
        Self::Incoming,
        Self::QualityControl,
        Self::Reserved,
        Self::SafetyStock,
    ];

    /// Shopify's spelling, e.g. `quality_control`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Available => "available",
            Self::Committed => "committed",
            Self::Damaged => "damaged",
            Self::Incoming => "incoming",
            Self::QualityControl => "quality_control",
            Self::Reserved => "reserved",
            Self::SafetyStock => "safety_stock",
            Self::OnHand => "on_hand",
        }
    }

    /// Reads Shopify's spelling (exact).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|n| n.as_str() == name)
    }

    /// Whether `inventoryAdjustQuantities` may adjust it.
    pub fn is_adjustable(self) -> bool {
        Self::ADJUSTABLE.contains(&self)
    }

    /// Whether it is part of `on_hand` (so an adjustment of it is mirrored into `on_hand`).
    pub fn counts_in_on_hand(self) -> bool {
        !matches!(self, Self::Incoming | Self::OnHand)
    }

    fn slot(self) -> Option<usize> {
        STORED.iter().position(|&n| n == self)
    }
}

/// An inventory item stocked at a location, with its named quantities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Level {
    /// The item.
    pub item: InventoryItemId,
    /// The location.
    pub location: LocationId,
    quantities: [i64; STORED.len()],
}

impl Level {
    pub(super) fn new(item: InventoryItemId, location: LocationId) -> Self {
        Self {
            item,
            location,
            quantities: [0; STORED.len()],
        }
    }

    /// The quantity of `name`; `on_hand` is the sum of its parts.
    pub fn quantity(&self, name: QuantityName) -> i64 {
        match name.slot() {
            Some(slot) => self.quantities[slot],
            None => STORED
                .iter()
                .filter(|n| n.counts_in_on_hand())
                .filter_map(|n| n.slot())
                .map(|slot| self.quantities[slot])
                .sum(),
        }
    }

    /// Adds `delta` to a stored quantity (`on_hand` follows by construction).
    pub(crate) fn add(&mut self, name: QuantityName, delta: i64) {
        if let Some(slot) = name.slot() {
            self.quantities[slot] = self.quantities[slot].saturating_add(delta);
        }
    }

    /// Sets a stored quantity; `on_hand` cannot be set directly.
    pub(super) fn set(&mut self, name: QuantityName, quantity: i64) -> bool {
        match name.slot() {
            Some(slot) => {
                self.quantities[slot] = quantity;
                true
            }
            None => false,
        }
    }

    /// Every quantity by name (including `on_hand`), in [`QuantityName::ALL`] order.
    pub fn snapshot(&self) -> BTreeMap<QuantityName, i64> {
        QuantityName::ALL
            .into_iter()
            .map(|n| (n, self.quantity(n)))
            .collect()
    }
}

/// One level with every quantity, for tests and the admin API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LevelSnapshot {
    /// The item.
    pub inventory_item_id: InventoryItemId,
    /// The location.
    pub location_id: LocationId,
    /// The SKU of the item's variant, if any.
    pub sku: Option<String>,
    /// Every quantity by name, `on_hand` included.
    pub quantities: BTreeMap<QuantityName, i64>,
}

impl ShopState {
    /// Stocks an item at a location (Shopify's `inventoryActivate`), setting `available`.
    pub fn stock_item(
        &mut self,
        item: InventoryItemId,
        location: LocationId,
        available: i64,
    ) -> Result<(), StoreError> {
        if !self.items.contains_key(&item) {
            return Err(StoreError::UnknownInventoryItem(item));
        }
        if !self.locations.contains_key(&location) {
            return Err(StoreError::UnknownLocation(location));
        }
        let level = self
            .levels
            .entry((item, location))
            .or_insert_with(|| Level::new(item, location));
        level.set(QuantityName::Available, available);
        Ok(())
    }

    /// Sets one stored quantity directly, without logging an adjustment group (test setup:
    /// e.g. `committed` as if orders had been placed).
    pub fn set_quantity(
        &mut self,
        item: InventoryItemId,
        location: LocationId,
        name: &str,
        quantity: i64,
    ) -> Result<(), StoreError> {
        let parsed = QuantityName::parse(name)
            .filter(|n| *n != QuantityName::OnHand)
            .ok_or_else(|| StoreError::InvalidQuantityName(name.to_owned()))?;
        let level = self
            .levels
            .get_mut(&(item, location))
            .ok_or(StoreError::NotStocked(item, location))?;
        level.set(parsed, quantity);
        Ok(())
    }

    /// A quantity by name, if the item is stocked at the location.
    pub fn quantity(
        &self,
        item: InventoryItemId,
        location: LocationId,
        name: QuantityName,
    ) -> Option<i64> {
        self.levels.get(&(item, location)).map(|l| l.quantity(name))
    }

    /// Every level with every quantity.
    pub fn inventory(&self) -> Vec<LevelSnapshot> {
        self.levels
            .values()
            .map(|level| LevelSnapshot {
                inventory_item_id: level.item,
                location_id: level.location,
                sku: self.item_sku(level.item).map(str::to_owned),
                quantities: level.snapshot(),
            })
            .collect()
    }

    /// `available` summed over the variant's item levels (`ProductVariant.inventoryQuantity`).
    pub fn variant_inventory_quantity(&self, variant: &Variant) -> i64 {
        self.levels
            .range((variant.inventory_item_id, LocationId(0))..)
            .take_while(|((item, _), _)| *item == variant.inventory_item_id)
            .map(|(_, level)| level.quantity(QuantityName::Available))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_hand_is_the_sum_of_its_parts_and_excludes_incoming() {
        let mut level = Level::new(InventoryItemId(1), LocationId(2));
        level.add(QuantityName::Available, 5);
        level.add(QuantityName::Damaged, 2);
        level.add(QuantityName::Incoming, 7);
        level.set(QuantityName::Committed, 1);
        assert_eq!(level.quantity(QuantityName::OnHand), 8);
        assert_eq!(level.quantity(QuantityName::Incoming), 7);
        assert!(!level.set(QuantityName::OnHand, 3));
        assert_eq!(level.quantity(QuantityName::OnHand), 8);
    }

    #[test]
    fn quantity_names_round_trip_and_only_six_are_adjustable() {
        for name in QuantityName::ALL {
            assert_eq!(QuantityName::parse(name.as_str()), Some(name));
        }
        assert_eq!(QuantityName::parse("On_Hand"), None);
        let adjustable: Vec<_> = QuantityName::ALL
            .into_iter()
            .filter(|n| n.is_adjustable())
            .map(QuantityName::as_str)
            .collect();
        assert_eq!(adjustable.len(), 6);
        assert!(!QuantityName::Committed.is_adjustable());
        assert!(!QuantityName::OnHand.is_adjustable());
    }
}
