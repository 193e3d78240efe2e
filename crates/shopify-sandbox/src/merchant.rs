//! What a merchant does in Shopify's admin — shops and apps, locations, products and
//! variants, stock — applied to the store and announced by the `products/*` webhook Shopify
//! would send; and what the merchant sees there (levels, the adjustment log). The library
//! handle and the admin API both call these, so a test and an HTTP caller get the same store
//! and the same webhooks.

use chrono::Utc;
use model::{
    ids::{InventoryItemId, LocationId, ProductId, VariantId},
    webhook::ProductTopic,
};

use crate::{
    state::SandboxState,
    store::{
        AppliedGroup, CreatedProduct, CreatedVariant, LevelSnapshot, ProductSpec, ProductUpdate,
        QuantityName, ShopState, StoreError, VariantSpec, VariantUpdate,
    },
    webhooks::{delete_payload, product_payload},
};

impl SandboxState {
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
