//! The cost of a call (see `docs/shopify-sandbox.md`, "Cost model"): what a document
//! requests, computed statically by Shopify's rules before it runs; what each object costs as
//! it is returned (the actual cost); the app's bucket the requested cost is taken from and the
//! unused part given back to; and how all of it is reported (`extensions.cost`,
//! `MAX_COST_EXCEEDED`, `THROTTLED`).

use std::time::Instant;

use graphql_parser::query::SelectionSet;
use serde_json::Value;

use super::{
    errors::error,
    parse::OpKind,
    prepare::Prepared,
    schema::{self, ObjectDef},
    value::Out,
};
use crate::{
    store::ShopHandle,
    throttle::{LeakyBucket, ThrottleConfig, ThrottleStatus, Throttled},
};

impl<'d> Prepared<'d> {
    /// The requested cost of the operation (see `docs/shopify-sandbox.md`, "Cost"):
    /// scalars 0, objects 1, a mutation field 10, a plain list of objects the cost of one
    /// element's children, a connection `2 + first × (node cost)`.
    pub fn requested_cost(&self) -> u64 {
        let (root, mutation) = match self.kind {
            OpKind::Query => (schema::query_root(), false),
            OpKind::Mutation => (schema::mutation_root(), true),
        };
        self.set_cost(root, self.selection_set, mutation)
    }

    fn set_cost(
        &self,
        object: &'static ObjectDef,
        set: &'d SelectionSet<'static, String>,
        mutation_root: bool,
    ) -> u64 {
        if object.is_interface() {
            return object
                .possible_types
                .iter()
                .filter_map(|t| schema::object(t))
                .map(|concrete| self.set_cost_of(concrete, set, false))
                .max()
                .unwrap_or(0);
        }
        self.set_cost_of(object, set, mutation_root)
    }

    fn set_cost_of(
        &self,
        object: &'static ObjectDef,
        set: &'d SelectionSet<'static, String>,
        mutation_root: bool,
    ) -> u64 {
        let mut total: u64 = 0;
        for (_, fields) in self.collect_fields(object.name, set) {
            let Some(field) = fields.first() else {
                continue;
            };
            let Some(definition) = object.field(&field.name) else {
                continue;
            };
            let named = definition.ty.named();
            let Some(child) = schema::object(named) else {
                continue;
            };
            let children: u64 = fields
                .iter()
                .map(|f| self.set_cost(child, &f.selection_set, false))
                .sum();
            let cost = if mutation_root {
                10 + children
            } else if schema::is_connection(named) {
                let (arguments, _) = self.arguments(definition.args, &field.arguments);
                let size = ["first", "last"]
                    .iter()
                    .find_map(|k| arguments.get(*k).and_then(Value::as_u64))
                    .unwrap_or(1);
                2 + size.saturating_mul(children)
            } else if object.name.ends_with("Connection") && field.name == "nodes" {
                1 + children
            } else if definition.ty.is_list() {
                if field.name == "nodes" {
                    let (arguments, _) = self.arguments(definition.args, &field.arguments);
                    let ids = arguments
                        .get("ids")
                        .and_then(Value::as_array)
                        .map_or(0, Vec::len) as u64;
                    ids.saturating_mul(1 + children)
                } else {
                    children
                }
            } else if own_cost(named) == 0 {
                children
            } else {
                1 + children
            };
            total = total.saturating_add(cost);
        }
        total
    }
}

/// An object's own cost when completed as a plain (non-list) field.
pub fn own_cost(type_name: &str) -> u64 {
    if type_name.ends_with("Connection") {
        2
    } else if type_name.ends_with("Edge")
        || type_name.ends_with("Payload")
        || type_name == "PageInfo"
    {
        0
    } else {
        1
    }
}

/// Takes the requested cost from the app's bucket, or says it does not fit (nothing taken).
pub fn take(
    shop: &ShopHandle,
    app_id: u64,
    throttle: &ThrottleConfig,
    requested: u64,
) -> Result<ThrottleStatus, Throttled> {
    let mut state = shop.lock();
    let now = Instant::now();
    state
        .buckets
        .entry(app_id)
        .or_insert_with(|| LeakyBucket::full(throttle, now))
        .try_take(throttle, now, requested as f64)
}

/// Gives back what a call did not use (requested minus actual); the bucket after it.
pub fn refund(
    shop: &ShopHandle,
    app_id: u64,
    throttle: &ThrottleConfig,
    unused: u64,
) -> ThrottleStatus {
    let mut state = shop.lock();
    let now = Instant::now();
    let bucket = state
        .buckets
        .entry(app_id)
        .or_insert_with(|| LeakyBucket::full(throttle, now));
    bucket.refund(throttle, now, unused as f64);
    bucket.status(throttle)
}

/// The app's bucket now.
pub fn bucket_status(shop: &ShopHandle, app_id: u64, throttle: &ThrottleConfig) -> ThrottleStatus {
    let mut state = shop.lock();
    let now = Instant::now();
    let bucket = state
        .buckets
        .entry(app_id)
        .or_insert_with(|| LeakyBucket::full(throttle, now));
    bucket.available(throttle, now);
    bucket.status(throttle)
}

/// `extensions.cost`: the requested and actual cost and the bucket.
pub fn cost_extension(requested: u64, actual: Option<u64>, status: ThrottleStatus) -> Out {
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

/// The refusal of a document whose requested cost is over the single-query limit.
pub fn max_cost_exceeded(requested: u64, max_cost: u64, status: ThrottleStatus) -> Out {
    Out::obj([
        (
            "errors",
            Out::List(vec![error(
                format!(
                    "Query cost is {requested}, which exceeds the single query max cost limit ({max_cost})."
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
                        Out::Int(i64::try_from(max_cost).unwrap_or(i64::MAX)),
                    ),
                ],
            )]),
        ),
        ("extensions", cost_extension(requested, None, status)),
    ])
}

/// The refusal of a call its bucket cannot pay for (`actualQueryCost: null`).
pub fn throttled(requested: u64, status: ThrottleStatus) -> Out {
    Out::obj([
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
        ("extensions", cost_extension(requested, None, status)),
    ])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::super::prepare::prepared;

    fn prepared_cost(query: &str, variables: serde_json::Value) -> Result<u64, Vec<super::Out>> {
        prepared(query, variables, |p| p.requested_cost())
    }

    const ADJUST: &str = include_str!(
        "../../../../contract/fixtures/shopify-admin/inventory-adjust-ledger-document-validation.request.graphql"
    );

    #[test]
    fn the_fixture_mutation_costs_what_shopify_requested() {
        let variables = json!({"input": {"name": "available", "reason": "correction",
            "changes": [{"inventoryItemId": "gid://shopify/InventoryItem/1", "locationId": "gid://shopify/Location/1", "delta": 1, "changeFromQuantity": null}]},
            "idempotencyKey": "k"});
        assert_eq!(prepared_cost(ADJUST, variables.clone()), Ok(13));
        let with_app = ADJUST.replace(
            "      reason\n",
            "      reason\n      app { id title }\n      staffMember { id }\n",
        );
        assert_eq!(prepared_cost(&with_app, variables.clone()), Ok(15));
        let without_item = ADJUST.replace("        item {\n          id\n        }\n", "");
        assert_eq!(prepared_cost(&without_item, variables), Ok(12));
    }

    #[test]
    fn connections_cost_by_page_size_and_nodes_by_ids() {
        let cost = prepared_cost(
            "{ productVariants(first: 5) { nodes { id product { id } inventoryItem { id } } } }",
            json!({}),
        );
        assert_eq!(cost, Ok(2 + 5 * (1 + 1 + 1)));
        let cost = prepared_cost(
            "query($ids: [ID!]!) { nodes(ids: $ids) { ... on ProductVariant { id product { id } } } }",
            json!({"ids": ["gid://shopify/ProductVariant/1", "gid://shopify/ProductVariant/2"]}),
        );
        assert_eq!(cost, Ok(2 * (1 + 1)));
    }
}
