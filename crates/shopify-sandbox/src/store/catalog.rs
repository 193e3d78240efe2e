//! The catalog: products, their variants and the variants' inventory items, as a merchant
//! makes them — created from a spec (stocked where it says), edited, reordered, duplicated
//! (Shopify's "Duplicate" copies the SKUs: the clone of the seed's walkthrough) and deleted.

use chrono::{DateTime, Utc};
use model::ids::{InventoryItemId, LocationId, ProductId, VariantId};
use serde::{Deserialize, Serialize};

use super::{IdAllocator, Level, QuantityName, ShopState, StoreError};

/// A product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Product {
    /// Product id.
    pub id: ProductId,
    /// Title.
    pub title: String,
    /// URL handle, unique per shop.
    pub handle: String,
    /// HTML description.
    pub body_html: Option<String>,
    /// Vendor (`""` when none).
    pub vendor: String,
    /// Product type (`""` when none).
    pub product_type: String,
    /// `active`, `draft` or `archived` (REST spelling).
    pub status: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change of the product or one of its variants.
    pub updated_at: DateTime<Utc>,
    /// Its variants, by position.
    pub variants: Vec<VariantId>,
}

/// A product variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Variant {
    /// Variant id.
    pub id: VariantId,
    /// Its product.
    pub product_id: ProductId,
    /// Title, e.g. `Default Title` or `Small`.
    pub title: String,
    /// SKU; `None` when it has none.
    pub sku: Option<String>,
    /// Barcode.
    pub barcode: Option<String>,
    /// Price as a decimal string.
    pub price: String,
    /// Its inventory item.
    pub inventory_item_id: InventoryItemId,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// An inventory item (one per variant).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    /// Inventory item id.
    pub id: InventoryItemId,
    /// Its variant.
    pub variant_id: VariantId,
}

/// What creating a product should make.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductSpec {
    /// Title (required by Shopify; an empty title is refused).
    pub title: String,
    /// Vendor.
    #[serde(default)]
    pub vendor: Option<String>,
    /// Product type.
    #[serde(default)]
    pub product_type: Option<String>,
    /// `active` (default), `draft` or `archived`.
    #[serde(default)]
    pub status: Option<String>,
    /// HTML description.
    #[serde(default)]
    pub body_html: Option<String>,
    /// Variants; none means one `Default Title` variant without SKU, as in Shopify.
    #[serde(default)]
    pub variants: Vec<VariantSpec>,
}

/// One variant of a [`ProductSpec`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantSpec {
    /// SKU.
    #[serde(default)]
    pub sku: Option<String>,
    /// Title; defaults to the SKU, or `Default Title`.
    #[serde(default)]
    pub title: Option<String>,
    /// Barcode.
    #[serde(default)]
    pub barcode: Option<String>,
    /// Price; defaults to `0.00`.
    #[serde(default)]
    pub price: Option<String>,
    /// Where the new inventory item is stocked, with its initial `available`.
    #[serde(default)]
    pub stock: Vec<Stock>,
}

impl VariantSpec {
    /// A variant with this SKU, stocked nowhere.
    pub fn sku(sku: impl Into<String>) -> Self {
        Self {
            sku: Some(sku.into()),
            ..Self::default()
        }
    }

    /// Stocks it at `location` with `available` units (builder style).
    pub fn stocked_at(mut self, location: LocationId, available: i64) -> Self {
        self.stock.push(Stock {
            location_id: location,
            available,
        });
        self
    }
}

/// An initial stock level of a new variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stock {
    /// Where.
    pub location_id: LocationId,
    /// Initial `available` (and so `on_hand`).
    #[serde(default)]
    pub available: i64,
}

/// Changes to a product's own fields; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductUpdate {
    /// New title.
    #[serde(default)]
    pub title: Option<String>,
    /// New vendor.
    #[serde(default)]
    pub vendor: Option<String>,
    /// New product type.
    #[serde(default)]
    pub product_type: Option<String>,
    /// New status.
    #[serde(default)]
    pub status: Option<String>,
    /// New description.
    #[serde(default)]
    pub body_html: Option<String>,
}

/// Changes to a variant; `None` leaves a field as it is, `Some(None)` clears it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantUpdate {
    /// New SKU (`Some(None)` clears it).
    #[serde(default, with = "double_option")]
    pub sku: Option<Option<String>>,
    /// New barcode (`Some(None)` clears it).
    #[serde(default, with = "double_option")]
    pub barcode: Option<Option<String>>,
    /// New price.
    #[serde(default)]
    pub price: Option<String>,
    /// New title.
    #[serde(default)]
    pub title: Option<String>,
}

impl VariantUpdate {
    /// Changes only the SKU.
    pub fn sku(sku: impl Into<String>) -> Self {
        Self {
            sku: Some(Some(sku.into())),
            ..Self::default()
        }
    }
}

/// `Option<Option<T>>` where an absent field is `None` and an explicit `null` is `Some(None)`.
mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer, T: Serialize>(
        value: &Option<Option<T>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            None => serializer.serialize_none(),
            Some(inner) => inner.serialize(serializer),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        deserializer: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(deserializer).map(Some)
    }
}

/// What [`ShopState::create_product`] made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedProduct {
    /// The product.
    pub product_id: ProductId,
    /// Its variants, in spec order.
    pub variants: Vec<CreatedVariant>,
}

/// One created variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedVariant {
    /// The variant.
    pub variant_id: VariantId,
    /// Its inventory item.
    pub inventory_item_id: InventoryItemId,
    /// Its SKU.
    pub sku: Option<String>,
}

impl ShopState {
    /// Creates a product, its variants and their inventory items, stocked as the spec says.
    pub fn create_product(
        &mut self,
        ids: &IdAllocator,
        spec: &ProductSpec,
        now: DateTime<Utc>,
    ) -> Result<CreatedProduct, StoreError> {
        if spec.title.trim().is_empty() {
            return Err(StoreError::Invalid("a product needs a title".into()));
        }
        let status = normalize_status(spec.status.as_deref())?;
        // Check every stock location first so a refused spec creates nothing.
        for variant in &spec.variants {
            for stock in &variant.stock {
                if !self.locations.contains_key(&stock.location_id) {
                    return Err(StoreError::UnknownLocation(stock.location_id));
                }
            }
        }
        let product_id = ProductId(ids.next());
        let handle = self.unique_handle(&spec.title);
        self.products.insert(
            product_id,
            Product {
                id: product_id,
                title: spec.title.clone(),
                handle,
                body_html: spec.body_html.clone(),
                vendor: spec.vendor.clone().unwrap_or_default(),
                product_type: spec.product_type.clone().unwrap_or_default(),
                status,
                created_at: now,
                updated_at: now,
                variants: Vec::new(),
            },
        );
        let default_variant = [VariantSpec {
            title: Some("Default Title".into()),
            ..VariantSpec::default()
        }];
        let specs = if spec.variants.is_empty() {
            &default_variant[..]
        } else {
            &spec.variants[..]
        };
        let mut variants = Vec::with_capacity(specs.len());
        for variant in specs {
            variants.push(self.insert_variant(ids, product_id, variant, now)?);
        }
        Ok(CreatedProduct {
            product_id,
            variants,
        })
    }

    fn unique_handle(&self, title: &str) -> String {
        let mut base: String = title
            .to_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        while base.contains("--") {
            base = base.replace("--", "-");
        }
        let base = base.trim_matches('-').to_owned();
        let base = if base.is_empty() {
            "product".to_owned()
        } else {
            base
        };
        let taken = |h: &str| self.products.values().any(|p| p.handle == h);
        if !taken(&base) {
            return base;
        }
        (1..)
            .map(|n| format!("{base}-{n}"))
            .find(|h| !taken(h))
            .unwrap_or(base)
    }

    fn insert_variant(
        &mut self,
        ids: &IdAllocator,
        product_id: ProductId,
        spec: &VariantSpec,
        now: DateTime<Utc>,
    ) -> Result<CreatedVariant, StoreError> {
        for stock in &spec.stock {
            if !self.locations.contains_key(&stock.location_id) {
                return Err(StoreError::UnknownLocation(stock.location_id));
            }
        }
        let product = self
            .products
            .get_mut(&product_id)
            .ok_or(StoreError::UnknownProduct(product_id))?;
        let variant_id = VariantId(ids.next());
        let item_id = InventoryItemId(ids.next());
        let sku = spec.sku.clone().filter(|s| !s.is_empty());
        let title = spec
            .title
            .clone()
            .or_else(|| sku.clone())
            .unwrap_or_else(|| "Default Title".to_owned());
        product.variants.push(variant_id);
        product.updated_at = now;
        self.variants.insert(
            variant_id,
            Variant {
                id: variant_id,
                product_id,
                title,
                sku: sku.clone(),
                barcode: spec.barcode.clone(),
                price: spec.price.clone().unwrap_or_else(|| "0.00".to_owned()),
                inventory_item_id: item_id,
                created_at: now,
                updated_at: now,
            },
        );
        self.items.insert(
            item_id,
            Item {
                id: item_id,
                variant_id,
            },
        );
        for stock in &spec.stock {
            let level = self
                .levels
                .entry((item_id, stock.location_id))
                .or_insert_with(|| Level::new(item_id, stock.location_id));
            level.set(QuantityName::Available, stock.available);
        }
        Ok(CreatedVariant {
            variant_id,
            inventory_item_id: item_id,
            sku,
        })
    }

    /// Adds a variant to an existing product: last, or at 1-based `position` (later variants
    /// move down one, as when a merchant reorders).
    pub fn add_variant(
        &mut self,
        ids: &IdAllocator,
        product_id: ProductId,
        spec: &VariantSpec,
        position: Option<usize>,
        now: DateTime<Utc>,
    ) -> Result<CreatedVariant, StoreError> {
        let count = self
            .products
            .get(&product_id)
            .ok_or(StoreError::UnknownProduct(product_id))?
            .variants
            .len();
        if let Some(position) = position.filter(|p| !(1..=count + 1).contains(p)) {
            return Err(StoreError::Invalid(format!(
                "position {position} is outside 1..={}",
                count + 1
            )));
        }
        let created = self.insert_variant(ids, product_id, spec, now)?;
        if let (Some(position), Some(product)) = (position, self.products.get_mut(&product_id)) {
            let added = product.variants.pop().unwrap_or(created.variant_id);
            product.variants.insert(position - 1, added);
        }
        Ok(created)
    }

    /// Updates a product's own fields.
    pub fn update_product(
        &mut self,
        product_id: ProductId,
        update: &ProductUpdate,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let status = match &update.status {
            Some(s) => Some(normalize_status(Some(s))?),
            None => None,
        };
        if update.title.as_deref().is_some_and(|t| t.trim().is_empty()) {
            return Err(StoreError::Invalid("a product needs a title".into()));
        }
        let product = self
            .products
            .get_mut(&product_id)
            .ok_or(StoreError::UnknownProduct(product_id))?;
        if let Some(title) = &update.title {
            product.title = title.clone();
        }
        if let Some(vendor) = &update.vendor {
            product.vendor = vendor.clone();
        }
        if let Some(product_type) = &update.product_type {
            product.product_type = product_type.clone();
        }
        if let Some(status) = status {
            product.status = status;
        }
        if let Some(body) = &update.body_html {
            product.body_html = Some(body.clone());
        }
        product.updated_at = now;
        Ok(())
    }

    /// Updates a variant (SKU, barcode, price, title); returns its product.
    pub fn update_variant(
        &mut self,
        variant_id: VariantId,
        update: &VariantUpdate,
        now: DateTime<Utc>,
    ) -> Result<ProductId, StoreError> {
        let variant = self
            .variants
            .get_mut(&variant_id)
            .ok_or(StoreError::UnknownVariant(variant_id))?;
        if let Some(sku) = &update.sku {
            variant.sku = sku.clone().filter(|s| !s.is_empty());
        }
        if let Some(barcode) = &update.barcode {
            variant.barcode = barcode.clone();
        }
        if let Some(price) = &update.price {
            variant.price = price.clone();
        }
        if let Some(title) = &update.title {
            variant.title = title.clone();
        }
        variant.updated_at = now;
        let product_id = variant.product_id;
        if let Some(product) = self.products.get_mut(&product_id) {
            product.updated_at = now;
        }
        Ok(product_id)
    }

    /// Deletes a variant, its inventory item and levels; returns its product. A product's
    /// last variant cannot be deleted (Shopify's rule): delete the product instead.
    pub fn delete_variant(
        &mut self,
        variant_id: VariantId,
        now: DateTime<Utc>,
    ) -> Result<ProductId, StoreError> {
        let variant = self
            .variants
            .get(&variant_id)
            .ok_or(StoreError::UnknownVariant(variant_id))?;
        let product_id = variant.product_id;
        let item_id = variant.inventory_item_id;
        let product = self
            .products
            .get_mut(&product_id)
            .ok_or(StoreError::UnknownProduct(product_id))?;
        if product.variants.len() <= 1 {
            return Err(StoreError::LastVariant(product_id));
        }
        product.variants.retain(|v| *v != variant_id);
        product.updated_at = now;
        self.variants.remove(&variant_id);
        self.remove_item(item_id);
        Ok(product_id)
    }

    /// Deletes a product with its variants, inventory items and levels.
    pub fn delete_product(&mut self, product_id: ProductId) -> Result<(), StoreError> {
        let product = self
            .products
            .remove(&product_id)
            .ok_or(StoreError::UnknownProduct(product_id))?;
        for variant_id in product.variants {
            if let Some(variant) = self.variants.remove(&variant_id) {
                self.remove_item(variant.inventory_item_id);
            }
        }
        Ok(())
    }

    fn remove_item(&mut self, item_id: InventoryItemId) {
        self.items.remove(&item_id);
        self.levels.retain(|(item, _), _| *item != item_id);
    }

    /// Shopify's "Duplicate" (`productDuplicate`): a new product with copies of every
    /// variant, SKUs included — the clone of the seed's walkthrough. The copies are stocked
    /// where the originals are, with `available` 0 (inventory is not copied).
    pub fn duplicate_product(
        &mut self,
        ids: &IdAllocator,
        product_id: ProductId,
        new_title: &str,
        now: DateTime<Utc>,
    ) -> Result<CreatedProduct, StoreError> {
        let original = self
            .products
            .get(&product_id)
            .ok_or(StoreError::UnknownProduct(product_id))?;
        let variants = original
            .variants
            .iter()
            .filter_map(|id| self.variants.get(id))
            .map(|v| VariantSpec {
                sku: v.sku.clone(),
                title: Some(v.title.clone()),
                barcode: v.barcode.clone(),
                price: Some(v.price.clone()),
                stock: self
                    .levels
                    .keys()
                    .filter(|(item, _)| *item == v.inventory_item_id)
                    .map(|&(_, location_id)| Stock {
                        location_id,
                        available: 0,
                    })
                    .collect(),
            })
            .collect();
        let spec = ProductSpec {
            title: new_title.to_owned(),
            vendor: Some(original.vendor.clone()),
            product_type: Some(original.product_type.clone()),
            status: Some(original.status.clone()),
            body_html: original.body_html.clone(),
            variants,
        };
        self.create_product(ids, &spec, now)
    }

    /// The SKU of an inventory item's variant.
    pub fn item_sku(&self, item: InventoryItemId) -> Option<&str> {
        let variant = self.items.get(&item)?.variant_id;
        self.variants.get(&variant)?.sku.as_deref()
    }
}

/// `active` unless said otherwise; Shopify's three statuses only.
fn normalize_status(status: Option<&str>) -> Result<String, StoreError> {
    match status.map(str::to_lowercase).as_deref() {
        None => Ok("active".to_owned()),
        Some(s @ ("active" | "draft" | "archived")) => Ok(s.to_owned()),
        Some(other) => Err(StoreError::Invalid(format!(
            "status must be active, draft or archived, got {other:?}"
        ))),
    }
}

#[cfg(test)]
mod tests;
