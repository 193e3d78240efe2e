//! Preparing an operation to run, in Shopify's order: validate it against the schema
//! ([`super::validate`]), then coerce its variables and argument literals
//! ([`super::coerce`]). The [`Prepared`] operation is what field collection
//! ([`super::select`]), the cost ([`super::cost`]) and the executor read.
//!
//! Everything refused here is refused the way Shopify refuses it before running anything:
//! a top-level `errors` list with no `data` and no cost (validation errors and
//! `INVALID_VARIABLE` carry no `extensions.cost` in the fixtures).

use std::collections::HashMap;

use graphql_parser::{
    Pos,
    query::{
        Definition, Directive, Document, FragmentDefinition, OperationDefinition, SelectionSet,
        VariableDefinition,
    },
};
use serde_json::{Map, Value};

use super::{
    coerce::coerce_variables, errors::error, parse::OpKind, validate::validate, value::Out,
};

/// A validated operation, ready to run.
#[derive(Debug)]
pub struct Prepared<'d> {
    /// Query or mutation.
    pub kind: OpKind,
    /// The operation's root selection set.
    pub selection_set: &'d SelectionSet<'static, String>,
    /// Fragment definitions by name.
    pub fragments: HashMap<&'d str, &'d FragmentDefinition<'static, String>>,
    /// Coerced variable values (absent ones left out).
    pub variables: Map<String, Value>,
    /// Positions of the variable definitions, for errors that point at them.
    pub variable_positions: HashMap<&'d str, Pos>,
    /// `query Name` / `mutation Name` / `query`: the first element of validation error paths.
    pub label: String,
}

/// The parts of an operation definition the stages read.
#[derive(Debug, Clone, Copy)]
pub struct Operation<'d> {
    /// Query or mutation.
    pub kind: OpKind,
    /// Its name, if it has one.
    pub name: Option<&'d str>,
    /// The variables it declares.
    pub variable_definitions: &'d [VariableDefinition<'static, String>],
    /// Its root selection set.
    pub selection_set: &'d SelectionSet<'static, String>,
    /// Its directives.
    pub directives: &'d [Directive<'static, String>],
}

impl<'d> Operation<'d> {
    /// The operation's parts; a subscription is refused (Shopify has none).
    fn of(op: &'d OperationDefinition<'static, String>) -> Result<Self, Vec<Out>> {
        let (kind, name, variable_definitions, selection_set, directives) = match op {
            OperationDefinition::SelectionSet(set) => (OpKind::Query, None, &[][..], set, &[][..]),
            OperationDefinition::Query(q) => (
                OpKind::Query,
                q.name.as_deref(),
                &q.variable_definitions[..],
                &q.selection_set,
                &q.directives[..],
            ),
            OperationDefinition::Mutation(m) => (
                OpKind::Mutation,
                m.name.as_deref(),
                &m.variable_definitions[..],
                &m.selection_set,
                &m.directives[..],
            ),
            OperationDefinition::Subscription(s) => {
                return Err(vec![error(
                    "Schema is not configured for subscriptions",
                    &[s.position],
                    None,
                    vec![("code", Out::str("missingSubscriptionConfiguration"))],
                )]);
            }
        };
        Ok(Self {
            kind,
            name,
            variable_definitions,
            selection_set,
            directives,
        })
    }

    /// `query Name` / `mutation Name` / `query`: the first element of validation error paths.
    pub fn label(&self) -> String {
        match self.name {
            Some(n) => format!("{} {n}", self.kind.keyword()),
            None => self.kind.keyword().to_owned(),
        }
    }
}

/// Validates `op`, then coerces its variables and argument literals. `Err` holds the
/// `errors` list.
pub fn prepare<'d>(
    document: &'d Document<'static, String>,
    op: &'d OperationDefinition<'static, String>,
    provided: &Map<String, Value>,
) -> Result<Prepared<'d>, Vec<Out>> {
    let operation = Operation::of(op)?;
    let mut fragments = HashMap::new();
    for definition in &document.definitions {
        if let Definition::Fragment(fragment) = definition {
            fragments.insert(fragment.name.as_str(), fragment);
        }
    }
    validate(&operation, &fragments)?;
    let variables = coerce_variables(operation.variable_definitions, provided)?;
    let prepared = Prepared {
        kind: operation.kind,
        selection_set: operation.selection_set,
        fragments,
        variables,
        variable_positions: operation
            .variable_definitions
            .iter()
            .map(|v| (v.name.as_str(), v.position))
            .collect(),
        label: operation.label(),
    };
    prepared.check_literals()?;
    Ok(prepared)
}

/// Parses `query`, picks its only operation and prepares it with `variables`, then hands it
/// to `f` (the stages' unit tests).
#[cfg(test)]
pub(super) fn prepared<T>(
    query: &str,
    variables: Value,
    f: impl FnOnce(&Prepared<'_>) -> T,
) -> Result<T, Vec<Out>> {
    let document = super::parse::parse_document(query).map_err(|e| vec![e])?;
    let op = super::parse::select_operation(&document, None).map_err(|e| vec![e])?;
    let variables = variables.as_object().cloned().unwrap_or_default();
    prepare(&document, op, &variables).map(|p| f(&p))
}
