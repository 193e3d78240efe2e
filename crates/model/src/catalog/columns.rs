//! The descriptive columns of a WOS item: what a mirrored variant supplies ([`item_fields`]) and
//! how the shop's field policies combine it with what WOS has ([`merge_item_fields`]).

use super::{DEFAULT_VARIANT_TITLE, MirroredVariant};
use crate::config::{FieldPolicies, ItemField};

/// The policy-governed columns of a WOS item.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemFields {
    pub description: Option<String>,
    pub barcode: Option<String>,
    /// Decimal text, stored as `numeric`.
    pub price: Option<String>,
    pub vendor: Option<String>,
    pub product_type: Option<String>,
}

impl ItemFields {
    fn slot(&mut self, field: ItemField) -> &mut Option<String> {
        match field {
            ItemField::Description => &mut self.description,
            ItemField::Barcode => &mut self.barcode,
            ItemField::Price => &mut self.price,
            ItemField::Vendor => &mut self.vendor,
            ItemField::ProductType => &mut self.product_type,
        }
    }
}

/// The item columns a variant supplies: the description is the product title, plus the variant
/// title unless it is Shopify's "Default Title" (none while the product title is unknown).
pub fn item_fields(variant: &MirroredVariant) -> ItemFields {
    let description = variant.product_title.as_ref().map(|product_title| {
        match variant.variant_title.as_deref().map(str::trim) {
            Some(title) if !title.is_empty() && title != DEFAULT_VARIANT_TITLE => {
                format!("{product_title} - {title}")
            }
            _ => product_title.clone(),
        }
    });
    ItemFields {
        description,
        barcode: variant.barcode.clone(),
        price: variant.price.clone(),
        vendor: variant.vendor.clone(),
        product_type: variant.product_type.clone(),
    }
}

/// The item's columns after a Shopify update: each field is Shopify's value where its policy
/// lets Shopify write (`shopify` always, `shopify_initial` only when creating the item), and
/// what the item already has otherwise (`None` for a new item under `wos`).
pub fn merge_item_fields(
    existing: Option<&ItemFields>,
    from_shopify: &ItemFields,
    policies: &FieldPolicies,
) -> ItemFields {
    let mut merged = existing.cloned().unwrap_or_default();
    let mut shopify = from_shopify.clone();
    for field in ItemField::ALL {
        if policies.policy(field).shopify_may_write(existing.is_none()) {
            *merged.slot(field) = shopify.slot(field).take();
        }
    }
    merged
}
