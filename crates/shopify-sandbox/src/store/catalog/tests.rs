#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use chrono::{DateTime, Utc};
use model::ids::LocationId;

use super::*;
use crate::store::{ShopHandle, Store};

fn now() -> DateTime<Utc> {
    Utc::now()
}

fn shop_with_location() -> (Store, Arc<ShopHandle>, LocationId) {
    let store = Store::new(1000);
    store.create_shop("a.myshopify.com", "t").unwrap();
    let shop = store.shop("a.myshopify.com").unwrap();
    let loc = shop
        .lock()
        .create_location(&store.ids, None, "Main")
        .unwrap();
    (store, shop, loc)
}

#[test]
fn creating_a_product_makes_variants_items_and_levels() {
    let (store, shop, loc) = shop_with_location();
    let mut state = shop.lock();
    let created = state
        .create_product(
            &store.ids,
            &ProductSpec {
                title: "Shirt".into(),
                variants: vec![
                    VariantSpec::sku("S-1").stocked_at(loc, 4),
                    VariantSpec::sku("S-2"),
                ],
                ..ProductSpec::default()
            },
            now(),
        )
        .unwrap();
    assert_eq!(created.variants.len(), 2);
    let first = &created.variants[0];
    assert_eq!(
        state.quantity(first.inventory_item_id, loc, QuantityName::Available),
        Some(4)
    );
    assert_eq!(
        state.quantity(first.inventory_item_id, loc, QuantityName::OnHand),
        Some(4)
    );
    assert_eq!(
        state.quantity(
            created.variants[1].inventory_item_id,
            loc,
            QuantityName::Available
        ),
        None
    );
    assert_eq!(state.item_sku(first.inventory_item_id), Some("S-1"));
    assert_eq!(state.products[&created.product_id].handle, "shirt");
}

#[test]
fn a_spec_with_an_unknown_location_creates_nothing() {
    let (store, shop, _) = shop_with_location();
    let mut state = shop.lock();
    let err = state
        .create_product(
            &store.ids,
            &ProductSpec {
                title: "X".into(),
                variants: vec![VariantSpec::sku("A").stocked_at(LocationId(5), 1)],
                ..ProductSpec::default()
            },
            now(),
        )
        .unwrap_err();
    assert_eq!(err, StoreError::UnknownLocation(LocationId(5)));
    assert!(state.products.is_empty());
    assert!(state.variants.is_empty());
}

#[test]
fn duplicating_copies_skus_with_new_ids_and_no_stock() {
    let (store, shop, loc) = shop_with_location();
    let mut state = shop.lock();
    let original = state
        .create_product(
            &store.ids,
            &ProductSpec {
                title: "Tee".into(),
                variants: vec![VariantSpec::sku("20A642-XL").stocked_at(loc, 9)],
                ..ProductSpec::default()
            },
            now(),
        )
        .unwrap();
    let clone = state
        .duplicate_product(&store.ids, original.product_id, "Tee copy", now())
        .unwrap();
    assert_ne!(clone.product_id, original.product_id);
    assert_eq!(clone.variants[0].sku.as_deref(), Some("20A642-XL"));
    assert_ne!(
        clone.variants[0].inventory_item_id,
        original.variants[0].inventory_item_id
    );
    assert_eq!(
        state.quantity(
            clone.variants[0].inventory_item_id,
            loc,
            QuantityName::Available
        ),
        Some(0)
    );
}

#[test]
fn deleting_variants_and_products_removes_items_and_levels() {
    let (store, shop, loc) = shop_with_location();
    let mut state = shop.lock();
    let p = state
        .create_product(
            &store.ids,
            &ProductSpec {
                title: "P".into(),
                variants: vec![
                    VariantSpec::sku("A").stocked_at(loc, 1),
                    VariantSpec::sku("B").stocked_at(loc, 1),
                ],
                ..ProductSpec::default()
            },
            now(),
        )
        .unwrap();
    let a = &p.variants[0];
    state.delete_variant(a.variant_id, now()).unwrap();
    assert!(!state.items.contains_key(&a.inventory_item_id));
    assert_eq!(
        state.quantity(a.inventory_item_id, loc, QuantityName::Available),
        None
    );
    assert_eq!(
        state.delete_variant(p.variants[1].variant_id, now()),
        Err(StoreError::LastVariant(p.product_id))
    );
    state.delete_product(p.product_id).unwrap();
    assert!(state.levels.is_empty());
    assert!(state.variants.is_empty());
}

#[test]
fn sku_updates_and_clearing() {
    let (store, shop, _) = shop_with_location();
    let mut state = shop.lock();
    let p = state
        .create_product(
            &store.ids,
            &ProductSpec {
                title: "P".into(),
                variants: vec![VariantSpec::sku("OLD")],
                ..ProductSpec::default()
            },
            now(),
        )
        .unwrap();
    let v = p.variants[0].variant_id;
    state
        .update_variant(v, &VariantUpdate::sku("NEW"), now())
        .unwrap();
    assert_eq!(state.variants[&v].sku.as_deref(), Some("NEW"));
    let clear: VariantUpdate = serde_json::from_str(r#"{"sku": null}"#).unwrap();
    assert_eq!(clear.sku, Some(None));
    state.update_variant(v, &clear, now()).unwrap();
    assert_eq!(state.variants[&v].sku, None);
    let untouched: VariantUpdate = serde_json::from_str(r#"{"price": "1.00"}"#).unwrap();
    assert_eq!(untouched.sku, None);
}
