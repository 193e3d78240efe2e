//! The sandbox's store: what a Shopify shop holds, for every shop of the sandbox.
//!
//! | module | owns |
//! |---|---|
//! | this one | the registry: shops by domain, access tokens to their shop and app, ids |
//! | [`shop`] | one shop's state: its apps (tokens, scopes), locations, buckets and keys |
//! | [`catalog`] | products, variants and inventory items: creating, editing, duplicating, deleting |
//! | [`quantities`] | inventory levels and their named quantities (`on_hand` the sum of its parts) |
//! | [`log`] | the log of applied adjustment groups |
//!
//! Each shop sits behind its own mutex ([`ShopHandle`]), so one shop's traffic, throttling or
//! held requests never slow another shop down. The registry of shops and tokens is a
//! read-mostly `RwLock`. Nothing here speaks HTTP or GraphQL: the GraphQL executor, the admin
//! API and the library handle all call these functions.

pub mod catalog;
pub mod log;
pub mod quantities;
pub mod shop;

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex, MutexGuard, PoisonError, RwLock,
        atomic::{AtomicU64, Ordering},
    },
};

use model::ids::{InventoryItemId, LocationId, ProductId, VariantId};

pub use self::{
    catalog::{
        CreatedProduct, CreatedVariant, Item, Product, ProductSpec, ProductUpdate, Stock, Variant,
        VariantSpec, VariantUpdate,
    },
    log::{AppliedChange, AppliedGroup},
    quantities::{Level, LevelSnapshot, QuantityName},
    shop::{App, DEFAULT_APP_SCOPES, Location, ShopState},
};

/// Locks a mutex, recovering the data if a panicking thread poisoned it: the store's
/// invariants are re-established by every operation, so a poisoned lock holds usable data.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
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

    pub(super) fn reset(&self) {
        self.next.store(self.base, Ordering::Relaxed);
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
}
