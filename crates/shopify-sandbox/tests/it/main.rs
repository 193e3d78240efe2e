//! Integration tests: a sandbox started in-process on a free port, driven over HTTP exactly as
//! the adjustment-pusher drives Shopify. No broker or database is involved.

#![allow(clippy::unwrap_used)]

mod adjust;
mod admin;
mod faults;
mod fixtures;
mod graphql_api;
mod idempotency;
mod throttle;
mod webhooks;

use std::time::Duration;

use model::ids::{InventoryItemId, LocationId};
use serde_json::{Value, json};
use shopify_sandbox::{
    ProductSpec, Sandbox, SandboxConfig, SandboxHandle, VariantSpec,
    client::{HttpClient, HttpResponse},
};

/// The shop every test uses.
pub const SHOP: &str = "acme.myshopify.com";
/// Its access token.
pub const TOKEN: &str = "shpat_acme";
/// The strict API version.
pub const V: &str = "2026-04";

/// The adjustment document of the fixtures (`…ledger-document-validation.request.graphql`).
pub const ADJUST: &str = include_str!(
    "../../../../contract/fixtures/shopify-admin/inventory-adjust-ledger-document-validation.request.graphql"
);

/// A document selecting what the 2026-04 contract fixture's responses show.
pub const ADJUST_FULL: &str =
    "mutation Adjust($input: InventoryAdjustQuantitiesInput!, $idempotencyKey: String!) {
  inventoryAdjustQuantities(input: $input) @idempotent(key: $idempotencyKey) {
    inventoryAdjustmentGroup {
      id
      createdAt
      reason
      referenceDocumentUri
      changes { name delta quantityAfterChange item { id } location { id name } }
    }
    userErrors { field message code }
  }
}";

/// A running sandbox with one shop, one location and `items` stocked items.
#[derive(Debug)]
pub struct World {
    pub sandbox: SandboxHandle,
    pub client: HttpClient,
    pub location: LocationId,
    pub items: Vec<InventoryItemId>,
}

impl World {
    /// Default config, 3 items with `available` 10.
    pub async fn new() -> Self {
        Self::with(SandboxConfig::default(), 3).await
    }

    /// `config`, `items` items with `available` 10.
    pub async fn with(config: SandboxConfig, items: usize) -> Self {
        let sandbox = Sandbox::start(config).await.unwrap();
        sandbox.create_shop(SHOP, TOKEN).unwrap();
        let location = sandbox.create_location(SHOP, "Main").unwrap();
        let product = sandbox
            .create_product(
                SHOP,
                ProductSpec {
                    title: "Tee".into(),
                    variants: (0..items)
                        .map(|i| VariantSpec::sku(format!("SKU-{i}")).stocked_at(location, 10))
                        .collect(),
                    ..ProductSpec::default()
                },
            )
            .unwrap();
        Self {
            client: HttpClient::new(Duration::from_secs(10)),
            location,
            items: product
                .variants
                .iter()
                .map(|v| v.inventory_item_id)
                .collect(),
            sandbox,
        }
    }

    /// A GraphQL call with the shop's token.
    pub async fn gql(&self, version: &str, query: &str, variables: Value) -> HttpResponse {
        self.client
            .graphql(&self.sandbox.base_url(), version, TOKEN, query, &variables)
            .await
            .unwrap()
    }

    /// `available` of item `i`.
    pub fn available(&self, i: usize) -> i64 {
        self.sandbox
            .quantity(SHOP, self.items[i], self.location, "available")
            .unwrap()
    }

    /// How many groups were applied.
    pub fn groups(&self) -> usize {
        self.sandbox.adjustment_groups(SHOP).unwrap().len()
    }

    /// One `available` change of item `i` by `delta`, `changeFromQuantity: null`.
    pub fn change(&self, i: usize, delta: i64) -> Value {
        json!({
            "inventoryItemId": self.items[i].gid(),
            "locationId": self.location.gid(),
            "delta": delta,
            "changeFromQuantity": null,
        })
    }

    /// Variables for [`ADJUST`]/[`ADJUST_FULL`] with these changes and key.
    pub fn adjust_vars(&self, changes: Vec<Value>, key: &str) -> Value {
        json!({
            "input": {
                "name": "available",
                "reason": "correction",
                "referenceDocumentUri": "logistics://wos/tx/1",
                "changes": changes,
            },
            "idempotencyKey": key,
        })
    }
}

/// The payload of `inventoryAdjustQuantities` in a response.
pub fn payload(response: &HttpResponse) -> Value {
    response.json()["data"]["inventoryAdjustQuantities"].clone()
}

/// The user error codes of a response.
pub fn codes(response: &HttpResponse) -> Vec<String> {
    payload(response)["userErrors"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|e| e["code"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The top-level error codes of a response.
pub fn top_codes(response: &HttpResponse) -> Vec<String> {
    response.json()["errors"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|e| {
            e["extensions"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}
