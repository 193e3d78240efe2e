use super::section::toml_key;
use super::*;
use crate::validate::MESSAGE_MAX_CHARS;

const VALID: &str = r#"
    [[shops]]
    domain = "acme.myshopify.com"
    api_version = "2026-07"
    admin_base_url = "https://acme.myshopify.com"
    access_token_env = "ACME_SHOPIFY_TOKEN"
    webhook_secret_env = "ACME_WEBHOOK_SECRET"
    previous_webhook_secret_env = "ACME_WEBHOOK_SECRET_OLD"

    [shops.locations]
    MAIN = 68845568042
    EAST = 68845600810

    [shops.fields]
    barcode = "shopify_initial"
"#;

fn doc(text: &str) -> toml::Table {
    text.parse::<toml::Table>().expect("valid TOML")
}

fn parse(text: &str) -> Result<Vec<ShopSettings>, ConfigError> {
    parse_shops(&doc(text))
}

/// A minimal valid shop with `extra` lines appended to its table.
fn shop_with(extra: &str) -> String {
    format!(
        "[[shops]]\ndomain = \"acme.myshopify.com\"\napi_version = \"2026-04\"\n\
         admin_base_url = \"https://acme.myshopify.com\"\naccess_token_env = \"TOKEN\"\n{extra}"
    )
}

/// The minimal shop with one key's line replaced (or removed when `line` is empty).
fn shop_replacing(key: &str, line: &str) -> String {
    shop_with("")
        .lines()
        .map(|l| {
            if l.starts_with(&format!("{key} =")) {
                line
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn refusal(text: &str) -> ConfigError {
    parse(text).expect_err("config should be refused")
}

fn err(key: &str, reason: &str) -> ConfigError {
    ConfigError::new(key, reason)
}

#[test]
fn contracts_example_parses() {
    let contract = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../contract/README.md"
    ))
    .expect("read contract/README.md");
    let example = contract
        .split("```toml")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a toml block in contract/README.md");
    let from_contract = parse(example).expect("the contract's example is valid");
    assert_eq!(from_contract, parse(VALID).expect("valid"));
    let shop = &from_contract[0];
    assert_eq!(
        shop,
        &ShopSettings {
            domain: "acme.myshopify.com".into(),
            api_version: "2026-07".into(),
            admin_base_url: "https://acme.myshopify.com".into(),
            access_token_env: "ACME_SHOPIFY_TOKEN".into(),
            webhook_secret_env: Some("ACME_WEBHOOK_SECRET".into()),
            previous_webhook_secret_env: Some("ACME_WEBHOOK_SECRET_OLD".into()),
            locations: LocationMap::from([
                ("MAIN".into(), LocationId(68845568042)),
                ("EAST".into(), LocationId(68845600810)),
            ]),
            fields: FieldPolicies::default().with(ItemField::Barcode, FieldPolicy::ShopifyInitial),
        }
    );
    assert_eq!(
        shop.graphql_url(),
        "https://acme.myshopify.com/admin/api/2026-07/graphql.json"
    );
    assert_eq!(shop.location_for("MAIN"), Some(LocationId(68845568042)));
    assert_eq!(shop.location_for("main"), None);
    assert_eq!(
        shop.fields.policy(ItemField::Barcode),
        FieldPolicy::ShopifyInitial
    );
    assert_eq!(shop.fields.policy(ItemField::Price), FieldPolicy::Shopify);
}

#[test]
fn minimal_shop_and_defaults() {
    let shops = parse(&shop_with("")).expect("valid");
    assert_eq!(
        shops,
        vec![ShopSettings {
            domain: "acme.myshopify.com".into(),
            api_version: "2026-04".into(),
            admin_base_url: "https://acme.myshopify.com".into(),
            access_token_env: "TOKEN".into(),
            webhook_secret_env: None,
            previous_webhook_secret_env: None,
            locations: LocationMap::new(),
            fields: FieldPolicies::default(),
        }]
    );
    for field in ItemField::ALL {
        assert_eq!(shops[0].fields.policy(field), FieldPolicy::Shopify);
    }
}

#[test]
fn no_shops_is_an_empty_list_and_other_top_level_keys_are_ignored() {
    assert_eq!(parse(""), Ok(vec![]));
    assert_eq!(parse("shops = []"), Ok(vec![]));
    let text = format!(
        "amqp_url = \"amqp://x\"\n[database]\nurl = \"postgres://x\"\n{}",
        shop_with("")
    );
    assert_eq!(parse(&text).map(|s| s.len()), Ok(1));
}

#[test]
fn several_shops_keep_their_order() {
    let text = format!(
        "{}\n{}",
        shop_with(""),
        shop_with("").replace("acme.myshopify.com\"\n", "beta.myshopify.com\"\n")
    );
    let shops = parse(&text).expect("valid");
    let domains: Vec<_> = shops.iter().map(|s| s.domain.as_str()).collect();
    assert_eq!(domains, ["acme.myshopify.com", "beta.myshopify.com"]);
}

#[test]
fn shops_must_be_an_array_of_tables() {
    assert_eq!(
        refusal("shops = \"acme\""),
        err(
            "shops",
            "invalid type: string \"acme\", expected an array of tables ([[shops]])"
        )
    );
    assert_eq!(
        refusal("[shops]\ndomain = \"acme.myshopify.com\""),
        err(
            "shops",
            "invalid type: map, expected an array of tables ([[shops]])"
        )
    );
    assert_eq!(
        refusal("shops = [1]"),
        err(
            "shops[0]",
            "invalid type: integer `1`, expected a [[shops]] table"
        )
    );
}

#[test]
fn required_keys() {
    for key in [
        "domain",
        "api_version",
        "admin_base_url",
        "access_token_env",
    ] {
        assert_eq!(
            refusal(&shop_replacing(key, "")),
            err(&format!("shops[0].{key}"), "is required"),
            "{key}"
        );
    }
}

#[test]
fn string_keys_must_be_strings() {
    for key in [
        "domain",
        "api_version",
        "admin_base_url",
        "access_token_env",
        "webhook_secret_env",
        "previous_webhook_secret_env",
    ] {
        let text =
            shop_replacing(key, "").replace("[[shops]]\n", &format!("[[shops]]\n{key} = 5\n"));
        assert_eq!(
            refusal(&text),
            err(
                &format!("shops[0].{key}"),
                "invalid type: integer `5`, expected a string"
            ),
            "{key}"
        );
    }
}

#[test]
fn unknown_shop_keys_are_refused() {
    let expected = |name: &str| {
        format!(
            "unknown field `{name}`, expected one of `domain`, `api_version`, `admin_base_url`, \
             `access_token_env`, `webhook_secret_env`, `previous_webhook_secret_env`, \
             `locations`, `fields`"
        )
    };
    for (line, key, name) in [
        (
            "webhook_secret = \"X\"",
            "shops[0].webhook_secret",
            "webhook_secret",
        ),
        ("location = {}", "shops[0].location", "location"),
        ("Domain = \"x\"", "shops[0].Domain", "Domain"),
        ("\"odd key\" = 1", "shops[0].\"odd key\"", "odd key"),
        // The key is repeated in the reason as it is in the file: on one line there too.
        ("\"a\\nb\" = 1", "shops[0].\"a\\nb\"", "a\\nb"),
    ] {
        assert_eq!(
            refusal(&shop_with(line)),
            err(key, &expected(name)),
            "{line}"
        );
    }
}

#[test]
fn domain_rules() {
    for bad in [
        "Acme.myshopify.com",
        "acme.com",
        "",
        "acme.myshopify.com/",
        "https://acme.myshopify.com",
    ] {
        let text = shop_replacing("domain", &format!("domain = {bad:?}"));
        assert_eq!(
            refusal(&text),
            err(
                "shops[0].domain",
                &format!(
                    r"must match `^[a-z0-9][a-z0-9-]*\.myshopify\.com$` (lowercase), got {}",
                    quote_untrusted(bad)
                )
            ),
            "{bad}"
        );
    }
}

#[test]
fn duplicate_domains_are_refused() {
    let text = format!(
        "{}\n{}\n{}",
        shop_with(""),
        shop_with("").replace("acme.", "beta."),
        shop_with("")
    );
    assert_eq!(
        refusal(&text),
        err(
            "shops[2].domain",
            "duplicate shop domain \"acme.myshopify.com\" (already configured in shops[0])"
        )
    );
}

#[test]
fn api_version_rules() {
    for ok in ["2026-04", "2026-07", "2026-10", "2027-01", "2099-04"] {
        let text = shop_replacing("api_version", &format!("api_version = {ok:?}"));
        assert_eq!(
            parse(&text).map(|s| s[0].api_version.clone()),
            Ok(ok.to_owned())
        );
    }
    let cases = [
        ("2026-01", "must be 2026-04 or later, got \"2026-01\""),
        ("2025-10", "must be 2026-04 or later, got \"2025-10\""),
        ("1999-04", "must be 2026-04 or later, got \"1999-04\""),
        (
            "2026-05",
            "Shopify API versions are quarterly (YYYY-01, -04, -07 or -10), got \"2026-05\"",
        ),
        (
            "2026-00",
            "Shopify API versions are quarterly (YYYY-01, -04, -07 or -10), got \"2026-00\"",
        ),
        (
            "2026-13",
            "Shopify API versions are quarterly (YYYY-01, -04, -07 or -10), got \"2026-13\"",
        ),
        (
            "unstable",
            "\"unstable\" is refused: it changes without notice; pin a release such as 2026-04 or later",
        ),
    ];
    for (bad, reason) in cases {
        let text = shop_replacing("api_version", &format!("api_version = {bad:?}"));
        assert_eq!(refusal(&text), err("shops[0].api_version", reason), "{bad}");
    }
    for bad in [
        "2026-4",
        "26-04",
        "2026/04",
        "2026-04-01",
        "v2026-04",
        "",
        " 2026-04",
        "２０２６-04",
        "+026-04",
    ] {
        let text = shop_replacing("api_version", &format!("api_version = {bad:?}"));
        assert_eq!(
            refusal(&text),
            err(
                "shops[0].api_version",
                &format!(
                    "must be a Shopify API version YYYY-MM such as 2026-04, got {}",
                    quote_untrusted(bad)
                )
            ),
            "{bad}"
        );
    }
}

#[test]
fn admin_base_url_rules() {
    for (input, normalized) in [
        ("https://acme.myshopify.com", "https://acme.myshopify.com"),
        ("https://acme.myshopify.com/", "https://acme.myshopify.com"),
        ("HTTPS://acme.myshopify.com", "https://acme.myshopify.com"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://localhost:65535/", "http://localhost:65535"),
        ("http://127.1.2.3", "http://127.1.2.3"),
        ("https://sandbox", "https://sandbox"),
        ("http://[::1]:8080", "http://[::1]:8080"),
        ("http://[::1]", "http://[::1]"),
    ] {
        let text = shop_replacing("admin_base_url", &format!("admin_base_url = {input:?}"));
        let shops = parse(&text).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(shops[0].admin_base_url, normalized);
    }
    for (bad, why) in [
        ("acme.myshopify.com", "(missing scheme)"),
        ("ftp://acme.myshopify.com", "(scheme must be http or https)"),
        (
            "https://acme.myshopify.com/admin",
            "with no path, query or fragment",
        ),
        (
            "https://acme.myshopify.com//",
            "with no path, query or fragment",
        ),
        (
            "https://acme.myshopify.com?x=1",
            "with no path, query or fragment",
        ),
        (
            "https://acme.myshopify.com#top",
            "with no path, query or fragment",
        ),
        ("https://user:pw@acme.myshopify.com", "with no credentials"),
        ("https://", "(invalid host)"),
        ("https:///", "(invalid host)"),
        ("https://acme .com", "(invalid host)"),
        ("https://acme_shop.com", "(invalid host)"),
        ("http://host:", "(invalid port)"),
        ("http://host:0", "(invalid port)"),
        ("http://host:65536", "(invalid port)"),
        ("http://host:80a", "(invalid port)"),
        ("http://:8080", "(invalid host)"),
        ("http://[::1", "(invalid IPv6 address)"),
        ("http://[]:80", "(invalid IPv6 address)"),
        ("http://[::1]x", "(invalid IPv6 address)"),
        ("http://[::1]:", "(invalid port)"),
        (
            "http://acme.myshopify.com",
            "with https:// except on loopback (the access token must not travel in plaintext)",
        ),
        (
            "http://sandbox:9470",
            "with https:// except on loopback (the access token must not travel in plaintext)",
        ),
        (
            "http://10.0.0.7",
            "with https:// except on loopback (the access token must not travel in plaintext)",
        ),
        (
            "http://[::2]",
            "with https:// except on loopback (the access token must not travel in plaintext)",
        ),
    ] {
        let text = shop_replacing("admin_base_url", &format!("admin_base_url = {bad:?}"));
        assert_eq!(
            refusal(&text),
            err(
                "shops[0].admin_base_url",
                &format!(
                    "must be http(s)://host[:port] {why}, got {}",
                    quote_untrusted(bad)
                )
            ),
            "{bad}"
        );
    }
}

#[test]
fn env_var_name_rules() {
    for key in ["access_token_env", "webhook_secret_env"] {
        let replace = |value: &str| {
            let text = shop_replacing(key, "");
            format!("{text}\n{key} = {value:?}")
        };
        for ok in ["TOKEN", "acme_token", "_X1"] {
            assert!(parse(&replace(ok)).is_ok(), "{key} = {ok}");
        }
        for bad in [
            "",
            "1TOKEN",
            "ACME-TOKEN",
            "ACME TOKEN",
            "$TOKEN",
            "TOKEN\n",
        ] {
            assert_eq!(
                refusal(&replace(bad)),
                err(
                    &format!("shops[0].{key}"),
                    &format!(
                        "must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*), got {}",
                        quote_untrusted(bad)
                    )
                ),
                "{key} = {bad:?}"
            );
        }
        // A secret pasted where its variable's name belongs is refused and not echoed.
        let secret = "shpat_0123456789abcdef0123456789abcdef";
        let e = refusal(&replace(secret));
        assert_eq!(e.key, format!("shops[0].{key}"));
        assert!(
            e.reason.starts_with("looks like a Shopify secret itself"),
            "{e}"
        );
        assert!(!e.to_string().contains("0123456789"), "{e}");
    }
}

#[test]
fn previous_webhook_secret_rules() {
    assert_eq!(
        refusal(&shop_with("previous_webhook_secret_env = \"OLD\"")),
        err(
            "shops[0].previous_webhook_secret_env",
            "needs webhook_secret_env: the previous secret only complements the current one"
        )
    );
    assert_eq!(
        refusal(&shop_with(
            "webhook_secret_env = \"SECRET\"\nprevious_webhook_secret_env = \"SECRET\""
        )),
        err(
            "shops[0].previous_webhook_secret_env",
            "names the same variable as webhook_secret_env"
        )
    );
    assert_eq!(
        refusal(&shop_with(
            "webhook_secret_env = \"SECRET\"\nprevious_webhook_secret_env = \"9OLD\""
        ))
        .key,
        "shops[0].previous_webhook_secret_env"
    );
    let shops = parse(&shop_with(
        "webhook_secret_env = \"SECRET\"\nprevious_webhook_secret_env = \"OLD\"",
    ))
    .expect("valid");
    assert_eq!(shops[0].previous_webhook_secret_env.as_deref(), Some("OLD"));
}

#[test]
fn location_rules() {
    let ok = parse(&shop_with(
        "[shops.locations]\nMAIN = 1\n\"bay 7\" = 9223372036854775807\nANNEX = 1\n\"é\" = 2",
    ))
    .expect("valid");
    assert_eq!(
        ok[0].locations,
        LocationMap::from([
            ("MAIN".into(), LocationId(1)),
            ("ANNEX".into(), LocationId(1)),
            ("bay 7".into(), LocationId(i64::MAX as u64)),
            ("é".into(), LocationId(2)),
        ])
    );
    let long = "W".repeat(MAX_WAREHOUSE_CODE_CHARS);
    assert!(parse(&shop_with(&format!("[shops.locations]\n{long} = 1"))).is_ok());

    let cases = [
        (
            "MAIN = -5",
            "shops[0].locations.MAIN",
            "location id must be a positive integer, got -5",
        ),
        (
            "MAIN = 0",
            "shops[0].locations.MAIN",
            "location id must be a positive integer, got 0",
        ),
        (
            "MAIN = \"68845568042\"",
            "shops[0].locations.MAIN",
            "location id must be a positive integer, got \"68845568042\"",
        ),
        (
            "MAIN = \"gid://shopify/Location/1\"",
            "shops[0].locations.MAIN",
            "location id must be a positive integer, got \"gid://shopify/Location/1\"",
        ),
        (
            "MAIN = 1.5",
            "shops[0].locations.MAIN",
            "location id must be a positive integer, got 1.5",
        ),
        (
            "MAIN = true",
            "shops[0].locations.MAIN",
            "location id must be a positive integer, got true",
        ),
        (
            "MAIN = [1]",
            "shops[0].locations.MAIN",
            "location id must be a positive integer, got an array",
        ),
        (
            "MAIN = { id = 1 }",
            "shops[0].locations.MAIN",
            "location id must be a positive integer, got a table",
        ),
        (
            "\"\" = 1",
            "shops[0].locations.\"\"",
            "warehouse code must not be empty",
        ),
        (
            "\"A\\tB\" = 1",
            "shops[0].locations.\"A\\tB\"",
            "warehouse code must not contain control characters (found U+0009 at character 2)",
        ),
        (
            "\"A\\u007f\" = 1",
            "shops[0].locations.\"A\\u{7f}\"",
            "warehouse code must not contain control characters (found U+007F at character 2)",
        ),
    ];
    for (line, key, reason) in cases {
        assert_eq!(
            refusal(&shop_with(&format!("[shops.locations]\n{line}"))),
            err(key, reason),
            "{line}"
        );
    }
    let too_long = "W".repeat(MAX_WAREHOUSE_CODE_CHARS + 1);
    assert_eq!(
        refusal(&shop_with(&format!("[shops.locations]\n{too_long} = 1"))),
        err(
            &format!("shops[0].locations.{too_long}"),
            "warehouse code must be at most 64 characters (the transaction schema's limit), got 65"
        )
    );
    assert_eq!(
        refusal(&shop_with("locations = [1]")),
        err(
            "shops[0].locations",
            "invalid type: sequence, expected a map"
        )
    );
}

#[test]
fn field_policy_rules() {
    let ok = parse(&shop_with(
        "[shops.fields]\ndescription = \"wos\"\nbarcode = \"shopify_initial\"\nprice = \"shopify\"\n\
         vendor = \"wos\"\nproduct_type = \"shopify_initial\"",
    ))
    .expect("valid");
    let fields = &ok[0].fields;
    assert_eq!(fields.policy(ItemField::Description), FieldPolicy::Wos);
    assert_eq!(
        fields.policy(ItemField::Barcode),
        FieldPolicy::ShopifyInitial
    );
    assert_eq!(fields.policy(ItemField::Price), FieldPolicy::Shopify);
    assert_eq!(fields.policy(ItemField::Vendor), FieldPolicy::Wos);
    assert_eq!(
        fields.policy(ItemField::ProductType),
        FieldPolicy::ShopifyInitial
    );
    assert_eq!(fields.configured().count(), 5);
    assert_eq!(
        fields.mapping(),
        FieldPolicy::Shopify,
        "the mapping rules by default"
    );
    for policy in FieldPolicy::ALL {
        let pinned = parse(&shop_with(&format!(
            "[shops.fields]\ninventory_item_id = \"{policy}\""
        )))
        .expect("inventory_item_id takes a field policy");
        assert_eq!(pinned[0].fields.mapping(), policy);
        assert_eq!(pinned[0].fields.configured().count(), 0);
    }

    let bad_value = |got: &str| {
        format!("field policy must be one of \"shopify\", \"wos\", \"shopify_initial\", got {got}")
    };
    let cases = [
        (
            "custom_fields = \"shopify\"",
            "shops[0].fields.custom_fields",
            "custom_fields is never written from Shopify".to_owned(),
        ),
        (
            "title = \"wos\"",
            "shops[0].fields.title",
            "unknown item field (expected one of \"description\", \"barcode\", \"price\", \
             \"vendor\", \"product_type\", \"inventory_item_id\")"
                .to_owned(),
        ),
        (
            "Barcode = \"wos\"",
            "shops[0].fields.Barcode",
            "unknown item field (expected one of \"description\", \"barcode\", \"price\", \
             \"vendor\", \"product_type\", \"inventory_item_id\")"
                .to_owned(),
        ),
        (
            "barcode = \"WOS\"",
            "shops[0].fields.barcode",
            bad_value("\"WOS\""),
        ),
        (
            "barcode = \"never\"",
            "shops[0].fields.barcode",
            bad_value("\"never\""),
        ),
        (
            "barcode = \"\"",
            "shops[0].fields.barcode",
            bad_value("\"\""),
        ),
        ("barcode = 1", "shops[0].fields.barcode", bad_value("1")),
        (
            "barcode = false",
            "shops[0].fields.barcode",
            bad_value("false"),
        ),
    ];
    for (line, key, reason) in cases {
        assert_eq!(
            refusal(&shop_with(&format!("[shops.fields]\n{line}"))),
            err(key, &reason),
            "{line}"
        );
    }
    assert_eq!(
        refusal(&shop_with("[shops.fields]\ninventory_item_id = \"never\"")),
        err("shops[0].fields.inventory_item_id", &bad_value("\"never\""))
    );
    assert_eq!(
        refusal(&shop_with("fields = \"wos\"")),
        err(
            "shops[0].fields",
            "invalid type: string \"wos\", expected a map"
        )
    );
}

#[test]
fn errors_name_the_right_shop() {
    let text = format!(
        "{}\n{}",
        shop_with(""),
        shop_with("[shops.locations]\nMAIN = -5").replace("acme.", "beta.")
    );
    let e = refusal(&text);
    assert_eq!(
        e,
        err(
            "shops[1].locations.MAIN",
            "location id must be a positive integer, got -5"
        )
    );
    assert_eq!(
        e.to_string(),
        "`shops[1].locations.MAIN`: location id must be a positive integer, got -5"
    );
}

#[test]
fn field_policy_semantics() {
    assert!(FieldPolicy::Shopify.shopify_may_write(true));
    assert!(FieldPolicy::Shopify.shopify_may_write(false));
    assert!(!FieldPolicy::Wos.shopify_may_write(true));
    assert!(!FieldPolicy::Wos.shopify_may_write(false));
    assert!(FieldPolicy::ShopifyInitial.shopify_may_write(true));
    assert!(!FieldPolicy::ShopifyInitial.shopify_may_write(false));
    assert_eq!(FieldPolicy::default(), FieldPolicy::Shopify);
}

#[test]
fn names_round_trip() {
    for (policy, name) in [
        (FieldPolicy::Shopify, "shopify"),
        (FieldPolicy::Wos, "wos"),
        (FieldPolicy::ShopifyInitial, "shopify_initial"),
    ] {
        assert_eq!(policy.as_str(), name);
        assert_eq!(policy.to_string(), name);
        assert_eq!(FieldPolicy::parse(name), Some(policy));
        assert_eq!(
            serde_json::to_value(policy).expect("ser"),
            serde_json::json!(name)
        );
    }
    for (field, name) in [
        (ItemField::Description, "description"),
        (ItemField::Barcode, "barcode"),
        (ItemField::Price, "price"),
        (ItemField::Vendor, "vendor"),
        (ItemField::ProductType, "product_type"),
    ] {
        assert_eq!(field.as_str(), name);
        assert_eq!(field.to_string(), name);
        assert_eq!(ItemField::parse(name), Some(field));
        assert_eq!(
            serde_json::to_value(field).expect("ser"),
            serde_json::json!(name)
        );
    }
    assert_eq!(ItemField::parse("custom_fields"), None);
    assert_eq!(FieldPolicy::parse("Shopify"), None);
}

#[test]
fn toml_keys_in_paths() {
    assert_eq!(toml_key("MAIN"), "MAIN");
    assert_eq!(toml_key("main-2_b"), "main-2_b");
    assert_eq!(toml_key("A.B"), "\"A.B\"");
    assert_eq!(toml_key(""), "\"\"");
    assert_eq!(toml_key("a\"b"), "\"a\\\"b\"");
}

#[test]
fn shop_directory() {
    let shops = parse(&format!(
        "{}\n{}",
        shop_with(""),
        shop_with("").replace("acme.", "beta.")
    ))
    .expect("valid");
    let directory = ShopDirectory::new(shops.clone()).expect("unique");
    assert_eq!(directory.len(), 2);
    assert!(!directory.is_empty());
    assert_eq!(directory.get("beta.myshopify.com"), Some(&shops[1]));
    assert_eq!(directory.get("acme.myshopify.com"), Some(&shops[0]));
    assert_eq!(directory.get("ACME.myshopify.com"), None);
    assert_eq!(directory.get("gamma.myshopify.com"), None);
    let order: Vec<_> = directory.iter().map(|s| s.domain.as_str()).collect();
    assert_eq!(order, ["acme.myshopify.com", "beta.myshopify.com"]);
    assert_eq!((&directory).into_iter().count(), 2);

    let empty = ShopDirectory::new(vec![]).expect("empty is fine");
    assert!(empty.is_empty());
    assert_eq!(empty.len(), 0);
    assert_eq!(ShopDirectory::default().len(), 0);

    let duplicate = ShopDirectory::new(vec![shops[0].clone(), shops[1].clone(), shops[0].clone()])
        .expect_err("duplicate");
    assert_eq!(duplicate.key, "shops[2].domain");
}

#[test]
fn admin_base_url_repairs_are_refused_and_the_url_normalised() {
    // What the `url` crate would repair (as a browser does) is refused: the file should say
    // what it means.
    for (bad, why) in [
        (
            " https://acme.myshopify.com",
            "(leading or trailing control or space character are ignored in URLs)",
        ),
        (
            "https://acme.my\tshopify.com",
            "(tabs or newlines are ignored in URLs)",
        ),
        ("https:acme.myshopify.com", "(expected //)"),
        ("https:///acme.myshopify.com", "(expected //)"),
        ("https:\\\\acme.myshopify.com", "(expected //)"),
        ("https://acme.myshopify.com\\", "(backslash)"),
        ("https://@acme.myshopify.com", "with no credentials"),
        ("localhost:8080", "(missing scheme)"),
        ("mailto:ops@example.com", "(missing scheme)"),
    ] {
        let text = shop_replacing("admin_base_url", &format!("admin_base_url = {bad:?}"));
        assert_eq!(
            refusal(&text),
            err(
                "shops[0].admin_base_url",
                &format!(
                    "must be http(s)://host[:port] {why}, got {}",
                    quote_untrusted(bad)
                )
            ),
            "{bad}"
        );
    }
    for (input, normalized) in [
        ("https://ACME.myshopify.com", "https://acme.myshopify.com"),
        (
            "https://acme.myshopify.com:443",
            "https://acme.myshopify.com",
        ),
        (
            "https://acme.myshopify.com:8443/",
            "https://acme.myshopify.com:8443",
        ),
        ("http://LOCALHOST:80", "http://localhost"),
    ] {
        let text = shop_replacing("admin_base_url", &format!("admin_base_url = {input:?}"));
        let shops = parse(&text).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(shops[0].admin_base_url, normalized, "{input}");
    }
}

#[test]
fn serde_messages_are_one_bounded_line() {
    let long = "x".repeat(10_000);
    let e = refusal(&format!("shops = {long:?}"));
    assert_eq!(e.key, "shops");
    assert!(
        e.reason.starts_with("invalid type: string \"xxxx") && e.reason.ends_with('…'),
        "{e}"
    );
    assert_eq!(e.reason.chars().count(), MESSAGE_MAX_CHARS + 1);
    let e = refusal(&shop_with("\"line\\nbreak\\u2028here\" = 1"));
    assert!(!e.to_string().contains(['\n', '\u{2028}']), "{e}");
    assert_eq!(e.key, "shops[0].\"line\\nbreak\\u{2028}here\"");
}

/// A section the way the platform's are declared.
#[derive(Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ExampleSection {
    url: Option<String>,
    #[serde(default)]
    queues: Vec<ExampleQueue>,
    #[serde(default)]
    limits: std::collections::BTreeMap<String, u32>,
}

#[derive(Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ExampleQueue {
    name: String,
}

fn example(text: &str) -> Result<ExampleSection, ConfigError> {
    let value = doc(text).remove("example").expect("an [example] table");
    deserialize_section("example", value)
}

#[test]
fn any_section_names_the_exact_key() {
    assert_eq!(
        example("[example]\nurl = \"x\"\n[[example.queues]]\nname = \"q\""),
        Ok(ExampleSection {
            url: Some("x".into()),
            queues: vec![ExampleQueue { name: "q".into() }],
            limits: Default::default(),
        })
    );
    for (text, key, reason) in [
        (
            "[example]\nurll = \"x\"",
            "example.urll",
            "unknown field `urll`, expected one of `url`, `queues`, `limits`",
        ),
        (
            "[example]\nurl = 1",
            "example.url",
            "invalid type: integer `1`, expected a string",
        ),
        (
            "[[example.queues]]\nname = \"a\"\n[[example.queues]]\nnam = \"b\"",
            "example.queues[1].nam",
            "unknown field `nam`, expected `name`",
        ),
        (
            "[[example.queues]]\nname = \"a\"\n[[example.queues]]",
            "example.queues[1]",
            "missing field `name`",
        ),
        (
            "[example.limits]\n\"bay 7\" = -1",
            "example.limits.\"bay 7\"",
            "invalid value: integer `-1`, expected u32",
        ),
    ] {
        assert_eq!(example(text), Err(err(key, reason)), "{text}");
    }
    assert_eq!(
        key_path("shops[0].locations", "bay 7"),
        "shops[0].locations.\"bay 7\""
    );
}
