//! The validate stage: the operation against the schema slice, refused as graphql-ruby (and
//! so Shopify) refuses it — unknown fields, arguments, fragments, types and directives,
//! missing required arguments, selections on leaves or none on objects, fragment cycles,
//! undeclared, unused or misfitting variables — each with Shopify's code and path.

use std::collections::{HashMap, HashSet};

use graphql_parser::{
    Pos,
    query::{
        Directive, Field, FragmentDefinition, Selection, SelectionSet, Type as AstType,
        TypeCondition, Value as Literal, VariableDefinition,
    },
};

use super::{
    coerce::declared_type,
    errors::{coded, error},
    prepare::Operation,
    schema::{self, ArgDef, Kind, ObjectDef, Ty},
    value::Out,
};

/// Checks the operation against the schema: its directives, the types of its variables, every
/// field, argument, fragment and variable use of its selection, and that every declared
/// variable is used. `Err` holds every error found.
pub fn validate<'d>(
    operation: &Operation<'d>,
    fragments: &HashMap<&'d str, &'d FragmentDefinition<'static, String>>,
) -> Result<(), Vec<Out>> {
    let label = operation.label();
    let mut validator = Validator {
        fragments,
        variable_definitions: operation
            .variable_definitions
            .iter()
            .map(|v| (v.name.as_str(), v))
            .collect(),
        used_variables: HashSet::new(),
        errors: Vec::new(),
        label: label.clone(),
    };
    for directive in operation.directives {
        validator.check_directive(directive, std::slice::from_ref(&label));
    }
    for definition in operation.variable_definitions {
        let named = ast_named(&definition.var_type);
        let is_input = matches!(
            schema::kind(named),
            Some(Kind::Scalar | Kind::Enum | Kind::Input(_))
        );
        if !is_input {
            validator.errors.push(error(
                format!(
                    "{named} isn't a defined input type (on ${})",
                    definition.name
                ),
                &[definition.position],
                Some(vec![Out::str(&label)]),
                vec![
                    ("code", Out::str("variableRequiresValidType")),
                    ("typeName", Out::str(named)),
                    ("variableName", Out::str(&definition.name)),
                ],
            ));
        }
    }
    validator.validate_set(
        operation.kind.root(),
        operation.selection_set,
        &mut vec![label.clone()],
        &mut Vec::new(),
    );
    for definition in operation.variable_definitions {
        if !validator.used_variables.contains(definition.name.as_str()) {
            validator.errors.push(error(
                format!(
                    "Variable ${} is declared by {} but not used",
                    definition.name,
                    operation.name.unwrap_or("anonymous query")
                ),
                &[definition.position],
                Some(vec![Out::str(&label)]),
                vec![
                    ("code", Out::str("variableNotUsed")),
                    ("variableName", Out::str(&definition.name)),
                ],
            ));
        }
    }
    if validator.errors.is_empty() {
        Ok(())
    } else {
        Err(validator.errors)
    }
}

fn ast_named<'a>(ty: &'a AstType<'static, String>) -> &'a str {
    match ty {
        AstType::NamedType(name) => name,
        AstType::ListType(inner) | AstType::NonNullType(inner) => ast_named(inner),
    }
}

/// Whether a variable of type `var` (with or without default) may be used where `expected`
/// is expected: same named type and list shape, and not nullable where non-null is needed.
fn variable_fits(var: Ty, has_default: bool, expected: Ty) -> Result<(), &'static str> {
    match (var, expected) {
        (Ty::NonNull(v), Ty::NonNull(e)) => variable_fits(*v, false, *e),
        (Ty::NonNull(v), e) => variable_fits(*v, false, e),
        (v, Ty::NonNull(e)) => {
            if has_default {
                variable_fits(v, false, *e)
            } else {
                Err("Nullability mismatch")
            }
        }
        (Ty::List(v), Ty::List(e)) => variable_fits(*v, false, *e),
        (Ty::Named(v), Ty::Named(e)) if v == e => Ok(()),
        _ => Err("Type mismatch"),
    }
}

struct Validator<'a, 'd> {
    fragments: &'a HashMap<&'d str, &'d FragmentDefinition<'static, String>>,
    variable_definitions: HashMap<&'d str, &'d VariableDefinition<'static, String>>,
    used_variables: HashSet<&'d str>,
    errors: Vec<Out>,
    label: String,
}

impl<'d> Validator<'_, 'd> {
    fn path_out(path: &[String]) -> Option<Vec<Out>> {
        Some(path.iter().map(Out::str).collect())
    }

    fn validate_set(
        &mut self,
        parent: &'static ObjectDef,
        set: &'d SelectionSet<'static, String>,
        path: &mut Vec<String>,
        fragment_stack: &mut Vec<&'d str>,
    ) {
        for selection in &set.items {
            match selection {
                Selection::Field(field) => self.validate_field(parent, field, path, fragment_stack),
                Selection::FragmentSpread(spread) => {
                    for directive in &spread.directives {
                        self.check_directive(directive, path);
                    }
                    let Some(fragment) = self.fragments.get(spread.fragment_name.as_str()).copied()
                    else {
                        self.errors.push(error(
                            format!(
                                "Fragment {} was used, but not defined",
                                spread.fragment_name
                            ),
                            &[spread.position],
                            Self::path_out(path),
                            vec![
                                ("code", Out::str("undefinedFragment")),
                                ("fragmentName", Out::str(&spread.fragment_name)),
                            ],
                        ));
                        continue;
                    };
                    if fragment_stack.contains(&spread.fragment_name.as_str()) {
                        self.errors.push(coded(
                            format!(
                                "Fragment {} contains an infinite loop",
                                spread.fragment_name
                            ),
                            &[spread.position],
                            Self::path_out(path),
                            "infiniteLoop",
                        ));
                        continue;
                    }
                    let TypeCondition::On(on) = &fragment.type_condition;
                    let Some(target) = self.condition_type(on, fragment.position, path) else {
                        continue;
                    };
                    fragment_stack.push(spread.fragment_name.as_str());
                    path.push(format!("... {}", spread.fragment_name));
                    self.validate_set(target, &fragment.selection_set, path, fragment_stack);
                    path.pop();
                    fragment_stack.pop();
                }
                Selection::InlineFragment(inline) => {
                    for directive in &inline.directives {
                        self.check_directive(directive, path);
                    }
                    let target = match &inline.type_condition {
                        Some(TypeCondition::On(on)) => {
                            match self.condition_type(on, inline.position, path) {
                                Some(t) => t,
                                None => continue,
                            }
                        }
                        None => parent,
                    };
                    path.push(match &inline.type_condition {
                        Some(TypeCondition::On(on)) => format!("... on {on}"),
                        None => "...".to_owned(),
                    });
                    self.validate_set(target, &inline.selection_set, path, fragment_stack);
                    path.pop();
                }
            }
        }
    }

    fn condition_type(
        &mut self,
        on: &str,
        position: Pos,
        path: &[String],
    ) -> Option<&'static ObjectDef> {
        let found = schema::object(on);
        if found.is_none() {
            self.errors.push(error(
                format!("No such type {on}, so it can't be a fragment condition"),
                &[position],
                Self::path_out(path),
                vec![
                    ("code", Out::str("undefinedType")),
                    ("typeName", Out::str(on)),
                ],
            ));
        }
        found
    }

    fn validate_field(
        &mut self,
        parent: &'static ObjectDef,
        field: &'d Field<'static, String>,
        path: &mut Vec<String>,
        fragment_stack: &mut Vec<&'d str>,
    ) {
        let response_key = field.alias.as_deref().unwrap_or(&field.name);
        path.push(response_key.to_owned());
        for directive in &field.directives {
            self.check_directive(directive, path);
        }
        if field.name == "__typename" {
            if !field.selection_set.items.is_empty() {
                self.errors.push(coded(
                    "Selections can't be made on scalars (field '__typename' returns String but has selections)",
                    &[field.position],
                    Self::path_out(path),
                    "selectionMismatch",
                ));
            }
            path.pop();
            return;
        }
        let Some(definition) = parent.field(&field.name) else {
            self.errors.push(error(
                format!(
                    "Field '{}' doesn't exist on type '{}'",
                    field.name, parent.name
                ),
                &[field.position],
                Self::path_out(path),
                vec![
                    ("code", Out::str("undefinedField")),
                    ("typeName", Out::str(parent.name)),
                    ("fieldName", Out::str(&field.name)),
                ],
            ));
            path.pop();
            return;
        };
        self.validate_arguments(
            definition.name,
            definition.args,
            &field.arguments,
            field.position,
            path,
        );
        let named = definition.ty.named();
        if schema::is_leaf(named) {
            if !field.selection_set.items.is_empty() {
                self.errors.push(coded(
                    format!(
                        "Selections can't be made on scalars (field '{}' returns {} but has selections [{}])",
                        field.name,
                        named,
                        field
                            .selection_set
                            .items
                            .iter()
                            .filter_map(|s| match s {
                                Selection::Field(f) => Some(f.name.as_str()),
                                _ => None,
                            })
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    &[field.position],
                    Self::path_out(path),
                    "selectionMismatch",
                ));
            }
        } else if field.selection_set.items.is_empty() {
            self.errors.push(coded(
                format!(
                    "Field must have selections (field '{}' returns {} but has no selections. Did you mean '{} {{ ... }}'?)",
                    field.name, definition.ty, field.name
                ),
                &[field.position],
                Self::path_out(path),
                "selectionMismatch",
            ));
        } else if let Some(child) = schema::object(named) {
            self.validate_set(child, &field.selection_set, path, fragment_stack);
        }
        path.pop();
    }

    fn validate_arguments(
        &mut self,
        field_name: &str,
        definitions: &'static [ArgDef],
        given: &'d [(String, Literal<'static, String>)],
        position: Pos,
        path: &[String],
    ) {
        for (name, value) in given {
            match definitions.iter().find(|a| a.name == *name) {
                None => self.errors.push(error(
                    format!("Field '{field_name}' doesn't accept argument '{name}'"),
                    &[position],
                    Self::path_out(path),
                    vec![
                        ("code", Out::str("argumentNotAccepted")),
                        ("name", Out::str(field_name)),
                        ("typeName", Out::str("Field")),
                        ("argumentName", Out::str(name.as_str())),
                    ],
                )),
                Some(definition) => {
                    self.check_variables(value, definition.ty, name, position, path)
                }
            }
        }
        let missing: Vec<&str> = definitions
            .iter()
            .filter(|a| a.ty.is_non_null() && !given.iter().any(|(n, _)| *n == a.name))
            .map(|a| a.name)
            .collect();
        if !missing.is_empty() {
            self.errors.push(error(
                format!(
                    "Field '{field_name}' is missing required arguments: {}",
                    missing.join(", ")
                ),
                &[position],
                Self::path_out(path),
                vec![
                    ("code", Out::str("missingRequiredArguments")),
                    ("className", Out::str("Field")),
                    ("name", Out::str(field_name)),
                    ("arguments", Out::str(missing.join(", "))),
                ],
            ));
        }
    }

    /// Checks every variable used inside `value` is declared with a type that fits where it
    /// is used.
    fn check_variables(
        &mut self,
        value: &'d Literal<'static, String>,
        expected: Ty,
        argument: &str,
        position: Pos,
        path: &[String],
    ) {
        match value {
            Literal::Variable(name) => {
                self.used_variables.insert(name);
                let Some(definition) = self.variable_definitions.get(name.as_str()).copied() else {
                    self.errors.push(error(
                        format!(
                            "Variable ${name} is used by {} but not declared",
                            self.label
                        ),
                        &[position],
                        Self::path_out(path),
                        vec![
                            ("code", Out::str("variableNotDefined")),
                            ("variableName", Out::str(name.as_str())),
                        ],
                    ));
                    return;
                };
                let Some(declared) = declared_type(&definition.var_type) else {
                    return;
                };
                if let Err(kind) =
                    variable_fits(declared, definition.default_value.is_some(), expected)
                {
                    self.errors.push(error(
                        format!(
                            "{kind} on variable ${name} and argument {argument} ({declared} / {expected})"
                        ),
                        &[position],
                        Self::path_out(path),
                        vec![
                            ("code", Out::str("variableMismatch")),
                            ("variableName", Out::str(name.as_str())),
                            ("typeName", Out::str(declared.to_string())),
                            ("argumentName", Out::str(argument)),
                        ],
                    ));
                }
            }
            Literal::List(items) => {
                let inner = match expected.nullable() {
                    Ty::List(inner) => *inner,
                    other => other,
                };
                for item in items {
                    self.check_variables(item, inner, argument, position, path);
                }
            }
            Literal::Object(fields) => {
                if let Some(Kind::Input(input)) = schema::kind(expected.named()) {
                    for (key, field_value) in fields {
                        if let Some(definition) = input.fields.iter().find(|f| f.name == *key) {
                            self.check_variables(field_value, definition.ty, key, position, path);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn check_directive(&mut self, directive: &'d Directive<'static, String>, path: &[String]) {
        let required: &[ArgDef] = match directive.name.as_str() {
            "include" | "skip" => &[ArgDef {
                name: "if",
                ty: Ty::NonNull(&Ty::Named("Boolean")),
            }],
            "idempotent" => &[ArgDef {
                name: "key",
                ty: Ty::NonNull(&Ty::Named("String")),
            }],
            other => {
                self.errors.push(error(
                    format!("Directive @{other} is not defined"),
                    &[directive.position],
                    Self::path_out(path),
                    vec![
                        ("code", Out::str("undefinedDirective")),
                        ("directiveName", Out::str(other)),
                    ],
                ));
                return;
            }
        };
        let name = format!("@{}", directive.name);
        self.validate_arguments(
            &name,
            required,
            &directive.arguments,
            directive.position,
            path,
        );
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::{super::prepare::prepared, *};

    #[test]
    fn unknown_fields_arguments_and_fragments_are_refused() {
        for (query, code) in [
            ("{ shop { nope } }", "undefinedField"),
            (
                "{ nodes(ids: [\"x\"], bogus: 1) { id } }",
                "argumentNotAccepted",
            ),
            ("{ nodes { id } }", "missingRequiredArguments"),
            ("{ shop { ...F } }", "undefinedFragment"),
            ("{ shop }", "selectionMismatch"),
            ("{ shop { id { x } } }", "selectionMismatch"),
            ("query($a: ID!) { shop { id } }", "variableNotUsed"),
            ("{ nodes(ids: [$x]) { id } }", "variableNotDefined"),
            (
                "query($x: String!) { nodes(ids: [$x]) { id } }",
                "variableMismatch",
            ),
            (
                "query($x: ID) { nodes(ids: [$x]) { id } }",
                "variableMismatch",
            ),
            ("{ shop @nope { id } }", "undefinedDirective"),
            (
                "{ nodes(ids: [1.5]) { id } }",
                "argumentLiteralsIncompatible",
            ),
        ] {
            let errors = prepared(query, json!({"x": "1", "a": "1"}), |_| ()).expect_err(query);
            let code_of = errors[0]
                .get("extensions")
                .and_then(|e| e.get("code"))
                .cloned();
            assert_eq!(code_of, Some(Out::str(code)), "{query}: {errors:?}");
        }
    }
}
