//! The Admin GraphQL endpoint's brain: one request in, one Shopify-shaped response out.
//!
//! The stages, in Shopify's order (each fixture says which stages a refusal passed):
//! 1. parse and validate the document, coerce variables and argument literals — refusals
//!    are top-level `errors` without `data` or `extensions.cost` ([`document`]);
//! 2. compute the requested cost and take it from the app's bucket — `MAX_COST_EXCEEDED`
//!    or `THROTTLED` otherwise ([`crate::throttle`]);
//! 3. run it: queries through the executor ([`exec`]); `inventoryAdjustQuantities` through
//!    its version checks (`MAX_INPUT_SIZE_EXCEEDED`, `changeFromQuantity` present and
//!    `@idempotent` present from 2026-04 — top-level errors with `data: {field: null}` and
//!    a cost), the idempotency store and [`crate::adjust`];
//! 4. give back the unused cost and report `extensions.cost` with the bucket.
//!
//! Faults that hold a call (delay, hold) are a future awaited after the idempotency key is
//! reserved and before anything is applied, exactly where a slow Shopify keeps a key in
//! flight.

pub mod document;
pub mod errors;
pub mod exec;
pub mod input;
pub mod schema;
pub mod value;

use std::{future::Future, pin::Pin, sync::Arc, time::Duration, time::Instant};

use chrono::Utc;
use graphql_parser::{Pos, query::Field};
use serde_json::{Map, Value};

use self::{
    document::{OpKind, Prepared, prepare, select_operation},
    errors::{coded, error, path_of},
    exec::{Executor, Obj, Payload},
    input::literal_to_json,
    value::Out,
};
use crate::{
    adjust::{
        AdjustContext, AdjustOutcome, AdjustRequest, MAX_CHANGES, UserError, adjust_quantities,
    },
    idempotency::{Begin, fingerprint},
    store::{IdAllocator, Principal, ShopHandle},
    throttle::{LeakyBucket, ThrottleConfig, ThrottleStatus},
};

/// A future a faulted call waits on before it runs (a delay, or a test's release).
pub type Pause = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A mutation answer a fault puts in place of the call's own, on the first run of its
/// idempotency key (a key that already ran answers as it always does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForcedAnswer {
    /// `IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED`, nothing run; the key stays failed, so a resend
    /// under it gets the same answer.
    PreviousAttemptFailed,
    /// `IDEMPOTENCY_KEY_PARAMETER_MISMATCH`; with `after_apply` the call runs (and applies,
    /// and the key keeps that outcome) first.
    KeyParameterMismatch { after_apply: bool },
    /// No adjustment group and no user errors; with `after_apply` the call runs first.
    EmptyPayload { after_apply: bool },
}

/// What a fault does inside the execution: hold the call before it runs, answer for it.
#[derive(Default)]
pub struct Tamper {
    /// Awaited after the key is reserved and before anything applies.
    pub pause: Option<Pause>,
    /// Replaces the mutation's answer.
    pub answer: Option<ForcedAnswer>,
}

impl std::fmt::Debug for Tamper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tamper")
            .field("pause", &self.pause.is_some())
            .field("answer", &self.answer)
            .finish()
    }
}

/// The first API version that requires `changeFromQuantity` and `@idempotent`.
pub const STRICT_VERSION: &str = "2026-04";

/// A request body: `{"query", "variables", "operationName"}`.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphqlRequest {
    /// The document.
    pub query: String,
    /// Variable values.
    pub variables: Map<String, Value>,
    /// Which operation of the document to run.
    pub operation_name: Option<String>,
}

impl GraphqlRequest {
    /// Reads a POST body: JSON `{"query": …}` or, with `application/graphql`, the bare
    /// document. `None` when there is no usable query (Shopify: 400).
    pub fn from_body(content_type: Option<&str>, body: &[u8]) -> Option<Self> {
        if content_type.is_some_and(|c| c.starts_with("application/graphql")) {
            let query = std::str::from_utf8(body).ok()?.to_owned();
            return (!query.trim().is_empty()).then_some(Self {
                query,
                variables: Map::new(),
                operation_name: None,
            });
        }
        let Value::Object(mut map) = serde_json::from_slice::<Value>(body).ok()? else {
            return None;
        };
        let query = match map.remove("query") {
            Some(Value::String(q)) if !q.trim().is_empty() => q,
            _ => return None,
        };
        let variables = match map.remove("variables") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(v)) => v,
            // Some clients send the variables as a JSON string.
            Some(Value::String(s)) => match serde_json::from_str::<Value>(&s).ok()? {
                Value::Object(v) => v,
                _ => return None,
            },
            Some(_) => return None,
        };
        let operation_name = match map.remove("operationName") {
            Some(Value::String(name)) => Some(name),
            _ => None,
        };
        Some(Self {
            query,
            variables,
            operation_name,
        })
    }

    /// Whether the request is a mutation (for fault scoping); `None` if it does not parse.
    pub fn operation_kind(&self) -> Option<OpKind> {
        let document = graphql_parser::parse_query::<String>(&self.query)
            .ok()?
            .into_static();
        let op = select_operation(&document, self.operation_name.as_deref()).ok()?;
        Some(match op {
            graphql_parser::query::OperationDefinition::Mutation(_) => OpKind::Mutation,
            _ => OpKind::Query,
        })
    }
}

/// What the endpoint needs besides the request.
#[derive(Debug, Clone, Copy)]
pub struct Env<'a> {
    /// Id allocator (adjustment group ids).
    pub ids: &'a IdAllocator,
    /// Throttle settings.
    pub throttle: ThrottleConfig,
    /// The API version the request runs under.
    pub api_version: &'a str,
    /// How long idempotency keys are kept.
    pub idempotency_retention: Duration,
    /// The single-query cost limit (Shopify: 1000).
    pub max_query_cost: u64,
}

/// Runs one request for `principal`; the body is always a 200 JSON response.
///
/// Boxed with an explicit `Send` bound: proving the future `Send` here, where every lifetime
/// is a named one, sidesteps rustc's "not general enough" errors for futures that borrow the
/// parsed document across an await (rust-lang/rust#110338) when the caller spawns it.
pub fn execute<'a>(
    env: Env<'a>,
    principal: &'a Principal,
    request: &'a GraphqlRequest,
    tamper: Tamper,
) -> Pin<Box<dyn Future<Output = Out> + Send + 'a>> {
    Box::pin(execute_request(env, principal, request, tamper))
}

async fn execute_request(
    env: Env<'_>,
    principal: &Principal,
    request: &GraphqlRequest,
    tamper: Tamper,
) -> Out {
    let document = match graphql_parser::parse_query::<String>(&request.query) {
        Ok(document) => document.into_static(),
        Err(err) => return top_level(vec![syntax_error(&err.to_string())]),
    };
    let op = match select_operation(&document, request.operation_name.as_deref()) {
        Ok(op) => op,
        Err(e) => return top_level(vec![e]),
    };
    let prepared = match prepare(&document, op, &request.variables) {
        Ok(prepared) => prepared,
        Err(errors) => return top_level(errors),
    };
    let requested = prepared.requested_cost();
    let shop = &principal.shop;
    if requested > env.max_query_cost {
        let status = bucket_status(shop, principal.app_id, &env.throttle);
        return Out::obj([
            (
                "errors",
                Out::List(vec![error(
                    format!(
                        "Query cost is {requested}, which exceeds the single query max cost limit ({}).",
                        env.max_query_cost
                    ),
                    &[],
                    None,
                    vec![
                        ("code", Out::str("MAX_COST_EXCEEDED")),
                        (
                            "cost",
                            Out::Int(i64::try_from(requested).unwrap_or(i64::MAX)),
                        ),
                        (
                            "maxCost",
                            Out::Int(i64::try_from(env.max_query_cost).unwrap_or(i64::MAX)),
                        ),
                    ],
                )]),
            ),
            ("extensions", cost_extension(requested, None, status)),
        ]);
    }
    let taken = {
        let mut state = shop.lock();
        let now = Instant::now();
        let bucket = state
            .buckets
            .entry(principal.app_id)
            .or_insert_with(|| LeakyBucket::full(&env.throttle, now));
        bucket.try_take(&env.throttle, now, requested as f64)
    };
    if let Err(throttled) = taken {
        return Out::obj([
            (
                "errors",
                Out::List(vec![error(
                    "Throttled",
                    &[],
                    None,
                    vec![
                        ("code", Out::str("THROTTLED")),
                        (
                            "documentation",
                            Out::str("https://shopify.dev/api/usage/rate-limits"),
                        ),
                    ],
                )]),
            ),
            (
                "extensions",
                cost_extension(requested, None, throttled.status),
            ),
        ]);
    }

    let (data, errors, actual) = match prepared.kind {
        OpKind::Query => {
            if let Some(pause) = tamper.pause {
                pause.await;
            }
            let state = shop.lock();
            let mut executor = Executor::new(&prepared, &state);
            executor.app_id = Some(principal.app_id);
            let data =
                executor.execute_object(&Obj::Query, &[prepared.selection_set], &mut Vec::new());
            (data, executor.errors, executor.actual_cost)
        }
        OpKind::Mutation => run_mutation(env, principal, &prepared, tamper).await,
    };

    let status = {
        let mut state = shop.lock();
        let now = Instant::now();
        let bucket = state
            .buckets
            .entry(principal.app_id)
            .or_insert_with(|| LeakyBucket::full(&env.throttle, now));
        bucket.refund(&env.throttle, now, requested.saturating_sub(actual) as f64);
        bucket.status(&env.throttle)
    };
    let mut pairs = Vec::with_capacity(3);
    if !errors.is_empty() {
        pairs.push(("errors".to_owned(), Out::List(errors)));
    }
    pairs.push(("data".to_owned(), data));
    pairs.push((
        "extensions".to_owned(),
        cost_extension(requested, Some(actual), status),
    ));
    Out::Obj(pairs)
}

fn top_level(errors: Vec<Out>) -> Out {
    Out::obj([("errors", Out::List(errors))])
}

fn syntax_error(message: &str) -> Out {
    // graphql-parser says "... Parse error at L:C\n...": keep the text on one line and point
    // at the position like Shopify does.
    let position = message
        .split("at ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|pos| pos.split_once(':'))
        .and_then(|(l, c)| {
            Some(Pos {
                line: l.parse().ok()?,
                column: c.parse().ok()?,
            })
        });
    let text = message.trim().replace('\n', " ");
    coded(
        format!("syntax error: {text}"),
        position.as_slice(),
        None,
        "syntaxError",
    )
}

fn bucket_status(shop: &ShopHandle, app_id: u64, throttle: &ThrottleConfig) -> ThrottleStatus {
    let mut state = shop.lock();
    let now = Instant::now();
    let bucket = state
        .buckets
        .entry(app_id)
        .or_insert_with(|| LeakyBucket::full(throttle, now));
    bucket.available(throttle, now);
    bucket.status(throttle)
}

fn cost_extension(requested: u64, actual: Option<u64>, status: ThrottleStatus) -> Out {
    let int = |n: u64| Out::Int(i64::try_from(n).unwrap_or(i64::MAX));
    Out::obj([(
        "cost",
        Out::obj([
            ("requestedQueryCost", int(requested)),
            ("actualQueryCost", actual.map_or(Out::Null, int)),
            (
                "throttleStatus",
                Out::obj([
                    ("maximumAvailable", int(status.maximum_available)),
                    ("currentlyAvailable", int(status.currently_available)),
                    ("restoreRate", int(status.restore_rate)),
                ]),
            ),
        ]),
    )])
}

/// Forgets a reserved idempotency key if its request is dropped before finishing.
struct KeyGuard {
    shop: Arc<ShopHandle>,
    app_id: u64,
    key: String,
    armed: bool,
}

impl Drop for KeyGuard {
    fn drop(&mut self) {
        if self.armed {
            self.shop.lock().idempotency.abandon(self.app_id, &self.key);
        }
    }
}

/// Mutation root fields run one after the other (GraphQL's serial execution).
async fn run_mutation<'d>(
    env: Env<'_>,
    principal: &Principal,
    prepared: &Prepared<'d>,
    mut tamper: Tamper,
) -> (Out, Vec<Out>, u64) {
    let mut data = Vec::new();
    let mut errors = Vec::new();
    let mut actual = 0;
    for (key, fields) in prepared.collect_fields("Mutation", prepared.selection_set) {
        let Some(field) = fields.first().copied() else {
            continue;
        };
        if field.name == "__typename" {
            data.push((key.to_owned(), Out::str("Mutation")));
            continue;
        }
        let (value, field_errors, cost) = run_adjust(
            env,
            principal,
            prepared,
            key,
            &fields,
            std::mem::take(&mut tamper),
        )
        .await;
        data.push((key.to_owned(), value));
        errors.extend(field_errors);
        actual += cost;
    }
    (Out::Obj(data), errors, actual)
}

/// A top-level error of the mutation field itself: `data.{field}` is null, and the mutation's
/// base cost is charged (fixtures `missingAdjustIdempotency`, `missingAdjustChangeFromQuantity`).
fn field_refusal(
    message: String,
    positions: &[Pos],
    key: &str,
    code: &str,
) -> (Out, Vec<Out>, u64) {
    (
        Out::Null,
        vec![coded(message, positions, Some(path_of(&[key])), code)],
        10,
    )
}

async fn run_adjust<'d>(
    env: Env<'_>,
    principal: &Principal,
    prepared: &Prepared<'d>,
    key: &str,
    fields: &[&'d Field<'static, String>],
    tamper: Tamper,
) -> (Out, Vec<Out>, u64) {
    let Some(field) = fields.first().copied() else {
        return (Out::Null, Vec::new(), 0);
    };
    let Some(definition) = schema::mutation_root().field(&field.name) else {
        return (Out::Null, Vec::new(), 0);
    };
    let (arguments, _) = prepared.arguments(definition.args, &field.arguments);
    let input = arguments.get("input").cloned().unwrap_or(Value::Null);
    let changes = input
        .get("changes")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    if changes.len() > MAX_CHANGES {
        return field_refusal(
            format!(
                "The input array size of {} is greater than the maximum allowed of {MAX_CHANGES}.",
                changes.len()
            ),
            &[field.position],
            key,
            "MAX_INPUT_SIZE_EXCEEDED",
        )
        .with_path(vec![Out::str(key), Out::str("input"), Out::str("changes")]);
    }
    let strict = env.api_version == "unstable" || env.api_version >= STRICT_VERSION;
    if strict
        && changes
            .iter()
            .any(|c| c.get("changeFromQuantity").is_none())
    {
        let mut positions = vec![field.position];
        if let Some((_, graphql_parser::query::Value::Variable(name))) =
            field.arguments.iter().find(|(n, _)| *n == "input")
            && let Some(position) = prepared.variable_positions.get(name.as_str())
        {
            positions.push(*position);
        }
        return field_refusal(
            "InventoryChangeInput must include the following argument: changeFromQuantity.".into(),
            &positions,
            key,
            "INVALID_FIELD_ARGUMENTS",
        );
    }
    let idempotency_key = field
        .directives
        .iter()
        .find(|d| d.name == "idempotent")
        .and_then(|d| d.arguments.iter().find(|(n, _)| *n == "key"))
        .and_then(|(_, v)| literal_to_json(v, &prepared.variables))
        .and_then(|v| v.as_str().map(str::to_owned));
    match &idempotency_key {
        None if strict => {
            return field_refusal(
                "The @idempotent directive is required for this mutation but was not provided."
                    .into(),
                &[field.position],
                key,
                "BAD_REQUEST",
            );
        }
        Some(k) if k.is_empty() => {
            return field_refusal(
                "The @idempotent directive's key must not be empty.".into(),
                &[field.position],
                key,
                "BAD_REQUEST",
            );
        }
        _ => {}
    }
    let Some(request) = AdjustRequest::from_coerced(&input) else {
        return (
            Out::Null,
            vec![coded(
                "Internal error: the input could not be read.",
                &[field.position],
                Some(path_of(&[key])),
                "INTERNAL_SERVER_ERROR",
            )],
            10,
        );
    };

    let shop = &principal.shop;
    let fp = fingerprint(&field.name, &input);
    let begin = match &idempotency_key {
        None => Begin::Proceed,
        Some(k) => shop.lock().idempotency.begin(
            principal.app_id,
            k,
            fp,
            Instant::now(),
            env.idempotency_retention,
        ),
    };
    let outcome = match begin {
        Begin::Replay(outcome) => outcome,
        Begin::Concurrent => {
            AdjustOutcome::UserErrors(Arc::new(vec![UserError::concurrent_request()]))
        }
        Begin::Mismatch => {
            AdjustOutcome::UserErrors(Arc::new(vec![UserError::parameter_mismatch()]))
        }
        Begin::Proceed => {
            let mut guard = idempotency_key.as_ref().map(|k| KeyGuard {
                shop: Arc::clone(shop),
                app_id: principal.app_id,
                key: k.clone(),
                armed: true,
            });
            if let Some(pause) = tamper.pause {
                pause.await;
            }
            let runs = match tamper.answer {
                None => true,
                Some(ForcedAnswer::PreviousAttemptFailed) => false,
                Some(
                    ForcedAnswer::KeyParameterMismatch { after_apply }
                    | ForcedAnswer::EmptyPayload { after_apply },
                ) => after_apply,
            };
            let mut state = shop.lock();
            let outcome = if runs {
                adjust_quantities(
                    &mut state,
                    env.ids,
                    &request,
                    AdjustContext {
                        app_id: principal.app_id,
                        api_version: env.api_version,
                        idempotency_key: idempotency_key.as_deref(),
                        now: Utc::now(),
                    },
                )
            } else {
                AdjustOutcome::UserErrors(Arc::new(vec![UserError::previous_attempt_failed()]))
            };
            // What the key keeps: the run's outcome, or the failure Shopify remembers. A call
            // answered for without running (mismatch or empty payload before applying) leaves
            // the key unused, like any call refused before it ran.
            let keeps = runs || tamper.answer == Some(ForcedAnswer::PreviousAttemptFailed);
            if let (Some(k), true) = (&idempotency_key, keeps) {
                state
                    .idempotency
                    .finish(principal.app_id, k, outcome.clone());
                if let Some(guard) = guard.as_mut() {
                    guard.armed = false;
                }
            }
            drop(state);
            match tamper.answer {
                Some(ForcedAnswer::KeyParameterMismatch { .. }) => {
                    AdjustOutcome::UserErrors(Arc::new(vec![UserError::parameter_mismatch()]))
                }
                Some(ForcedAnswer::EmptyPayload { .. }) => AdjustOutcome::NoOp,
                _ => outcome,
            }
        }
    };
    let payload = match outcome {
        AdjustOutcome::Applied(group) => Payload {
            group: Some(group),
            user_errors: Arc::new(Vec::new()),
        },
        AdjustOutcome::NoOp => Payload {
            group: None,
            user_errors: Arc::new(Vec::new()),
        },
        AdjustOutcome::UserErrors(errors) => Payload {
            group: None,
            user_errors: errors,
        },
    };
    let state = shop.lock();
    let mut executor = Executor::new(prepared, &state);
    let sets: Vec<_> = fields.iter().map(|f| &f.selection_set).collect();
    let value = executor.execute_object(
        &Obj::Payload(Arc::new(payload)),
        &sets,
        &mut vec![Out::str(key)],
    );
    (value, executor.errors, 10 + executor.actual_cost)
}

trait WithPath {
    fn with_path(self, path: Vec<Out>) -> Self;
}

impl WithPath for (Out, Vec<Out>, u64) {
    fn with_path(mut self, path: Vec<Out>) -> Self {
        for e in &mut self.1 {
            if let Out::Obj(pairs) = e {
                for (k, v) in pairs.iter_mut() {
                    if k == "path" {
                        *v = Out::List(path.clone());
                    }
                }
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies() {
        let r = GraphqlRequest::from_body(
            Some("application/json"),
            br#"{"query":"{ shop { id } }","variables":null,"operationName":null}"#,
        )
        .expect("valid");
        assert_eq!(r.operation_kind(), Some(OpKind::Query));
        let r = GraphqlRequest::from_body(
            Some("application/json"),
            br#"{"query":"mutation M { __typename }","variables":"{\"a\":1}"}"#,
        )
        .expect("valid");
        assert_eq!(r.variables.get("a"), Some(&Value::from(1)));
        assert_eq!(r.operation_kind(), Some(OpKind::Mutation));
        let r = GraphqlRequest::from_body(Some("application/graphql"), b"{ shop { id } }")
            .expect("valid");
        assert!(r.variables.is_empty());
        for bad in [
            &b"not json"[..],
            br#"{"query": ""}"#,
            br#"{"variables": {}}"#,
            br#"[1]"#,
            br#"{"query":"x","variables":[1]}"#,
        ] {
            assert!(GraphqlRequest::from_body(None, bad).is_none());
        }
    }

    #[test]
    fn syntax_errors_point_at_the_position() {
        let err = graphql_parser::parse_query::<String>("{ shop { id }").expect_err("bad");
        let out = syntax_error(&err.to_string());
        assert!(out.get("locations").is_some(), "{out:?}");
        assert_eq!(
            out.get("extensions").and_then(|e| e.get("code")),
            Some(&Out::str("syntaxError"))
        );
    }
}
