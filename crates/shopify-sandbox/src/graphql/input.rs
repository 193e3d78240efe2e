//! Input coercion: variable values and argument literals against the schema's input types.
//!
//! The rules and the problem texts follow the `INVALID_VARIABLE` errors Shopify returns
//! (fixtures: `missingRequiredFieldProbes`, `legacySetShape`): a missing non-null field is
//! "Expected value to not be null", an unknown field "Field is not defined on `<Type>`".
//! An absent nullable field stays absent (not null): from 2026-04 Shopify tells an absent
//! `changeFromQuantity` from an explicit `null`, and so must we.

use graphql_parser::query::Value as Literal;
use serde_json::{Map, Number, Value};

use super::schema::{Kind, Ty, kind};

/// One step of a path into an input value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// An object field.
    Key(String),
    /// A list index.
    Index(usize),
}

impl Seg {
    /// As a JSON path element (`"changes"`, `0`).
    pub fn to_json(&self) -> Value {
        match self {
            Self::Key(k) => Value::String(k.clone()),
            Self::Index(i) => Value::from(*i),
        }
    }
}

/// A problem found while coercing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where in the value.
    pub path: Vec<Seg>,
    /// What is wrong.
    pub explanation: String,
}

impl Problem {
    /// The path as Shopify's message spells it: `changes.0.delta`.
    pub fn dotted_path(&self) -> String {
        self.path
            .iter()
            .map(|s| match s {
                Seg::Key(k) => k.clone(),
                Seg::Index(i) => i.to_string(),
            })
            .collect::<Vec<_>>()
            .join(".")
    }
}

/// Coerces `value` (`None`: absent) to `ty`. Returns `None` when the value is absent and
/// nullable (the caller leaves it out); problems are appended, with their paths.
pub fn coerce(
    ty: Ty,
    value: Option<&Value>,
    path: &mut Vec<Seg>,
    problems: &mut Vec<Problem>,
) -> Option<Value> {
    match ty {
        Ty::NonNull(inner) => match value {
            None | Some(Value::Null) => {
                problems.push(Problem {
                    path: path.clone(),
                    explanation: "Expected value to not be null".into(),
                });
                None
            }
            Some(_) => coerce(*inner, value, path, problems),
        },
        _ => match value {
            None => None,
            Some(Value::Null) => Some(Value::Null),
            Some(present) => Some(coerce_present(ty, present, path, problems)),
        },
    }
}

fn coerce_present(
    ty: Ty,
    value: &Value,
    path: &mut Vec<Seg>,
    problems: &mut Vec<Problem>,
) -> Value {
    match ty {
        Ty::NonNull(_) => coerce(ty, Some(value), path, problems).unwrap_or(Value::Null),
        Ty::List(inner) => match value {
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| {
                        path.push(Seg::Index(i));
                        let coerced = coerce(*inner, Some(item), path, problems);
                        path.pop();
                        coerced.unwrap_or(Value::Null)
                    })
                    .collect(),
            ),
            // A single value where a list is expected is a list of one (GraphQL spec).
            single => Value::Array(vec![
                coerce(*inner, Some(single), path, problems).unwrap_or(Value::Null),
            ]),
        },
        Ty::Named(name) => coerce_named(name, value, path, problems),
    }
}

fn coerce_named(
    name: &'static str,
    value: &Value,
    path: &mut Vec<Seg>,
    problems: &mut Vec<Problem>,
) -> Value {
    let refuse = |problems: &mut Vec<Problem>| {
        problems.push(Problem {
            path: path.clone(),
            explanation: format!("Could not coerce value {value} to {name}"),
        });
        Value::Null
    };
    match kind(name) {
        Some(Kind::Input(input)) => {
            let Value::Object(given) = value else {
                problems.push(Problem {
                    path: path.clone(),
                    explanation: format!("Expected {value} to be a key-value object."),
                });
                return Value::Null;
            };
            let mut out = Map::new();
            for key in given.keys() {
                if !input.fields.iter().any(|f| f.name == key) {
                    path.push(Seg::Key(key.clone()));
                    problems.push(Problem {
                        path: path.clone(),
                        explanation: format!("Field is not defined on {}", input.name),
                    });
                    path.pop();
                }
            }
            for field in input.fields {
                path.push(Seg::Key(field.name.to_owned()));
                if let Some(coerced) = coerce(field.ty, given.get(field.name), path, problems) {
                    out.insert(field.name.to_owned(), coerced);
                }
                path.pop();
            }
            Value::Object(out)
        }
        Some(Kind::Enum) => match value {
            Value::String(_) => value.clone(),
            _ => refuse(problems),
        },
        _ => match name {
            // GraphQL's Int is 32-bit; a float (even 1.0) is not an Int.
            "Int" => match value.as_i64() {
                Some(i) if i32::try_from(i).is_ok() => Value::from(i),
                _ => refuse(problems),
            },
            "Float" => match value {
                Value::Number(_) => value.clone(),
                _ => refuse(problems),
            },
            "Boolean" => match value {
                Value::Bool(_) => value.clone(),
                _ => refuse(problems),
            },
            // IDs accept strings and integers, and are strings from then on.
            "ID" | "UnsignedInt64" => match value {
                Value::String(_) => value.clone(),
                Value::Number(n) if n.is_i64() || n.is_u64() => Value::String(n.to_string()),
                _ => refuse(problems),
            },
            _ => match value {
                Value::String(_) => value.clone(),
                _ => refuse(problems),
            },
        },
    }
}

/// A literal of the document as JSON, with variables replaced by their (already coerced)
/// values. `None` when the literal is a variable that was not provided.
pub fn literal_to_json(
    literal: &Literal<'static, String>,
    variables: &Map<String, Value>,
) -> Option<Value> {
    Some(match literal {
        Literal::Variable(name) => return variables.get(name.as_str()).cloned(),
        Literal::Int(number) => number.as_i64().map_or(Value::Null, Value::from),
        Literal::Float(float) => Number::from_f64(*float).map_or(Value::Null, Value::Number),
        Literal::String(s) => Value::String(s.clone()),
        Literal::Boolean(b) => Value::Bool(*b),
        Literal::Null => Value::Null,
        Literal::Enum(e) => Value::String(e.clone()),
        Literal::List(items) => Value::Array(
            items
                .iter()
                .map(|item| literal_to_json(item, variables).unwrap_or(Value::Null))
                .collect(),
        ),
        Literal::Object(fields) => Value::Object(
            fields
                .iter()
                .filter_map(|(k, v)| literal_to_json(v, variables).map(|v| (k.clone(), v)))
                .collect(),
        ),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const INPUT: Ty = Ty::NonNull(&Ty::Named("InventoryAdjustQuantitiesInput"));

    fn run(value: Value) -> (Option<Value>, Vec<(String, String)>) {
        let mut problems = Vec::new();
        let out = coerce(INPUT, Some(&value), &mut Vec::new(), &mut problems);
        (
            out,
            problems
                .into_iter()
                .map(|p| (p.dotted_path(), p.explanation))
                .collect(),
        )
    }

    #[test]
    fn missing_non_null_fields_and_unknown_fields_are_problems() {
        let (_, problems) = run(json!({
            "name": "incoming", "reason": "correction", "bogus": 1,
            "changes": [{"locationId": "gid://shopify/Location/1", "delta": 2}]
        }));
        assert_eq!(
            problems,
            vec![
                (
                    "bogus".into(),
                    "Field is not defined on InventoryAdjustQuantitiesInput".into()
                ),
                (
                    "changes.0.inventoryItemId".into(),
                    "Expected value to not be null".into()
                ),
            ]
        );
    }

    #[test]
    fn absent_stays_absent_and_null_stays_null() {
        let (out, problems) = run(json!({
            "name": "available", "reason": "correction",
            "changes": [
                {"inventoryItemId": "gid://shopify/InventoryItem/1", "locationId": 2, "delta": 1},
                {"inventoryItemId": "gid://shopify/InventoryItem/1", "locationId": "x", "delta": 1, "changeFromQuantity": null}
            ]
        }));
        assert!(problems.is_empty(), "{problems:?}");
        let out = out.expect("coerced");
        assert!(out["changes"][0].get("changeFromQuantity").is_none());
        assert_eq!(out["changes"][1]["changeFromQuantity"], Value::Null);
        assert_eq!(out["changes"][0]["locationId"], json!("2"));
        assert!(out.get("referenceDocumentUri").is_none());
    }

    #[test]
    fn ints_are_32_bit_and_not_floats() {
        for bad in [json!(2_147_483_648_i64), json!(1.0), json!("1")] {
            let (_, problems) = run(json!({
                "name": "available", "reason": "correction",
                "changes": [{"inventoryItemId": "a", "locationId": "b", "delta": bad}]
            }));
            assert_eq!(problems.len(), 1);
            assert_eq!(problems[0].0, "changes.0.delta");
            assert!(
                problems[0].1.starts_with("Could not coerce value"),
                "{problems:?}"
            );
        }
    }

    #[test]
    fn a_single_value_is_a_list_of_one_and_non_objects_are_refused() {
        let (out, problems) = run(json!({
            "name": "available", "reason": "correction",
            "changes": {"inventoryItemId": "a", "locationId": "b", "delta": 1}
        }));
        assert!(problems.is_empty());
        assert_eq!(
            out.expect("coerced")["changes"].as_array().map(Vec::len),
            Some(1)
        );
        let (_, problems) = run(json!("nope"));
        assert_eq!(problems[0].1, "Expected \"nope\" to be a key-value object.");
        let (_, problems) = run(Value::Null);
        assert_eq!(problems[0].1, "Expected value to not be null");
    }

    #[test]
    fn literals_substitute_variables_and_drop_absent_ones() {
        let doc = graphql_parser::parse_query::<String>(
            r#"{ f(a: {x: $v, y: $missing, z: [1, ENUM, "s", null, 2.5]}) }"#,
        )
        .expect("parses")
        .into_static();
        let graphql_parser::query::Definition::Operation(
            graphql_parser::query::OperationDefinition::SelectionSet(set),
        ) = &doc.definitions[0]
        else {
            panic!("shorthand query")
        };
        let graphql_parser::query::Selection::Field(field) = &set.items[0] else {
            panic!("field")
        };
        let mut variables = Map::new();
        variables.insert("v".into(), json!(7));
        let value = literal_to_json(&field.arguments[0].1, &variables).expect("present");
        assert_eq!(value, json!({"x": 7, "z": [1, "ENUM", "s", null, 2.5]}));
    }
}
