//! The library's entry: [`Sandbox::start`] binds and serves a sandbox, and the
//! [`SandboxHandle`] it returns sets the sandbox up and shows what happened in it — for tests,
//! benchmarks and `wos-sync up`. Every setup call goes through the same operations as the
//! admin API ([`crate::merchant`]), so product changes send their webhooks either way.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use model::ids::{InventoryItemId, LocationId, ProductId, VariantId};
use tokio::task::JoinHandle;

use crate::{
    config::SandboxConfig,
    faults::{FaultConfig, FiredFault},
    killable::{ConnControl, KillableListener},
    server,
    state::SandboxState,
    store::{
        AppliedGroup, CreatedProduct, CreatedVariant, LevelSnapshot, ProductSpec, ProductUpdate,
        StoreError, VariantSpec, VariantUpdate,
    },
    throttle::ThrottleConfig,
    webhooks::WebhookDelivery,
};

/// Why a sandbox could not start or an operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The configuration is inconsistent.
    #[error("invalid sandbox configuration: {0}")]
    Config(String),
    /// A store operation was refused.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Starts sandboxes.
#[derive(Debug)]
pub struct Sandbox;

impl Sandbox {
    /// Binds `config.listen` (default `127.0.0.1:0`), seeds, and serves until
    /// [`SandboxHandle::shutdown`] (or the handle is dropped).
    pub async fn start(config: SandboxConfig) -> Result<SandboxHandle, SandboxError> {
        config.api_versions.validate().map_err(|(key, reason)| {
            SandboxError::Config(format!("api_versions.{key}: {reason}"))
        })?;
        config
            .faults
            .validate()
            .map_err(|(key, reason)| SandboxError::Config(format!("faults.{key}: {reason}")))?;
        let listen = config.listen;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|source| SandboxError::Bind {
                addr: listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| SandboxError::Bind {
            addr: listen,
            source,
        })?;
        let state = SandboxState::new(config)?;
        let app =
            server::router(Arc::clone(&state)).into_make_service_with_connect_info::<ConnControl>();
        let shutdown = state.shutdown.clone();
        let server = tokio::spawn(async move {
            let served = axum::serve(KillableListener::new(listener), app)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await;
            if let Err(err) = served {
                tracing::error!(error = %err, "sandbox server failed");
            }
        });
        tracing::info!(listen = %addr, "shopify sandbox listening");
        Ok(SandboxHandle {
            state,
            addr,
            server: Some(server),
        })
    }
}

/// A running sandbox: its address, and direct access to its state for setup and assertions.
/// Dropping it stops the server.
#[derive(Debug)]
pub struct SandboxHandle {
    state: Arc<SandboxState>,
    addr: SocketAddr,
    server: Option<JoinHandle<()>>,
}

impl Drop for SandboxHandle {
    fn drop(&mut self) {
        self.state.shutdown.cancel();
    }
}

impl SandboxHandle {
    /// `http://127.0.0.1:<port>`: the `admin_base_url` of every shop in it.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `{base_url}/admin/api/{version}/graphql.json`.
    pub fn graphql_url(&self, version: &str) -> String {
        format!("{}/admin/api/{version}/graphql.json", self.base_url())
    }

    /// Stops serving: held and hanging calls end, connections close, the server task ends.
    pub async fn shutdown(mut self) {
        self.state.shutdown.cancel();
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }

    /// Creates a shop whose app is authenticated by `access_token` (unique across shops:
    /// the token tells the endpoint which shop is called).
    pub fn create_shop(&self, domain: &str, access_token: &str) -> Result<(), SandboxError> {
        Ok(self.state.create_shop(domain, access_token)?)
    }

    /// Installs another app (its own bucket and idempotency scope) on a shop.
    pub fn add_app(
        &self,
        domain: &str,
        access_token: &str,
        title: &str,
    ) -> Result<u64, SandboxError> {
        Ok(self.state.add_app(domain, access_token, title)?)
    }

    /// Replaces the access scopes granted to the app `access_token` authenticates (what
    /// `currentAppInstallation.accessScopes` answers; by default every scope wos-sync needs).
    pub fn set_app_scopes(&self, access_token: &str, scopes: &[&str]) -> Result<(), SandboxError> {
        let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
        Ok(self.state.set_app_scopes(access_token, &scopes)?)
    }

    /// Sets the secret product webhooks of this shop are signed with (`None`: no webhooks).
    pub fn set_webhook_secret(
        &self,
        domain: &str,
        secret: Option<&str>,
    ) -> Result<(), SandboxError> {
        Ok(self
            .state
            .set_webhook_secret(domain, secret.map(str::to_owned))?)
    }

    /// Sets where webhooks are POSTed (`None`: nowhere).
    pub fn set_webhook_url(&self, url: Option<&str>) {
        self.state.set_webhook_url(url.map(str::to_owned));
    }

    /// Adds a location with a fresh id.
    pub fn create_location(&self, domain: &str, name: &str) -> Result<LocationId, SandboxError> {
        Ok(self.state.create_location(domain, None, name)?)
    }

    /// Adds a location with this id (e.g. the one the shop's configuration maps a warehouse
    /// to).
    pub fn create_location_with_id(
        &self,
        domain: &str,
        id: LocationId,
        name: &str,
    ) -> Result<LocationId, SandboxError> {
        Ok(self.state.create_location(domain, Some(id), name)?)
    }

    /// Creates a product, its variants and their inventory items, stocked as specified
    /// (webhook `products/create`).
    pub fn create_product(
        &self,
        domain: &str,
        spec: ProductSpec,
    ) -> Result<CreatedProduct, SandboxError> {
        Ok(self.state.create_product(domain, &spec)?)
    }

    /// Shopify's "Duplicate": a new product with the same SKUs (webhook `products/create`).
    pub fn duplicate_product(
        &self,
        domain: &str,
        product: ProductId,
        title: &str,
    ) -> Result<CreatedProduct, SandboxError> {
        Ok(self.state.duplicate_product(domain, product, title)?)
    }

    /// Updates a product's fields (webhook `products/update`).
    pub fn update_product(
        &self,
        domain: &str,
        product: ProductId,
        update: ProductUpdate,
    ) -> Result<(), SandboxError> {
        Ok(self.state.update_product(domain, product, &update)?)
    }

    /// Deletes a product with its variants and items (webhook `products/delete`).
    pub fn delete_product(&self, domain: &str, product: ProductId) -> Result<(), SandboxError> {
        Ok(self.state.delete_product(domain, product)?)
    }

    /// Adds a variant to a product, last (webhook `products/update`).
    pub fn add_variant(
        &self,
        domain: &str,
        product: ProductId,
        spec: VariantSpec,
    ) -> Result<CreatedVariant, SandboxError> {
        Ok(self.state.add_variant(domain, product, &spec, None)?)
    }

    /// Adds a variant at a 1-based `position` (later ones move down; webhook
    /// `products/update`).
    pub fn add_variant_at(
        &self,
        domain: &str,
        product: ProductId,
        position: usize,
        spec: VariantSpec,
    ) -> Result<CreatedVariant, SandboxError> {
        Ok(self
            .state
            .add_variant(domain, product, &spec, Some(position))?)
    }

    /// The `products/update` webhook body for the product as it is now (`None` once deleted):
    /// the first 100 variants in full, every variant in `variant_gids`, newest first.
    pub fn product_webhook(
        &self,
        domain: &str,
        product: ProductId,
    ) -> Result<Option<serde_json::Value>, SandboxError> {
        Ok(self.state.product_payload(domain, product)?)
    }

    /// Updates a variant, e.g. its SKU (webhook `products/update`).
    pub fn update_variant(
        &self,
        domain: &str,
        variant: VariantId,
        update: VariantUpdate,
    ) -> Result<(), SandboxError> {
        Ok(self.state.update_variant(domain, variant, &update)?)
    }

    /// Deletes a variant and its item (webhook `products/update`).
    pub fn delete_variant(&self, domain: &str, variant: VariantId) -> Result<(), SandboxError> {
        Ok(self.state.delete_variant(domain, variant)?)
    }

    /// Stocks an item at a location with this `available`.
    pub fn stock_item(
        &self,
        domain: &str,
        item: InventoryItemId,
        location: LocationId,
        available: i64,
    ) -> Result<(), SandboxError> {
        Ok(self.state.stock_item(domain, item, location, available)?)
    }

    /// Sets a stored quantity directly, without an adjustment group (e.g. `committed`).
    pub fn set_quantity(
        &self,
        domain: &str,
        item: InventoryItemId,
        location: LocationId,
        name: &str,
        quantity: i64,
    ) -> Result<(), SandboxError> {
        Ok(self
            .state
            .set_quantity(domain, item, location, name, quantity)?)
    }

    /// A quantity (`available`, `on_hand`, …), if the item is stocked at the location.
    pub fn quantity(
        &self,
        domain: &str,
        item: InventoryItemId,
        location: LocationId,
        name: &str,
    ) -> Option<i64> {
        self.state.quantity(domain, item, location, name)
    }

    /// Every level of a shop with every quantity.
    pub fn inventory(&self, domain: &str) -> Result<Vec<LevelSnapshot>, SandboxError> {
        Ok(self.state.inventory(domain)?)
    }

    /// The full log of applied adjustment groups, oldest first (with idempotency key,
    /// reason, reference document and every change, `on_hand` mirrors included).
    pub fn adjustment_groups(&self, domain: &str) -> Result<Vec<AppliedGroup>, SandboxError> {
        Ok(self.state.adjustment_groups(domain)?)
    }

    /// Replaces the fault rules.
    pub fn set_faults(&self, faults: FaultConfig) -> Result<(), SandboxError> {
        faults
            .validate()
            .map_err(|(key, reason)| SandboxError::Config(format!("{key}: {reason}")))?;
        self.state.faults.set(faults);
        Ok(())
    }

    /// The faults fired so far.
    pub fn fired_faults(&self) -> Vec<FiredFault> {
        self.state.faults.fired()
    }

    /// How many calls the `hold` fault holds now.
    pub fn held_requests(&self) -> usize {
        self.state.holds.count()
    }

    /// Lets every held call run; returns how many were held.
    pub fn release_held(&self) -> usize {
        self.state.holds.release_all()
    }

    /// Replaces the throttle settings.
    pub fn set_throttle(&self, throttle: ThrottleConfig) {
        self.state.set_throttle(throttle);
    }

    /// Sets the level of a shop's buckets (0: throttled now).
    pub fn set_bucket_available(&self, domain: &str, points: f64) -> Result<(), SandboxError> {
        Ok(self.state.set_bucket_available(domain, points)?)
    }

    /// Every webhook queued so far and its outcome.
    pub fn webhook_deliveries(&self) -> Vec<WebhookDelivery> {
        self.state.webhooks.log()
    }

    /// Waits until every queued webhook was delivered or gave up; false on timeout.
    pub async fn wait_for_webhooks(&self, timeout: Duration) -> bool {
        self.state.webhooks.wait_idle(timeout).await
    }
}
