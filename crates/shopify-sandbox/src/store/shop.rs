//! One shop's state: its apps (access tokens and the scopes they were granted), its
//! locations, and what the GraphQL endpoint keeps per app (cost buckets, idempotency keys),
//! besides the catalog, the levels and the adjustment log of the other modules.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use model::ids::{InventoryItemId, LocationId, ProductId, VariantId};
use serde::Serialize;

use super::{AppliedGroup, IdAllocator, Item, Level, Product, StoreError, Variant};
use crate::{idempotency::IdempotencyStore, throttle::LeakyBucket};

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

/// Everything one shop holds. Accessed through [`super::ShopHandle::lock`].
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
    pub(super) fn new(domain: String) -> Self {
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
}
