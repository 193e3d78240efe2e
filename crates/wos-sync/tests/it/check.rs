//! `check`: one line per check, exit status 1 on any failure, the reason in words.

use crate::harness::{EAST, Setup, World};

fn token_var(world: &World) -> String {
    world
        .vars
        .keys()
        .find(|k| k.starts_with("ACME_TOKEN"))
        .cloned()
        .unwrap()
}

#[tokio::test]
async fn check_passes_on_a_ready_configuration() {
    let world = World::new(Setup::default()).await;
    world.cli(&["topology"]).await.assert_code(0);
    let run = world.cli(&["check"]).await;
    run.assert_code(0);
    for line in [
        "ok    broker:",
        "ok    database:",
        "ok    topology:",
        "ok    shop acme.myshopify.com token: accepted by Shopify",
        "ok    shop acme.myshopify.com scopes: write_inventory, read_products, read_locations granted",
        "ok    shop acme.myshopify.com location MAIN: 68845568042 is \"Main\"",
        "ok    shop acme.myshopify.com location EAST",
        "ok    shop acme.myshopify.com webhook secret:",
        "all checks passed",
    ] {
        assert!(
            run.stdout.contains(line),
            "missing {line:?} in\n{}",
            run.stdout
        );
    }
    let json = world.cli(&["check", "--json"]).await;
    json.assert_code(0);
    assert_eq!(json.json()["ok"], true);
}

#[tokio::test]
async fn check_fails_clearly_on_a_bad_token_a_missing_variable_or_scope_and_an_unknown_location() {
    let world = World::new(Setup::default()).await;
    let token = token_var(&world);

    let bad = world
        .cli_with(&["check"], &[(&token, "not-the-token")])
        .await;
    bad.assert_code(1);
    assert!(
        bad.stdout.contains(&format!(
            "FAIL  shop acme.myshopify.com token: Shopify refused the token in {token}"
        )),
        "{}",
        bad.stdout
    );

    let unset = world.cli_with(&["check"], &[(&token, "")]).await;
    unset.assert_code(1);
    assert!(
        unset.stdout.contains(&format!(
            "FAIL  shop acme.myshopify.com token: shop acme.myshopify.com: environment variable {token} (its Admin API access token) is not set"
        )),
        "{}",
        unset.stdout
    );

    let secret = world
        .vars
        .keys()
        .find(|k| k.starts_with("ACME_SECRET"))
        .cloned()
        .unwrap();
    let no_secret = world.cli_with(&["check"], &[(&secret, "")]).await;
    no_secret.assert_code(1);
    assert!(
        no_secret
            .stdout
            .contains("FAIL  shop acme.myshopify.com webhook secret:"),
        "{}",
        no_secret.stdout
    );
    assert!(no_secret.stdout.contains(&secret), "{}", no_secret.stdout);

    let config = std::env::temp_dir().join(format!("wos-sync-{}-badloc.toml", world.env.id));
    std::fs::write(
        &config,
        world
            .toml
            .replace(&format!("EAST = {}", EAST.0), "EAST = 123456"),
    )
    .unwrap();
    let unknown = world.cli_in(&config, &["check"], &[]).await;
    let _ = std::fs::remove_file(&config);
    unknown.assert_code(1);
    assert!(
        unknown.stdout.contains(
            "FAIL  shop acme.myshopify.com location EAST: 123456 is not a location of acme.myshopify.com"
        ),
        "{}",
        unknown.stdout
    );
    assert!(
        unknown
            .stdout
            .contains("ok    shop acme.myshopify.com location MAIN"),
        "{}",
        unknown.stdout
    );

    let token_value = world.vars[&token].clone();
    world
        .sandbox
        .set_app_scopes(&token_value, &["read_products", "read_locations"])
        .unwrap();
    let scopes = world.cli(&["check"]).await;
    scopes.assert_code(1);
    assert!(
        scopes.stdout.contains(
            "FAIL  shop acme.myshopify.com scopes: missing write_inventory, needed by adjustment-pusher"
        ),
        "{}",
        scopes.stdout
    );
}

#[tokio::test]
async fn check_fails_clearly_on_an_unreachable_broker() {
    let world = World::new(Setup::default()).await;
    // Nothing listens on port 1.
    let run = world
        .cli_with(
            &["check"],
            &[("AMQP_URL", "amqp://guest:pw-Xq7-hidden@127.0.0.1:1/%2f")],
        )
        .await;
    run.assert_code(1);
    assert!(
        run.stdout.contains(
            "FAIL  broker: cannot connect to the broker at amqp://guest:***@127.0.0.1:1/%2f"
        ),
        "{}",
        run.stdout
    );
    assert!(
        !run.stdout.contains("pw-Xq7-hidden") && !run.stderr.contains("pw-Xq7-hidden"),
        "password shown: {run:?}"
    );
    // The other checks still ran.
    assert!(
        run.stdout.contains("ok    shop acme.myshopify.com token"),
        "{}",
        run.stdout
    );
}
