//! The executor: resolves a prepared selection against a shop's state and shapes the
//! response exactly as selected (aliases, fragments, `__typename`), counting the actual cost
//! as objects are returned. What each object's fields resolve to is in [`super::reads`]
//! (the query root and the shop's records), [`super::payload`] (the mutation's payload) and
//! [`super::connection`] (pages).

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use graphql_parser::query::{Field, SelectionSet};
use model::ids::{InventoryItemId, LocationId, ProductId, VariantId};
use serde_json::{Map, Value};

use super::{
    connection::Conn,
    cost::own_cost,
    errors::error,
    payload::Payload,
    prepare::Prepared,
    schema::{self, FieldDef},
    value::Out,
};
use crate::{
    adjust::UserError,
    store::{AppliedGroup, ShopState},
};

/// An object value during execution.
#[derive(Debug, Clone)]
pub enum Obj {
    /// The query root.
    Query,
    /// A mutation payload.
    Payload(Arc<Payload>),
    /// One user error of a payload.
    UserError(Arc<Vec<UserError>>, usize),
    /// An applied adjustment group.
    Group(Arc<AppliedGroup>),
    /// One change of a group.
    Change(Arc<AppliedGroup>, usize),
    /// An app.
    App(u64),
    /// The calling app's installation on the shop.
    AppInstallation(u64),
    /// One access scope of an app's installation.
    AccessScope(u64, usize),
    /// A staff member (never readable: access denied).
    StaffMember,
    /// An inventory item.
    Item(InventoryItemId),
    /// A variant.
    Variant(VariantId),
    /// A product.
    Product(ProductId),
    /// A location.
    Location(LocationId),
    /// The shop.
    Shop,
    /// A connection page.
    Connection(Arc<Conn>),
    /// One edge of a page.
    Edge(Arc<Conn>, usize),
    /// A page's info.
    PageInfo(Arc<Conn>),
}

impl Obj {
    /// The runtime GraphQL type.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Query => "QueryRoot",
            Self::Payload(_) => "InventoryAdjustQuantitiesPayload",
            Self::UserError(..) => "InventoryAdjustQuantitiesUserError",
            Self::Group(_) => "InventoryAdjustmentGroup",
            Self::Change(..) => "InventoryChange",
            Self::App(_) => "App",
            Self::AppInstallation(_) => "AppInstallation",
            Self::AccessScope(..) => "AccessScope",
            Self::StaffMember => "StaffMember",
            Self::Item(_) => "InventoryItem",
            Self::Variant(_) => "ProductVariant",
            Self::Product(_) => "Product",
            Self::Location(_) => "Location",
            Self::Shop => "Shop",
            Self::Connection(c) => c.type_name,
            Self::Edge(c, _) => c.edge_type,
            Self::PageInfo(_) => "PageInfo",
        }
    }
}

/// What a field resolved to, before completion against its selection.
#[derive(Debug)]
pub(super) enum R {
    Null,
    Leaf(Out),
    Object(Obj),
    List(Vec<R>),
}

pub(super) fn time(t: DateTime<Utc>) -> Out {
    Out::Str(t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

pub(super) fn leaf_str(s: impl Into<String>) -> R {
    R::Leaf(Out::Str(s.into()))
}

pub(super) fn leaf_opt(s: Option<&str>) -> R {
    s.map_or(R::Null, leaf_str)
}

pub(super) fn int(i: i64) -> R {
    R::Leaf(Out::Int(i))
}

pub(super) fn bool_(b: bool) -> R {
    R::Leaf(Out::Bool(b))
}

/// Executes selections against one shop's state.
pub struct Executor<'a, 'd> {
    /// The prepared operation.
    pub prepared: &'a Prepared<'d>,
    /// The shop.
    pub shop: &'a ShopState,
    /// Field errors so far.
    pub errors: Vec<Out>,
    /// Actual cost so far.
    pub actual_cost: u64,
    /// The app making the request (`currentAppInstallation`); `None` renders it null.
    pub app_id: Option<u64>,
}

impl std::fmt::Debug for Executor<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("actual_cost", &self.actual_cost)
            .finish_non_exhaustive()
    }
}

impl<'a, 'd> Executor<'a, 'd> {
    /// An executor with no errors and no cost yet.
    pub fn new(prepared: &'a Prepared<'d>, shop: &'a ShopState) -> Self {
        Self {
            prepared,
            shop,
            errors: Vec::new(),
            actual_cost: 0,
            app_id: None,
        }
    }

    /// Executes the merged selection `sets` on `obj`.
    pub fn execute_object(
        &mut self,
        obj: &Obj,
        sets: &[&'d SelectionSet<'static, String>],
        path: &mut Vec<Out>,
    ) -> Out {
        let runtime = obj.type_name();
        let Some(definition) = schema::object(runtime) else {
            return Out::Null;
        };
        let mut collected: Vec<(&'d str, Vec<&'d Field<'static, String>>)> = Vec::new();
        for set in sets {
            for (key, fields) in self.prepared.collect_fields(runtime, set) {
                match collected.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, existing)) => existing.extend(fields),
                    None => collected.push((key, fields)),
                }
            }
        }
        let mut pairs = Vec::with_capacity(collected.len());
        for (key, fields) in collected {
            let Some(first) = fields.first().copied() else {
                continue;
            };
            if first.name == "__typename" {
                pairs.push((key.to_owned(), Out::str(runtime)));
                continue;
            }
            let Some(field_def) = definition.field(&first.name) else {
                continue;
            };
            path.push(Out::str(key));
            let value = self.field_value(obj, field_def, &fields, path);
            path.pop();
            pairs.push((key.to_owned(), value));
        }
        Out::Obj(pairs)
    }

    /// Resolves and completes one field of `obj`.
    pub fn field_value(
        &mut self,
        obj: &Obj,
        field_def: &'static FieldDef,
        fields: &[&'d Field<'static, String>],
        path: &mut Vec<Out>,
    ) -> Out {
        let Some(first) = fields.first().copied() else {
            return Out::Null;
        };
        let (arguments, _) = self.prepared.arguments(field_def.args, &first.arguments);
        match self.resolve(obj, first, &arguments, path) {
            Ok(resolved) => {
                let in_connection = obj.type_name().ends_with("Connection")
                    || (matches!(obj, Obj::Query) && first.name == "nodes");
                self.complete(resolved, fields, path, in_connection)
            }
            Err(message) => {
                self.errors.push(error(
                    message,
                    &[first.position],
                    Some(path.clone()),
                    vec![],
                ));
                Out::Null
            }
        }
    }

    fn complete(
        &mut self,
        resolved: R,
        fields: &[&'d Field<'static, String>],
        path: &mut Vec<Out>,
        summed_list: bool,
    ) -> Out {
        let sets: Vec<&'d SelectionSet<'static, String>> =
            fields.iter().map(|f| &f.selection_set).collect();
        match resolved {
            R::Null => Out::Null,
            R::Leaf(out) => out,
            R::Object(obj) => {
                self.actual_cost += own_cost(obj.type_name());
                self.execute_object(&obj, &sets, path)
            }
            R::List(items) => {
                // Connection pages pay for every node; plain lists (changes, userErrors,
                // quantities) pay for one element's children (fixtures: 4 changes, cost 13).
                let mut out = Vec::with_capacity(items.len());
                let before = self.actual_cost;
                let mut most = 0;
                for (i, item) in items.into_iter().enumerate() {
                    path.push(Out::Int(i64::try_from(i).unwrap_or(i64::MAX)));
                    let start = self.actual_cost;
                    let value = match item {
                        R::Object(obj) if summed_list => {
                            self.actual_cost += own_cost(obj.type_name());
                            self.execute_object(&obj, &sets, path)
                        }
                        R::Object(obj) => self.execute_object(&obj, &sets, path),
                        other => self.complete(other, fields, path, summed_list),
                    };
                    most = most.max(self.actual_cost - start);
                    path.pop();
                    out.push(value);
                }
                if !summed_list {
                    self.actual_cost = before + most;
                }
                Out::List(out)
            }
        }
    }

    /// What `field` of `obj` resolves to, before completion; `Err` is a field error.
    fn resolve(
        &mut self,
        obj: &Obj,
        field: &'d Field<'static, String>,
        args: &Map<String, Value>,
        path: &[Out],
    ) -> Result<R, String> {
        let name = field.name.as_str();
        match obj {
            Obj::Query => self.resolve_query(name, args),
            Obj::Payload(_)
            | Obj::UserError(..)
            | Obj::Group(_)
            | Obj::Change(..)
            | Obj::App(_)
            | Obj::StaffMember => Ok(self.resolve_payload(obj, field, path)),
            Obj::Connection(_) | Obj::Edge(..) | Obj::PageInfo(_) => {
                Ok(Self::resolve_page(obj, name))
            }
            Obj::AppInstallation(_)
            | Obj::AccessScope(..)
            | Obj::Item(_)
            | Obj::Variant(_)
            | Obj::Product(_)
            | Obj::Location(_)
            | Obj::Shop => Ok(self.resolve_record(obj, name)),
        }
    }
}
