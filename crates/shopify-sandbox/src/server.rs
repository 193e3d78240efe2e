//! The HTTP server: `POST /admin/api/{version}/graphql.json` (Shopify's endpoint), the admin
//! API under `/sandbox` and `/healthz`.
//!
//! The GraphQL handler checks, in Shopify's order: the version (404), the access token
//! (401), the body (400); then it asks the fault rules what to do with the call and carries
//! the fault out around the execution. The execution itself runs in its own task, so a change
//! is applied completely even when the client has gone away (as on Shopify), and so a held
//! or delayed call cannot be half-applied.

use std::sync::Arc;

use axum::{
    Router,
    body::Bytes,
    extract::{ConnectInfo, Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};

use crate::{
    faults::{FaultAction, ms, status_body},
    graphql::{self, Env, GraphqlRequest, OpKind, Pause, Tamper},
    killable::ConnControl,
    state::SandboxState,
};

/// The sandbox's routes.
pub fn router(sandbox: Arc<SandboxState>) -> Router {
    Router::new()
        .route("/admin/api/{version}/graphql.json", post(graphql_endpoint))
        .route("/healthz", get(|| async { "ok\n" }))
        .merge(crate::admin::routes())
        .fallback(|| async { json_response(StatusCode::NOT_FOUND, r#"{"errors":"Not Found"}"#) })
        .with_state(sandbox)
}

fn json_response(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.into(),
    )
        .into_response()
}

fn fault_response(status: u16, retry_after_secs: Option<u64>) -> Response {
    let (content_type, body) = status_body(status);
    let mut response = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [(header::CONTENT_TYPE, content_type)],
        body,
    )
        .into_response();
    if let Some(secs) = retry_after_secs {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// Cuts the connection: the response returned with it is never written.
fn dropped(conn: &ConnControl) -> Response {
    conn.kill();
    StatusCode::INTERNAL_SERVER_ERROR.into_response()
}

async fn graphql_endpoint(
    State(sandbox): State<Arc<SandboxState>>,
    ConnectInfo(conn): ConnectInfo<ConnControl>,
    Path(version): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(api_version) = sandbox.config.api_versions.resolve(&version) else {
        return json_response(StatusCode::NOT_FOUND, r#"{"errors":"Not Found"}"#);
    };
    let principal = headers
        .get("x-shopify-access-token")
        .and_then(|v| v.to_str().ok())
        .and_then(|token| sandbox.store.authenticate(token));
    let Some(principal) = principal else {
        return json_response(
            StatusCode::UNAUTHORIZED,
            r#"{"errors":"[API] Invalid API key or access token (unrecognized login or wrong password)"}"#,
        );
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let Some(request) = GraphqlRequest::from_body(content_type, &body) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            r#"{"errors":{"query":"Required parameter missing or invalid"}}"#,
        );
    };
    let mutation = request.operation_kind() == Some(OpKind::Mutation);
    let fault = sandbox.faults.decide(&principal.domain, mutation);
    match &fault {
        Some(FaultAction::Status {
            status,
            retry_after_secs,
            after_apply: false,
        }) => return fault_response(*status, *retry_after_secs),
        Some(FaultAction::Drop) => return dropped(&conn),
        _ => {}
    }
    let pause: Option<Pause> = match &fault {
        Some(FaultAction::Delay { ms: delay }) => {
            let shutdown = sandbox.shutdown.clone();
            let delay = ms(*delay);
            Some(Box::pin(async move {
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shutdown.cancelled() => {}
                }
            }))
        }
        Some(FaultAction::Hold) => {
            let sandbox = Arc::clone(&sandbox);
            Some(Box::pin(async move {
                let shutdown = sandbox.shutdown.clone();
                sandbox.holds.hold(&shutdown).await;
            }))
        }
        _ => None,
    };
    let tamper = Tamper {
        pause,
        answer: fault.as_ref().and_then(FaultAction::forced_answer),
    };
    let task_sandbox = Arc::clone(&sandbox);
    let effective_version = api_version.clone();
    let execution = tokio::spawn(async move {
        let sandbox = task_sandbox;
        let env = Env {
            ids: &sandbox.store.ids,
            throttle: sandbox.throttle(),
            api_version: &effective_version,
            idempotency_retention: sandbox.config.idempotency_retention,
            max_query_cost: sandbox.config.max_query_cost,
        };
        graphql::execute(env, &principal, &request, tamper)
            .await
            .to_bytes()
    });
    let Ok(bytes) = execution.await else {
        return fault_response(500, None);
    };
    match fault {
        Some(FaultAction::Status {
            status,
            retry_after_secs,
            after_apply: true,
        }) => fault_response(status, retry_after_secs),
        Some(FaultAction::ApplyThenDrop) => dropped(&conn),
        Some(FaultAction::ApplyThenHang { ms: hang }) => {
            tokio::select! {
                () = tokio::time::sleep(ms(hang)) => {}
                () = sandbox.shutdown.cancelled() => {}
            }
            dropped(&conn)
        }
        _ => {
            let mut response = (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
                bytes,
            )
                .into_response();
            let headers = response.headers_mut();
            if let Ok(value) = HeaderValue::from_str(&api_version) {
                headers.insert("x-shopify-api-version", value);
            }
            if let Ok(value) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
                headers.insert("x-request-id", value);
            }
            response
        }
    }
}
