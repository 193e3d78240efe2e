//! The admin API under `/sandbox`: JSON versions of the library handle's setup and inspection,
//! for the binary — the quick start reads a shop's inventory here, docker-compose's healthcheck
//! lists the shops — and anything that drives a sandbox over HTTP: shops, locations, products,
//! the inventory and the adjustment log, the throttle and fault rules, a reset.
//! Unauthenticated: the sandbox is a local test tool and must never be exposed. The reference is
//! `docs/shopify-sandbox.md`.

use std::sync::Arc;

use axum::{
    Router,
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post, put},
};
use model::ids::LocationId;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Value, json};

use crate::{
    faults::FaultConfig,
    state::SandboxState,
    store::{ProductSpec, StoreError},
    throttle::ThrottleConfig,
};

/// The admin routes (merged into the server's router).
pub fn routes() -> Router<Arc<SandboxState>> {
    Router::new()
        .route("/sandbox/reset", post(reset))
        .route("/sandbox/shops", get(list_shops).post(create_shop))
        .route("/sandbox/shops/{shop}/locations", post(create_location))
        .route("/sandbox/shops/{shop}/products", post(create_product))
        .route("/sandbox/shops/{shop}/inventory", get(inventory))
        .route(
            "/sandbox/shops/{shop}/adjustment-groups",
            get(adjustment_groups),
        )
        .route("/sandbox/shops/{shop}/bucket", put(set_bucket))
        .route("/sandbox/throttle", put(set_throttle))
        .route("/sandbox/faults", put(set_faults))
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

fn ok(value: impl Serialize) -> ApiResult {
    Ok(axum::Json(value).into_response())
}

fn created(value: impl Serialize) -> ApiResult {
    Ok((StatusCode::CREATED, axum::Json(value)).into_response())
}

async fn reset(State(sandbox): State<Arc<SandboxState>>) -> ApiResult {
    sandbox.reset()?;
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

async fn create_shop(State(sandbox): State<Arc<SandboxState>>, bytes: Bytes) -> ApiResult {
    let shop: NewShop = body(&bytes)?;
    sandbox.create_shop(&shop.domain, &shop.access_token)?;
    sandbox.set_webhook_secret(&shop.domain, shop.webhook_secret)?;
    created(json!({"domain": shop.domain.trim().to_lowercase()}))
}

async fn list_shops(State(sandbox): State<Arc<SandboxState>>) -> ApiResult {
    let shops: Vec<Value> = sandbox
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
struct NewLocation {
    name: String,
    #[serde(default)]
    id: Option<LocationId>,
}

async fn create_location(
    State(sandbox): State<Arc<SandboxState>>,
    Path(shop): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let location: NewLocation = body(&bytes)?;
    let id = sandbox.create_location(&shop, location.id, &location.name)?;
    created(json!({"id": id, "gid": id.gid()}))
}

async fn create_product(
    State(sandbox): State<Arc<SandboxState>>,
    Path(shop): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let spec: ProductSpec = body(&bytes)?;
    created(sandbox.create_product(&shop, &spec)?)
}

async fn inventory(
    State(sandbox): State<Arc<SandboxState>>,
    Path(shop): Path<String>,
) -> ApiResult {
    ok(sandbox.inventory(&shop)?)
}

async fn adjustment_groups(
    State(sandbox): State<Arc<SandboxState>>,
    Path(shop): Path<String>,
) -> ApiResult {
    ok(sandbox.adjustment_groups(&shop)?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BucketLevel {
    available: f64,
}

async fn set_bucket(
    State(sandbox): State<Arc<SandboxState>>,
    Path(shop): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let level: BucketLevel = body(&bytes)?;
    sandbox.set_bucket_available(&shop, level.available)?;
    ok(json!({"ok": true}))
}

async fn set_throttle(State(sandbox): State<Arc<SandboxState>>, bytes: Bytes) -> ApiResult {
    let throttle: ThrottleConfig = body(&bytes)?;
    if !(throttle.bucket_size > 0.0 && throttle.restore_rate >= 0.0) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "bucket_size must be > 0 and restore_rate >= 0".into(),
        ));
    }
    sandbox.set_throttle(throttle);
    ok(throttle)
}

async fn set_faults(State(sandbox): State<Arc<SandboxState>>, bytes: Bytes) -> ApiResult {
    let faults: FaultConfig = body(&bytes)?;
    faults
        .validate()
        .map_err(|(key, reason)| ApiError(StatusCode::BAD_REQUEST, format!("{key}: {reason}")))?;
    sandbox.faults.set(faults.clone());
    ok(faults)
}
