//! From request text to an executable operation: parse, pick the operation, validate it
//! against the schema, coerce the variables and argument literals, and compute the
//! requested cost.
//!
//! Everything refused here is refused the way Shopify refuses it before running anything:
//! a top-level `errors` list with no `data` and no cost (validation errors and
//! `INVALID_VARIABLE` carry no `extensions.cost` in the fixtures).

use std::collections::{HashMap, HashSet};

use graphql_parser::{
    Pos,
    query::{
        Definition, Directive, Document, Field, FragmentDefinition, OperationDefinition, Selection,
        SelectionSet, Type as AstType, TypeCondition, Value as Literal, VariableDefinition,
    },
};
use serde_json::{Map, Value};

use super::{
    errors::{coded, error},
    input::{Problem, Seg, coerce, literal_to_json},
    schema::{self, ArgDef, Kind, ObjectDef, Ty},
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

/// The parts of an operation definition the validator needs.
type OperationParts<'d> = (
    OpKind,
    Option<&'d str>,
    &'d [VariableDefinition<'static, String>],
    &'d SelectionSet<'static, String>,
    &'d [Directive<'static, String>],
);

/// Validates `op` and coerces its variables and arguments. `Err` holds the `errors` list.
pub fn prepare<'d>(
    document: &'d Document<'static, String>,
    op: &'d OperationDefinition<'static, String>,
    provided: &Map<String, Value>,
) -> Result<Prepared<'d>, Vec<Out>> {
    let (kind, name, variable_definitions, selection_set, directives): OperationParts<'d> = match op
    {
        OperationDefinition::SelectionSet(set) => (OpKind::Query, None, &[], set, &[]),
        OperationDefinition::Query(q) => (
            OpKind::Query,
            q.name.as_deref(),
            &q.variable_definitions,
            &q.selection_set,
            &q.directives,
        ),
        OperationDefinition::Mutation(m) => (
            OpKind::Mutation,
            m.name.as_deref(),
            &m.variable_definitions,
            &m.selection_set,
            &m.directives,
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
    let keyword = match kind {
        OpKind::Query => "query",
        OpKind::Mutation => "mutation",
    };
    let label = match name {
        Some(n) => format!("{keyword} {n}"),
        None => keyword.to_owned(),
    };
    let mut fragments = HashMap::new();
    for definition in &document.definitions {
        if let Definition::Fragment(fragment) = definition {
            fragments.insert(fragment.name.as_str(), fragment);
        }
    }
    let mut validator = Validator {
        fragments: &fragments,
        variable_definitions: variable_definitions
            .iter()
            .map(|v| (v.name.as_str(), v))
            .collect(),
        used_variables: HashSet::new(),
        errors: Vec::new(),
        label: label.clone(),
    };
    for directive in directives {
        validator.check_directive(directive, std::slice::from_ref(&label));
    }
    for definition in variable_definitions {
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
    let root = match kind {
        OpKind::Query => schema::query_root(),
        OpKind::Mutation => schema::mutation_root(),
    };
    validator.validate_set(
        root,
        selection_set,
        &mut vec![label.clone()],
        &mut Vec::new(),
    );
    for definition in variable_definitions {
        if !validator.used_variables.contains(definition.name.as_str()) {
            validator.errors.push(error(
                format!(
                    "Variable ${} is declared by {} but not used",
                    definition.name,
                    name.unwrap_or("anonymous query")
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
    if !validator.errors.is_empty() {
        return Err(validator.errors);
    }

    let variables = coerce_variables(variable_definitions, provided)?;
    let prepared = Prepared {
        kind,
        selection_set,
        fragments,
        variables,
        variable_positions: variable_definitions
            .iter()
            .map(|v| (v.name.as_str(), v.position))
            .collect(),
        label,
    };
    let mut literal_errors = Vec::new();
    prepared.check_literals(root, selection_set, &mut literal_errors, &mut Vec::new());
    if literal_errors.is_empty() {
        Ok(prepared)
    } else {
        Err(literal_errors)
    }
}

fn ast_named<'a>(ty: &'a AstType<'static, String>) -> &'a str {
    match ty {
        AstType::NamedType(name) => name,
        AstType::ListType(inner) | AstType::NonNullType(inner) => ast_named(inner),
    }
}

fn ast_to_ty(ty: &AstType<'static, String>) -> Option<Ty> {
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

fn coerce_variables(
    definitions: &[VariableDefinition<'static, String>],
    provided: &Map<String, Value>,
) -> Result<Map<String, Value>, Vec<Out>> {
    let mut out = Map::new();
    let mut errors = Vec::new();
    for definition in definitions {
        let Some(ty) = ast_to_ty(&definition.var_type) else {
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
                let Some(declared) = ast_to_ty(&definition.var_type) else {
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

impl<'d> Prepared<'d> {
    /// Coerces a field's (or directive's) arguments. Problems are reported by
    /// [`prepare`]'s literal check, so at execution time they cannot occur.
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

    fn check_literals(
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
                        self.check_literals(child, &field.selection_set, errors, visited);
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
                            self.check_literals(target, &fragment.selection_set, errors, visited);
                            visited.pop();
                        }
                    }
                }
                Selection::InlineFragment(inline) => {
                    let target = match &inline.type_condition {
                        Some(TypeCondition::On(on)) => schema::object(on).unwrap_or(parent),
                        None => parent,
                    };
                    self.check_literals(target, &inline.selection_set, errors, visited);
                }
            }
        }
    }

    /// Whether `@include`/`@skip` keep a selection.
    pub fn included(&self, directives: &[Directive<'static, String>]) -> bool {
        directives.iter().all(|d| {
            let condition = d
                .arguments
                .iter()
                .find(|(n, _)| *n == "if")
                .and_then(|(_, v)| literal_to_json(v, &self.variables))
                .and_then(|v| v.as_bool());
            match (d.name.as_str(), condition) {
                ("include", Some(c)) => c,
                ("skip", Some(c)) => !c,
                _ => true,
            }
        })
    }

    /// The fields of `set` that apply to an object of runtime type `object_type`, merged by
    /// response key, in order (GraphQL's CollectFields).
    pub fn collect_fields(
        &self,
        object_type: &str,
        set: &'d SelectionSet<'static, String>,
    ) -> Vec<(&'d str, Vec<&'d Field<'static, String>>)> {
        let mut out: Vec<(&'d str, Vec<&'d Field<'static, String>>)> = Vec::new();
        self.collect_into(object_type, set, &mut out, &mut Vec::new());
        out
    }

    fn collect_into(
        &self,
        object_type: &str,
        set: &'d SelectionSet<'static, String>,
        out: &mut Vec<(&'d str, Vec<&'d Field<'static, String>>)>,
        visited: &mut Vec<&'d str>,
    ) {
        for selection in &set.items {
            match selection {
                Selection::Field(field) => {
                    if !self.included(&field.directives) {
                        continue;
                    }
                    let key = field.alias.as_deref().unwrap_or(&field.name);
                    match out.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, fields)) => fields.push(field),
                        None => out.push((key, vec![field])),
                    }
                }
                Selection::FragmentSpread(spread) => {
                    if !self.included(&spread.directives)
                        || visited.contains(&spread.fragment_name.as_str())
                    {
                        continue;
                    }
                    let Some(fragment) = self.fragments.get(spread.fragment_name.as_str()) else {
                        continue;
                    };
                    let TypeCondition::On(on) = &fragment.type_condition;
                    if schema::satisfies(object_type, on) {
                        visited.push(spread.fragment_name.as_str());
                        self.collect_into(object_type, &fragment.selection_set, out, visited);
                        visited.pop();
                    }
                }
                Selection::InlineFragment(inline) => {
                    if !self.included(&inline.directives) {
                        continue;
                    }
                    let applies = match &inline.type_condition {
                        Some(TypeCondition::On(on)) => schema::satisfies(object_type, on),
                        None => true,
                    };
                    if applies {
                        self.collect_into(object_type, &inline.selection_set, out, visited);
                    }
                }
            }
        }
    }

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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    fn prepared_cost(query: &str, variables: Value) -> Result<u64, Vec<Out>> {
        let document = graphql_parser::parse_query::<String>(query)
            .unwrap()
            .into_static();
        let op = select_operation(&document, None).map_err(|e| vec![e])?;
        let variables = variables.as_object().cloned().unwrap_or_default();
        prepare(&document, op, &variables).map(|p| p.requested_cost())
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
            let errors = prepared_cost(query, json!({"x": "1", "a": "1"})).expect_err(query);
            let code_of = errors[0]
                .get("extensions")
                .and_then(|e| e.get("code"))
                .cloned();
            assert_eq!(code_of, Some(Out::str(code)), "{query}: {errors:?}");
        }
    }

    #[test]
    fn invalid_variables_name_the_path_like_shopify() {
        let errors = prepared_cost(
            "mutation M($input: InventoryAdjustQuantitiesInput!) { inventoryAdjustQuantities(input: $input) { userErrors { message } } }",
            json!({"input": {"name": "incoming", "reason": "correction", "changes": [{"locationId": "gid://shopify/Location/1", "delta": 2}]}}),
        )
        .expect_err("invalid");
        assert_eq!(
            errors[0].get("message"),
            Some(&Out::str(
                "Variable $input of type InventoryAdjustQuantitiesInput! was provided invalid value for changes.0.inventoryItemId (Expected value to not be null)"
            ))
        );
        let missing = prepared_cost(
            "mutation M($input: InventoryAdjustQuantitiesInput!) { inventoryAdjustQuantities(input: $input) { userErrors { message } } }",
            json!({}),
        )
        .expect_err("missing");
        assert_eq!(
            missing[0].get("message"),
            Some(&Out::str(
                "Variable $input of type InventoryAdjustQuantitiesInput! was provided invalid value (Expected value to not be null)"
            ))
        );
    }

    #[test]
    fn operation_selection() {
        let document = graphql_parser::parse_query::<String>(
            "query A { shop { id } } query B { shop { id } }",
        )
        .unwrap()
        .into_static();
        assert!(select_operation(&document, None).is_err());
        assert!(select_operation(&document, Some("B")).is_ok());
        assert!(select_operation(&document, Some("C")).is_err());
    }
}
