use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};

use super::*;
use crate::config::{FieldPolicies, FieldPolicy, ItemField};
use crate::ids::{InventoryItemId, ProductId, VariantId};
use crate::webhook::{ProductEvent, parse_product_event};

fn at(second: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, 10, 0, second).unwrap()
}

fn ts(second: u32) -> String {
    at(second).to_rfc3339()
}

/// A product payload with `(variant id, sku, inventory item)` variants at `updated` seconds.
fn product(id: u64, updated: u32, variants: &[(u64, Option<&str>, u64)]) -> ProductEvent {
    let variants: Vec<serde_json::Value> = variants
        .iter()
        .map(|(vid, sku, item)| {
            serde_json::json!({
                "id": vid, "product_id": id, "title": "XL", "sku": sku,
                "barcode": format!("bc-{vid}"), "price": "19.99",
                "inventory_item_id": item, "created_at": ts(0), "updated_at": ts(updated),
            })
        })
        .collect();
    let body = serde_json::json!({
        "id": id, "title": "Tee", "vendor": "Acme", "product_type": "Shirts",
        "updated_at": ts(updated), "variants": variants,
    });
    parse_product_event("products/update", body.to_string().as_bytes()).unwrap()
}

fn with_listing(event: ProductEvent, listed: &[u64]) -> ProductEvent {
    match event {
        ProductEvent::Upsert(mut payload) => {
            payload.listed_variant_ids = Some(listed.iter().map(|id| VariantId(*id)).collect());
            ProductEvent::Upsert(payload)
        }
        other => other,
    }
}

/// Applies events one after another to an in-memory mirror, as item-ingest does.
struct Mirror {
    variants: BTreeMap<VariantId, MirroredVariant>,
    products: BTreeMap<ProductId, ProductRecord>,
    /// Refreshes requested and not done yet.
    pending: BTreeMap<VariantId, RefreshRequest>,
    /// The kind of the next events applied.
    kind: EventKind,
}

impl Default for Mirror {
    fn default() -> Self {
        Self {
            variants: BTreeMap::new(),
            products: BTreeMap::new(),
            pending: BTreeMap::new(),
            kind: EventKind::Update,
        }
    }
}

impl Mirror {
    fn apply(&mut self, event: &ProductEvent, time: u32) -> CatalogChange {
        self.apply_triggered(event, time, None)
    }

    /// Applies an event whose webhook carried `X-Shopify-Triggered-At` (milliseconds).
    fn apply_triggered(
        &mut self,
        event: &ProductEvent,
        time: u32,
        triggered_ms: Option<i64>,
    ) -> CatalogChange {
        let triggered = triggered_ms.map(|ms| at(0) + chrono::Duration::milliseconds(ms));
        let product_id = event.product_id();
        let known: Vec<_> = self
            .variants
            .values()
            .filter(|v| v.product_id == product_id)
            .cloned()
            .collect();
        let clock = EventClock {
            event_time: at(time),
            triggered_at: triggered,
            kind: self.kind,
        };
        let pending: Vec<RefreshRequest> = self
            .pending
            .values()
            .filter(|r| r.product_id == product_id)
            .copied()
            .collect();
        let change = apply_product_event(
            event,
            &clock,
            &known,
            self.products.get(&product_id),
            &pending,
        );
        self.record(&change);
        if let Some(record) = &change.product {
            self.products.insert(record.product_id, record.clone());
        }
        change
    }

    /// Writes a change's variants and refresh bookkeeping, as the store does.
    fn record(&mut self, change: &CatalogChange) {
        for variant in &change.upserts {
            self.variants.insert(variant.variant_id, variant.clone());
        }
        for id in &change.refreshed {
            self.pending.remove(id);
        }
        for request in &change.refresh {
            self.pending.insert(request.variant_id, *request);
        }
        for variant in self.variants.values_mut() {
            variant.awaiting_refresh = self.pending.contains_key(&variant.variant_id);
        }
    }

    fn live(&self, id: u64) -> bool {
        self.variants
            .get(&VariantId(id))
            .is_some_and(|v| !v.deleted)
    }

    fn sku(&self, id: u64) -> Option<String> {
        self.variants
            .get(&VariantId(id))
            .and_then(|v| v.sku.clone())
    }
}

fn skus(change: &CatalogChange) -> Vec<&str> {
    change.affected_skus.iter().map(String::as_str).collect()
}

#[test]
fn a_new_product_mirrors_every_variant_and_affects_their_skus() {
    let mut mirror = Mirror::default();
    let change = mirror.apply(
        &product(1, 5, &[(10, Some("A"), 100), (11, Some("B"), 101)]),
        5,
    );
    assert_eq!(change.upserts.len(), 2);
    assert_eq!(skus(&change), ["A", "B"]);
    assert!(change.stale.is_empty());
    let v = &mirror.variants[&VariantId(10)];
    assert_eq!(v.inventory_item_id, Some(InventoryItemId(100)));
    assert_eq!(v.product_title.as_deref(), Some("Tee"));
    assert_eq!(v.vendor.as_deref(), Some("Acme"));
    assert_eq!(v.version, Version::at(at(5), None));
    assert_eq!(
        mirror.products[&ProductId(1)].listed_variants,
        Some(vec![VariantId(10), VariantId(11)])
    );
}

#[test]
fn the_same_event_again_changes_nothing() {
    let mut mirror = Mirror::default();
    let event = product(1, 5, &[(10, Some("A"), 100)]);
    mirror.apply(&event, 5);
    let again = mirror.apply(&event, 6);
    assert!(again.upserts.is_empty());
    assert!(again.affected_skus.is_empty());
    assert!(again.stale.is_empty());
}

#[test]
fn an_older_event_is_stale_for_variants_with_newer_state() {
    let mut mirror = Mirror::default();
    mirror.apply(&product(1, 9, &[(10, Some("NEW"), 100)]), 9);
    let late = mirror.apply(&product(1, 5, &[(10, Some("OLD"), 100)]), 10);
    assert_eq!(late.stale, [VariantId(10)]);
    assert!(late.upserts.is_empty());
    assert!(
        late.product.is_none(),
        "the product record keeps the newer version"
    );
    assert_eq!(mirror.sku(10).as_deref(), Some("NEW"));
}

#[test]
fn events_of_the_same_second_are_ordered_by_their_trigger_time() {
    // A clone created with the copied SKU and renamed within one second; the rename's webhook
    // arrives first.
    let mut mirror = Mirror::default();
    mirror.apply_triggered(
        &product(2, 5, &[(20, Some("20B611-XL"), 200)]),
        5,
        Some(5_900),
    );
    let late = mirror.apply_triggered(
        &product(2, 5, &[(20, Some("20A642-XL"), 200)]),
        5,
        Some(5_100),
    );
    assert_eq!(
        late.stale,
        [VariantId(20)],
        "the earlier-triggered create is stale"
    );
    assert_eq!(mirror.sku(20).as_deref(), Some("20B611-XL"));
    // Without the header, the same-second events stay unordered: the last applied wins.
    let mut mirror = Mirror::default();
    mirror.apply(&product(2, 5, &[(20, Some("20B611-XL"), 200)]), 5);
    mirror.apply(&product(2, 5, &[(20, Some("20A642-XL"), 200)]), 5);
    assert_eq!(mirror.sku(20).as_deref(), Some("20A642-XL"));
}

#[test]
fn a_create_of_the_same_second_never_undoes_an_update() {
    // No X-Shopify-Triggered-At on either; the update (a rename) is applied first.
    let mut mirror = Mirror::default();
    mirror.apply(&product(2, 5, &[(20, Some("NEW"), 200)]), 5);
    mirror.kind = EventKind::Create;
    let late = mirror.apply(&product(2, 5, &[(20, Some("OLD"), 200)]), 5);
    assert_eq!(late.stale, [VariantId(20)], "the create is the older event");
    assert!(late.product.is_none());
    assert_eq!(mirror.sku(20).as_deref(), Some("NEW"));
    // The other way round, the update applies over the create.
    let mut mirror = Mirror {
        kind: EventKind::Create,
        ..Mirror::default()
    };
    mirror.apply(&product(2, 5, &[(20, Some("OLD"), 200)]), 5);
    mirror.kind = EventKind::Update;
    let change = mirror.apply(&product(2, 5, &[(20, Some("NEW"), 200)]), 5);
    assert!(change.stale.is_empty());
    assert_eq!(mirror.sku(20).as_deref(), Some("NEW"));
}

#[test]
fn a_sku_rename_affects_the_old_and_the_new_sku() {
    let mut mirror = Mirror::default();
    mirror.apply(&product(1, 5, &[(10, Some("20A642-XL"), 100)]), 5);
    let change = mirror.apply(&product(1, 6, &[(10, Some("20B611-XL"), 100)]), 6);
    assert_eq!(skus(&change), ["20A642-XL", "20B611-XL"]);
    assert_eq!(mirror.sku(10).as_deref(), Some("20B611-XL"));
}

#[test]
fn a_variant_missing_from_a_newer_complete_event_is_deleted() {
    let mut mirror = Mirror::default();
    mirror.apply(
        &product(1, 5, &[(10, Some("A"), 100), (11, Some("B"), 101)]),
        5,
    );
    let change = mirror.apply(&product(1, 6, &[(10, Some("A"), 100)]), 6);
    assert!(!mirror.live(11));
    assert!(mirror.live(10));
    assert_eq!(skus(&change), ["B"]);
}

#[test]
fn a_variant_missing_from_an_event_of_the_same_second_is_kept() {
    let mut mirror = Mirror::default();
    mirror.apply(
        &product(1, 5, &[(10, Some("A"), 100), (11, Some("B"), 101)]),
        5,
    );
    mirror.apply(&product(1, 5, &[(10, Some("A"), 100)]), 5);
    assert!(
        mirror.live(11),
        "same-second events cannot prove a deletion"
    );
}

#[test]
fn variants_beyond_the_detailed_hundred_keep_their_state() {
    let mut mirror = Mirror::default();
    let all: Vec<(u64, Option<&str>, u64)> = (0..150).map(|n| (1000 + n, None, 5000 + n)).collect();
    let skus_owned: Vec<String> = (0..150).map(|n| format!("S{n}")).collect();
    let all: Vec<_> = all
        .iter()
        .zip(&skus_owned)
        .map(|((id, _, item), sku)| (*id, Some(sku.as_str()), *item))
        .collect();
    let listed: Vec<u64> = all.iter().map(|(id, _, _)| *id).collect();
    // First event: variants 0..100 in detail, all 150 listed.
    mirror.apply(&with_listing(product(1, 5, &all[..100]), &listed), 5);
    // Second: the other 50 in detail (recently updated ones come first in Shopify's order).
    mirror.apply(&with_listing(product(1, 6, &all[100..]), &listed), 6);
    assert_eq!((1000..1150).filter(|id| mirror.live(*id)).count(), 150);
    // Third: details for 0..100 again, but variant 1149 is no longer listed: it is gone.
    let fewer: Vec<u64> = listed[..149].to_vec();
    let change = mirror.apply(&with_listing(product(1, 7, &all[..100]), &fewer), 7);
    assert!(!mirror.live(1149));
    assert!(mirror.live(1120), "listed but not detailed: unchanged");
    assert_eq!(skus(&change), ["S149"]);
}

#[test]
fn without_a_listing_a_full_page_of_variants_proves_nothing_missing() {
    let mut mirror = Mirror::default();
    let skus_owned: Vec<String> = (0..101).map(|n| format!("S{n}")).collect();
    let all: Vec<_> = (0..101)
        .map(|n| (2000 + n, Some(skus_owned[n as usize].as_str()), 7000 + n))
        .collect();
    mirror.apply(&product(1, 5, &all[1..]), 5); // 100 variants, no variant_gids
    mirror.apply(&product(1, 6, &all[..100]), 6); // another 100, still no listing
    assert!(
        mirror.live(2100),
        "missing from a 100-variant payload without a listing: unknown, kept"
    );
}

#[test]
fn a_deleted_product_deletes_its_variants_and_stays_deleted() {
    let mut mirror = Mirror::default();
    mirror.apply(
        &product(1, 5, &[(10, Some("A"), 100), (11, Some("B"), 101)]),
        5,
    );
    let delete = ProductEvent::Delete {
        product_id: ProductId(1),
    };
    let change = mirror.apply(&delete, 3); // even with an older receipt time
    assert_eq!(skus(&change), ["A", "B"]);
    assert!(!mirror.live(10) && !mirror.live(11));
    assert!(mirror.products[&ProductId(1)].deleted);
    let late = mirror.apply(&product(1, 9, &[(10, Some("A"), 100)]), 9);
    assert_eq!(
        late.stale,
        [VariantId(10)],
        "an update after the delete changes nothing"
    );
    assert!(!mirror.live(10));
    assert!(
        mirror.apply(&delete, 10).upserts.is_empty(),
        "a repeated delete is a no-op"
    );
}

#[test]
fn an_unknown_variant_in_an_older_event_does_not_come_back_when_a_newer_listing_lacks_it() {
    let mut mirror = Mirror::default();
    mirror.apply(&product(1, 9, &[(10, Some("A"), 100)]), 9); // newer: only variant 10
    let late = mirror.apply(
        &product(1, 5, &[(10, Some("A"), 100), (11, Some("B"), 101)]),
        10,
    );
    assert_eq!(late.stale, [VariantId(10), VariantId(11)]);
    assert!(!mirror.variants.contains_key(&VariantId(11)));
}

#[test]
fn variants_without_sku_are_reported_and_mirrored() {
    let mut mirror = Mirror::default();
    let change = mirror.apply(&product(1, 5, &[(10, None, 100), (11, Some("B"), 101)]), 5);
    assert_eq!(change.without_sku, [VariantId(10)]);
    assert_eq!(skus(&change), ["B"]);
    assert!(mirror.live(10));
    // Giving it a SKU later affects that SKU.
    let change = mirror.apply(
        &product(1, 6, &[(10, Some("A"), 100), (11, Some("B"), 101)]),
        6,
    );
    assert_eq!(skus(&change), ["A"]);
}

#[test]
fn an_event_without_updated_at_is_ordered_by_its_receipt_time() {
    let body = r#"{"id": 1, "title": "T", "variants": [{"id": 10, "sku": "A", "inventory_item_id": 100}]}"#;
    let event = parse_product_event("products/update", body.as_bytes()).unwrap();
    let mut mirror = Mirror::default();
    mirror.apply(&event, 7);
    assert_eq!(
        mirror.variants[&VariantId(10)].version,
        Version::at(at(7), None)
    );
}

fn candidate(variant: u64, item: u64, created: Option<u32>) -> Candidate {
    Candidate {
        variant_id: VariantId(variant),
        inventory_item_id: InventoryItemId(item),
        created_at: created.map(at),
    }
}

#[test]
fn mapping_resolution_follows_the_contract() {
    use CurrentMapping as C;
    use MappingBasis as B;
    let a = candidate(10, 100, Some(1));
    let b = candidate(20, 200, Some(2));
    let undated = candidate(5, 50, None);
    /// (case, current mapping, candidates, expected inventory item, basis, conflict)
    type Case = (
        &'static str,
        CurrentMapping,
        Vec<Candidate>,
        Option<u64>,
        B,
        bool,
    );
    let cases: Vec<Case> = vec![
        (
            "no candidates, no mapping",
            C::None,
            vec![],
            None,
            B::NoCandidate,
            false,
        ),
        (
            "known mapping lost its variant",
            C::Known(InventoryItemId(100)),
            vec![],
            None,
            B::NoCandidate,
            false,
        ),
        (
            "only candidate",
            C::None,
            vec![b],
            Some(200),
            B::OnlyCandidate,
            false,
        ),
        (
            "current kept against an older clone",
            C::Known(InventoryItemId(200)),
            vec![a, b],
            Some(200),
            B::Kept,
            true,
        ),
        (
            "current kept against a newer clone",
            C::Known(InventoryItemId(100)),
            vec![a, b],
            Some(100),
            B::Kept,
            true,
        ),
        (
            "current gone: oldest of several",
            C::Known(InventoryItemId(999)),
            vec![b, a],
            Some(100),
            B::Oldest,
            true,
        ),
        (
            "no current: oldest",
            C::None,
            vec![b, a],
            Some(100),
            B::Oldest,
            true,
        ),
        (
            "an undated candidate: the ids decide",
            C::None,
            vec![b, undated],
            Some(50),
            B::Oldest,
            true,
        ),
        (
            "an undated younger candidate: the ids decide",
            C::None,
            vec![candidate(15, 150, None), a],
            Some(100),
            B::Oldest,
            true,
        ),
        (
            "unverified current kept",
            C::Unverified(InventoryItemId(77)),
            vec![b],
            Some(77),
            B::KeptUnverified,
            true,
        ),
        (
            "unverified current, nothing else",
            C::Unverified(InventoryItemId(77)),
            vec![],
            Some(77),
            B::KeptUnverified,
            false,
        ),
        (
            "unverified current that a candidate has",
            C::Unverified(InventoryItemId(200)),
            vec![a, b],
            Some(200),
            B::Kept,
            true,
        ),
    ];
    for (name, current, candidates, item, basis, conflict) in cases {
        let decision = resolve_mapping(current, &candidates);
        assert_eq!(
            decision.inventory_item_id,
            item.map(InventoryItemId),
            "{name}"
        );
        assert_eq!(decision.basis, basis, "{name}");
        assert_eq!(decision.conflict, conflict, "{name}");
    }
}

#[test]
fn equal_creation_times_fall_back_to_the_lower_variant_id() {
    let decision = resolve_mapping(
        CurrentMapping::None,
        &[candidate(30, 300, Some(1)), candidate(20, 200, Some(1))],
    );
    assert_eq!(decision.variant_id, Some(VariantId(20)));
}

#[test]
fn deleted_variants_and_variants_without_inventory_item_are_not_candidates() {
    let mut mirror = Mirror::default();
    mirror.apply(&product(1, 5, &[(10, Some("A"), 100)]), 5);
    let live = mirror.variants[&VariantId(10)].clone();
    assert!(Candidate::from_variant(&live).is_some());
    assert!(
        Candidate::from_variant(&MirroredVariant {
            deleted: true,
            ..live.clone()
        })
        .is_none()
    );
    assert!(
        Candidate::from_variant(&MirroredVariant {
            inventory_item_id: None,
            ..live
        })
        .is_none()
    );
}

#[test]
fn item_fields_build_the_description_from_product_and_variant_titles() {
    let mut mirror = Mirror::default();
    mirror.apply(&product(1, 5, &[(10, Some("A"), 100)]), 5);
    let variant = mirror.variants[&VariantId(10)].clone();
    let fields = item_fields(&variant);
    assert_eq!(fields.description.as_deref(), Some("Tee - XL"));
    assert_eq!(fields.barcode.as_deref(), Some("bc-10"));
    assert_eq!(fields.price.as_deref(), Some("19.99"));
    assert_eq!(fields.vendor.as_deref(), Some("Acme"));
    assert_eq!(fields.product_type.as_deref(), Some("Shirts"));
    let default = MirroredVariant {
        variant_title: Some("Default Title".into()),
        ..variant.clone()
    };
    assert_eq!(item_fields(&default).description.as_deref(), Some("Tee"));
    let untitled = MirroredVariant {
        variant_title: None,
        ..variant
    };
    assert_eq!(item_fields(&untitled).description.as_deref(), Some("Tee"));
}

#[test]
fn field_policies_decide_what_shopify_writes() {
    let shopify = ItemFields {
        description: Some("from shopify".into()),
        barcode: Some("111".into()),
        price: Some("9.99".into()),
        vendor: Some("V".into()),
        product_type: Some("T".into()),
    };
    let wos = ItemFields {
        description: Some("edited in WOS".into()),
        barcode: Some("222".into()),
        price: Some("1.00".into()),
        vendor: Some("W".into()),
        product_type: Some("U".into()),
    };
    let policies = FieldPolicies::default()
        .with(ItemField::Description, FieldPolicy::Wos)
        .with(ItemField::Barcode, FieldPolicy::ShopifyInitial);

    let created = merge_item_fields(None, &shopify, &policies);
    assert_eq!(
        created.description, None,
        "wos: never from Shopify, even at creation"
    );
    assert_eq!(
        created.barcode.as_deref(),
        Some("111"),
        "shopify_initial: written at creation"
    );
    assert_eq!(created.price.as_deref(), Some("9.99"));

    let updated = merge_item_fields(Some(&wos), &shopify, &policies);
    assert_eq!(updated.description.as_deref(), Some("edited in WOS"));
    assert_eq!(
        updated.barcode.as_deref(),
        Some("222"),
        "shopify_initial: WOS-owned after creation"
    );
    assert_eq!(
        updated.price.as_deref(),
        Some("9.99"),
        "shopify: overwritten"
    );
    assert_eq!(updated.vendor.as_deref(), Some("V"));
    assert_eq!(updated.product_type.as_deref(), Some("T"));
}

#[test]
fn an_unreadable_descriptive_field_keeps_the_mirrored_value() {
    let mut mirror = Mirror::default();
    mirror.apply(&product(1, 5, &[(10, Some("A"), 100)]), 5);
    let body = serde_json::json!({
        "id": 1, "title": 42, "vendor": "Acme 2", "product_type": ["x"], "updated_at": ts(6),
        "variants": [{"id": 10, "sku": "A", "inventory_item_id": 100, "title": "L",
                      "price": "example string", "barcode": false, "updated_at": ts(6)}],
    });
    let event = parse_product_event("products/update", body.to_string().as_bytes()).unwrap();
    mirror.apply(&event, 6);
    let v = &mirror.variants[&VariantId(10)];
    assert_eq!(v.price.as_deref(), Some("19.99"), "kept");
    assert_eq!(v.barcode.as_deref(), Some("bc-10"), "kept");
    assert_eq!(v.product_title.as_deref(), Some("Tee"), "kept");
    assert_eq!(v.product_type.as_deref(), Some("Shirts"), "kept");
    assert_eq!(
        v.vendor.as_deref(),
        Some("Acme 2"),
        "readable fields update"
    );
    assert_eq!(v.variant_title.as_deref(), Some("L"));
    assert_eq!(v.inventory_item_id, Some(InventoryItemId(100)));
    // A variant seen for the first time with unreadable fields: unknown (null).
    let body = serde_json::json!({
        "id": 2, "title": null, "updated_at": ts(7),
        "variants": [{"id": 20, "sku": "B", "inventory_item_id": 200, "price": "?"}],
    });
    let event = parse_product_event("products/create", body.to_string().as_bytes()).unwrap();
    mirror.apply(&event, 7);
    let v = &mirror.variants[&VariantId(20)];
    assert_eq!(
        (v.price.as_deref(), v.product_title.as_deref()),
        (None, None)
    );
    assert_eq!(item_fields(v).description, None);
}

#[test]
fn a_pinned_mapping_is_filled_once_then_kept_and_reported() {
    let live = [candidate(10, 100, Some(1)), candidate(20, 200, Some(2))];
    // Under `shopify` the rules apply, whatever the item has.
    assert_eq!(
        resolve_mapping_under(
            FieldPolicy::Shopify,
            CurrentMapping::Known(InventoryItemId(900)),
            &live,
            false
        ),
        resolve_mapping(CurrentMapping::Known(InventoryItemId(900)), &live)
    );
    // `shopify_initial` fills an empty mapping by the rules...
    let filled = resolve_mapping_under(
        FieldPolicy::ShopifyInitial,
        CurrentMapping::None,
        &live,
        false,
    );
    assert_eq!(filled.inventory_item_id, Some(InventoryItemId(100)));
    assert_eq!(filled.basis, MappingBasis::Oldest);
    for policy in [FieldPolicy::ShopifyInitial, FieldPolicy::Wos] {
        // ...and, like `wos`, keeps a filled one: on a live carrier (no conflict of its own)...
        let kept = resolve_mapping_under(
            policy,
            CurrentMapping::Known(InventoryItemId(200)),
            &live[1..],
            false,
        );
        assert_eq!(
            (
                kept.inventory_item_id,
                kept.variant_id,
                kept.basis,
                kept.conflict
            ),
            (
                Some(InventoryItemId(200)),
                Some(VariantId(20)),
                MappingBasis::Kept,
                false
            ),
            "{policy}"
        );
        // ...on a variant that no longer carries the SKU or is gone (a conflict)...
        let gone = resolve_mapping_under(
            policy,
            CurrentMapping::Known(InventoryItemId(900)),
            &live,
            false,
        );
        assert_eq!(
            (
                gone.inventory_item_id,
                gone.variant_id,
                gone.basis,
                gone.conflict
            ),
            (Some(InventoryItemId(900)), None, MappingBasis::Pinned, true),
            "{policy}"
        );
        assert!(
            resolve_mapping_under(
                policy,
                CurrentMapping::Known(InventoryItemId(900)),
                &[],
                false
            )
            .conflict,
            "{policy}: nothing carries the SKU any more"
        );
        // ...or one the mirror never saw (a conflict while a live variant carries the SKU).
        let unverified = CurrentMapping::Unverified(InventoryItemId(555));
        assert!(resolve_mapping_under(policy, unverified, &live, false).conflict);
        assert!(!resolve_mapping_under(policy, unverified, &[], false).conflict);
    }
    // `wos` never fills an empty mapping.
    let empty = resolve_mapping_under(FieldPolicy::Wos, CurrentMapping::None, &live, false);
    assert_eq!(
        (empty.inventory_item_id, empty.basis, empty.conflict),
        (None, MappingBasis::Pinned, false)
    );
}

/// A product `id` at `updated` detailing `detailed` variants and listing `listed` ones with
/// their `updated_at` seconds (as in `variant_gids`, milliseconds included).
fn big_product(
    id: u64,
    updated: u32,
    detailed: &[(u64, &str, u64)],
    listed: &[(u64, u32)],
) -> ProductEvent {
    let variants: Vec<(u64, Option<&str>, u64)> = detailed
        .iter()
        .map(|(vid, sku, item)| (*vid, Some(*sku), *item))
        .collect();
    match product(id, updated, &variants) {
        ProductEvent::Upsert(mut payload) => {
            payload.listed_variant_ids = Some(listed.iter().map(|(v, _)| VariantId(*v)).collect());
            payload.listed_updated_at = listed
                .iter()
                .map(|(v, t)| (VariantId(*v), at(*t) + chrono::Duration::milliseconds(250)))
                .collect();
            ProductEvent::Upsert(payload)
        }
        other => other,
    }
}

fn fetched(variant: u64, sku: &str, item: u64, updated: u32) -> FetchedVariant {
    FetchedVariant {
        variant_id: VariantId(variant),
        product_id: ProductId(1),
        sku: Some(sku.into()),
        inventory_item_id: Some(InventoryItemId(item)),
        product_title: Some("Tee".into()),
        variant_title: Some("XL".into()),
        barcode: None,
        price: Some("19.99".into()),
        vendor: Some("Acme".into()),
        product_type: Some("Shirts".into()),
        created_at: Some(at(0)),
        updated_at: at(updated),
        product_updated_at: Some(at(updated)),
    }
}

impl Mirror {
    /// Applies Shopify's answers to every pending request of product 1.
    fn fetch(&mut self, answers: &[(u64, Option<FetchedVariant>)]) -> CatalogChange {
        let requests: Vec<RefreshRequest> = self.pending.values().copied().collect();
        let known: Vec<_> = self.variants.values().cloned().collect();
        let answers: BTreeMap<VariantId, Option<FetchedVariant>> = answers
            .iter()
            .map(|(id, answer)| (VariantId(*id), answer.clone()))
            .collect();
        let change = apply_fetched(&requests, &answers, &known, at(59));
        self.record(&change);
        change
    }
}

#[test]
fn variants_beyond_the_detailed_hundred_are_read_when_new_or_changed() {
    let mut mirror = Mirror::default();
    // Three variants, one detailed (Shopify details 100; the rule is the same).
    let listing = [(10, 5), (11, 5), (12, 5)];
    let first = mirror.apply(&big_product(1, 5, &[(10, "A", 100)], &listing), 5);
    let asked: Vec<u64> = first.refresh.iter().map(|r| r.variant_id.0).collect();
    assert_eq!(asked, [11, 12], "unknown listed variants are read");
    let read = mirror.fetch(&[
        (11, Some(fetched(11, "B", 101, 5))),
        (12, Some(fetched(12, "C", 102, 5))),
    ]);
    assert_eq!(skus(&read), ["B", "C"]);
    assert!(mirror.pending.is_empty());
    assert_eq!(mirror.sku(12).as_deref(), Some("C"));

    // The same listing again: nothing newer, nothing to read (the listing time is recorded).
    let again = mirror.apply(&big_product(1, 6, &[(10, "A", 100)], &listing), 6);
    assert!(again.refresh.is_empty(), "{:?}", again.refresh);

    // 11 is renamed and 13 created beyond the detailed ones.
    let changed = [(13, 8), (11, 7), (10, 5), (12, 5)];
    let change = mirror.apply(&big_product(1, 8, &[(10, "A", 100)], &changed), 8);
    let asked: Vec<(u64, Option<DateTime<Utc>>)> = change
        .refresh
        .iter()
        .map(|r| (r.variant_id.0, r.listed_at))
        .collect();
    assert_eq!(
        asked,
        [
            (13, Some(at(8) + chrono::Duration::milliseconds(250))),
            (11, Some(at(7) + chrono::Duration::milliseconds(250)))
        ]
    );
    assert_eq!(
        skus(&change),
        ["B"],
        "the changed variant's SKU is settled again"
    );
    let awaiting = &mirror.variants[&VariantId(11)];
    assert!(awaiting.awaiting_refresh);
    assert_eq!(
        Candidate::from_variant(awaiting),
        None,
        "no candidate meanwhile"
    );

    let read = mirror.fetch(&[
        (11, Some(fetched(11, "B2", 101, 7))),
        (13, Some(fetched(13, "D", 103, 8))),
    ]);
    assert_eq!(skus(&read), ["B", "B2", "D"]);
    assert_eq!(mirror.sku(11).as_deref(), Some("B2"));
    assert_eq!(mirror.sku(13).as_deref(), Some("D"));
    assert!(Candidate::from_variant(&mirror.variants[&VariantId(11)]).is_some());
}

#[test]
fn a_refresh_is_done_by_details_that_cover_it_or_by_shopify_saying_the_variant_is_gone() {
    let mut mirror = Mirror::default();
    let first = mirror.apply(
        &big_product(1, 5, &[(10, "A", 100)], &[(10, 5), (11, 5), (12, 5)]),
        5,
    );
    assert_eq!(first.refresh.len(), 2);
    // A later event details 11: its pending read is done without asking Shopify.
    let detailed = mirror.apply(
        &big_product(1, 6, &[(11, "B", 101)], &[(11, 6), (10, 5), (12, 5)]),
        6,
    );
    assert_eq!(detailed.refreshed, [VariantId(11)]);
    assert_eq!(
        mirror.pending.keys().copied().collect::<Vec<_>>(),
        [VariantId(12)]
    );
    // Shopify no longer has 12 (deleted since): nothing to mirror, the request is done.
    let gone = mirror.fetch(&[(12, None)]);
    assert_eq!(gone.refreshed, [VariantId(12)]);
    assert!(gone.upserts.is_empty());
    // A known variant Shopify no longer has is deleted.
    mirror.apply(
        &big_product(1, 7, &[(10, "A", 100)], &[(11, 7), (10, 5)]),
        7,
    );
    let deleted = mirror.fetch(&[(11, None)]);
    assert_eq!(skus(&deleted), ["B"]);
    assert!(!mirror.live(11));
}

#[test]
fn an_older_read_never_undoes_newer_mirrored_state() {
    let mut mirror = Mirror::default();
    mirror.apply(
        &big_product(1, 5, &[(10, "A", 100)], &[(10, 5), (11, 5)]),
        5,
    );
    // 11 is detailed by a newer event before Shopify's (older) answer is applied.
    mirror.apply(&product(1, 9, &[(11, Some("NEW"), 101)]), 9);
    mirror.pending.insert(
        VariantId(11),
        RefreshRequest {
            variant_id: VariantId(11),
            product_id: ProductId(1),
            listed_at: None,
        },
    );
    let read = mirror.fetch(&[(11, Some(fetched(11, "OLD", 101, 6)))]);
    assert_eq!(read.refreshed, [VariantId(11)]);
    assert!(read.upserts.is_empty());
    assert_eq!(mirror.sku(11).as_deref(), Some("NEW"));
}

#[test]
fn while_a_carrier_is_read_no_other_variant_takes_the_sku() {
    let clone = candidate(20, 200, Some(9));
    // The item pointed at the variant being read: it is cleared, and the clone is not chosen.
    let held = resolve_mapping_under(
        FieldPolicy::Shopify,
        CurrentMapping::Known(InventoryItemId(100)),
        &[clone],
        true,
    );
    assert_eq!(
        (held.inventory_item_id, held.basis),
        (None, MappingBasis::AwaitingShopify)
    );
    assert_eq!(
        resolve_mapping_under(FieldPolicy::Shopify, CurrentMapping::None, &[clone], true).basis,
        MappingBasis::AwaitingShopify
    );
    // What rule 1 keeps stays kept.
    let kept = resolve_mapping_under(
        FieldPolicy::Shopify,
        CurrentMapping::Known(InventoryItemId(200)),
        &[clone],
        true,
    );
    assert_eq!(kept.basis, MappingBasis::Kept);
    // A pinned mapping never moves.
    let pinned = resolve_mapping_under(
        FieldPolicy::Wos,
        CurrentMapping::Known(InventoryItemId(100)),
        &[clone],
        true,
    );
    assert_eq!(pinned.inventory_item_id, Some(InventoryItemId(100)));
}

#[test]
fn conflict_reasons_of_a_settled_sku() {
    let mut mirror = Mirror::default();
    mirror.apply(
        &product(1, 5, &[(10, Some("A"), 100), (11, Some("A"), 101)]),
        5,
    );
    let both: Vec<MirroredVariant> = mirror.variants.values().cloned().collect();
    let one = &both[..1];
    let known = CurrentMapping::Known(InventoryItemId(100));
    let item = Some(InventoryItemId(100));
    assert_eq!(
        conflict_reasons(known, item, &both, false),
        [ConflictReason::SharedSku]
    );
    assert!(conflict_reasons(known, item, one, false).is_empty());
    // Kept on an inventory item the mirror never saw, while a variant carries the SKU.
    let unverified = CurrentMapping::Unverified(InventoryItemId(555));
    assert_eq!(
        conflict_reasons(unverified, Some(InventoryItemId(555)), one, false),
        [ConflictReason::Unverified]
    );
    assert!(conflict_reasons(unverified, Some(InventoryItemId(555)), &[], false).is_empty());
    // Pinned to a known inventory item no live carrier has.
    let elsewhere = CurrentMapping::Known(InventoryItemId(900));
    assert_eq!(
        conflict_reasons(elsewhere, Some(InventoryItemId(900)), one, true),
        [ConflictReason::NotCarried, ConflictReason::AwaitingShopify]
    );
    // Moved by the rules: nothing left to report.
    assert!(conflict_reasons(elsewhere, item, one, false).is_empty());
    for reason in ConflictReason::ALL {
        assert_eq!(ConflictReason::parse(reason.as_str()), Some(reason));
    }
}
