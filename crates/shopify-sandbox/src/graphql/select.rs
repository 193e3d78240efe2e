//! The select stage: GraphQL's CollectFields — which fields of a selection set apply to an
//! object of a given runtime type, after `@include`/`@skip`, fragment spreads and inline
//! fragments, merged by response key in selection order. The cost and the executor both walk
//! selections through it.

use graphql_parser::query::{Directive, Field, Selection, SelectionSet, TypeCondition};

use super::{coerce::literal_to_json, prepare::Prepared, schema};

impl<'d> Prepared<'d> {
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
}
