//! What a running sandbox shares: the store, the live throttle settings and fault rules, the
//! calls the `hold` fault holds, the webhook emitter and where it sends, the start
//! configuration and the shutdown token — and setting all of it back to the start. The
//! merchant's operations on it are in [`crate::merchant`].

use std::{
    sync::{Arc, PoisonError, RwLock},
    time::Instant,
};

use tokio_util::sync::CancellationToken;

use crate::{
    config::{SandboxConfig, ShopSeed},
    faults::{Faults, Holds},
    store::{ShopState, Store, StoreError},
    throttle::{LeakyBucket, ThrottleConfig},
    webhooks::WebhookEmitter,
};

/// Everything a running sandbox shares.
#[derive(Debug)]
pub struct SandboxState {
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

impl SandboxState {
    /// The state of a sandbox started with `config`, seeded.
    pub fn new(config: SandboxConfig) -> Result<Arc<Self>, StoreError> {
        let state = Arc::new(Self {
            store: Store::new(config.id_base),
            throttle: RwLock::new(config.throttle),
            faults: Faults::new(config.faults.clone()),
            holds: Holds::new(),
            webhooks: WebhookEmitter::start(config.webhook_max_attempts),
            webhook_url: RwLock::new(config.webhook_url.clone()),
            shutdown: CancellationToken::new(),
            config,
        });
        state.seed(&state.config.seed)?;
        Ok(state)
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
}
