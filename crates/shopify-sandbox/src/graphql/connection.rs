//! Connections: a page of a sorted list (`first`/`last`/`after`/`before`/`reverse`, one of
//! `first`/`last` required, at most 250), opaque cursors, and the page's `nodes`, `edges` and
//! `pageInfo`.

use std::sync::Arc;

use base64::{Engine as _, engine::general_purpose::STANDARD};
use serde_json::{Map, Value};

use super::exec::{Executor, Obj, R, bool_, leaf_opt};

/// Largest page a connection serves.
pub const MAX_PAGE: u64 = 250;

/// A page of a connection.
#[derive(Debug)]
pub struct Conn {
    pub(super) type_name: &'static str,
    pub(super) edge_type: &'static str,
    nodes: Vec<Obj>,
    cursors: Vec<String>,
    has_next: bool,
    has_previous: bool,
}

impl Executor<'_, '_> {
    /// One page of `items` (id, object), sorted by id, per `first`/`last`/`after`/`before`/
    /// `reverse`.
    pub(super) fn paginate(
        &mut self,
        field: &str,
        node_type: &'static str,
        mut items: Vec<(u64, Obj)>,
        args: &Map<String, Value>,
    ) -> Result<R, String> {
        let first = args.get("first").and_then(Value::as_i64);
        let last = args.get("last").and_then(Value::as_i64);
        let size = match (first, last) {
            (None, None) => return Err("you must provide one of first or last".to_owned()),
            (Some(n), _) | (None, Some(n)) => n,
        };
        if !(0..=MAX_PAGE as i64).contains(&size) {
            return Err(format!(
                "The argument `{}` on field `{field}` must be between 0 and {MAX_PAGE}.",
                if first.is_some() { "first" } else { "last" }
            ));
        }
        items.sort_by_key(|(id, _)| *id);
        if args.get("reverse").and_then(Value::as_bool) == Some(true) {
            items.reverse();
        }
        let position_of = |cursor: &Value| -> Result<usize, String> {
            let text = cursor.as_str().unwrap_or_default();
            let id = STANDARD
                .decode(text)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .and_then(|s| s.strip_prefix("id:").and_then(|n| n.parse::<u64>().ok()))
                .ok_or_else(|| format!("Invalid cursor '{text}'"))?;
            Ok(items
                .iter()
                .position(|(i, _)| *i == id)
                .unwrap_or(items.len()))
        };
        let mut start = 0;
        let mut end = items.len();
        if let Some(after) = args.get("after") {
            start = (position_of(after)? + 1).min(end);
        }
        if let Some(before) = args.get("before") {
            end = position_of(before)?.max(start);
        }
        let window_len = end - start;
        let size = usize::try_from(size).unwrap_or(0);
        let (from, to) = if first.is_some() {
            (start, start + size.min(window_len))
        } else {
            (end - size.min(window_len), end)
        };
        let has_next = to < end || (first.is_none() && end < items.len());
        let has_previous = from > start || (first.is_some() && start > 0);
        let page: Vec<(u64, Obj)> = items.drain(from..to).collect();
        let conn = Conn {
            type_name: connection_type(node_type),
            edge_type: edge_type(node_type),
            cursors: page
                .iter()
                .map(|(id, _)| STANDARD.encode(format!("id:{id}")))
                .collect(),
            nodes: page.into_iter().map(|(_, obj)| obj).collect(),
            has_next,
            has_previous,
        };
        Ok(R::Object(Obj::Connection(Arc::new(conn))))
    }

    /// A field of a page, one of its edges or its page info.
    pub(super) fn resolve_page(obj: &Obj, name: &str) -> R {
        match obj {
            Obj::Connection(conn) => match name {
                "nodes" => R::List(conn.nodes.iter().cloned().map(R::Object).collect()),
                "edges" => R::List(
                    (0..conn.nodes.len())
                        .map(|i| R::Object(Obj::Edge(Arc::clone(conn), i)))
                        .collect(),
                ),
                "pageInfo" => R::Object(Obj::PageInfo(Arc::clone(conn))),
                _ => R::Null,
            },
            Obj::Edge(conn, i) => match name {
                "node" => conn.nodes.get(*i).cloned().map_or(R::Null, R::Object),
                "cursor" => leaf_opt(conn.cursors.get(*i).map(String::as_str)),
                _ => R::Null,
            },
            Obj::PageInfo(conn) => match name {
                "hasNextPage" => bool_(conn.has_next),
                "hasPreviousPage" => bool_(conn.has_previous),
                "startCursor" => leaf_opt(conn.cursors.first().map(String::as_str)),
                "endCursor" => leaf_opt(conn.cursors.last().map(String::as_str)),
                _ => R::Null,
            },
            _ => R::Null,
        }
    }
}

fn connection_type(node: &str) -> &'static str {
    match node {
        "ProductVariant" => "ProductVariantConnection",
        _ => "LocationConnection",
    }
}

fn edge_type(node: &str) -> &'static str {
    match node {
        "ProductVariant" => "ProductVariantEdge",
        _ => "LocationEdge",
    }
}
