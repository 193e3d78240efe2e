//! The parse stage: the request's text to a document (a syntax error as Shopify reports it,
//! pointing at the position) and the operation the request asked for (`operationName`, or
//! the only one).

use graphql_parser::{
    Pos,
    query::{Definition, Document, OperationDefinition},
};

use super::{
    errors::{coded, error},
    schema::{self, ObjectDef},
    value::Out,
};

/// Query or mutation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// A query.
    Query,
    /// A mutation.
    Mutation,
}

impl OpKind {
    /// The root object type its selection set starts from.
    pub fn root(self) -> &'static ObjectDef {
        match self {
            Self::Query => schema::query_root(),
            Self::Mutation => schema::mutation_root(),
        }
    }

    /// `query` or `mutation`, as validation error paths spell it.
    pub fn keyword(self) -> &'static str {
        match self {
            Self::Query => "query",
            Self::Mutation => "mutation",
        }
    }
}

/// Parses a document; a syntax error comes back as the error object Shopify answers.
pub fn parse_document(query: &str) -> Result<Document<'static, String>, Out> {
    graphql_parser::parse_query::<String>(query)
        .map(Document::into_static)
        .map_err(|err| syntax_error(&err.to_string()))
}

/// Picks the operation a request asked for, or says why it cannot.
pub fn select_operation<'a>(
    document: &'a Document<'static, String>,
    operation_name: Option<&str>,
) -> Result<&'a OperationDefinition<'static, String>, Out> {
    let operations: Vec<&OperationDefinition<'static, String>> = document
        .definitions
        .iter()
        .filter_map(|d| match d {
            Definition::Operation(op) => Some(op),
            Definition::Fragment(_) => None,
        })
        .collect();
    match operation_name.filter(|n| !n.is_empty()) {
        Some(name) => operations
            .into_iter()
            .find(|op| operation_name_of(op) == Some(name))
            .ok_or_else(|| error(format!("No operation named \"{name}\""), &[], None, vec![])),
        None => match operations.as_slice() {
            [single] => Ok(*single),
            [] => Err(error("No operations in query document", &[], None, vec![])),
            _ => Err(error("An operation name is required", &[], None, vec![])),
        },
    }
}

fn operation_name_of<'d>(op: &'d OperationDefinition<'static, String>) -> Option<&'d str> {
    match op {
        OperationDefinition::SelectionSet(_) => None,
        OperationDefinition::Query(q) => q.name.as_deref(),
        OperationDefinition::Mutation(m) => m.name.as_deref(),
        OperationDefinition::Subscription(s) => s.name.as_deref(),
    }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn syntax_errors_point_at_the_position() {
        let out = parse_document("{ shop { id }").expect_err("bad");
        assert!(out.get("locations").is_some(), "{out:?}");
        assert_eq!(
            out.get("extensions").and_then(|e| e.get("code")),
            Some(&Out::str("syntaxError"))
        );
    }
    #[test]
    fn operation_selection() {
        let document = parse_document("query A { shop { id } } query B { shop { id } }").unwrap();
        assert!(select_operation(&document, None).is_err());
        assert!(select_operation(&document, Some("B")).is_ok());
        assert!(select_operation(&document, Some("C")).is_err());
    }
}
