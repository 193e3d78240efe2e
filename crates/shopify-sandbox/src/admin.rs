//! The admin API under `/sandbox`: JSON versions of the library handle's operations, for the
//! quick start, the binary and tests in other languages. Unauthenticated: the sandbox is a
//! local test tool and must never be exposed. The reference is `docs/shopify-sandbox.md`.

use std::sync::Arc;

use axum::{
    Router,
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, patch, post, put},
};
use model::ids::{InventoryItemId, LocationId, ProductId, VariantId};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Value, json};

use crate::{
    core::Core,
    faults::FaultConfig,
    inventory::{ProductSpec, ProductUpdate, StoreError, VariantSpec, VariantUpdate},
    throttle::ThrottleConfig,
};

/// The admin routes (merged into the server's router).
pub fn routes() -> Router<Arc<Core>> {
    Router::new()
        .route("/sandbox/reset", post(reset))
        .route("/sandbox/shops", get(list_shops).post(create_shop))
        .route("/sandbox/shops/{shop}/apps", post(add_app))
        .route(
            "/sandbox/shops/{shop}/webhook-secret",
            put(set_webhook_secret),
        )
        .route(
            "/sandbox/shops/{shop}/locations",
            get(list_locations).post(create_location),
        )
        .route(
            "/sandbox/shops/{shop}/products",
            get(list_products).post(create_product),
        )
        .route(
            "/sandbox/shops/{shop}/products/{id}",
            patch(update_product).delete(delete_product),
        )
        .route(
            "/sandbox/shops/{shop}/products/{id}/variants",
            post(add_variant),
        )
        .route(
            "/sandbox/shops/{shop}/products/{id}/duplicate",
            post(duplicate_product),
        )
        .route(
            "/sandbox/shops/{shop}/variants/{id}",
            patch(update_variant).delete(delete_variant),
        )
        .route("/sandbox/shops/{shop}/inventory", get(inventory))
        .route("/sandbox/shops/{shop}/inventory/stock", post(stock_item))
        .route(
            "/sandbox/shops/{shop}/inventory/quantity",
            put(set_quantity),
        )
        .route(
            "/sandbox/shops/{shop}/adjustment-groups",
            get(adjustment_groups),
        )
        .route("/sandbox/shops/{shop}/bucket", put(set_bucket))
        .route("/sandbox/throttle", get(get_throttle).put(set_throttle))
        .route(
            "/sandbox/faults",
            get(get_faults).put(set_faults).delete(clear_faults),
        )
        .route("/sandbox/faults/fired", get(fired_faults))
        .route("/sandbox/faults/release", post(release_held))
        .route("/sandbox/webhooks", get(webhooks).put(set_webhook_url))
}

/// An admin API error: status and a JSON `{"error": …}` body.
#[derive(Debug)]
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        let status = match err {
            StoreError::UnknownShop(_)
            | StoreError::UnknownLocation(_)
            | StoreError::UnknownProduct(_)
            | StoreError::UnknownVariant(_)
            | StoreError::UnknownInventoryItem(_) => StatusCode::NOT_FOUND,
            StoreError::DuplicateShop(_)
            | StoreError::DuplicateToken
            | StoreError::DuplicateLocation(_) => StatusCode::CONFLICT,
            _ => StatusCode::BAD_REQUEST,
        };
        Self(status, err.to_string())
    }
}

type ApiResult = Result<Response, ApiError>;

fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))
}

fn id<T: std::str::FromStr>(text: &str) -> Result<T, ApiError> {
    text.parse()
        .map_err(|_| ApiError(StatusCode::NOT_FOUND, format!("not an id: {text:?}")))
}

fn ok(value: impl Serialize) -> ApiResult {
    Ok(axum::Json(value).into_response())
}

fn created(value: impl Serialize) -> ApiResult {
    Ok((StatusCode::CREATED, axum::Json(value)).into_response())
}

async fn reset(State(core): State<Arc<Core>>) -> ApiResult {
    core.reset()?;
    ok(json!({"reset": true}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewShop {
    domain: String,
    access_token: String,
    #[serde(default)]
    webhook_secret: Option<String>,
}

async fn create_shop(State(core): State<Arc<Core>>, bytes: Bytes) -> ApiResult {
    let shop: NewShop = body(&bytes)?;
    core.create_shop(&shop.domain, &shop.access_token)?;
    core.set_webhook_secret(&shop.domain, shop.webhook_secret)?;
    created(json!({"domain": shop.domain.trim().to_lowercase()}))
}

async fn list_shops(State(core): State<Arc<Core>>) -> ApiResult {
    let shops: Vec<Value> = core
        .store
        .shops()
        .into_iter()
        .map(|shop| {
            let state = shop.lock();
            json!({
                "domain": state.domain,
                "apps": state.apps,
                "webhook_secret_set": state.webhook_secret.is_some(),
                "locations": state.locations.len(),
                "products": state.products.len(),
                "adjustment_groups": state.groups.len(),
            })
        })
        .collect();
    ok(shops)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewApp {
    access_token: String,
    #[serde(default)]
    title: Option<String>,
    /// Access scopes granted (default: `inventory::DEFAULT_APP_SCOPES`).
    #[serde(default)]
    scopes: Option<Vec<String>>,
}

async fn add_app(
    State(core): State<Arc<Core>>,
    Path(shop): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let app: NewApp = body(&bytes)?;
    let app_id = core.add_app(
        &shop,
        &app.access_token,
        app.title.as_deref().unwrap_or("app"),
    )?;
    if let Some(scopes) = &app.scopes {
        core.set_app_scopes(&app.access_token, scopes)?;
    }
    created(json!({ "app_id": app_id }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Secret {
    secret: Option<String>,
}

async fn set_webhook_secret(
    State(core): State<Arc<Core>>,
    Path(shop): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let secret: Secret = body(&bytes)?;
    core.set_webhook_secret(&shop, secret.secret)?;
    ok(json!({"ok": true}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewLocation {
    name: String,
    #[serde(default)]
    id: Option<LocationId>,
}

async fn create_location(
    State(core): State<Arc<Core>>,
    Path(shop): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let location: NewLocation = body(&bytes)?;
    let id = core.create_location(&shop, location.id, &location.name)?;
    created(json!({"id": id, "gid": id.gid()}))
}

async fn list_locations(State(core): State<Arc<Core>>, Path(shop): Path<String>) -> ApiResult {
    ok(core.locations(&shop)?)
}

async fn create_product(
    State(core): State<Arc<Core>>,
    Path(shop): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let spec: ProductSpec = body(&bytes)?;
    created(core.create_product(&shop, &spec)?)
}

async fn list_products(State(core): State<Arc<Core>>, Path(shop): Path<String>) -> ApiResult {
    let products = core.with_shop(&shop, |state| {
        Ok(state
            .products
            .values()
            .map(|p| {
                let variants: Vec<_> = p
                    .variants
                    .iter()
                    .filter_map(|v| state.variants.get(v))
                    .collect();
                json!({"product": p, "variants": variants})
            })
            .collect::<Vec<_>>())
    })?;
    ok(products)
}

async fn update_product(
    State(core): State<Arc<Core>>,
    Path((shop, product)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult {
    let update: ProductUpdate = body(&bytes)?;
    core.update_product(&shop, id::<ProductId>(&product)?, &update)?;
    ok(json!({"ok": true}))
}

async fn delete_product(
    State(core): State<Arc<Core>>,
    Path((shop, product)): Path<(String, String)>,
) -> ApiResult {
    core.delete_product(&shop, id::<ProductId>(&product)?)?;
    ok(json!({"ok": true}))
}

async fn add_variant(
    State(core): State<Arc<Core>>,
    Path((shop, product)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult {
    let spec: VariantSpec = body(&bytes)?;
    created(core.add_variant(&shop, id::<ProductId>(&product)?, &spec, None)?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Duplicate {
    title: String,
}

async fn duplicate_product(
    State(core): State<Arc<Core>>,
    Path((shop, product)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult {
    let duplicate: Duplicate = body(&bytes)?;
    created(core.duplicate_product(&shop, id::<ProductId>(&product)?, &duplicate.title)?)
}

async fn update_variant(
    State(core): State<Arc<Core>>,
    Path((shop, variant)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult {
    let update: VariantUpdate = body(&bytes)?;
    core.update_variant(&shop, id::<VariantId>(&variant)?, &update)?;
    ok(json!({"ok": true}))
}

async fn delete_variant(
    State(core): State<Arc<Core>>,
    Path((shop, variant)): Path<(String, String)>,
) -> ApiResult {
    core.delete_variant(&shop, id::<VariantId>(&variant)?)?;
    ok(json!({"ok": true}))
}

async fn inventory(State(core): State<Arc<Core>>, Path(shop): Path<String>) -> ApiResult {
    ok(core.inventory(&shop)?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StockRequest {
    inventory_item_id: InventoryItemId,
    location_id: LocationId,
    #[serde(default)]
    available: i64,
}

async fn stock_item(
    State(core): State<Arc<Core>>,
    Path(shop): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let stock: StockRequest = body(&bytes)?;
    core.stock_item(
        &shop,
        stock.inventory_item_id,
        stock.location_id,
        stock.available,
    )?;
    ok(json!({"ok": true}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QuantityRequest {
    inventory_item_id: InventoryItemId,
    location_id: LocationId,
    name: String,
    quantity: i64,
}

async fn set_quantity(
    State(core): State<Arc<Core>>,
    Path(shop): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let q: QuantityRequest = body(&bytes)?;
    core.set_quantity(
        &shop,
        q.inventory_item_id,
        q.location_id,
        &q.name,
        q.quantity,
    )?;
    ok(json!({"ok": true}))
}

async fn adjustment_groups(State(core): State<Arc<Core>>, Path(shop): Path<String>) -> ApiResult {
    ok(core.adjustment_groups(&shop)?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BucketLevel {
    available: f64,
}

async fn set_bucket(
    State(core): State<Arc<Core>>,
    Path(shop): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let level: BucketLevel = body(&bytes)?;
    core.set_bucket_available(&shop, level.available)?;
    ok(json!({"ok": true}))
}

async fn get_throttle(State(core): State<Arc<Core>>) -> ApiResult {
    ok(core.throttle())
}

async fn set_throttle(State(core): State<Arc<Core>>, bytes: Bytes) -> ApiResult {
    let throttle: ThrottleConfig = body(&bytes)?;
    if !(throttle.bucket_size > 0.0 && throttle.restore_rate >= 0.0) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "bucket_size must be > 0 and restore_rate >= 0".into(),
        ));
    }
    core.set_throttle(throttle);
    ok(throttle)
}

async fn get_faults(State(core): State<Arc<Core>>) -> ApiResult {
    ok(core.faults.get())
}

async fn set_faults(State(core): State<Arc<Core>>, bytes: Bytes) -> ApiResult {
    let faults: FaultConfig = body(&bytes)?;
    faults
        .validate()
        .map_err(|(key, reason)| ApiError(StatusCode::BAD_REQUEST, format!("{key}: {reason}")))?;
    core.faults.set(faults.clone());
    ok(faults)
}

async fn clear_faults(State(core): State<Arc<Core>>) -> ApiResult {
    core.faults.set(FaultConfig::none());
    ok(json!({"ok": true}))
}

async fn fired_faults(State(core): State<Arc<Core>>) -> ApiResult {
    ok(core.faults.fired())
}

async fn release_held(State(core): State<Arc<Core>>) -> ApiResult {
    ok(json!({"released": core.holds.release_all()}))
}

async fn webhooks(State(core): State<Arc<Core>>) -> ApiResult {
    ok(json!({"url": core.webhook_url(), "deliveries": core.webhooks.log()}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookUrl {
    url: Option<String>,
}

async fn set_webhook_url(State(core): State<Arc<Core>>, bytes: Bytes) -> ApiResult {
    let url: WebhookUrl = body(&bytes)?;
    core.set_webhook_url(url.url);
    ok(json!({"url": core.webhook_url()}))
}
