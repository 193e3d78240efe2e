use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::*;
use crate::validate::describe_json;

fn fixtures() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../contract/fixtures"
    ))
}

fn ts(s: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(s).expect("timestamp")
}

fn upsert(topic: &str, body: &Value) -> ProductPayload {
    match parse_product_event(topic, &serde_json::to_vec(body).expect("ser")) {
        Ok(ProductEvent::Upsert(p)) => *p,
        other => panic!("expected an upsert, got {other:?}"),
    }
}

fn parse_err(body: &Value) -> WebhookError {
    parse_product_event("products/update", &serde_json::to_vec(body).expect("ser"))
        .expect_err("should fail")
}

fn variant(id: u64) -> Value {
    json!({
        "id": id,
        "product_id": 1,
        "title": format!("V{id}"),
        "sku": format!("SKU-{id}"),
        "barcode": null,
        "price": "19.99",
        "inventory_item_id": id + 1_000_000,
        "position": 1,
        "created_at": "2024-01-01T00:00:00Z",
        "updated_at": "2024-01-02T00:00:00Z",
    })
}

fn product(variants: Vec<Value>) -> Value {
    json!({
        "id": 1,
        "title": "T-Shirt",
        "vendor": "Acme",
        "product_type": "Shirts",
        "created_at": null,
        "updated_at": "2021-12-31T19:00:00-05:00",
        "variants": variants,
    })
}

fn invalid_at(path: &str, problem: &str) -> WebhookError {
    WebhookError::InvalidField {
        path: path.to_owned(),
        problem: problem.to_owned(),
    }
}

fn missing_at(path: &str) -> WebhookError {
    WebhookError::MissingField {
        path: path.to_owned(),
    }
}

/// Every Shopify docs example parses (products) or is refused as another topic.
#[test]
fn every_shopify_docs_example() {
    #[derive(serde::Deserialize)]
    struct DocsExample<'a> {
        name: String,
        #[serde(borrow)]
        response: &'a serde_json::value::RawValue,
    }
    let root = fixtures().join("shopify-webhooks/shopify-docs-examples");
    let mut product_files = 0;
    let mut other_files = 0;
    for version in sorted_dir(&root) {
        for resource in sorted_dir(&version) {
            for file in sorted_dir(&resource) {
                let text = std::fs::read_to_string(&file).expect("read fixture");
                let doc: DocsExample<'_> = serde_json::from_str(&text).expect("docs JSON");
                let resource_name = file_name(&resource);
                let action = file
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .expect("file stem")
                    .to_owned();
                let topic = format!("{resource_name}/{action}");
                assert_eq!(doc.name, topic, "{}", file.display());
                let body = doc.response.get().as_bytes();
                let dotted = topic.replace('/', ".");
                if resource_name == "products" {
                    product_files += 1;
                    let event = parse_product_event(&topic, body)
                        .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                    assert_eq!(event.product_id(), ProductId(788032119674292900));
                    assert_eq!(parse_product_event(&dotted, body), Ok(event.clone()));
                    check_docs_product(&action, &event);
                } else {
                    other_files += 1;
                    for t in [&topic, &dotted] {
                        assert_eq!(
                            parse_product_event(t, body),
                            Err(WebhookError::UnsupportedTopic { topic: t.clone() }),
                            "{}",
                            file.display()
                        );
                    }
                }
            }
        }
    }
    // 3 API versions × (3 product topics, 6 inventory topics).
    assert_eq!(product_files, 9);
    assert_eq!(other_files, 18);
}

fn check_docs_product(action: &str, event: &ProductEvent) {
    if action == "delete" {
        assert_eq!(
            event,
            &ProductEvent::Delete {
                product_id: ProductId(788032119674292900)
            }
        );
        return;
    }
    let ProductEvent::Upsert(p) = event else {
        panic!("{action}: expected an upsert");
    };
    assert_eq!(p.title.as_deref(), Some("Example T-Shirt"));
    assert!(p.unreadable.is_empty());
    assert_eq!(p.vendor.as_deref(), Some("Acme"));
    assert_eq!(p.product_type.as_deref(), Some("Shirts"));
    assert_eq!(p.status.as_deref(), Some("active"));
    assert_eq!(p.body_html.as_deref(), Some("An example T-Shirt"));
    assert_eq!(p.created_at, None);
    assert_eq!(p.updated_at, Some(ts("2021-12-31T19:00:00-05:00")));
    assert_eq!(p.variants.len(), 2);
    let small = &p.variants[0];
    assert_eq!(small.id, VariantId(642667041472714000));
    assert_eq!(small.product_id, Some(ProductId(788032119674292900)));
    assert_eq!(small.title.as_deref(), Some("Small"));
    assert_eq!(small.sku, None);
    assert_eq!(small.barcode, None);
    assert_eq!(small.price.as_deref(), Some("19.99"));
    assert_eq!(small.inventory_item_id, None);
    assert_eq!(small.position, Some(1));
    assert_eq!(small.created_at, Some(ts("2021-12-29T19:00:00-05:00")));
    assert_eq!(small.updated_at, Some(ts("2021-12-30T19:00:00-05:00")));
    assert_eq!(p.variants[1].id, VariantId(757650484644203900));
    assert_eq!(p.variants[1].position, Some(2));
    // The docs' gids carry the exact ids while their `id`s were rounded by a float
    // somewhere in Shopify's docs pipeline; the parser reports both verbatim.
    assert_eq!(
        p.listed_variant_ids,
        Some(vec![
            VariantId(757650484644203962),
            VariantId(642667041472713922)
        ])
    );
    assert_eq!(
        p.listed_updated_at.get(&VariantId(757650484644203962)),
        Some(&ts("2022-01-01T00:00:00.000Z").with_timezone(&Utc))
    );
    assert_eq!(p.listed_updated_at.len(), 2);
}

fn sorted_dir(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("dir entry").path())
        .collect();
    entries.sort();
    entries
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .and_then(|s| s.to_str())
        .expect("utf-8 file name")
        .to_owned()
}

/// The fields this parser relies on still have the types Shopify's 2026-04 schema
/// declares (a drift guard for the next API version's schema).
#[test]
fn shopify_json_schema_agrees_with_the_parser() {
    for action in ["create", "update"] {
        let path = fixtures().join(format!(
            "shopify-webhooks/jsonschemas/2026-04/products/{action}.json"
        ));
        let schema: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read schema"))
                .expect("schema JSON");
        let props = &schema["properties"];
        let types = |v: &Value| -> Vec<String> {
            match &v["type"] {
                Value::String(s) => vec![s.clone()],
                Value::Array(a) => a
                    .iter()
                    .filter_map(|t| t.as_str().map(str::to_owned))
                    .collect(),
                other => panic!("no type: {other}"),
            }
        };
        assert_eq!(types(&props["id"]), ["integer"]);
        assert_eq!(types(&props["title"]), ["string"]);
        assert_eq!(types(&props["created_at"]), ["null", "string"]);
        assert_eq!(types(&props["variants"]), ["array"]);
        let gid_item = &props["variant_gids"]["items"];
        assert_eq!(
            types(&gid_item["properties"]["admin_graphql_api_id"]),
            ["string"]
        );
        let v = &props["variants"]["items"]["properties"];
        assert_eq!(types(&v["id"]), ["integer"]);
        assert_eq!(types(&v["product_id"]), ["integer"]);
        assert_eq!(types(&v["inventory_item_id"]), ["integer", "null"]);
        assert_eq!(types(&v["sku"]), ["null", "string"]);
        assert_eq!(types(&v["barcode"]), ["null", "string"]);
        assert_eq!(types(&v["price"]), ["string"]);
        assert_eq!(types(&v["position"]), ["integer"]);
    }
    let delete: Value = serde_json::from_str(
        &std::fs::read_to_string(
            fixtures().join("shopify-webhooks/jsonschemas/2026-04/products/delete.json"),
        )
        .expect("read"),
    )
    .expect("JSON");
    assert_eq!(delete["required"], json!(["id"]));
}

#[test]
fn topics() {
    for (topic, expected) in [
        ("products/create", Some(ProductTopic::Create)),
        ("products.create", Some(ProductTopic::Create)),
        ("products/update", Some(ProductTopic::Update)),
        ("products.update", Some(ProductTopic::Update)),
        ("products/delete", Some(ProductTopic::Delete)),
        ("products.delete", Some(ProductTopic::Delete)),
        ("Products/Create", None),
        ("products/create ", None),
        ("products_create", None),
        ("products", None),
        ("inventory_items/update", None),
        ("", None),
    ] {
        assert_eq!(ProductTopic::parse(topic), expected, "{topic:?}");
    }
    for topic in ProductTopic::ALL {
        assert_eq!(ProductTopic::parse(topic.as_str()), Some(topic));
        assert_eq!(ProductTopic::parse(topic.routing_key()), Some(topic));
        assert_eq!(topic.routing_key(), topic.as_str().replace('/', "."));
    }
}

#[test]
fn unsupported_topic_is_checked_before_the_body() {
    let err = parse_product_event("orders/create", b"not json").expect_err("topic");
    assert_eq!(
        err,
        WebhookError::UnsupportedTopic {
            topic: "orders/create".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "unsupported topic \"orders/create\" (expected products/create, products/update or products/delete)"
    );
    let err = parse_product_event("x\ny", b"{}").expect_err("topic");
    assert!(!err.to_string().contains('\n'));
    assert_eq!(err.path(), None);
}

#[test]
fn body_level_errors() {
    let parse = |b: &[u8]| parse_product_event("products/create", b);
    assert_eq!(
        parse(b"{\"id\":\xff}"),
        Err(WebhookError::NotUtf8 { offset: 6 })
    );
    assert!(matches!(parse(b"{"), Err(WebhookError::NotJson(_))));
    assert!(matches!(parse(b""), Err(WebhookError::NotJson(_))));
    assert_eq!(
        parse(b"[]"),
        Err(WebhookError::NotObject { found: "array" })
    );
    assert_eq!(
        parse_product_event("products/delete", b"null"),
        Err(WebhookError::NotObject { found: "null" })
    );
    assert_eq!(
        parse(b"7").expect_err("not object").to_string(),
        "body must be a JSON object, got integer"
    );
}

#[test]
fn delete_needs_only_the_id() {
    for (body, expected) in [
        (
            json!({"id": 788032119674292900_u64}),
            ProductId(788032119674292900),
        ),
        (
            json!({"id": 9007199254740993_u64}),
            ProductId(9007199254740993),
        ),
        (
            json!({"id": "9007199254740993"}),
            ProductId(9007199254740993),
        ),
        (json!({"id": u64::MAX}), ProductId(u64::MAX)),
        (json!({"id": 5, "extra": [1]}), ProductId(5)),
    ] {
        let bytes = serde_json::to_vec(&body).expect("ser");
        assert_eq!(
            parse_product_event("products/delete", &bytes),
            Ok(ProductEvent::Delete {
                product_id: expected
            })
        );
    }
    assert_eq!(
        parse_product_event("products.delete", b"{}"),
        Err(missing_at("id"))
    );
    assert_eq!(
        parse_product_event("products.delete", b"{\"id\": null}"),
        Err(invalid_at("id", "expected a positive integer id, got null"))
    );
}

#[test]
fn ids_above_2_pow_53_are_exact_from_the_raw_bytes() {
    // Written as literal text so no float can be involved anywhere.
    let body = br#"{"id": 9007199254740993, "title": "P", "variants": [
            {"id": 9007199254740995, "product_id": 9007199254740993,
             "inventory_item_id": 18446744073709551615, "sku": "A"}],
            "variant_gids": [{"admin_graphql_api_id": "gid://shopify/ProductVariant/9007199254740997"}]}"#;
    let ProductEvent::Upsert(p) = parse_product_event("products/create", body).expect("valid")
    else {
        panic!("upsert expected");
    };
    assert_eq!(p.id, ProductId(9_007_199_254_740_993));
    assert_eq!(p.variants[0].id, VariantId(9_007_199_254_740_995));
    assert_eq!(
        p.variants[0].product_id,
        Some(ProductId(9_007_199_254_740_993))
    );
    assert_eq!(
        p.variants[0].inventory_item_id,
        Some(InventoryItemId(u64::MAX))
    );
    assert_eq!(
        p.listed_variant_ids,
        Some(vec![VariantId(9_007_199_254_740_997)])
    );
    assert_eq!(p.id.to_string(), "9007199254740993");
}

#[test]
fn more_than_100_variants_uses_variant_gids_for_the_full_list() {
    let variants: Vec<Value> = (1..=100).map(variant).collect();
    let gids: Vec<Value> = (1..=150)
        .rev()
        .map(|i| {
            json!({
                "admin_graphql_api_id": format!("gid://shopify/ProductVariant/{i}"),
                "updated_at": "2024-01-01T00:00:00.000Z",
            })
        })
        .collect();
    let mut body = product(variants);
    body["variant_gids"] = json!(gids);
    let p = upsert("products/update", &body);
    assert_eq!(p.variants.len(), 100);
    assert_eq!(p.variants[99].id, VariantId(100));
    assert_eq!(p.variants[99].sku.as_deref(), Some("SKU-100"));
    let listed = p.listed_variant_ids.expect("listed");
    assert_eq!(listed.len(), 150);
    assert_eq!(listed[0], VariantId(150));
    assert_eq!(listed[149], VariantId(1));
    // Every detailed variant is listed; 50 are listed without details.
    assert!(p.variants.iter().all(|v| listed.contains(&v.id)));
    assert_eq!(
        listed
            .iter()
            .filter(|id| !p.variants.iter().any(|v| v.id == **id))
            .count(),
        50
    );
}

#[test]
fn older_variant_ids_shapes() {
    for (list, expected) in [
        (json!([11, 12]), vec![11, 12]),
        (json!([{"id": 11}, {"id": 12}]), vec![11, 12]),
        (json!(["11", {"id": "12"}]), vec![11, 12]),
        (json!([9007199254740993_u64]), vec![9_007_199_254_740_993]),
        (json!(["gid://shopify/ProductVariant/13"]), vec![13]),
        (
            json!([{"admin_graphql_api_id": "gid://shopify/ProductVariant/14", "id": 99}]),
            vec![14],
        ),
        (json!([]), vec![]),
    ] {
        let mut body = product(vec![variant(11)]);
        body["variant_ids"] = list.clone();
        let p = upsert("products/create", &body);
        assert_eq!(
            p.listed_variant_ids,
            Some(expected.into_iter().map(VariantId).collect()),
            "{list}"
        );
    }
}

#[test]
fn variant_gids_win_over_variant_ids_and_null_means_absent() {
    let mut body = product(vec![variant(1)]);
    body["variant_gids"] = json!([{"admin_graphql_api_id": "gid://shopify/ProductVariant/7"}]);
    body["variant_ids"] = json!([8]);
    assert_eq!(
        upsert("products/update", &body).listed_variant_ids,
        Some(vec![VariantId(7)])
    );
    body["variant_gids"] = json!(null);
    assert_eq!(
        upsert("products/update", &body).listed_variant_ids,
        Some(vec![VariantId(8)])
    );
    body["variant_ids"] = json!(null);
    assert_eq!(upsert("products/update", &body).listed_variant_ids, None);
    let body = product(vec![variant(1)]);
    assert_eq!(upsert("products/update", &body).listed_variant_ids, None);
}

#[test]
fn bad_variant_lists_name_the_entry() {
    let cases = [
        (
            "variant_gids",
            json!([{"admin_graphql_api_id": "gid://shopify/Product/1"}]),
            invalid_at(
                "variant_gids[0].admin_graphql_api_id",
                "expected a gid://shopify/ProductVariant/<id>, got \"gid://shopify/Product/1\"",
            ),
        ),
        (
            "variant_gids",
            json!([{"admin_graphql_api_id": "gid://shopify/ProductVariant/1"}, {"updated_at": "x"}]),
            missing_at("variant_gids[1].admin_graphql_api_id"),
        ),
        (
            "variant_gids",
            json!("gid://shopify/ProductVariant/1"),
            invalid_at(
                "variant_gids",
                "expected an array, got \"gid://shopify/ProductVariant/1\"",
            ),
        ),
        (
            "variant_ids",
            json!([1, 2.5]),
            invalid_at("variant_ids[1]", "expected a positive integer id, got 2.5"),
        ),
        (
            "variant_ids",
            json!([{"id": "x"}]),
            invalid_at(
                "variant_ids[0].id",
                "expected a positive integer id, got \"x\"",
            ),
        ),
        (
            "variant_ids",
            json!(["gid://shopify/ProductVariant/abc"]),
            invalid_at(
                "variant_ids[0]",
                "expected a gid://shopify/ProductVariant/<id>, got \"gid://shopify/ProductVariant/abc\"",
            ),
        ),
    ];
    for (key, list, expected) in cases {
        let mut body = product(vec![variant(1)]);
        body[key] = list;
        assert_eq!(parse_err(&body), expected);
    }
}

#[test]
fn nullable_and_missing_variant_fields() {
    let body = product(vec![
        json!({"id": 1, "sku": null, "barcode": null, "inventory_item_id": null,
               "price": null, "position": null, "created_at": null, "updated_at": null,
               "title": null, "product_id": null}),
        json!({"id": 2}),
        json!({"id": 3, "sku": "", "barcode": "", "created_at": ""}),
        json!({"id": 4, "sku": " A B ", "barcode": "0123", "price": "0.00"}),
        json!({"id": 5, "sku": " \t\n "}),
    ]);
    let p = upsert("products/create", &body);
    let empty = |id| VariantPayload {
        id: VariantId(id),
        product_id: None,
        title: None,
        sku: None,
        barcode: None,
        price: None,
        inventory_item_id: None,
        position: None,
        created_at: None,
        updated_at: None,
        unreadable: vec![],
    };
    assert_eq!(p.variants[0], empty(1));
    assert_eq!(p.variants[1], empty(2));
    assert_eq!(p.variants[4], empty(5), "a whitespace-only SKU is no SKU");
    assert_eq!(
        p.variants[2],
        VariantPayload {
            barcode: Some(String::new()),
            ..empty(3)
        }
    );
    assert_eq!(
        p.variants[3],
        VariantPayload {
            sku: Some(" A B ".into()),
            barcode: Some("0123".into()),
            price: Some("0.00".into()),
            ..empty(4)
        }
    );
}

#[test]
fn product_optional_fields() {
    let body = json!({"id": 1, "title": "", "variants": [], "vendor": null,
                      "product_type": "", "updated_at": null});
    let p = upsert("products/create", &body);
    assert_eq!(
        p,
        ProductPayload {
            id: ProductId(1),
            title: Some(String::new()),
            body_html: None,
            vendor: None,
            product_type: Some(String::new()),
            status: None,
            created_at: None,
            updated_at: None,
            variants: vec![],
            listed_variant_ids: None,
            listed_updated_at: BTreeMap::new(),
            unreadable: vec![],
        }
    );
}

#[test]
fn full_variant_from_a_realistic_payload() {
    let p = upsert("products/update", &product(vec![variant(42)]));
    assert_eq!(
        p.variants,
        vec![VariantPayload {
            id: VariantId(42),
            product_id: Some(ProductId(1)),
            title: Some("V42".into()),
            sku: Some("SKU-42".into()),
            barcode: None,
            price: Some("19.99".into()),
            inventory_item_id: Some(InventoryItemId(1_000_042)),
            position: Some(1),
            created_at: Some(ts("2024-01-01T00:00:00Z")),
            updated_at: Some(ts("2024-01-02T00:00:00Z")),
            unreadable: vec![],
        }]
    );
    assert_eq!(p.updated_at, Some(ts("2022-01-01T00:00:00Z")));
}

#[test]
fn both_timestamp_spellings_in_one_payload() {
    let mut body = product(vec![variant(1)]);
    body["created_at"] = json!("2021-12-31 19:00:00 -0500");
    body["updated_at"] = json!("2024-01-01T00:00:00Z");
    body["variants"][0]["updated_at"] = json!("2022-01-01T00:00:00.000Z");
    body["variants"][0]["created_at"] = json!("2021-12-31T19:00:00-05:00");
    let p = upsert("products/update", &body);
    assert_eq!(p.created_at, Some(ts("2022-01-01T00:00:00Z")));
    assert_eq!(
        p.created_at.map(|t| t.offset().local_minus_utc()),
        Some(-5 * 3600)
    );
    assert_eq!(p.updated_at, Some(ts("2024-01-01T00:00:00Z")));
    assert_eq!(p.variants[0].updated_at, p.variants[0].created_at);
}

#[test]
fn shopify_timestamp_spellings() {
    let cases = [
        ("2021-12-31T19:00:00-05:00", "2022-01-01T00:00:00Z"),
        ("2024-01-01T00:00:00Z", "2024-01-01T00:00:00Z"),
        ("2024-01-01T00:00:00z", "2024-01-01T00:00:00Z"),
        ("2022-01-01T00:00:00.000Z", "2022-01-01T00:00:00Z"),
        ("2022-01-01T00:00:00.123456Z", "2022-01-01T00:00:00.123456Z"),
        ("2021-12-31T19:00:00.5-05:00", "2022-01-01T00:00:00.5Z"),
        ("2021-12-31T19:00:00-0500", "2022-01-01T00:00:00Z"),
        ("2021-12-31T19:00:00.250-0500", "2022-01-01T00:00:00.25Z"),
        ("2022-01-01T05:30:00+0530", "2022-01-01T00:00:00Z"),
        ("2022-01-01T05:00:00+05", "2022-01-01T00:00:00Z"),
        ("2021-12-31 19:00:00 -0500", "2022-01-01T00:00:00Z"),
        ("2021-12-31 19:00:00 -05:00", "2022-01-01T00:00:00Z"),
        ("2021-12-31 19:00:00-05:00", "2022-01-01T00:00:00Z"),
        ("2021-12-31 19:00:00.75 -0500", "2022-01-01T00:00:00.75Z"),
        ("2022-01-01 00:00:00 UTC", "2022-01-01T00:00:00Z"),
        ("2022-01-01 00:00:00Z", "2022-01-01T00:00:00Z"),
        ("2022-01-01T00:00:00 UTC", "2022-01-01T00:00:00Z"),
        ("2021/12/31 19:00:00 -0500", "2022-01-01T00:00:00Z"),
        ("  2024-01-01T00:00:00Z \n", "2024-01-01T00:00:00Z"),
    ];
    for (input, utc) in cases {
        assert_eq!(parse_shopify_timestamp(input), Some(ts(utc)), "{input:?}");
    }
    // The offset is kept, not just the instant.
    let t = parse_shopify_timestamp("2021-12-31 19:00:00 -0500").expect("parses");
    assert_eq!(t.offset().local_minus_utc(), -5 * 3600);
    for bad in [
        "",
        "2021-12-31",
        "2021-12-31T19:00:00",
        "2021-12-31 19:00:00",
        "2021-12-31T19:00-05:00",
        "2021-13-31T19:00:00Z",
        "2021-02-30T19:00:00Z",
        "2021-12-31T25:00:00Z",
        "1640995200",
        "yesterday",
        "2021-12-31T19:00:00 EST",
        "Z",
        "UTC",
    ] {
        assert_eq!(parse_shopify_timestamp(bad), None, "{bad:?}");
    }
}

#[test]
fn invalid_fields_name_their_path() {
    let cases: Vec<(Value, WebhookError)> = vec![
        (json!({"title": "T", "variants": []}), missing_at("id")),
        (json!({"id": 1, "title": "T"}), missing_at("variants")),
        (
            json!({"id": 1, "title": "T", "variants": null}),
            invalid_at("variants", "expected an array, got null"),
        ),
        (
            json!({"id": 1, "title": "T", "variants": {"id": 1}}),
            invalid_at("variants", "expected an array, got an object"),
        ),
        (
            json!({"id": 1.0, "title": "T", "variants": []}),
            invalid_at("id", "expected a positive integer id, got 1.0"),
        ),
        (
            json!({"id": 6.42667041472714e17, "title": "T", "variants": []}),
            invalid_at(
                "id",
                "expected a positive integer id, got 6.42667041472714e+17",
            ),
        ),
        (
            json!({"id": 0, "title": "T", "variants": []}),
            invalid_at("id", "expected a positive integer id, got 0"),
        ),
        (
            json!({"id": -1, "title": "T", "variants": []}),
            invalid_at("id", "expected a positive integer id, got -1"),
        ),
        (
            json!({"id": "12a", "title": "T", "variants": []}),
            invalid_at("id", "expected a positive integer id, got \"12a\""),
        ),
        (
            json!({"id": " 12", "title": "T", "variants": []}),
            invalid_at("id", "expected a positive integer id, got \" 12\""),
        ),
        (
            json!({"id": 1, "title": "T", "updated_at": "soon", "variants": []}),
            invalid_at(
                "updated_at",
                "expected an ISO 8601 timestamp with offset, got \"soon\"",
            ),
        ),
        (
            json!({"id": 1, "title": "T", "created_at": 1640995200, "variants": []}),
            invalid_at(
                "created_at",
                "expected a timestamp string or null, got 1640995200",
            ),
        ),
        (
            json!({"id": 1, "title": "T", "variants": [variant(1), variant(2), variant(3), {"id": "abc"}]}),
            invalid_at(
                "variants[3].id",
                "expected a positive integer id, got \"abc\"",
            ),
        ),
        (
            json!({"id": 1, "title": "T", "variants": [{"sku": "A"}]}),
            missing_at("variants[0].id"),
        ),
        (
            json!({"id": 1, "title": "T", "variants": [7]}),
            invalid_at("variants[0]", "expected an object, got 7"),
        ),
        (
            json!({"id": 1, "title": "T", "variants": [{"id": 1, "sku": 123}]}),
            invalid_at("variants[0].sku", "expected a string or null, got 123"),
        ),
        (
            json!({"id": 1, "title": "T", "variants": [{"id": 1, "inventory_item_id": 1.5}]}),
            invalid_at(
                "variants[0].inventory_item_id",
                "expected a positive integer id, got 1.5",
            ),
        ),
        (
            json!({"id": 1, "title": "T", "variants": [{"id": 1, "product_id": false}]}),
            invalid_at(
                "variants[0].product_id",
                "expected a positive integer id, got false",
            ),
        ),
        (
            json!({"id": 1, "title": "T", "variants": [{"id": 1, "updated_at": "2021-12-31T19:00:00"}]}),
            invalid_at(
                "variants[0].updated_at",
                "expected an ISO 8601 timestamp with offset, got \"2021-12-31T19:00:00\"",
            ),
        ),
    ];
    for (body, expected) in cases {
        let err = parse_err(&body);
        assert_eq!(err, expected, "{body}");
        assert_eq!(err.path(), expected.path());
    }
    assert_eq!(
        invalid_at(
            "variants[3].id",
            "expected a positive integer id, got \"abc\""
        )
        .to_string(),
        "variants[3].id: expected a positive integer id, got \"abc\""
    );
    assert_eq!(
        missing_at("variants[0].id").to_string(),
        "variants[0].id: missing"
    );
}

#[test]
fn prices_stay_decimal_strings() {
    for (price, expected) in [
        (json!("19.99"), Some("19.99")),
        (json!("0"), Some("0")),
        (json!("1000000.00"), Some("1000000.00")),
        (json!(20), Some("20")),
        (json!(19.99), Some("19.99")),
        (json!(null), None),
    ] {
        let mut body = product(vec![variant(1)]);
        body["variants"][0]["price"] = price.clone();
        let p = upsert("products/create", &body);
        assert_eq!(p.variants[0].price.as_deref(), expected, "{price}");
    }
    for price in [
        json!(""),
        json!("abc"),
        json!("example string"),
        json!("-1.00"),
        json!("+1"),
        json!("1."),
        json!(".5"),
        json!("1,00"),
        json!("1.2.3"),
        json!(" 1.00"),
        json!("1e3"),
        json!(1e300),
        json!(-2),
        json!(true),
    ] {
        let mut body = product(vec![variant(1)]);
        body["variants"][0]["price"] = price.clone();
        let p = upsert("products/update", &body);
        assert_eq!(p.variants[0].price, None, "{price}");
        assert_eq!(p.variants[0].unreadable, [DescriptiveField::Price]);
        assert_eq!(
            p.unreadable,
            [UnreadableField {
                field: DescriptiveField::Price,
                path: "variants[0].price".into(),
                problem: format!(
                    "expected a decimal price such as \"19.99\", got {}",
                    describe_json(&price)
                ),
            }],
            "{price}"
        );
        assert_eq!(
            p.variants[0].sku.as_deref(),
            Some("SKU-1"),
            "the rest is read"
        );
    }
}

#[test]
fn unreadable_descriptive_fields_are_reported_not_fatal() {
    let body = json!({"id": 1, "title": null, "vendor": 5, "product_type": [],
        "body_html": {}, "status": false, "variants": [
            {"id": 11, "sku": "A", "inventory_item_id": 101, "title": 3,
             "barcode": 12345, "price": "example string", "position": -1},
            {"id": 12, "sku": "B", "position": 4294967296_u64}]});
    let p = upsert("products/create", &body);
    assert_eq!(p.title, None);
    assert_eq!(
        (p.vendor.as_deref(), p.product_type.as_deref()),
        (None, None)
    );
    let reported: Vec<(&str, &str)> = p
        .unreadable
        .iter()
        .map(|u| (u.path.as_str(), u.field.as_str()))
        .collect();
    assert_eq!(
        reported,
        [
            ("title", "product_title"),
            ("body_html", "body_html"),
            ("vendor", "vendor"),
            ("product_type", "product_type"),
            ("status", "status"),
            ("variants[0].title", "variant_title"),
            ("variants[0].barcode", "barcode"),
            ("variants[0].price", "price"),
            ("variants[0].position", "position"),
            ("variants[1].position", "position"),
        ]
    );
    assert_eq!(p.unreadable[0].problem, "expected a string, got null");
    assert_eq!(p.unreadable[2].problem, "expected a string or null, got 5");
    assert_eq!(
        p.unreadable[8].problem,
        "expected a non-negative integer, got -1"
    );
    // Identity fields are still read, and each variant knows its own unreadable fields.
    assert_eq!(p.variants[0].sku.as_deref(), Some("A"));
    assert_eq!(p.variants[0].inventory_item_id, Some(InventoryItemId(101)));
    assert_eq!(
        p.variants[0].unreadable,
        [
            DescriptiveField::VariantTitle,
            DescriptiveField::Barcode,
            DescriptiveField::Price,
            DescriptiveField::Position
        ]
    );
    assert_eq!(p.variants[1].unreadable, [DescriptiveField::Position]);
    // A missing title is unreadable too; identity fields stay strict.
    let p = upsert("products/create", &json!({"id": 1, "variants": []}));
    assert_eq!(p.unreadable[0].problem, "missing");
    assert_eq!(
        parse_err(&json!({"id": 1, "title": "T", "variants": [{"id": 1, "sku": 123}]})),
        invalid_at("variants[0].sku", "expected a string or null, got 123")
    );
}

#[test]
fn ids_as_numeric_strings() {
    let body = json!({"id": "788032119674292922", "title": "T", "variants": [
        {"id": "9007199254740993", "product_id": "788032119674292922", "inventory_item_id": "42"}
    ]});
    let p = upsert("products/create", &body);
    assert_eq!(p.id, ProductId(788032119674292922));
    assert_eq!(p.variants[0].id, VariantId(9_007_199_254_740_993));
    assert_eq!(
        p.variants[0].product_id,
        Some(ProductId(788032119674292922))
    );
    assert_eq!(p.variants[0].inventory_item_id, Some(InventoryItemId(42)));
}

#[test]
fn unknown_fields_are_ignored() {
    let mut body = product(vec![variant(1)]);
    body["metafields"] = json!([{"a": 1}]);
    body["variants"][0]["presentment_prices"] = json!({"x": null});
    body["has_variants_that_requires_components"] = json!(false);
    let p = upsert("products/create", &body);
    assert_eq!(p.variants.len(), 1);
}

#[test]
fn error_messages_escape_echoed_values() {
    let mut body = product(vec![variant(1)]);
    body["variants"][0]["id"] = json!(format!("evil\r\n{}", "x".repeat(500)));
    let message = parse_err(&body).to_string();
    assert!(
        !message.contains('\n') && !message.contains('\r'),
        "{message}"
    );
    assert!(
        message.starts_with("variants[0].id: expected a positive integer id, got \"evil\\r\\nxxx")
    );
    assert!(message.chars().count() < 150, "{message}");
}

#[test]
fn decimal_helper() {
    for ok in [
        "0",
        "1",
        "19.99",
        "0.001",
        "123456789012345678901234567890.5",
    ] {
        assert!(is_decimal(ok), "{ok}");
    }
    for bad in ["", ".", "1.", ".1", "-1", "1e3", "1.2.3", "١٢"] {
        assert!(!is_decimal(bad), "{bad}");
    }
}
