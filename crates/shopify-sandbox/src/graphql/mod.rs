//! The Admin GraphQL endpoint's brain: one request in, one Shopify-shaped response out.
//!
//! The stages, in Shopify's order (each fixture says which stages a refusal passed):
//! 1. [`parse`] the document and pick the operation, [`validate`] it, [`coerce`] the
//!    variables and argument literals ([`mod@prepare`]) — refusals are top-level `errors`
//!    without `data` or `extensions.cost`;
//! 2. compute the requested [`cost`] and take it from the app's bucket — `MAX_COST_EXCEEDED`
//!    or `THROTTLED` otherwise;
//! 3. run it: queries through the executor ([`exec`]: objects, [`select`]ed fields, pages in
//!    [`connection`], the reads in [`reads`], payloads in [`payload`]);
//!    `inventoryAdjustQuantities` through [`mutation`];
//! 4. give back the unused cost and report `extensions.cost` with the bucket.
//!
//! [`schema`] is the slice of Shopify's schema all of them check against; [`request`] reads
//! the body, [`value`] and [`errors`] shape the response. Faults that act inside the
//! execution ([`Tamper`]) hold a call before it runs, or answer a mutation in its place.

pub mod coerce;
pub mod connection;
pub mod cost;
pub mod errors;
pub mod exec;
pub mod mutation;
pub mod parse;
pub mod payload;
pub mod prepare;
pub mod reads;
pub mod request;
pub mod schema;
pub mod select;
pub mod validate;
pub mod value;

use std::{future::Future, pin::Pin, time::Duration};

use self::{
    exec::{Executor, Obj},
    mutation::run_mutation,
    parse::{parse_document, select_operation},
    prepare::prepare,
    value::Out,
};
pub use self::{mutation::STRICT_VERSION, parse::OpKind, request::GraphqlRequest};
use crate::{
    store::{IdAllocator, Principal},
    throttle::ThrottleConfig,
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
    let document = match parse_document(&request.query) {
        Ok(document) => document,
        Err(error) => return top_level(vec![error]),
    };
    let op = match select_operation(&document, request.operation_name.as_deref()) {
        Ok(op) => op,
        Err(error) => return top_level(vec![error]),
    };
    let prepared = match prepare(&document, op, &request.variables) {
        Ok(prepared) => prepared,
        Err(errors) => return top_level(errors),
    };
    let requested = prepared.requested_cost();
    let (shop, app_id) = (&principal.shop, principal.app_id);
    if requested > env.max_query_cost {
        let status = cost::bucket_status(shop, app_id, &env.throttle);
        return cost::max_cost_exceeded(requested, env.max_query_cost, status);
    }
    if let Err(refused) = cost::take(shop, app_id, &env.throttle, requested) {
        return cost::throttled(requested, refused.status);
    }

    let (data, errors, actual) = match prepared.kind {
        OpKind::Query => {
            if let Some(pause) = tamper.pause {
                pause.await;
            }
            let state = shop.lock();
            let mut executor = Executor::new(&prepared, &state);
            executor.app_id = Some(app_id);
            let data =
                executor.execute_object(&Obj::Query, &[prepared.selection_set], &mut Vec::new());
            (data, executor.errors, executor.actual_cost)
        }
        OpKind::Mutation => run_mutation(env, principal, &prepared, tamper).await,
    };

    let status = cost::refund(
        shop,
        app_id,
        &env.throttle,
        requested.saturating_sub(actual),
    );
    let mut pairs = Vec::with_capacity(3);
    if !errors.is_empty() {
        pairs.push(("errors".to_owned(), Out::List(errors)));
    }
    pairs.push(("data".to_owned(), data));
    pairs.push((
        "extensions".to_owned(),
        cost::cost_extension(requested, Some(actual), status),
    ));
    Out::Obj(pairs)
}

fn top_level(errors: Vec<Out>) -> Out {
    Out::obj([("errors", Out::List(errors))])
}
