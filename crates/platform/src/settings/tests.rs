//! Unit tests of `settings`.

use super::*;

fn load(text: &str) -> Result<Settings, SettingsError> {
    Settings::from_toml_str(text, "test.toml")
}

fn refused_key(text: &str) -> Option<String> {
    load(text).expect_err("must be refused").key
}

#[test]
fn an_empty_file_gives_the_local_defaults() {
    let settings = load("").expect("valid");
    assert_eq!(settings.amqp.url, "amqp://guest:guest@127.0.0.1:5672/%2f");
    assert_eq!(
        settings.database.url,
        "postgres://postgres@127.0.0.1:5432/wos_sync"
    );
    assert_eq!(settings.names().prefix(), "");
    assert!(settings.shops.is_empty());
    assert_eq!(settings.consumer, ConsumerSettings::default());
    assert_eq!(settings.retry, RetrySettings::default());
}

#[test]
fn sections_override_defaults() {
    let settings = load(
        r#"
        [amqp]
        url = "amqp://u:p@broker:5672/%2f"
        name_prefix = "staging."
        [consumer]
        prefetch = 10
        concurrency = 5
        [retry]
        base_delay_ms = 200
        [http]
        listen = "127.0.0.1:0"
        [item_ingest]
        anything = 1
        "#,
    )
    .expect("valid");
    assert_eq!(settings.amqp.url, "amqp://u:p@broker:5672/%2f");
    assert_eq!(
        settings.names().name("shopify.events"),
        "staging.shopify.events"
    );
    assert_eq!(settings.consumer.prefetch, 10);
    assert_eq!(settings.consumer.concurrency, 5);
    assert_eq!(settings.retry.base_delay_ms, 200);
    assert_eq!(settings.retry.tiers, RetrySettings::default().tiers);
    assert_eq!(
        settings.http.listen,
        Some("127.0.0.1:0".parse().expect("addr"))
    );
    assert!(settings.services.contains_key("item_ingest"));
}

#[test]
fn the_environment_overrides_the_file() {
    let mut settings = load("[amqp]\nurl = \"amqp://file\"").expect("valid");
    settings.apply_env(|name| match name {
        "AMQP_URL" => Some("amqp://env".into()),
        "DATABASE_URL" => Some("postgres://env/db".into()),
        _ => None,
    });
    assert_eq!(settings.amqp.url, "amqp://env");
    assert_eq!(settings.database.url, "postgres://env/db");
}

/// A collector endpoint is taken by a build with the exporter, refused by one without (never
/// silently ignored), whether it comes from the file or the environment.
#[test]
fn an_otlp_endpoint_needs_the_otlp_feature() {
    let text = "[log]\notlp_endpoint = \"http://collector:4318\"";
    let from_env = || {
        let mut settings = load("").expect("valid");
        settings.apply_env(|name| {
            (name == "OTEL_EXPORTER_OTLP_ENDPOINT").then(|| "http://env:4318".to_owned())
        });
        settings
    };
    assert_eq!(from_env().log.otlp_endpoint, "http://env:4318");
    if cfg!(feature = "otlp") {
        let settings = load(text).expect("taken with the feature");
        assert_eq!(settings.log.otlp_endpoint, "http://collector:4318");
        assert_eq!(from_env().validate(), Ok(()));
        assert_eq!(
            refused_key("[log]\notlp_endpoint = \"collector:4318\""),
            Some("log.otlp_endpoint".into())
        );
    } else {
        let err = load(text).expect_err("refused without the feature");
        assert_eq!(err.key.as_deref(), Some("log.otlp_endpoint"));
        assert!(
            err.reason
                .contains("built without the otlp feature; rebuild with --features platform/otlp"),
            "{err}"
        );
        let (key, _) = from_env()
            .validate()
            .expect_err("refused from the environment");
        assert_eq!(key, "log.otlp_endpoint");
    }
    assert_eq!(
        load("[log]\notlp_endpoint = \"\"").map(|s| s.log),
        Ok(LogSettings::default())
    );
}

#[test]
fn bad_files_are_refused_with_file_key_and_reason() {
    let err = load("[amqp\n").expect_err("bad toml");
    assert_eq!(err.file, "test.toml");
    assert!(err.reason.starts_with("not valid TOML"), "{err}");

    assert_eq!(refused_key("[amqpp]\nurl = \"x\""), Some("amqpp".into()));
    assert_eq!(
        refused_key("[amqp]\nurll = \"x\""),
        Some("amqp.urll".into())
    );
    assert_eq!(
        refused_key("[amqp]\nurl = \"http://x\""),
        Some("amqp.url".into())
    );
    assert_eq!(
        refused_key("[amqp]\nname_prefix = \"a b\""),
        Some("amqp.name_prefix".into())
    );
    assert_eq!(
        refused_key("[consumer]\nprefetch = 0"),
        Some("consumer.prefetch".into())
    );
    assert_eq!(
        refused_key("[consumer]\nprefetch = 4\nconcurrency = 8"),
        Some("consumer.concurrency".into())
    );
    assert_eq!(
        refused_key("[retry]\nmax_attempts = 0"),
        Some("retry.max_attempts".into())
    );
    assert_eq!(
        refused_key("[database]\nstatement_timeout_ms = 0"),
        Some("database.statement_timeout_ms".into())
    );
    assert_eq!(
        refused_key("[consumer]\npublish_timeout_ms = 0"),
        Some("consumer.publish_timeout_ms".into())
    );
    assert_eq!(
        refused_key("[consumer]\nmax_message_bytes = 0"),
        Some("consumer.max_message_bytes".into())
    );
    assert_eq!(
        refused_key("[database]\nmax_connections = 0"),
        Some("database.max_connections".into())
    );
    assert_eq!(
        refused_key("[database]\nmigration_lock_timeout_ms = 0"),
        Some("database.migration_lock_timeout_ms".into())
    );
    assert_eq!(
        refused_key("[retention]\ninbox_days = 0"),
        Some("retention.inbox_days".into())
    );
    assert_eq!(
        refused_key("[retention]\ninbox = 3"),
        Some("retention.inbox".into())
    );
    assert_eq!(
        refused_key("[database]\nurl = \"postgres://h/db?sslmode=verify-full\""),
        Some("database.url".into())
    );
    assert_eq!(
        refused_key("[http]\nlisten = \"nowhere\""),
        Some("http.listen".into())
    );

    let err = load("[consumer]\nprefetch = 0").expect_err("refused");
    assert_eq!(
        err.to_string(),
        "configuration test.toml: `consumer.prefetch`: must be at least 1"
    );
}

#[test]
fn a_program_names_its_own_sections_and_every_other_stays_unknown() {
    let text = "[my_tool]\nanything = 1\n[amqp]\nname_prefix = \"x.\"";
    assert_eq!(refused_key(text), Some("my_tool".into()));
    let settings =
        Settings::from_toml_str_with_sections(text, "test.toml", &["my_tool"]).expect("valid");
    assert_eq!(settings.names().prefix(), "x.");
    assert_eq!(
        settings
            .services
            .get("my_tool")
            .and_then(|t| t.get("anything")),
        Some(&toml::Value::Integer(1))
    );
    let err = Settings::from_toml_str_with_sections(
        "[my_tool]\n[other_tool]\n",
        "test.toml",
        &["my_tool"],
    )
    .expect_err("other_tool is nobody's");
    assert_eq!(err.key.as_deref(), Some("other_tool"));
}

#[test]
fn shop_errors_carry_the_shop_key() {
    let err = load("[[shops]]\ndomain = \"Not A Shop\"").expect_err("refused");
    assert!(
        err.key
            .as_deref()
            .is_some_and(|k| k.starts_with("shops[0]")),
        "{err}"
    );
}

#[test]
fn every_section_reports_the_file_the_key_path_and_the_reason() {
    let message = |text: &str| load(text).expect_err("refused").to_string();
    assert_eq!(
        message("[amqp]\nurll = \"x\""),
        "configuration test.toml: `amqp.urll`: unknown field `urll`, expected `url` or \
         `name_prefix`"
    );
    assert_eq!(
        message("[retry]\nbase_delay_ms = \"1s\""),
        "configuration test.toml: `retry.base_delay_ms`: invalid type: string \"1s\", \
         expected u64"
    );
    assert_eq!(
        message(
            "[[shops]]\ndomain = \"acme.myshopify.com\"\napi_version = \"2026-04\"\n\
             admin_base_url = \"https://acme.myshopify.com\"\naccess_token_env = \"T\"\n\
             [shops.locations]\nMAIN = -5"
        ),
        "configuration test.toml: `shops[0].locations.MAIN`: location id must be a positive \
         integer, got -5"
    );

    /// A service's own table, declared as the services declare theirs.
    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct ServiceTable {
        #[allow(dead_code)]
        batch_size: u32,
    }
    let mut settings = load("[item_ingest]\nbatch_size = 0\nbatch = 1").expect("valid");
    settings.source = Some("/etc/wos-sync.toml".into());
    let err = settings
        .service_section::<ServiceTable>("item_ingest")
        .expect_err("refused");
    assert_eq!(
        err.to_string(),
        "configuration /etc/wos-sync.toml: `item_ingest.batch`: unknown field `batch`, \
         expected `batch_size`"
    );
}

#[test]
fn the_contract_example_configuration_loads() {
    let settings = load(
        r#"
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
        "#,
    )
    .expect("the CONTRACT's example is valid");
    assert!(settings.shops.get("acme.myshopify.com").is_some());
}

#[test]
fn the_documented_example_file_loads_and_matches_the_defaults() {
    let text = include_str!("../../../../docs/config.example.toml");
    let settings = load(text).expect("docs/config.example.toml is valid");
    let defaults = Settings::default();
    assert_eq!(settings.amqp, defaults.amqp);
    assert_eq!(settings.consumer, defaults.consumer);
    assert_eq!(settings.retry, defaults.retry);
    assert_eq!(settings.database.url, defaults.database.url);
    assert_eq!(settings.http, defaults.http);
    assert_eq!(settings.retention, defaults.retention);
    assert_eq!(settings.shops.len(), 1);
    assert!(settings.services.contains_key("webhook_relay"));
    assert!(settings.services.contains_key("adjustment_pusher"));
}

#[test]
fn passwords_are_redacted_from_urls() {
    assert_eq!(
        redact_url("amqp://guest:secret@host:5672/%2f"),
        "amqp://guest:***@host:5672/%2f"
    );
    assert_eq!(
        redact_url("postgres://postgres@127.0.0.1/db"),
        "postgres://postgres@127.0.0.1/db"
    );
    assert_eq!(redact_url("postgres://u:p@h"), "postgres://u:***@h");
    assert_eq!(redact_url("not a url"), "not a url");
    assert_eq!(
        redact_url("postgres://u@h/db?sslmode=require&password=pw&x=1"),
        "postgres://u@h/db?sslmode=require&password=***&x=1"
    );
}

#[test]
fn no_settings_type_shows_a_password_in_debug() {
    let mut settings = load(
        "[amqp]\nurl = \"amqp://wos:amqp-s3cret@broker.example.com/%2f\"\n\
         [database]\nurl = \"postgres://wos:db-s3cret@db.example.com/wos_sync?password=db-s3cret\"",
    )
    .expect("valid");
    settings.source = Some("/etc/wos-sync.toml".into());
    let consumer = crate::amqp::consumer::ConsumerConfig {
        service: "svc".into(),
        amqp_url: settings.amqp.url.clone(),
        names: settings.names(),
        queue: settings.names().item_ingest_queue(),
        settings: settings.consumer.clone(),
        retry: settings.retry.clone(),
    };
    let publisher = crate::amqp::publisher::Publisher::new(settings.amqp.url.clone(), "p".into());
    let endpoint = Endpoint::parse(&settings.amqp.url).expect("valid");
    let database = crate::db::DatabaseTarget::parse(&settings.database.url).expect("valid");
    let printed = [
        format!("{settings:?}"),
        format!("{settings:#?}"),
        format!("{:?}", settings.amqp),
        format!("{:?}", settings.database),
        format!("{consumer:?}"),
        format!("{publisher:?}"),
        format!("{endpoint:?}"),
        format!("{database:?}"),
    ];
    for text in printed {
        assert!(
            !text.contains("s3cret"),
            "a password in Debug output: {text}"
        );
    }
    assert!(format!("{:?}", settings.amqp).contains("wos:***@broker.example.com"));
}
