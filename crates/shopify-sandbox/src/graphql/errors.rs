//! GraphQL error objects in Shopify's shape (`message`, `locations`, `path`, `extensions`).

use graphql_parser::Pos;

use super::value::Out;

/// `{"line": l, "column": c}` for each position.
pub fn locations(positions: &[Pos]) -> Out {
    Out::List(
        positions
            .iter()
            .map(|p| {
                Out::obj([
                    ("line", Out::Int(i64::try_from(p.line).unwrap_or(i64::MAX))),
                    (
                        "column",
                        Out::Int(i64::try_from(p.column).unwrap_or(i64::MAX)),
                    ),
                ])
            })
            .collect(),
    )
}

/// One error object. Empty `positions`, `path` or `extensions` are left out.
pub fn error(
    message: impl Into<String>,
    positions: &[Pos],
    path: Option<Vec<Out>>,
    extensions: Vec<(&str, Out)>,
) -> Out {
    let mut pairs = vec![("message".to_owned(), Out::Str(message.into()))];
    if !positions.is_empty() {
        pairs.push(("locations".to_owned(), locations(positions)));
    }
    if !extensions.is_empty() {
        pairs.push((
            "extensions".to_owned(),
            Out::Obj(
                extensions
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect(),
            ),
        ));
    }
    if let Some(path) = path {
        pairs.push(("path".to_owned(), Out::List(path)));
    }
    Out::Obj(pairs)
}

/// An error with only a code in its extensions.
pub fn coded(
    message: impl Into<String>,
    positions: &[Pos],
    path: Option<Vec<Out>>,
    code: &str,
) -> Out {
    error(message, positions, path, vec![("code", Out::str(code))])
}

/// A path of string segments.
pub fn path_of(segments: &[&str]) -> Vec<Out> {
    segments.iter().map(|s| Out::str(*s)).collect()
}
