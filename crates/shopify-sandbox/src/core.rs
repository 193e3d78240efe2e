//! The sandbox's shared core: the store, the live throttle and fault settings, held calls,
//! the webhook emitter — and every operation the library handle and the admin API offer,
//! so both do exactly the same thing (including emitting product webhooks).

use std::{
    sync::{
        Arc, PoisonError, RwLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::Instant,
};

use chrono::Utc;
use model::{
    ids::{InventoryItemId, LocationId, ProductId, VariantId},
    webhook::ProductTopic,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{
    config::{SandboxConfig, ShopSeed},
    faults::Faults,
    inventory::{
        AppliedGroup, CreatedProduct, CreatedVariant, LevelSnapshot, ProductSpec, ProductUpdate,
        QuantityName, ShopState, Store, StoreError, VariantSpec, VariantUpdate,
    },
    throttle::{LeakyBucket, ThrottleConfig},
    webhooks::{WebhookEmitter, delete_payload, product_payload},
};

/// Calls held by the `hold` fault until a test releases them.
#[derive(Debug)]
pub struct Holds {
    held: AtomicUsize,
    release: watch::Sender<u64>,
}

impl Holds {
    fn new() -> Self {
        Self {
            held: AtomicUsize::new(0),
            release: watch::channel(0).0,
        }
    }

    /// Waits until the next release (or shutdown).
    pub async fn hold(&self, shutdown: &CancellationToken) {
        let mut releases = self.release.subscribe();
        let generation = *releases.borrow_and_update();
        self.held.fetch_add(1, Ordering::SeqCst);
        loop {
            tokio::select! {
                changed = releases.changed() => {
                    if changed.is_err() || *releases.borrow() > generation {
                        break;
                    }
                }
                () = shutdown.cancelled() => break,
            }
        }
        self.held.fetch_sub(1, Ordering::SeqCst);
    }

    /// Releases every held call; returns how many were held.
    pub fn release_all(&self) -> usize {
        let held = self.held.load(Ordering::SeqCst);
        self.release.send_modify(|g| *g += 1);
        held
    }

    /// How many calls are held now.
    pub fn count(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }
}

/// Everything a running sandbox shares.
#[derive(Debug)]
pub struct Core {
    /// Shops and tokens.
    pub store: Store,
    /// Live throttle settings.
    pub throttle: RwLock<ThrottleConfig>,
    /// Live fault rules.
    pub faults: Faults,
    /// Held calls.
    pub holds: Holds,
    /// Webhook deliveries.
    pub webhooks: Arc<WebhookEmitter>,
    /// Where webhooks go.
    pub webhook_url: RwLock<Option<String>>,
    /// The start configuration (versions, limits, seed).
    pub config: SandboxConfig,
    /// Cancelled when the sandbox stops.
    pub shutdown: CancellationToken,
}

impl Core {
    /// A core for `config`, seeded.
    pub fn new(config: SandboxConfig) -> Result<Arc<Self>, StoreError> {
        let core = Arc::new(Self {
            store: Store::new(config.id_base),
            throttle: RwLock::new(config.throttle),
            faults: Faults::new(config.faults.clone()),
            holds: Holds::new(),
            webhooks: WebhookEmitter::start(config.webhook_max_attempts),
            webhook_url: RwLock::new(config.webhook_url.clone()),
            shutdown: CancellationToken::new(),
            config,
        });
        core.seed(&core.config.seed)?;
        Ok(core)
    }

    /// Creates the seed's shops, locations and products.
    pub fn seed(&self, seed: &[ShopSeed]) -> Result<(), StoreError> {
        for shop in seed {
            self.store.create_shop(&shop.domain, &shop.access_token)?;
            self.set_webhook_secret(&shop.domain, shop.webhook_secret.clone())?;
            for (id, name) in &shop.locations {
                self.create_location(&shop.domain, Some(*id), name)?;
            }
            for product in &shop.products {
                self.create_product(&shop.domain, product)?;
            }
        }
        Ok(())
    }

    /// Back to the start: shops, faults, throttle, webhook log and held calls.
    pub fn reset(&self) -> Result<(), StoreError> {
        self.holds.release_all();
        self.store.clear();
        self.faults.set(self.config.faults.clone());
        self.faults.clear_fired();
        *self
            .throttle
            .write()
            .unwrap_or_else(PoisonError::into_inner) = self.config.throttle;
        self.webhooks.clear();
        self.seed(&self.config.seed)
    }

    /// The live throttle settings.
    pub fn throttle(&self) -> ThrottleConfig {
        *self.throttle.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces the throttle settings (buckets keep their level, capped at the new size).
    pub fn set_throttle(&self, throttle: ThrottleConfig) {
        *self
            .throttle
            .write()
            .unwrap_or_else(PoisonError::into_inner) = throttle;
    }

    /// Sets the level of every bucket of a shop (every app), e.g. 0 to make it throttled now.
    pub fn set_bucket_available(&self, domain: &str, points: f64) -> Result<(), StoreError> {
        let throttle = self.throttle();
        let shop = self.store.shop(domain)?;
        let mut state = shop.lock();
        let now = Instant::now();
        let apps: Vec<u64> = state.apps.iter().map(|a| a.id).collect();
        for app in apps {
            state
                .buckets
                .entry(app)
                .or_insert_with(|| LeakyBucket::full(&throttle, now))
                .set_available(&throttle, now, points);
        }
        Ok(())
    }

    /// Where webhooks go now.
    pub fn webhook_url(&self) -> Option<String> {
        self.webhook_url
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Sets where webhooks go (`None`: nowhere).
    pub fn set_webhook_url(&self, url: Option<String>) {
        *self
            .webhook_url
            .write()
            .unwrap_or_else(PoisonError::into_inner) = url;
    }

    /// Creates a shop with one app.
    pub fn create_shop(&self, domain: &str, access_token: &str) -> Result<(), StoreError> {
        self.store.create_shop(domain, access_token)
    }

    /// Installs another app (token) on a shop.
    pub fn add_app(
        &self,
        domain: &str,
        access_token: &str,
        title: &str,
    ) -> Result<u64, StoreError> {
        self.store.add_app(domain, access_token, title)
    }

    /// Replaces the access scopes of the app `access_token` authenticates.
    pub fn set_app_scopes(&self, access_token: &str, scopes: &[String]) -> Result<(), StoreError> {
        self.store.set_app_scopes(access_token, scopes)
    }

    /// Sets (or clears) a shop's webhook secret.
    pub fn set_webhook_secret(
        &self,
        domain: &str,
        secret: Option<String>,
    ) -> Result<(), StoreError> {
        self.store.shop(domain)?.lock().webhook_secret = secret;
        Ok(())
    }

    /// Runs `f` on a shop's state.
    pub fn with_shop<T>(
        &self,
        domain: &str,
        f: impl FnOnce(&mut ShopState) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let shop = self.store.shop(domain)?;
        let mut state = shop.lock();
        f(&mut state)
    }

    fn emit(&self, state: &ShopState, topic: ProductTopic, product_id: ProductId) {
        let (Some(url), Some(secret)) = (self.webhook_url(), state.webhook_secret.as_deref())
        else {
            return;
        };
        let body = match topic {
            ProductTopic::Delete => delete_payload(product_id),
            ProductTopic::Create | ProductTopic::Update => {
                match product_payload(state, product_id) {
                    Some(body) => body,
                    None => return,
                }
            }
        };
        self.webhooks.emit(
            &url,
            secret,
            &self.config.webhook_api_version,
            &state.domain,
            topic,
            product_id,
            &body,
        );
    }

    /// Adds a location (`id` fixes its id).
    pub fn create_location(
        &self,
        domain: &str,
        id: Option<LocationId>,
        name: &str,
    ) -> Result<LocationId, StoreError> {
        self.with_shop(domain, |s| s.create_location(&self.store.ids, id, name))
    }

    /// Creates a product (webhook `products/create`).
    pub fn create_product(
        &self,
        domain: &str,
        spec: &ProductSpec,
    ) -> Result<CreatedProduct, StoreError> {
        self.with_shop(domain, |s| {
            let created = s.create_product(&self.store.ids, spec, Utc::now())?;
            self.emit(s, ProductTopic::Create, created.product_id);
            Ok(created)
        })
    }

    /// Duplicates a product with its SKUs (webhook `products/create`).
    pub fn duplicate_product(
        &self,
        domain: &str,
        product_id: ProductId,
        title: &str,
    ) -> Result<CreatedProduct, StoreError> {
        self.with_shop(domain, |s| {
            let created = s.duplicate_product(&self.store.ids, product_id, title, Utc::now())?;
            self.emit(s, ProductTopic::Create, created.product_id);
            Ok(created)
        })
    }

    /// Updates a product's fields (webhook `products/update`).
    pub fn update_product(
        &self,
        domain: &str,
        product_id: ProductId,
        update: &ProductUpdate,
    ) -> Result<(), StoreError> {
        self.with_shop(domain, |s| {
            s.update_product(product_id, update, Utc::now())?;
            self.emit(s, ProductTopic::Update, product_id);
            Ok(())
        })
    }

    /// Deletes a product (webhook `products/delete`).
    pub fn delete_product(&self, domain: &str, product_id: ProductId) -> Result<(), StoreError> {
        self.with_shop(domain, |s| {
            s.delete_product(product_id)?;
            self.emit(s, ProductTopic::Delete, product_id);
            Ok(())
        })
    }

    /// Adds a variant, last or at a 1-based `position` (webhook `products/update`).
    pub fn add_variant(
        &self,
        domain: &str,
        product_id: ProductId,
        spec: &VariantSpec,
        position: Option<usize>,
    ) -> Result<CreatedVariant, StoreError> {
        self.with_shop(domain, |s| {
            let created = s.add_variant(&self.store.ids, product_id, spec, position, Utc::now())?;
            self.emit(s, ProductTopic::Update, product_id);
            Ok(created)
        })
    }

    /// The `products/update` body Shopify would send for the product now (`None` if it is
    /// gone): what a webhook of it carries, for tests that deliver webhooks themselves.
    pub fn product_payload(
        &self,
        domain: &str,
        product_id: ProductId,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        self.with_shop(domain, |s| Ok(product_payload(s, product_id)))
    }

    /// Updates a variant, e.g. its SKU (webhook `products/update`).
    pub fn update_variant(
        &self,
        domain: &str,
        variant_id: VariantId,
        update: &VariantUpdate,
    ) -> Result<(), StoreError> {
        self.with_shop(domain, |s| {
            let product_id = s.update_variant(variant_id, update, Utc::now())?;
            self.emit(s, ProductTopic::Update, product_id);
            Ok(())
        })
    }

    /// Deletes a variant (webhook `products/update`).
    pub fn delete_variant(&self, domain: &str, variant_id: VariantId) -> Result<(), StoreError> {
        self.with_shop(domain, |s| {
            let product_id = s.delete_variant(variant_id, Utc::now())?;
            self.emit(s, ProductTopic::Update, product_id);
            Ok(())
        })
    }

    /// Stocks an item at a location with this `available`.
    pub fn stock_item(
        &self,
        domain: &str,
        item: InventoryItemId,
        location: LocationId,
        available: i64,
    ) -> Result<(), StoreError> {
        self.with_shop(domain, |s| s.stock_item(item, location, available))
    }

    /// Sets a stored quantity directly (no adjustment group).
    pub fn set_quantity(
        &self,
        domain: &str,
        item: InventoryItemId,
        location: LocationId,
        name: &str,
        quantity: i64,
    ) -> Result<(), StoreError> {
        self.with_shop(domain, |s| s.set_quantity(item, location, name, quantity))
    }

    /// One quantity, if the shop exists and the item is stocked at the location.
    pub fn quantity(
        &self,
        domain: &str,
        item: InventoryItemId,
        location: LocationId,
        name: &str,
    ) -> Option<i64> {
        let name = QuantityName::parse(name)?;
        self.with_shop(domain, |s| Ok(s.quantity(item, location, name)))
            .ok()
            .flatten()
    }

    /// Every level of a shop with every quantity.
    pub fn inventory(&self, domain: &str) -> Result<Vec<LevelSnapshot>, StoreError> {
        self.with_shop(domain, |s| Ok(s.inventory()))
    }

    /// The log of applied adjustment groups, oldest first.
    pub fn adjustment_groups(&self, domain: &str) -> Result<Vec<AppliedGroup>, StoreError> {
        self.with_shop(domain, |s| {
            Ok(s.groups.iter().map(|g| (**g).clone()).collect())
        })
    }
}
