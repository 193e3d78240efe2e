//! The executor: resolves a prepared selection against a shop's state and shapes the
//! response exactly as selected (aliases, fragments, `__typename`), counting the actual cost.

use std::sync::Arc;

use base64::{Engine as _, engine::general_purpose::STANDARD};
use chrono::{DateTime, SecondsFormat, Utc};
use graphql_parser::query::{Field, SelectionSet};
use model::ids::{InventoryItemId, LocationId, ProductId, VariantId};
use serde_json::{Map, Value};

use super::{
    document::{Prepared, own_cost},
    errors::error,
    schema::{self, FieldDef},
    value::Out,
};
use crate::{
    adjust::UserError,
    search::SearchQuery,
    store::{AppliedGroup, ShopState},
};

/// Largest page a connection serves.
pub const MAX_PAGE: u64 = 250;

/// The payload of `inventoryAdjustQuantities`.
#[derive(Debug, Clone)]
pub struct Payload {
    /// The applied group (null for a no-op or a refusal).
    pub group: Option<Arc<AppliedGroup>>,
    /// The user errors.
    pub user_errors: Arc<Vec<UserError>>,
}

/// A page of a connection.
#[derive(Debug)]
pub struct Conn {
    type_name: &'static str,
    edge_type: &'static str,
    nodes: Vec<Obj>,
    cursors: Vec<String>,
    has_next: bool,
    has_previous: bool,
}

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
enum R {
    Null,
    Leaf(Out),
    Object(Obj),
    List(Vec<R>),
}

fn time(t: DateTime<Utc>) -> Out {
    Out::Str(t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

fn leaf_str(s: impl Into<String>) -> R {
    R::Leaf(Out::Str(s.into()))
}

fn leaf_opt(s: Option<&str>) -> R {
    s.map_or(R::Null, leaf_str)
}

fn int(i: i64) -> R {
    R::Leaf(Out::Int(i))
}

fn bool_(b: bool) -> R {
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

    fn resolve(
        &mut self,
        obj: &Obj,
        field: &'d Field<'static, String>,
        args: &Map<String, Value>,
        path: &[Out],
    ) -> Result<R, String> {
        let name = field.name.as_str();
        let shop = self.shop;
        Ok(match obj {
            Obj::Query => return self.resolve_query(name, args),
            Obj::Payload(payload) => match name {
                "inventoryAdjustmentGroup" => payload
                    .group
                    .as_ref()
                    .map_or(R::Null, |g| R::Object(Obj::Group(Arc::clone(g)))),
                "userErrors" => R::List(
                    (0..payload.user_errors.len())
                        .map(|i| R::Object(Obj::UserError(Arc::clone(&payload.user_errors), i)))
                        .collect(),
                ),
                _ => R::Null,
            },
            Obj::UserError(errors, i) => {
                let Some(e) = errors.get(*i) else {
                    return Ok(R::Null);
                };
                match name {
                    "field" => e.field.as_ref().map_or(R::Null, |f| {
                        R::List(f.iter().map(|s| leaf_str(s.clone())).collect())
                    }),
                    "message" => leaf_str(e.message.clone()),
                    "code" => leaf_str(e.code),
                    _ => R::Null,
                }
            }
            Obj::Group(group) => match name {
                "id" => leaf_str(format!(
                    "gid://shopify/InventoryAdjustmentGroup/{}",
                    group.id
                )),
                "createdAt" => R::Leaf(time(group.created_at)),
                "reason" => leaf_str(group.reason.clone()),
                "referenceDocumentUri" => leaf_opt(group.reference_document_uri.as_deref()),
                "app" => R::Object(Obj::App(group.app_id)),
                "staffMember" => {
                    // Shopify refuses this field to apps without `read_users` and still
                    // returns the rest of the payload (2025-01 parity fixture); the object
                    // is charged for all the same.
                    self.actual_cost += 1;
                    self.errors.push(error(
                        "Access denied for staffMember field. Required access: `read_users` access scope. Also: The app must be a finance embedded app or installed on a Shopify Plus or Advanced store. Contact Shopify Support to enable this scope for your app.",
                        &[field.position],
                        Some(path.to_vec()),
                        vec![
                            ("code", Out::str("ACCESS_DENIED")),
                            ("documentation", Out::str("https://shopify.dev/api/usage/access-scopes")),
                            ("requiredAccess", Out::str("`read_users` access scope. Also: The app must be a finance embedded app or installed on a Shopify Plus or Advanced store. Contact Shopify Support to enable this scope for your app.")),
                        ],
                    ));
                    R::Null
                }
                "changes" => R::List(
                    (0..group.changes.len())
                        .map(|i| R::Object(Obj::Change(Arc::clone(group), i)))
                        .collect(),
                ),
                _ => R::Null,
            },
            Obj::Change(group, i) => {
                let Some(change) = group.changes.get(*i) else {
                    return Ok(R::Null);
                };
                match name {
                    "name" => leaf_str(change.name.as_str()),
                    "delta" => int(change.delta),
                    // Shopify answers null here for API apps (every fixture).
                    "quantityAfterChange" => R::Null,
                    "ledgerDocumentUri" => leaf_opt(change.ledger_document_uri.as_deref()),
                    "item" => R::Object(Obj::Item(change.inventory_item_id)),
                    "location" => R::Object(Obj::Location(change.location_id)),
                    _ => R::Null,
                }
            }
            Obj::App(id) => {
                let app = shop.app(*id);
                match name {
                    "id" => leaf_str(format!("gid://shopify/App/{id}")),
                    "title" => leaf_opt(app.map(|a| a.title.as_str())),
                    "handle" => leaf_opt(app.map(|a| a.handle.as_str())),
                    "apiKey" => leaf_opt(app.map(|a| a.api_key.as_str())),
                    _ => R::Null,
                }
            }
            Obj::AppInstallation(id) => match name {
                "id" => leaf_str(format!("gid://shopify/AppInstallation/{id}")),
                "app" => R::Object(Obj::App(*id)),
                "accessScopes" => R::List(
                    (0..shop.app(*id).map_or(0, |a| a.scopes.len()))
                        .map(|i| R::Object(Obj::AccessScope(*id, i)))
                        .collect(),
                ),
                _ => R::Null,
            },
            Obj::AccessScope(id, i) => {
                let Some(handle) = shop.app(*id).and_then(|a| a.scopes.get(*i)) else {
                    return Ok(R::Null);
                };
                match name {
                    "handle" => leaf_str(handle.clone()),
                    "description" => leaf_str(scope_description(handle)),
                    _ => R::Null,
                }
            }
            Obj::StaffMember => R::Null,
            // An item of an old adjustment group may have been deleted since: its id still
            // resolves.
            Obj::Item(id) => match name {
                "id" => leaf_str(id.gid()),
                _ => R::Null,
            },
            Obj::Variant(id) => {
                let Some(variant) = shop.variants.get(id) else {
                    return Ok(if name == "id" {
                        leaf_str(id.gid())
                    } else {
                        R::Null
                    });
                };
                match name {
                    "id" => leaf_str(id.gid()),
                    "sku" => leaf_opt(variant.sku.as_deref()),
                    "title" => leaf_str(variant.title.clone()),
                    "barcode" => leaf_opt(variant.barcode.as_deref()),
                    "price" => leaf_str(variant.price.clone()),
                    "createdAt" => R::Leaf(time(variant.created_at)),
                    "updatedAt" => R::Leaf(time(variant.updated_at)),
                    "inventoryItem" => R::Object(Obj::Item(variant.inventory_item_id)),
                    "product" => R::Object(Obj::Product(variant.product_id)),
                    _ => R::Null,
                }
            }
            Obj::Product(id) => {
                let Some(product) = shop.products.get(id) else {
                    return Ok(if name == "id" {
                        leaf_str(id.gid())
                    } else {
                        R::Null
                    });
                };
                match name {
                    "id" => leaf_str(id.gid()),
                    "title" => leaf_str(product.title.clone()),
                    "vendor" => leaf_str(product.vendor.clone()),
                    "productType" => leaf_str(product.product_type.clone()),
                    "updatedAt" => R::Leaf(time(product.updated_at)),
                    _ => R::Null,
                }
            }
            Obj::Location(id) => match name {
                "id" => leaf_str(id.gid()),
                "name" => leaf_opt(shop.locations.get(id).map(|l| l.name.as_str())),
                // Locations cannot be deactivated in the sandbox.
                "isActive" => bool_(shop.locations.contains_key(id)),
                _ => R::Null,
            },
            Obj::Shop => match name {
                "id" => leaf_str("gid://shopify/Shop/1"),
                "name" => leaf_str(
                    shop.domain
                        .split('.')
                        .next()
                        .unwrap_or(shop.domain.as_str())
                        .to_owned(),
                ),
                "myshopifyDomain" => leaf_str(shop.domain.clone()),
                _ => R::Null,
            },
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
        })
    }

    fn resolve_query(&mut self, name: &str, args: &Map<String, Value>) -> Result<R, String> {
        let shop = self.shop;
        Ok(match name {
            "nodes" => R::List(
                args.get("ids")
                    .and_then(Value::as_array)
                    .map(|ids| {
                        ids.iter()
                            .map(|id| {
                                id.as_str()
                                    .and_then(|g| node(shop, g))
                                    .map_or(R::Null, R::Object)
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            ),
            "productVariants" => {
                let query = SearchQuery::parse(
                    args.get("query")
                        .and_then(Value::as_str)
                        .unwrap_or_default(),
                );
                let items = shop
                    .variants
                    .values()
                    .filter(|v| query.matches(&|f| variant_fields(shop, v, f)))
                    .map(|v| (v.id.0, Obj::Variant(v.id)))
                    .collect();
                self.paginate("productVariants", "ProductVariant", items, args)?
            }
            "locations" => {
                let items = shop
                    .locations
                    .keys()
                    .map(|id| (id.0, Obj::Location(*id)))
                    .collect();
                self.paginate("locations", "Location", items, args)?
            }
            "shop" => R::Object(Obj::Shop),
            "currentAppInstallation" => self
                .app_id
                .map_or(R::Null, |id| R::Object(Obj::AppInstallation(id))),
            _ => R::Null,
        })
    }

    /// One page of `items` (id, object), sorted by id, per `first`/`last`/`after`/`before`/
    /// `reverse`.
    fn paginate(
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
}

/// Shopify's wording of the scopes the sandbox grants; other scopes get a generic one.
fn scope_description(handle: &str) -> String {
    match handle {
        "read_inventory" => "Read inventory".to_owned(),
        "write_inventory" => "Modify inventory".to_owned(),
        "read_products" => "Read products, variants, and collections".to_owned(),
        "write_products" => "Modify products, variants, and collections".to_owned(),
        "read_locations" => "Read locations".to_owned(),
        other => format!("Access scope {other}"),
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

/// Resolves any supported gid to its object, if it exists.
fn node(shop: &ShopState, gid: &str) -> Option<Obj> {
    if let Ok(id) = InventoryItemId::parse_gid(gid) {
        return shop.items.contains_key(&id).then_some(Obj::Item(id));
    }
    if let Ok(id) = VariantId::parse_gid(gid) {
        return shop.variants.contains_key(&id).then_some(Obj::Variant(id));
    }
    if let Ok(id) = ProductId::parse_gid(gid) {
        return shop.products.contains_key(&id).then_some(Obj::Product(id));
    }
    let id = LocationId::parse_gid(gid).ok()?;
    shop.locations
        .contains_key(&id)
        .then_some(Obj::Location(id))
}

/// What a `productVariants` search matches: `sku:` and bare words (title, SKU, product
/// title); other filters are ignored, as Shopify ignores unknown ones.
fn variant_fields(
    shop: &ShopState,
    variant: &crate::store::Variant,
    field: &str,
) -> Option<Vec<String>> {
    Some(match field {
        "sku" => variant.sku.iter().cloned().collect(),
        "" => {
            let mut words = vec![variant.title.clone()];
            words.extend(variant.sku.iter().cloned());
            if let Some(p) = shop.products.get(&variant.product_id) {
                words.push(p.title.clone());
            }
            words
        }
        _ => return None,
    })
}
