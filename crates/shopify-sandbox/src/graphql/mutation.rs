//! The mutation root: `inventoryAdjustQuantities`, run field by field (GraphQL's serial
//! execution). Its version checks come first (`MAX_INPUT_SIZE_EXCEEDED`; from 2026-04
//! `changeFromQuantity` and `@idempotent` present — top-level errors with
//! `data: {field: null}` and the field's cost), then the idempotency key decides whether it
//! runs ([`crate::idempotency`]), then [`crate::adjust`] validates and applies, and the outcome
//! is rendered through the request's selection.
//!
//! Faults reach in here ([`Tamper`]): a hold or delay is a future awaited after the key is
//! reserved and before anything applies, exactly where a slow Shopify keeps a key in flight;
//! an answer fault replaces the outcome on the key's first run.

use std::{sync::Arc, time::Instant};

use chrono::Utc;
use graphql_parser::{Pos, query::Field};
use serde_json::Value;

use super::{
    Env, ForcedAnswer, Tamper,
    coerce::literal_to_json,
    errors::{coded, path_of},
    exec::{Executor, Obj},
    payload::Payload,
    prepare::Prepared,
    schema,
    value::Out,
};
use crate::{
    adjust::{
        AdjustContext, AdjustOutcome, AdjustRequest, MAX_CHANGES, UserError, adjust_quantities,
    },
    idempotency::{Begin, fingerprint},
    store::{Principal, ShopHandle},
};

/// The first API version that requires `changeFromQuantity` and `@idempotent`.
pub const STRICT_VERSION: &str = "2026-04";

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
pub(super) async fn run_mutation<'d>(
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
