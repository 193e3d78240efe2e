//! The sandbox's store: shops, their apps (access tokens), locations, products, variants,
//! inventory items, inventory levels with their named quantities, and the log of applied
//! adjustment groups.
//!
//! Each shop sits behind its own mutex ([`ShopHandle`]), so one shop's traffic, throttling or
//! held requests never slow another shop down. The registry of shops and tokens is a
//! read-mostly `RwLock`. Nothing here speaks HTTP or GraphQL: the GraphQL executor, the admin
//! API and the library handle all call these functions.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex, MutexGuard, PoisonError, RwLock,
        atomic::{AtomicU64, Ordering},
    },
};

use chrono::{DateTime, Utc};
use model::ids::{InventoryItemId, LocationId, ProductId, VariantId};
use serde::{Deserialize, Serialize};

use crate::{idempotency::IdempotencyStore, throttle::LeakyBucket};

/// Locks a mutex, recovering the data if a panicking thread poisoned it: the store's
/// invariants are re-established by every operation, so a poisoned lock holds usable data.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

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

/// One app installed on a shop: an access token and the bucket/idempotency scope it owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct App {
    /// Numeric app id (`gid://shopify/App/<id>`).
    pub id: u64,
    /// App title, as `inventoryAdjustmentGroup.app.title` shows it.
    pub title: String,
    /// App handle.
    pub handle: String,
    /// The app's API key (a random hex string).
    pub api_key: String,
    /// The `X-Shopify-Access-Token` that authenticates it.
    #[serde(skip)]
    pub access_token: String,
    /// The access scopes granted to it (`currentAppInstallation.accessScopes`).
    pub scopes: Vec<String>,
}

/// The scopes a sandbox app is granted unless told otherwise: what wos-sync needs (adjust
/// inventory, read products, variants and locations), as Shopify lists them for an app that
/// requested `write_inventory,read_products,read_locations` (a write scope comes with its
/// read scope).
pub const DEFAULT_APP_SCOPES: [&str; 4] = [
    "write_inventory",
    "read_inventory",
    "read_products",
    "read_locations",
];

/// A location inventory is stocked at (always active: locations are not deactivated).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Location {
    /// Location id.
    pub id: LocationId,
    /// Display name.
    pub name: String,
}

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
    fn new(item: InventoryItemId, location: LocationId) -> Self {
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
    fn set(&mut self, name: QuantityName, quantity: i64) -> bool {
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

/// Why a store operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// No shop with this domain.
    #[error("unknown shop {0:?}")]
    UnknownShop(String),
    /// A shop with this domain exists.
    #[error("shop {0:?} already exists")]
    DuplicateShop(String),
    /// The access token already belongs to an app (tokens identify the shop and app).
    #[error("this access token is already in use")]
    DuplicateToken,
    /// The access token is empty.
    #[error("the access token must not be empty")]
    EmptyToken,
    /// The domain is not `name.myshopify.com`-like.
    #[error("invalid shop domain {0:?}")]
    InvalidDomain(String),
    /// No such location in the shop.
    #[error("unknown location {0}")]
    UnknownLocation(LocationId),
    /// A location with this id exists.
    #[error("location {0} already exists")]
    DuplicateLocation(LocationId),
    /// No such product in the shop.
    #[error("unknown product {0}")]
    UnknownProduct(ProductId),
    /// No such variant in the shop.
    #[error("unknown variant {0}")]
    UnknownVariant(VariantId),
    /// No such inventory item in the shop.
    #[error("unknown inventory item {0}")]
    UnknownInventoryItem(InventoryItemId),
    /// The item is not stocked at the location.
    #[error("inventory item {0} is not stocked at location {1}")]
    NotStocked(InventoryItemId, LocationId),
    /// Not a quantity name, or `on_hand` (which is computed).
    #[error("quantity name {0:?} cannot be set (on_hand is the sum of its parts)")]
    InvalidQuantityName(String),
    /// A product must keep at least one variant (Shopify's rule).
    #[error("product {0} must keep at least one variant; delete the product instead")]
    LastVariant(ProductId),
    /// A field value was refused.
    #[error("{0}")]
    Invalid(String),
}

/// Hands out Shopify-sized numeric ids, unique across kinds within one sandbox.
#[derive(Debug)]
pub struct IdAllocator {
    next: AtomicU64,
    base: u64,
}

impl IdAllocator {
    /// Ids start at `base` (see `SandboxConfig::id_base`).
    pub fn new(base: u64) -> Self {
        Self {
            next: AtomicU64::new(base.max(1)),
            base: base.max(1),
        }
    }

    /// The next id.
    pub fn next(&self) -> u64 {
        // Spacing ids by 32 makes consecutive ids of one kind look like Shopify's (never
        // adjacent) and keeps them far apart from other kinds' ids in failing-test output.
        self.next.fetch_add(32, Ordering::Relaxed)
    }

    fn reset(&self) {
        self.next.store(self.base, Ordering::Relaxed);
    }
}

/// Everything one shop holds. Accessed through [`ShopHandle::lock`].
#[derive(Debug)]
pub struct ShopState {
    /// `name.myshopify.com`.
    pub domain: String,
    /// The secret product webhooks are signed with (none: no webhooks are emitted).
    pub webhook_secret: Option<String>,
    /// Installed apps (access tokens).
    pub apps: Vec<App>,
    /// Locations by id.
    pub locations: BTreeMap<LocationId, Location>,
    /// Products by id.
    pub products: BTreeMap<ProductId, Product>,
    /// Variants by id.
    pub variants: BTreeMap<VariantId, Variant>,
    /// Inventory items by id.
    pub items: BTreeMap<InventoryItemId, Item>,
    /// Levels by (item, location).
    pub levels: BTreeMap<(InventoryItemId, LocationId), Level>,
    /// Every applied adjustment group, oldest first.
    pub groups: Vec<Arc<AppliedGroup>>,
    /// Idempotency keys per app.
    pub idempotency: IdempotencyStore,
    /// Cost buckets per app id.
    pub buckets: HashMap<u64, LeakyBucket>,
}

impl ShopState {
    fn new(domain: String) -> Self {
        Self {
            domain,
            webhook_secret: None,
            apps: Vec::new(),
            locations: BTreeMap::new(),
            products: BTreeMap::new(),
            variants: BTreeMap::new(),
            items: BTreeMap::new(),
            levels: BTreeMap::new(),
            groups: Vec::new(),
            idempotency: IdempotencyStore::default(),
            buckets: HashMap::new(),
        }
    }

    /// The app with this id.
    pub fn app(&self, id: u64) -> Option<&App> {
        self.apps.iter().find(|a| a.id == id)
    }

    /// Adds a location; `id` picks its id (as the configuration's location map needs),
    /// otherwise one is allocated.
    pub fn create_location(
        &mut self,
        ids: &IdAllocator,
        id: Option<LocationId>,
        name: &str,
    ) -> Result<LocationId, StoreError> {
        let id = id.unwrap_or_else(|| LocationId(ids.next()));
        if self.locations.contains_key(&id) {
            return Err(StoreError::DuplicateLocation(id));
        }
        self.locations.insert(
            id,
            Location {
                id,
                name: name.to_owned(),
            },
        );
        Ok(id)
    }

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

    /// The SKU of an inventory item's variant.
    pub fn item_sku(&self, item: InventoryItemId) -> Option<&str> {
        let variant = self.items.get(&item)?.variant_id;
        self.variants.get(&variant)?.sku.as_deref()
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

/// A shop behind its own lock.
#[derive(Debug)]
pub struct ShopHandle {
    state: Mutex<ShopState>,
}

impl ShopHandle {
    /// Locks the shop.
    pub fn lock(&self) -> MutexGuard<'_, ShopState> {
        lock(&self.state)
    }
}

/// Who an access token belongs to.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The shop.
    pub shop: Arc<ShopHandle>,
    /// The shop's domain.
    pub domain: String,
    /// The app id within the shop.
    pub app_id: u64,
}

/// Every shop, and which token belongs to which shop and app.
#[derive(Debug)]
pub struct Store {
    shops: RwLock<BTreeMap<String, Arc<ShopHandle>>>,
    tokens: RwLock<HashMap<String, (String, u64)>>,
    /// The id allocator shared by every shop.
    pub ids: IdAllocator,
}

impl Store {
    /// An empty store whose ids start at `id_base`.
    pub fn new(id_base: u64) -> Self {
        Self {
            shops: RwLock::new(BTreeMap::new()),
            tokens: RwLock::new(HashMap::new()),
            ids: IdAllocator::new(id_base),
        }
    }

    /// Removes every shop and token and restarts the ids.
    pub fn clear(&self) {
        self.shops
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.tokens
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.ids.reset();
    }

    /// Creates a shop with one app authenticated by `access_token`.
    pub fn create_shop(&self, domain: &str, access_token: &str) -> Result<(), StoreError> {
        let domain = domain.trim().to_lowercase();
        let valid = !domain.is_empty()
            && domain.contains('.')
            && domain
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'));
        if !valid {
            return Err(StoreError::InvalidDomain(domain));
        }
        {
            let mut shops = self.shops.write().unwrap_or_else(PoisonError::into_inner);
            if shops.contains_key(&domain) {
                return Err(StoreError::DuplicateShop(domain));
            }
            // The token check and the insert happen under the shops lock so two concurrent
            // creations cannot both pass the token check.
            if access_token.is_empty() {
                return Err(StoreError::EmptyToken);
            }
            if self
                .tokens
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .contains_key(access_token)
            {
                return Err(StoreError::DuplicateToken);
            }
            shops.insert(
                domain.clone(),
                Arc::new(ShopHandle {
                    state: Mutex::new(ShopState::new(domain.clone())),
                }),
            );
        }
        self.add_app(&domain, access_token, "wos-shopify-sync")
            .map(|_| ())
    }

    /// Installs another app on a shop (its own token, bucket and idempotency scope).
    pub fn add_app(
        &self,
        domain: &str,
        access_token: &str,
        title: &str,
    ) -> Result<u64, StoreError> {
        if access_token.is_empty() {
            return Err(StoreError::EmptyToken);
        }
        let shop = self.shop(domain)?;
        let mut tokens = self.tokens.write().unwrap_or_else(PoisonError::into_inner);
        if tokens.contains_key(access_token) {
            return Err(StoreError::DuplicateToken);
        }
        let app_id = self.ids.next();
        let mut state = shop.lock();
        let handle: String = title
            .to_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        state.apps.push(App {
            id: app_id,
            title: title.to_owned(),
            handle,
            api_key: uuid::Uuid::new_v4().simple().to_string(),
            access_token: access_token.to_owned(),
            scopes: DEFAULT_APP_SCOPES.map(str::to_owned).to_vec(),
        });
        tokens.insert(access_token.to_owned(), (state.domain.clone(), app_id));
        Ok(app_id)
    }

    /// Replaces the access scopes of the app `access_token` authenticates.
    pub fn set_app_scopes(&self, access_token: &str, scopes: &[String]) -> Result<(), StoreError> {
        let (domain, app_id) = self
            .tokens
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(access_token)
            .cloned()
            .ok_or_else(|| StoreError::Invalid("unknown access token".into()))?;
        let shop = self.shop(&domain)?;
        let mut state = shop.lock();
        if let Some(app) = state.apps.iter_mut().find(|a| a.id == app_id) {
            app.scopes = scopes.to_vec();
        }
        Ok(())
    }

    /// The shop with this domain.
    pub fn shop(&self, domain: &str) -> Result<Arc<ShopHandle>, StoreError> {
        let domain = domain.trim().to_lowercase();
        self.shops
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&domain)
            .cloned()
            .ok_or(StoreError::UnknownShop(domain))
    }

    /// Every shop.
    pub fn shops(&self) -> Vec<Arc<ShopHandle>> {
        self.shops
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// The shop and app an access token authenticates.
    pub fn authenticate(&self, access_token: &str) -> Option<Principal> {
        let (domain, app_id) = self
            .tokens
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(access_token)
            .cloned()?;
        let shop = self.shop(&domain).ok()?;
        Some(Principal {
            shop,
            domain,
            app_id,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn now() -> DateTime<Utc> {
        Utc::now()
    }

    fn shop_with_location() -> (Store, Arc<ShopHandle>, LocationId) {
        let store = Store::new(1000);
        store.create_shop("a.myshopify.com", "t").unwrap();
        let shop = store.shop("a.myshopify.com").unwrap();
        let loc = shop
            .lock()
            .create_location(&store.ids, None, "Main")
            .unwrap();
        (store, shop, loc)
    }

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

    #[test]
    fn creating_a_product_makes_variants_items_and_levels() {
        let (store, shop, loc) = shop_with_location();
        let mut state = shop.lock();
        let created = state
            .create_product(
                &store.ids,
                &ProductSpec {
                    title: "Shirt".into(),
                    variants: vec![
                        VariantSpec::sku("S-1").stocked_at(loc, 4),
                        VariantSpec::sku("S-2"),
                    ],
                    ..ProductSpec::default()
                },
                now(),
            )
            .unwrap();
        assert_eq!(created.variants.len(), 2);
        let first = &created.variants[0];
        assert_eq!(
            state.quantity(first.inventory_item_id, loc, QuantityName::Available),
            Some(4)
        );
        assert_eq!(
            state.quantity(first.inventory_item_id, loc, QuantityName::OnHand),
            Some(4)
        );
        assert_eq!(
            state.quantity(
                created.variants[1].inventory_item_id,
                loc,
                QuantityName::Available
            ),
            None
        );
        assert_eq!(state.item_sku(first.inventory_item_id), Some("S-1"));
        assert_eq!(state.products[&created.product_id].handle, "shirt");
    }

    #[test]
    fn a_spec_with_an_unknown_location_creates_nothing() {
        let (store, shop, _) = shop_with_location();
        let mut state = shop.lock();
        let err = state
            .create_product(
                &store.ids,
                &ProductSpec {
                    title: "X".into(),
                    variants: vec![VariantSpec::sku("A").stocked_at(LocationId(5), 1)],
                    ..ProductSpec::default()
                },
                now(),
            )
            .unwrap_err();
        assert_eq!(err, StoreError::UnknownLocation(LocationId(5)));
        assert!(state.products.is_empty());
        assert!(state.variants.is_empty());
    }

    #[test]
    fn duplicating_copies_skus_with_new_ids_and_no_stock() {
        let (store, shop, loc) = shop_with_location();
        let mut state = shop.lock();
        let original = state
            .create_product(
                &store.ids,
                &ProductSpec {
                    title: "Tee".into(),
                    variants: vec![VariantSpec::sku("20A642-XL").stocked_at(loc, 9)],
                    ..ProductSpec::default()
                },
                now(),
            )
            .unwrap();
        let clone = state
            .duplicate_product(&store.ids, original.product_id, "Tee copy", now())
            .unwrap();
        assert_ne!(clone.product_id, original.product_id);
        assert_eq!(clone.variants[0].sku.as_deref(), Some("20A642-XL"));
        assert_ne!(
            clone.variants[0].inventory_item_id,
            original.variants[0].inventory_item_id
        );
        assert_eq!(
            state.quantity(
                clone.variants[0].inventory_item_id,
                loc,
                QuantityName::Available
            ),
            Some(0)
        );
    }

    #[test]
    fn deleting_variants_and_products_removes_items_and_levels() {
        let (store, shop, loc) = shop_with_location();
        let mut state = shop.lock();
        let p = state
            .create_product(
                &store.ids,
                &ProductSpec {
                    title: "P".into(),
                    variants: vec![
                        VariantSpec::sku("A").stocked_at(loc, 1),
                        VariantSpec::sku("B").stocked_at(loc, 1),
                    ],
                    ..ProductSpec::default()
                },
                now(),
            )
            .unwrap();
        let a = &p.variants[0];
        state.delete_variant(a.variant_id, now()).unwrap();
        assert!(!state.items.contains_key(&a.inventory_item_id));
        assert_eq!(
            state.quantity(a.inventory_item_id, loc, QuantityName::Available),
            None
        );
        assert_eq!(
            state.delete_variant(p.variants[1].variant_id, now()),
            Err(StoreError::LastVariant(p.product_id))
        );
        state.delete_product(p.product_id).unwrap();
        assert!(state.levels.is_empty());
        assert!(state.variants.is_empty());
    }

    #[test]
    fn tokens_are_unique_and_authenticate_their_shop_and_app() {
        let store = Store::new(1);
        store.create_shop("a.myshopify.com", "ta").unwrap();
        assert_eq!(
            store.create_shop("b.myshopify.com", "ta"),
            Err(StoreError::DuplicateToken)
        );
        assert_eq!(
            store.create_shop("A.myshopify.com", "tb"),
            Err(StoreError::DuplicateShop("a.myshopify.com".into()))
        );
        let second = store.add_app("a.myshopify.com", "ta2", "other").unwrap();
        let principal = store.authenticate("ta2").unwrap();
        assert_eq!(principal.domain, "a.myshopify.com");
        assert_eq!(principal.app_id, second);
        assert!(store.authenticate("nope").is_none());
        store.clear();
        assert!(store.authenticate("ta").is_none());
    }

    #[test]
    fn sku_updates_and_clearing() {
        let (store, shop, _) = shop_with_location();
        let mut state = shop.lock();
        let p = state
            .create_product(
                &store.ids,
                &ProductSpec {
                    title: "P".into(),
                    variants: vec![VariantSpec::sku("OLD")],
                    ..ProductSpec::default()
                },
                now(),
            )
            .unwrap();
        let v = p.variants[0].variant_id;
        state
            .update_variant(v, &VariantUpdate::sku("NEW"), now())
            .unwrap();
        assert_eq!(state.variants[&v].sku.as_deref(), Some("NEW"));
        let clear: VariantUpdate = serde_json::from_str(r#"{"sku": null}"#).unwrap();
        assert_eq!(clear.sku, Some(None));
        state.update_variant(v, &clear, now()).unwrap();
        assert_eq!(state.variants[&v].sku, None);
        let untouched: VariantUpdate = serde_json::from_str(r#"{"price": "1.00"}"#).unwrap();
        assert_eq!(untouched.sku, None);
    }
}
