//! The coerce stage: variable values and argument literals against the schema's input
//! types, and a variable's declared type as the schema's [`Ty`].
//!
//! The rules and the problem texts follow the `INVALID_VARIABLE` errors Shopify returns
//! (fixtures: `missingRequiredFieldProbes`, `legacySetShape`): a missing non-null field is
//! "Expected value to not be null", an unknown field "Field is not defined on `<Type>`".
//! An absent nullable field stays absent (not null): from 2026-04 Shopify tells an absent
//! `changeFromQuantity` from an explicit `null`, and so must we. Argument literals are
//! checked when the operation is prepared (`argumentLiteralsIncompatible`), so coercing them
//! again at execution cannot fail.

use graphql_parser::query::{
    Selection, SelectionSet, Type as AstType, TypeCondition, Value as Literal, VariableDefinition,
};
use serde_json::{Map, Number, Value};

use super::{
    errors::error,
    prepare::Prepared,
    schema::{self, ArgDef, Kind, ObjectDef, Ty, kind},
    value::Out,
};

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

/// The variables' values, coerced to their declared types (absent ones left out); every
/// variable that does not fit is an `INVALID_VARIABLE` error.
pub fn coerce_variables(
    definitions: &[VariableDefinition<'static, String>],
    provided: &Map<String, Value>,
) -> Result<Map<String, Value>, Vec<Out>> {
    let mut out = Map::new();
    let mut errors = Vec::new();
    for definition in definitions {
        let Some(ty) = declared_type(&definition.var_type) else {
            continue;
        };
        let default = definition
            .default_value
            .as_ref()
            .and_then(|d| literal_to_json(d, &Map::new()));
        let given = provided.get(definition.name.as_str()).or(default.as_ref());
        let mut problems: Vec<Problem> = Vec::new();
        let coerced = coerce(ty, given, &mut Vec::new(), &mut problems);
        if problems.is_empty() {
            if let Some(value) = coerced {
                out.insert(definition.name.to_owned(), value);
            }
            continue;
        }
        let details: Vec<String> = problems
            .iter()
            .map(|p| {
                if p.path.is_empty() {
                    format!("({})", p.explanation)
                } else {
                    format!("for {} ({})", p.dotted_path(), p.explanation)
                }
            })
            .collect();
        errors.push(error(
            format!(
                "Variable ${} of type {} was provided invalid value {}",
                definition.name,
                ty,
                details.join(", ")
            )
            .trim_end()
            .to_owned(),
            &[definition.position],
            None,
            vec![
                ("code", Out::str("INVALID_VARIABLE")),
                ("value", Out::Json(given.cloned().unwrap_or(Value::Null))),
                (
                    "problems",
                    Out::List(
                        problems
                            .iter()
                            .map(|p| {
                                Out::obj([
                                    (
                                        "path",
                                        Out::Json(Value::Array(
                                            p.path.iter().map(Seg::to_json).collect(),
                                        )),
                                    ),
                                    ("explanation", Out::str(&p.explanation)),
                                ])
                            })
                            .collect(),
                    ),
                ),
            ],
        ));
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// The schema type a variable declares (`None` for a type the schema does not have).
pub fn declared_type(ty: &AstType<'static, String>) -> Option<Ty> {
    // The schema's `Ty` holds `'static` references; variable types are rebuilt from the
    // shapes the schema uses (at most `[X!]!`), leaking nothing.
    fn leak_free(name: &str) -> Option<&'static str> {
        schema::kind(name).map(|_| name).and_then(static_name)
    }
    match ty {
        AstType::NamedType(name) => leak_free(name).map(Ty::Named),
        AstType::NonNullType(inner) => match &**inner {
            AstType::NamedType(name) => leak_free(name).map(|n| Ty::NonNull(named_ref(n))),
            AstType::ListType(item) => list_ref(item).map(Ty::NonNull),
            AstType::NonNullType(_) => None,
        },
        AstType::ListType(item) => list_ref(item).copied(),
    }
}

/// `'static` references for the named types and the list shapes variables can declare.
fn static_name(name: &str) -> Option<&'static str> {
    STATIC_NAMES.iter().copied().find(|n| *n == name)
}

const STATIC_NAMES: &[&str] = &[
    "ID",
    "String",
    "Int",
    "Float",
    "Boolean",
    "DateTime",
    "URL",
    "Money",
    "InventoryAdjustQuantitiesInput",
    "InventoryChangeInput",
];

fn named_ref(name: &'static str) -> &'static Ty {
    macro_rules! table {
        ($($n:literal),*) => {
            match name {
                $($n => &Ty::Named($n),)*
                _ => &Ty::Named("String"),
            }
        };
    }
    table!(
        "ID",
        "String",
        "Int",
        "Float",
        "Boolean",
        "DateTime",
        "URL",
        "Money",
        "InventoryAdjustQuantitiesInput",
        "InventoryChangeInput"
    )
}

fn list_ref(item: &AstType<'static, String>) -> Option<&'static Ty> {
    macro_rules! lists {
        ($($n:literal),*) => {
            match item {
                AstType::NamedType(name) => match name.as_str() {
                    $($n => Some(&Ty::List(&Ty::Named($n))),)*
                    _ => None,
                },
                AstType::NonNullType(inner) => match &**inner {
                    AstType::NamedType(name) => match name.as_str() {
                        $($n => Some(&Ty::List(&Ty::NonNull(&Ty::Named($n)))),)*
                        _ => None,
                    },
                    _ => None,
                },
                AstType::ListType(_) => None,
            }
        };
    }
    lists!("ID", "String", "Int", "InventoryChangeInput")
}

impl<'d> Prepared<'d> {
    /// Coerces a field's (or directive's) arguments. Problems are reported by
    /// [`super::prepare::prepare`]'s literal check, so at execution time they cannot occur.
    pub fn arguments(
        &self,
        definitions: &[ArgDef],
        given: &[(String, Literal<'static, String>)],
    ) -> (Map<String, Value>, Vec<(String, Problem)>) {
        let mut out = Map::new();
        let mut problems = Vec::new();
        for definition in definitions {
            let value = given
                .iter()
                .find(|(n, _)| *n == definition.name)
                .and_then(|(_, v)| literal_to_json(v, &self.variables));
            let mut found = Vec::new();
            if let Some(coerced) =
                coerce(definition.ty, value.as_ref(), &mut Vec::new(), &mut found)
            {
                out.insert(definition.name.to_owned(), coerced);
            }
            problems.extend(found.into_iter().map(|p| (definition.name.to_owned(), p)));
        }
        (out, problems)
    }

    /// Checks every argument literal of the operation coerces (`argumentLiteralsIncompatible`
    /// otherwise).
    pub(super) fn check_literals(&self) -> Result<(), Vec<Out>> {
        let mut errors = Vec::new();
        self.check_literals_in(
            self.kind.root(),
            self.selection_set,
            &mut errors,
            &mut Vec::new(),
        );
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    fn check_literals_in(
        &self,
        parent: &'static ObjectDef,
        set: &'d SelectionSet<'static, String>,
        errors: &mut Vec<Out>,
        visited: &mut Vec<&'d str>,
    ) {
        for selection in &set.items {
            match selection {
                Selection::Field(field) => {
                    let Some(definition) = parent.field(&field.name) else {
                        continue;
                    };
                    // Arguments that are a bare variable were coerced with the variables
                    // (and their types matched by the validator): only literals need it here,
                    // which spares a deep copy of a 250-change input.
                    let mut problems = Vec::new();
                    for definition in definition.args {
                        let given = field.arguments.iter().find(|(n, _)| *n == definition.name);
                        if matches!(given, Some((_, Literal::Variable(_)))) {
                            continue;
                        }
                        let value = given.and_then(|(_, v)| literal_to_json(v, &self.variables));
                        let mut found = Vec::new();
                        coerce(definition.ty, value.as_ref(), &mut Vec::new(), &mut found);
                        problems.extend(found.into_iter().map(|p| (definition.name.to_owned(), p)));
                    }
                    for (argument, problem) in problems {
                        let ty = definition
                            .args
                            .iter()
                            .find(|a| a.name == argument)
                            .map_or_else(String::new, |a| a.ty.to_string());
                        let shown = field
                            .arguments
                            .iter()
                            .find(|(n, _)| *n == argument)
                            .map_or_else(String::new, |(_, v)| v.to_string());
                        let detail = if problem.path.is_empty() {
                            String::new()
                        } else {
                            format!(" at {}: {}", problem.dotted_path(), problem.explanation)
                        };
                        errors.push(error(
                            format!(
                                "Argument '{argument}' on Field '{}' has an invalid value ({shown}). Expected type '{ty}'.{detail}",
                                field.name
                            ),
                            &[field.position],
                            Some(vec![Out::str(&self.label), Out::str(field.alias.as_deref().unwrap_or(&field.name))]),
                            vec![
                                ("code", Out::str("argumentLiteralsIncompatible")),
                                ("typeName", Out::str("Field")),
                                ("argumentName", Out::str(argument)),
                            ],
                        ));
                    }
                    if let Some(child) = schema::object(definition.ty.named()) {
                        self.check_literals_in(child, &field.selection_set, errors, visited);
                    }
                }
                Selection::FragmentSpread(spread) => {
                    if visited.contains(&spread.fragment_name.as_str()) {
                        continue;
                    }
                    if let Some(fragment) = self.fragments.get(spread.fragment_name.as_str()) {
                        let TypeCondition::On(on) = &fragment.type_condition;
                        if let Some(target) = schema::object(on) {
                            visited.push(spread.fragment_name.as_str());
                            self.check_literals_in(
                                target,
                                &fragment.selection_set,
                                errors,
                                visited,
                            );
                            visited.pop();
                        }
                    }
                }
                Selection::InlineFragment(inline) => {
                    let target = match &inline.type_condition {
                        Some(TypeCondition::On(on)) => schema::object(on).unwrap_or(parent),
                        None => parent,
                    };
                    self.check_literals_in(target, &inline.selection_set, errors, visited);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
