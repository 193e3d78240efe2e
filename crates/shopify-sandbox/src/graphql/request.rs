//! A request body (`POST …/graphql.json`): JSON `{"query", "variables", "operationName"}`, or
//! with `application/graphql` the bare document; and whether it is a mutation, for the fault
//! rules' scope.

use serde_json::{Map, Value};

use super::parse::{OpKind, parse_document, select_operation};

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
        let document = parse_document(&self.query).ok()?;
        let op = select_operation(&document, self.operation_name.as_deref()).ok()?;
        Some(match op {
            graphql_parser::query::OperationDefinition::Mutation(_) => OpKind::Mutation,
            _ => OpKind::Query,
        })
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
}
