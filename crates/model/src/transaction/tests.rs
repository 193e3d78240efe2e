use super::*;
use serde_json::json;

fn base(type_name: &str) -> Value {
    let mut v = json!({
        "transaction_id": "t-1",
        "shop_domain": "acme.myshopify.com",
        "type": type_name,
        "sku": "20A642-XL",
        "warehouse": "MAIN",
        "occurred_at": "2026-11-26T14:03:11Z",
    });
    let extra = match type_name {
        "put" | "pull" => json!({"quantity": 5}),
        "cycle_count" => json!({"previous_quantity": 10, "counted_quantity": 8}),
        "move" => json!({"quantity": 3, "to_warehouse": "EAST"}),
        "pick" => json!({"quantity": 1, "order_source": "shopify"}),
        _ => json!({}),
    };
    for (k, val) in extra.as_object().expect("object") {
        v[k] = val.clone();
    }
    v
}

fn parse_value(v: &Value) -> Result<InventoryTransaction, TransactionError> {
    parse_transaction(&serde_json::to_vec(v).expect("serialize"))
}

fn with(mut v: Value, field: &str, value: Value) -> Value {
    v[field] = value;
    v
}

fn without(mut v: Value, field: &str) -> Value {
    v.as_object_mut().expect("object").remove(field);
    v
}

fn field_err(field: &'static str, problem: &str) -> TransactionError {
    TransactionError::Field {
        field,
        problem: problem.to_owned(),
    }
}

fn ts(s: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(s).expect("timestamp")
}

#[test]
fn schema_examples_parse() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../contract/wos-inventory-transaction.v1.schema.json"
    );
    let text = std::fs::read_to_string(path).expect("read the contract's schema");
    let schema: Value = serde_json::from_str(&text).expect("schema is JSON");
    let examples = schema["examples"].as_array().expect("examples");
    assert_eq!(examples.len(), 3);
    let parsed: Vec<_> = examples
        .iter()
        .map(|e| parse_value(e).expect("example parses"))
        .collect();
    assert_eq!(
        parsed[0],
        InventoryTransaction {
            transaction_id: "cc-2026-11-26-000173".into(),
            shop_domain: "acme.myshopify.com".into(),
            kind: TransactionKind::CycleCount {
                previous_quantity: 10,
                counted_quantity: 8
            },
            sku: "20A642-XL".into(),
            warehouse: "MAIN".into(),
            location: Some("A-01-03".into()),
            occurred_at: ts("2026-11-26T14:03:11Z"),
            user: Some("jdoe".into()),
        }
    );
    assert_eq!(parsed[1].kind, TransactionKind::Put { quantity: 24 });
    assert_eq!(parsed[1].user, None);
    assert_eq!(
        parsed[2].kind,
        TransactionKind::Pick {
            quantity: 1,
            order_source: "shopify".into(),
            order_id: Some("#1042".into())
        }
    );
}

#[test]
fn every_type_parses_to_its_kind() {
    let cases = [
        ("put", TransactionKind::Put { quantity: 5 }),
        ("pull", TransactionKind::Pull { quantity: 5 }),
        (
            "cycle_count",
            TransactionKind::CycleCount {
                previous_quantity: 10,
                counted_quantity: 8,
            },
        ),
        (
            "move",
            TransactionKind::Move {
                quantity: 3,
                to_warehouse: "EAST".into(),
                to_location: None,
            },
        ),
        (
            "pick",
            TransactionKind::Pick {
                quantity: 1,
                order_source: "shopify".into(),
                order_id: None,
            },
        ),
    ];
    for (type_name, kind) in cases {
        let tx = parse_value(&base(type_name)).expect(type_name);
        assert_eq!(tx.kind, kind);
        assert_eq!(tx.type_name(), type_name);
        assert_eq!(tx.kind.type_name(), type_name);
        assert_eq!(tx.transaction_id, "t-1");
        assert_eq!(tx.shop_domain, "acme.myshopify.com");
        assert_eq!(tx.sku, "20A642-XL");
        assert_eq!(tx.warehouse, "MAIN");
        assert_eq!(tx.location, None);
        assert_eq!(tx.occurred_at, ts("2026-11-26T14:03:11Z"));
    }
    assert_eq!(
        TransactionKind::TYPE_NAMES,
        ["put", "pull", "cycle_count", "move", "pick"]
    );
}

#[test]
fn optional_fields_are_kept() {
    let v = json!({
        "transaction_id": "mv-1",
        "shop_domain": "acme.myshopify.com",
        "type": "move",
        "sku": "S",
        "warehouse": "MAIN",
        "location": "",
        "quantity": 2,
        "to_warehouse": "EAST",
        "to_location": "B-1",
        "occurred_at": "2026-11-26T09:03:11.250-05:00",
        "user": "jdoe",
    });
    let tx = parse_value(&v).expect("valid");
    assert_eq!(tx.location.as_deref(), Some(""));
    assert_eq!(tx.user.as_deref(), Some("jdoe"));
    assert_eq!(
        tx.kind,
        TransactionKind::Move {
            quantity: 2,
            to_warehouse: "EAST".into(),
            to_location: Some("B-1".into())
        }
    );
    assert_eq!(tx.occurred_at.offset().local_minus_utc(), -5 * 3600);
    assert_eq!(tx.occurred_at, ts("2026-11-26T14:03:11.25Z"));
}

#[test]
fn inapplicable_and_unknown_fields_are_accepted_and_dropped() {
    let v = with(
        with(base("cycle_count"), "quantity", json!(7)),
        "order_source",
        json!("pos"),
    );
    let v = with(v, "extra", json!({"nested": [1, 2]}));
    let tx = parse_value(&v).expect("valid");
    assert_eq!(
        tx.kind,
        TransactionKind::CycleCount {
            previous_quantity: 10,
            counted_quantity: 8
        }
    );
}

#[test]
fn inapplicable_fields_are_still_type_checked() {
    let v = with(base("cycle_count"), "quantity", json!(0));
    assert_eq!(
        parse_value(&v),
        Err(field_err(
            "quantity",
            "must be an integer between 1 and 1000000000, got 0"
        ))
    );
    let v = with(base("put"), "to_warehouse", json!(""));
    assert_eq!(
        parse_value(&v),
        Err(field_err("to_warehouse", "must not be empty"))
    );
    let v = with(base("put"), "previous_quantity", json!(-1));
    assert_eq!(
        parse_value(&v).map_err(|e| e.field()),
        Err(Some("previous_quantity"))
    );
}

#[test]
fn body_level_errors() {
    assert_eq!(
        parse_transaction(b"\xff\xfe{}"),
        Err(TransactionError::NotUtf8 { offset: 0 })
    );
    assert_eq!(
        parse_transaction(b"{\"sku\": \"a\xc3\"}"),
        Err(TransactionError::NotUtf8 { offset: 10 })
    );
    for body in [
        &b""[..],
        b"{",
        b"{\"a\":}",
        b"nul",
        b"{} {}",
        b"\xef\xbb\xbf{}",
    ] {
        let err = parse_transaction(body).expect_err("not JSON");
        assert!(matches!(err, TransactionError::NotJson(_)), "{err:?}");
        assert!(err.to_string().starts_with("body is not JSON: "), "{err}");
    }
    for (body, found) in [
        ("[]", "array"),
        ("\"x\"", "string"),
        ("1", "integer"),
        ("1.5", "number"),
        ("null", "null"),
        ("true", "boolean"),
    ] {
        let err = parse_transaction(body.as_bytes()).expect_err(body);
        assert_eq!(err, TransactionError::NotObject { found });
        assert_eq!(
            err.to_string(),
            format!("body must be a JSON object, got {found}")
        );
        assert_eq!(err.field(), None);
    }
}

#[test]
fn always_required_fields() {
    for field in REQUIRED {
        for type_name in TransactionKind::TYPE_NAMES {
            let err = parse_value(&without(base(type_name), field)).expect_err(field);
            assert_eq!(err, field_err(field, "is required"));
            assert_eq!(err.to_string(), format!("field `{field}`: is required"));
        }
    }
    // Missing fields are reported before problems in present ones.
    let v = with(without(base("put"), "sku"), "quantity", json!(-1));
    assert_eq!(parse_value(&v), Err(field_err("sku", "is required")));
}

#[test]
fn conditional_requirements() {
    let cases: [(&str, &str); 8] = [
        ("put", "quantity"),
        ("pull", "quantity"),
        ("pick", "quantity"),
        ("pick", "order_source"),
        ("move", "quantity"),
        ("move", "to_warehouse"),
        ("cycle_count", "previous_quantity"),
        ("cycle_count", "counted_quantity"),
    ];
    for (type_name, field) in cases {
        let err = parse_value(&without(base(type_name), field)).expect_err(field);
        assert_eq!(
            err.to_string(),
            format!("field `{field}`: is required when type is `{type_name}`")
        );
        assert_eq!(err.field(), Some(field));
    }
    // Optional per-type fields really are optional.
    for (type_name, field) in [("move", "to_location"), ("pick", "order_id")] {
        assert!(parse_value(&without(base(type_name), field)).is_ok());
    }
}

#[test]
fn type_enum() {
    for bad in [
        json!("PUT"),
        json!("drop"),
        json!(""),
        json!(1),
        json!(null),
        json!(["put"]),
    ] {
        let err = parse_value(&with(base("put"), "type", bad.clone())).expect_err("bad type");
        assert_eq!(
            err,
            field_err(
                "type",
                &format!(
                    "must be one of put, pull, cycle_count, move, pick, got {}",
                    describe_json(&bad)
                )
            )
        );
    }
}

#[test]
fn integer_rules() {
    let quantity_fields: [(&'static str, &str, u32); 3] = [
        ("quantity", "put", 1),
        ("previous_quantity", "cycle_count", 0),
        ("counted_quantity", "cycle_count", 0),
    ];
    for (field, type_name, min) in quantity_fields {
        let problem =
            |got: &str| format!("must be an integer between {min} and 1000000000, got {got}");
        for ok in [u64::from(min), 1, 999, 1_000_000_000] {
            let tx = parse_value(&with(base(type_name), field, json!(ok))).expect("in range");
            let value = match tx.kind {
                TransactionKind::Put { quantity } => quantity,
                TransactionKind::CycleCount {
                    previous_quantity,
                    counted_quantity,
                } => {
                    if field == "previous_quantity" {
                        previous_quantity
                    } else {
                        counted_quantity
                    }
                }
                other => panic!("unexpected kind {other:?}"),
            };
            assert_eq!(u64::from(value), ok);
        }
        let mut bad = vec![
            (json!(1_000_000_001), "1000000001".to_owned()),
            (json!(u64::MAX), u64::MAX.to_string()),
            (json!(-3), "-3".to_owned()),
            (json!(i64::MIN), i64::MIN.to_string()),
            (json!(1.0), "1.0".to_owned()),
            (json!(2.5), "2.5".to_owned()),
            (json!("5"), "\"5\"".to_owned()),
            (json!(null), "null".to_owned()),
            (json!(true), "true".to_owned()),
            (json!([5]), "an array".to_owned()),
            (json!({"n": 5}), "an object".to_owned()),
        ];
        if min == 1 {
            bad.push((json!(0), "0".to_owned()));
        }
        for (value, shown) in bad {
            let err = parse_value(&with(base(type_name), field, value)).expect_err("out of range");
            assert_eq!(err, field_err(field, &problem(&shown)));
        }
    }
    // Exponent and float literals straight from the wire.
    for literal in ["1e2", "5.0", "100000000000000000000000"] {
        let body = format!(
            r#"{{"transaction_id":"t","shop_domain":"a.myshopify.com","type":"put","sku":"s","warehouse":"W","occurred_at":"2026-01-01T00:00:00Z","quantity":{literal}}}"#
        );
        let err = parse_transaction(body.as_bytes()).expect_err(literal);
        assert_eq!(err.field(), Some("quantity"), "{literal}");
    }
    assert_eq!(
        field_err(
            "quantity",
            "must be an integer between 1 and 1000000000, got -3"
        )
        .to_string(),
        "field `quantity`: must be an integer between 1 and 1000000000, got -3"
    );
}

#[test]
fn string_length_rules_count_characters() {
    // (field, type that makes it meaningful, min, max)
    let string_fields: [(&'static str, &str, usize, usize); 10] = [
        ("transaction_id", "put", 1, 128),
        ("sku", "put", 1, 255),
        ("warehouse", "put", 1, 64),
        ("location", "put", 0, 64),
        ("to_warehouse", "move", 1, 64),
        ("to_location", "move", 0, 64),
        ("order_source", "pick", 1, 64),
        ("order_id", "pick", 0, 128),
        ("user", "put", 0, 128),
        // Also checked on a type it does not apply to.
        ("order_id", "put", 0, 128),
    ];
    for (field, type_name, min, max) in string_fields {
        // Multi-byte characters: the limit is in characters, not bytes.
        let at_max = "é".repeat(max);
        assert!(
            parse_value(&with(base(type_name), field, json!(at_max))).is_ok(),
            "{field} at max"
        );
        let over = "é".repeat(max + 1);
        assert_eq!(
            parse_value(&with(base(type_name), field, json!(over))),
            Err(field_err(
                field,
                &format!("must be at most {max} characters, got {}", max + 1)
            )),
        );
        let empty = parse_value(&with(base(type_name), field, json!("")));
        if min == 0 {
            assert!(empty.is_ok(), "{field} may be empty");
        } else {
            assert_eq!(empty, Err(field_err(field, "must not be empty")));
        }
        for (value, shown) in [
            (json!(12), "12"),
            (json!(null), "null"),
            (json!(false), "false"),
            (json!(["a"]), "an array"),
        ] {
            assert_eq!(
                parse_value(&with(base(type_name), field, value)),
                Err(field_err(field, &format!("must be a string, got {shown}"))),
            );
        }
    }
    // Characters outside the BMP count once each.
    let emoji = "😀".repeat(64);
    assert!(parse_value(&with(base("put"), "warehouse", json!(emoji))).is_ok());
}

#[test]
fn control_characters_are_refused_in_every_string() {
    let fields = [
        ("transaction_id", "put"),
        ("sku", "put"),
        ("warehouse", "put"),
        ("location", "put"),
        ("to_warehouse", "move"),
        ("to_location", "move"),
        ("order_source", "pick"),
        ("order_id", "pick"),
        ("user", "put"),
    ];
    for (field, type_name) in fields {
        for (c, code) in [
            ('\u{0}', "0000"),
            ('\n', "000A"),
            ('\u{1f}', "001F"),
            ('\u{7f}', "007F"),
        ] {
            let value = format!("ab{c}c");
            assert_eq!(
                parse_value(&with(base(type_name), field, json!(value))),
                Err(field_err(
                    field,
                    &format!("must not contain control characters (found U+{code} at character 3)")
                )),
            );
        }
        // Characters just outside the forbidden ranges pass.
        for ok in ["a b", "\u{80}", "\u{2028}", "~"] {
            assert!(
                parse_value(&with(base(type_name), field, json!(ok))).is_ok(),
                "{ok:?}"
            );
        }
    }
    // The domain and the timestamp refuse them through their own formats.
    let v = with(base("put"), "shop_domain", json!("acme\n.myshopify.com"));
    assert_eq!(
        parse_value(&v).map_err(|e| e.field()),
        Err(Some("shop_domain"))
    );
    let v = with(base("put"), "occurred_at", json!("2026-11-26T14:03:11Z\n"));
    assert_eq!(
        parse_value(&v).map_err(|e| e.field()),
        Err(Some("occurred_at"))
    );
}

#[test]
fn shop_domain_rule() {
    for ok in ["acme.myshopify.com", "0-a.myshopify.com"] {
        assert!(parse_value(&with(base("put"), "shop_domain", json!(ok))).is_ok());
    }
    for bad in [
        "Acme.myshopify.com",
        "acme.com",
        "",
        "-a.myshopify.com",
        "acme.myshopify.com ",
    ] {
        assert_eq!(
            parse_value(&with(base("put"), "shop_domain", json!(bad))),
            Err(field_err(
                "shop_domain",
                &format!(
                    r"must match `^[a-z0-9][a-z0-9-]*\.myshopify\.com$`, got {}",
                    describe_json(&json!(bad))
                )
            )),
        );
    }
    assert_eq!(
        parse_value(&with(base("put"), "shop_domain", json!(5))),
        Err(field_err("shop_domain", "must be a string, got 5"))
    );
}

#[test]
fn occurred_at_rule() {
    for (ok, utc) in [
        ("2026-11-26T14:03:11Z", "2026-11-26T14:03:11Z"),
        ("2026-11-26T14:03:11z", "2026-11-26T14:03:11Z"),
        ("2026-11-26t14:03:11+00:00", "2026-11-26T14:03:11Z"),
        ("2026-11-26T09:03:11-05:00", "2026-11-26T14:03:11Z"),
        (
            "2026-11-26T14:03:11.123456789Z",
            "2026-11-26T14:03:11.123456789Z",
        ),
        ("2026-11-26 14:03:11Z", "2026-11-26T14:03:11Z"),
    ] {
        let tx = parse_value(&with(base("put"), "occurred_at", json!(ok))).expect(ok);
        assert_eq!(tx.occurred_at, ts(utc), "{ok}");
    }
    for bad in [
        "2026-11-26",
        "2026-11-26T14:03:11",
        "2026-11-26T14:03Z",
        "2026-13-01T00:00:00Z",
        "2026-02-30T00:00:00Z",
        "26-11-26T14:03:11Z",
        "2026-11-26T14:03:11+0500",
        "1764165791",
        "",
    ] {
        assert_eq!(
            parse_value(&with(base("put"), "occurred_at", json!(bad))),
            Err(field_err(
                "occurred_at",
                &format!(
                    "must be an RFC 3339 date-time such as 2026-11-26T14:03:11Z, got {}",
                    describe_json(&json!(bad))
                )
            )),
            "{bad}"
        );
    }
    assert_eq!(
        parse_value(&with(base("put"), "occurred_at", json!(1764165791))),
        Err(field_err("occurred_at", "must be a string, got 1764165791"))
    );
}

#[test]
fn errors_are_one_line_and_bounded() {
    let long_evil = format!("{}\n{}", "x".repeat(10), "y".repeat(10_000));
    let v = with(base("put"), "shop_domain", json!(long_evil));
    let message = parse_value(&v).expect_err("bad domain").to_string();
    assert!(!message.contains('\n'), "{message}");
    assert!(message.chars().count() < 200, "{message}");
    assert!(message.contains("xxxxxxxxxx\\nyyy"), "{message}");
    assert!(message.ends_with("…\""), "{message}");
}

#[test]
fn fields_are_checked_in_schema_order() {
    // Both `sku` and `user` are wrong: `sku` comes first in the schema.
    let v = with(with(base("put"), "user", json!(1)), "sku", json!(""));
    assert_eq!(parse_value(&v), Err(field_err("sku", "must not be empty")));
    // A type error beats a per-type requirement.
    let v = with(without(base("move"), "to_warehouse"), "user", json!(1));
    assert_eq!(parse_value(&v).map_err(|e| e.field()), Err(Some("user")));
}

#[test]
fn duplicate_keys_keep_the_last() {
    let body = br#"{"transaction_id":"t","shop_domain":"a.myshopify.com","type":"put","sku":"s","warehouse":"W","occurred_at":"2026-01-01T00:00:00Z","quantity":1,"quantity":2}"#;
    let tx = parse_transaction(body).expect("valid");
    assert_eq!(tx.kind, TransactionKind::Put { quantity: 2 });
}

#[test]
fn serialize_round_trips_every_shape() {
    let full = |kind: TransactionKind| InventoryTransaction {
        transaction_id: "t-9".into(),
        shop_domain: "acme.myshopify.com".into(),
        kind,
        sku: "S\"Q".into(),
        warehouse: "MAIN".into(),
        location: Some("A-1".into()),
        occurred_at: ts("2026-11-26T09:03:11.5-05:00"),
        user: Some("jdoe".into()),
    };
    let kinds = [
        TransactionKind::Put { quantity: 1 },
        TransactionKind::Pull {
            quantity: MAX_QUANTITY,
        },
        TransactionKind::CycleCount {
            previous_quantity: 0,
            counted_quantity: 7,
        },
        TransactionKind::Move {
            quantity: 2,
            to_warehouse: "EAST".into(),
            to_location: Some("B".into()),
        },
        TransactionKind::Move {
            quantity: 2,
            to_warehouse: "EAST".into(),
            to_location: None,
        },
        TransactionKind::Pick {
            quantity: 3,
            order_source: "pos".into(),
            order_id: Some("#1".into()),
        },
        TransactionKind::Pick {
            quantity: 3,
            order_source: "shopify".into(),
            order_id: None,
        },
    ];
    for kind in kinds {
        let mut tx = full(kind);
        let json = serde_json::to_vec(&tx).expect("serialize");
        assert_eq!(parse_transaction(&json), Ok(tx.clone()));
        tx.location = None;
        tx.user = None;
        let json = serde_json::to_vec(&tx).expect("serialize");
        assert_eq!(parse_transaction(&json), Ok(tx));
    }
}

#[test]
fn serialize_shape_is_the_contracts() {
    let tx = parse_value(&base("cycle_count")).expect("valid");
    assert_eq!(
        serde_json::to_value(&tx).expect("serialize"),
        json!({
            "transaction_id": "t-1",
            "shop_domain": "acme.myshopify.com",
            "type": "cycle_count",
            "sku": "20A642-XL",
            "warehouse": "MAIN",
            "previous_quantity": 10,
            "counted_quantity": 8,
            "occurred_at": "2026-11-26T14:03:11Z",
        })
    );
    let tx = parse_value(&with(
        base("put"),
        "occurred_at",
        json!("2026-11-26T09:03:11.250-05:00"),
    ))
    .expect("valid");
    assert_eq!(
        serde_json::to_value(&tx).expect("serialize")["occurred_at"],
        json!("2026-11-26T09:03:11.250-05:00")
    );
}
