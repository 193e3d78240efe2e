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
    inventory::{AppliedGroup, QuantityName, ShopState},
    search::SearchQuery,
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
    /// An inventory item (may have been deleted since: only its id resolves then).
    Item(InventoryItemId),
    /// An inventory level.
    Level(InventoryItemId, LocationId),
    /// One named quantity of a level.
    Quantity(InventoryItemId, LocationId, QuantityName),
    /// A variant.
    Variant(VariantId),
    /// A product.
    Product(ProductId),
    /// A location.
    Location(LocationId),
    /// The shop.
    Shop,
    /// A count.
    Count(u64),
    /// A variant's selected option.
    SelectedOption(String),
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
            Self::Level(..) => "InventoryLevel",
            Self::Quantity(..) => "InventoryQuantity",
            Self::Variant(_) => "ProductVariant",
            Self::Product(_) => "Product",
            Self::Location(_) => "Location",
            Self::Shop => "Shop",
            Self::Count(_) => "Count",
            Self::SelectedOption(_) => "SelectedOption",
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

fn int_u(u: u64) -> R {
    R::Leaf(Out::Int(i64::try_from(u).unwrap_or(i64::MAX)))
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
                "changes" => {
                    let ids = |key: &str| -> Option<Vec<String>> {
                        args.get(key).and_then(Value::as_array).map(|a| {
                            a.iter()
                                .filter_map(Value::as_str)
                                .map(str::to_owned)
                                .collect()
                        })
                    };
                    let items = ids("inventoryItemIds");
                    let locations = ids("locationIds");
                    let names = ids("quantityNames");
                    R::List(
                        group
                            .changes
                            .iter()
                            .enumerate()
                            .filter(|(_, c)| {
                                items
                                    .as_ref()
                                    .is_none_or(|v| v.contains(&c.inventory_item_id.gid()))
                                    && locations
                                        .as_ref()
                                        .is_none_or(|v| v.contains(&c.location_id.gid()))
                                    && names
                                        .as_ref()
                                        .is_none_or(|v| v.iter().any(|n| n == c.name.as_str()))
                            })
                            .map(|(i, _)| R::Object(Obj::Change(Arc::clone(group), i)))
                            .collect(),
                    )
                }
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
            Obj::Item(id) => self.resolve_item(*id, name, args)?,
            Obj::Level(item, location) => {
                let level = shop.levels.get(&(*item, *location));
                match name {
                    "id" => leaf_str(level_gid(shop, *item, *location)),
                    "isActive" => bool_(level.is_some()),
                    "canDeactivate" => bool_(true),
                    "createdAt" | "updatedAt" => {
                        level.map_or(R::Null, |l| R::Leaf(time(l.created_at)))
                    }
                    "item" => R::Object(Obj::Item(*item)),
                    "location" => R::Object(Obj::Location(*location)),
                    "quantities" => {
                        let names = args
                            .get("names")
                            .and_then(Value::as_array)
                            .cloned()
                            .unwrap_or_default();
                        let mut out = Vec::with_capacity(names.len());
                        for requested in names.iter().filter_map(Value::as_str) {
                            let Some(quantity_name) = QuantityName::parse(requested) else {
                                return Err(format!(
                                    "The quantity name '{requested}' is invalid. Valid values are: {}.",
                                    QuantityName::ALL.map(QuantityName::as_str).join(", ")
                                ));
                            };
                            out.push(R::Object(Obj::Quantity(*item, *location, quantity_name)));
                        }
                        R::List(out)
                    }
                    _ => R::Null,
                }
            }
            Obj::Quantity(item, location, quantity_name) => {
                let level = shop.levels.get(&(*item, *location));
                match name {
                    "id" => leaf_str(format!(
                        "{}&name={}",
                        level_gid(shop, *item, *location),
                        quantity_name.as_str()
                    )),
                    "name" => leaf_str(quantity_name.as_str()),
                    "quantity" => int(level.map_or(0, |l| l.quantity(*quantity_name))),
                    "updatedAt" => level
                        .and_then(|l| l.updated_at(*quantity_name))
                        .map_or(R::Null, |t| R::Leaf(time(t))),
                    _ => R::Null,
                }
            }
            Obj::Variant(id) => {
                let Some(variant) = shop.variants.get(id) else {
                    return Ok(if name == "id" {
                        leaf_str(id.gid())
                    } else {
                        R::Null
                    });
                };
                let product = shop.products.get(&variant.product_id);
                match name {
                    "id" => leaf_str(id.gid()),
                    "legacyResourceId" => leaf_str(id.to_string()),
                    "sku" => leaf_opt(variant.sku.as_deref()),
                    "title" => leaf_str(variant.title.clone()),
                    "displayName" => leaf_str(format!(
                        "{} - {}",
                        product.map_or("", |p| p.title.as_str()),
                        variant.title
                    )),
                    "barcode" => leaf_opt(variant.barcode.as_deref()),
                    "price" => leaf_str(variant.price.clone()),
                    "position" => int_u(
                        product
                            .and_then(|p| p.variants.iter().position(|v| v == id))
                            .map_or(1, |p| p as u64 + 1),
                    ),
                    "inventoryQuantity" => int(shop.variant_inventory_quantity(variant)),
                    "createdAt" => R::Leaf(time(variant.created_at)),
                    "updatedAt" => R::Leaf(time(variant.updated_at)),
                    "inventoryItem" => R::Object(Obj::Item(variant.inventory_item_id)),
                    "product" => R::Object(Obj::Product(variant.product_id)),
                    "selectedOptions" => {
                        R::List(vec![R::Object(Obj::SelectedOption(variant.title.clone()))])
                    }
                    _ => R::Null,
                }
            }
            Obj::SelectedOption(value) => match name {
                "name" => leaf_str("Title"),
                "value" => leaf_str(value.clone()),
                _ => R::Null,
            },
            Obj::Product(id) => {
                let Some(product) = shop.products.get(id) else {
                    return Ok(if name == "id" {
                        leaf_str(id.gid())
                    } else {
                        R::Null
                    });
                };
                let variants = || product.variants.iter().filter_map(|v| shop.variants.get(v));
                match name {
                    "id" => leaf_str(id.gid()),
                    "legacyResourceId" => leaf_str(id.to_string()),
                    "title" => leaf_str(product.title.clone()),
                    "handle" => leaf_str(product.handle.clone()),
                    "status" => leaf_str(product.status.to_uppercase()),
                    "vendor" => leaf_str(product.vendor.clone()),
                    "productType" => leaf_str(product.product_type.clone()),
                    "descriptionHtml" => leaf_str(product.body_html.clone().unwrap_or_default()),
                    "totalInventory" => {
                        int(variants().map(|v| shop.variant_inventory_quantity(v)).sum())
                    }
                    "tracksInventory" => bool_(variants().any(|v| {
                        shop.items
                            .get(&v.inventory_item_id)
                            .is_some_and(|i| i.tracked)
                    })),
                    "hasOnlyDefaultVariant" => bool_(
                        product.variants.len() == 1
                            && variants().all(|v| v.title == "Default Title"),
                    ),
                    "createdAt" => R::Leaf(time(product.created_at)),
                    "updatedAt" => R::Leaf(time(product.updated_at)),
                    "variants" => {
                        let items = variants()
                            .filter(|v| search_from(args).matches(&|f| variant_fields(shop, v, f)))
                            .map(|v| (v.id.0, Obj::Variant(v.id)))
                            .collect();
                        self.paginate("variants", "ProductVariant", items, args)?
                    }
                    "variantsCount" => R::Object(Obj::Count(product.variants.len() as u64)),
                    _ => R::Null,
                }
            }
            Obj::Location(id) => {
                let location = shop.locations.get(id);
                match name {
                    "id" => leaf_str(id.gid()),
                    "legacyResourceId" => leaf_str(id.to_string()),
                    "name" => leaf_opt(location.map(|l| l.name.as_str())),
                    "isActive" => bool_(location.is_some_and(|l| l.is_active)),
                    "createdAt" => location.map_or(R::Null, |l| R::Leaf(time(l.created_at))),
                    "inventoryLevel" => {
                        let item = args
                            .get("inventoryItemId")
                            .and_then(Value::as_str)
                            .and_then(|g| InventoryItemId::parse_gid(g).ok());
                        match item {
                            Some(item) if shop.levels.contains_key(&(item, *id)) => {
                                R::Object(Obj::Level(item, *id))
                            }
                            _ => R::Null,
                        }
                    }
                    "inventoryLevels" => {
                        let items = shop
                            .levels
                            .keys()
                            .filter(|(_, l)| l == id)
                            .map(|&(item, location)| (item.0, Obj::Level(item, location)))
                            .collect();
                        self.paginate("inventoryLevels", "InventoryLevel", items, args)?
                    }
                    _ => R::Null,
                }
            }
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
            Obj::Count(n) => match name {
                "count" => int_u(*n),
                "precision" => leaf_str("EXACT"),
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

    fn resolve_item(
        &mut self,
        id: InventoryItemId,
        name: &str,
        args: &Map<String, Value>,
    ) -> Result<R, String> {
        let shop = self.shop;
        let Some(item) = shop.items.get(&id) else {
            // A deleted item still renders its id in old adjustment groups.
            return Ok(if name == "id" {
                leaf_str(id.gid())
            } else {
                R::Null
            });
        };
        let variant = shop.variants.get(&item.variant_id);
        let sku = variant.and_then(|v| v.sku.as_deref());
        Ok(match name {
            "id" => leaf_str(id.gid()),
            "legacyResourceId" => leaf_str(id.to_string()),
            "sku" => leaf_opt(sku),
            "tracked" => bool_(item.tracked),
            "requiresShipping" => bool_(item.requires_shipping),
            "createdAt" => R::Leaf(time(item.created_at)),
            "updatedAt" => R::Leaf(time(item.updated_at)),
            "duplicateSkuCount" => int_u(sku.map_or(0, |sku| {
                shop.variants
                    .values()
                    .filter(|v| v.sku.as_deref() == Some(sku) && v.inventory_item_id != id)
                    .count() as u64
            })),
            "countryCodeOfOrigin" | "provinceCodeOfOrigin" | "harmonizedSystemCode" => R::Null,
            "variant" => R::Object(Obj::Variant(item.variant_id)),
            "inventoryLevel" => {
                let location = args
                    .get("locationId")
                    .and_then(Value::as_str)
                    .map(|g| {
                        LocationId::parse_gid(g).map_err(|_| format!("Invalid global id '{g}'"))
                    })
                    .transpose()?;
                match location {
                    Some(location) if shop.levels.contains_key(&(id, location)) => {
                        R::Object(Obj::Level(id, location))
                    }
                    _ => R::Null,
                }
            }
            "inventoryLevels" => {
                let items = shop
                    .levels
                    .range((id, LocationId(0))..)
                    .take_while(|((item, _), _)| *item == id)
                    .map(|(&(item, location), _)| (location.0, Obj::Level(item, location)))
                    .collect();
                self.paginate("inventoryLevels", "InventoryLevel", items, args)?
            }
            _ => R::Null,
        })
    }

    fn resolve_query(&mut self, name: &str, args: &Map<String, Value>) -> Result<R, String> {
        let shop = self.shop;
        let id_arg = || args.get("id").and_then(Value::as_str).unwrap_or_default();
        let invalid = |gid: &str| format!("Invalid global id '{gid}'");
        Ok(match name {
            "inventoryItem" => {
                let id = InventoryItemId::parse_gid(id_arg()).map_err(|_| invalid(id_arg()))?;
                if shop.items.contains_key(&id) {
                    R::Object(Obj::Item(id))
                } else {
                    R::Null
                }
            }
            "productVariant" => {
                let id = VariantId::parse_gid(id_arg()).map_err(|_| invalid(id_arg()))?;
                if shop.variants.contains_key(&id) {
                    R::Object(Obj::Variant(id))
                } else {
                    R::Null
                }
            }
            "product" => {
                let id = ProductId::parse_gid(id_arg()).map_err(|_| invalid(id_arg()))?;
                if shop.products.contains_key(&id) {
                    R::Object(Obj::Product(id))
                } else {
                    R::Null
                }
            }
            "location" => match args.get("id").and_then(Value::as_str) {
                // Without an id, Shopify answers the shop's primary (first) location.
                None => shop
                    .locations
                    .keys()
                    .next()
                    .map_or(R::Null, |id| R::Object(Obj::Location(*id))),
                Some(gid) => {
                    let id = LocationId::parse_gid(gid).map_err(|_| invalid(gid))?;
                    if shop.locations.contains_key(&id) {
                        R::Object(Obj::Location(id))
                    } else {
                        R::Null
                    }
                }
            },
            "inventoryLevel" => node(shop, id_arg()).map_or(R::Null, R::Object),
            "node" => node(shop, id_arg()).map_or(R::Null, R::Object),
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
            "inventoryItems" => {
                let query = search_from(args);
                let items = shop
                    .items
                    .values()
                    .filter(|item| query.matches(&|f| item_fields(shop, item.id, f)))
                    .map(|item| (item.id.0, Obj::Item(item.id)))
                    .collect();
                self.paginate("inventoryItems", "InventoryItem", items, args)?
            }
            "productVariants" => {
                let query = search_from(args);
                let items = shop
                    .variants
                    .values()
                    .filter(|v| query.matches(&|f| variant_fields(shop, v, f)))
                    .map(|v| (v.id.0, Obj::Variant(v.id)))
                    .collect();
                self.paginate("productVariants", "ProductVariant", items, args)?
            }
            "productVariantsCount" => {
                let query = search_from(args);
                R::Object(Obj::Count(
                    shop.variants
                        .values()
                        .filter(|v| query.matches(&|f| variant_fields(shop, v, f)))
                        .count() as u64,
                ))
            }
            "products" => {
                let query = search_from(args);
                let items = shop
                    .products
                    .keys()
                    .filter(|id| query.matches(&|f| product_fields(shop, **id, f)))
                    .map(|id| (id.0, Obj::Product(*id)))
                    .collect();
                self.paginate("products", "Product", items, args)?
            }
            "productsCount" => {
                let query = search_from(args);
                R::Object(Obj::Count(
                    shop.products
                        .keys()
                        .filter(|id| query.matches(&|f| product_fields(shop, **id, f)))
                        .count() as u64,
                ))
            }
            "locations" => {
                let query = search_from(args);
                let include_inactive = args
                    .get("includeInactive")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                let items = shop
                    .locations
                    .values()
                    .filter(|l| include_inactive || l.is_active)
                    .filter(|l| {
                        query.matches(&|f| match f {
                            "name" | "" => Some(vec![l.name.clone()]),
                            "id" => Some(vec![l.id.to_string(), l.id.gid()]),
                            _ => None,
                        })
                    })
                    .map(|l| (l.id.0, Obj::Location(l.id)))
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
        "InventoryItem" => "InventoryItemConnection",
        "InventoryLevel" => "InventoryLevelConnection",
        "ProductVariant" => "ProductVariantConnection",
        "Product" => "ProductConnection",
        _ => "LocationConnection",
    }
}

fn edge_type(node: &str) -> &'static str {
    match node {
        "InventoryItem" => "InventoryItemEdge",
        "InventoryLevel" => "InventoryLevelEdge",
        "ProductVariant" => "ProductVariantEdge",
        "Product" => "ProductEdge",
        _ => "LocationEdge",
    }
}

/// `gid://shopify/InventoryLevel/<location level id>?inventory_item_id=<item>`, as Shopify
/// spells it.
fn level_gid(shop: &ShopState, item: InventoryItemId, location: LocationId) -> String {
    let level_id = shop
        .locations
        .get(&location)
        .map_or(location.0, |l| l.level_id);
    format!("gid://shopify/InventoryLevel/{level_id}?inventory_item_id={item}")
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
    if let Ok(id) = LocationId::parse_gid(gid) {
        return shop
            .locations
            .contains_key(&id)
            .then_some(Obj::Location(id));
    }
    let rest = gid.strip_prefix("gid://shopify/InventoryLevel/")?;
    let (level_id, query) = rest.split_once("?inventory_item_id=")?;
    let level_id: u64 = level_id.parse().ok()?;
    let item = InventoryItemId(query.parse().ok()?);
    let location = shop.locations.values().find(|l| l.level_id == level_id)?.id;
    shop.levels
        .contains_key(&(item, location))
        .then_some(Obj::Level(item, location))
}

fn search_from(args: &Map<String, Value>) -> SearchQuery {
    SearchQuery::parse(
        args.get("query")
            .and_then(Value::as_str)
            .unwrap_or_default(),
    )
}

fn variant_fields(
    shop: &ShopState,
    variant: &crate::inventory::Variant,
    field: &str,
) -> Option<Vec<String>> {
    Some(match field {
        "sku" => variant.sku.iter().cloned().collect(),
        "barcode" => variant.barcode.iter().cloned().collect(),
        "title" => vec![variant.title.clone()],
        "id" => vec![variant.id.to_string(), variant.id.gid()],
        "product_id" => vec![variant.product_id.to_string(), variant.product_id.gid()],
        "inventory_item_id" => vec![
            variant.inventory_item_id.to_string(),
            variant.inventory_item_id.gid(),
        ],
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

fn item_fields(shop: &ShopState, item: InventoryItemId, field: &str) -> Option<Vec<String>> {
    Some(match field {
        "sku" => shop.item_sku(item).map(str::to_owned).into_iter().collect(),
        "id" => vec![item.to_string(), item.gid()],
        "" => shop.item_sku(item).map(str::to_owned).into_iter().collect(),
        _ => return None,
    })
}

fn product_fields(shop: &ShopState, id: ProductId, field: &str) -> Option<Vec<String>> {
    let Some(product) = shop.products.get(&id) else {
        return Some(Vec::new());
    };
    let variants = || product.variants.iter().filter_map(|v| shop.variants.get(v));
    Some(match field {
        "title" => vec![product.title.clone()],
        "id" => vec![id.to_string(), id.gid()],
        "sku" => variants().filter_map(|v| v.sku.clone()).collect(),
        "vendor" => vec![product.vendor.clone()],
        "product_type" => vec![product.product_type.clone()],
        "status" => vec![product.status.clone()],
        "handle" => vec![product.handle.clone()],
        "" => {
            let mut words = vec![product.title.clone()];
            words.extend(variants().filter_map(|v| v.sku.clone()));
            words
        }
        _ => return None,
    })
}
