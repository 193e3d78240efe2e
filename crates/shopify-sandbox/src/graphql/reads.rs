//! The reads: the query root's fields (`productVariants` with its `sku:` search,
//! `locations`, `nodes(ids:)`, `shop`, `currentAppInstallation`) and what the shop's records
//! answer — variants, their products and inventory items, locations, the shop, the calling
//! app's installation and access scopes.

use model::ids::{InventoryItemId, LocationId, ProductId, VariantId};
use serde_json::{Map, Value};

use super::exec::{Executor, Obj, R, bool_, leaf_opt, leaf_str, time};
use crate::{
    search::SearchQuery,
    store::{ShopState, Variant},
};

impl Executor<'_, '_> {
    /// A field of the query root; `Err` is a field error (a page out of range).
    pub(super) fn resolve_query(
        &mut self,
        name: &str,
        args: &Map<String, Value>,
    ) -> Result<R, String> {
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

    /// A field of one of the shop's records.
    pub(super) fn resolve_record(&self, obj: &Obj, name: &str) -> R {
        let shop = self.shop;
        match obj {
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
                    return R::Null;
                };
                match name {
                    "handle" => leaf_str(handle.clone()),
                    "description" => leaf_str(scope_description(handle)),
                    _ => R::Null,
                }
            }
            // An item of an old adjustment group may have been deleted since: its id still
            // resolves.
            Obj::Item(id) => match name {
                "id" => leaf_str(id.gid()),
                _ => R::Null,
            },
            Obj::Variant(id) => {
                let Some(variant) = shop.variants.get(id) else {
                    return if name == "id" {
                        leaf_str(id.gid())
                    } else {
                        R::Null
                    };
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
                    return if name == "id" {
                        leaf_str(id.gid())
                    } else {
                        R::Null
                    };
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
            _ => R::Null,
        }
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
fn variant_fields(shop: &ShopState, variant: &Variant, field: &str) -> Option<Vec<String>> {
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
