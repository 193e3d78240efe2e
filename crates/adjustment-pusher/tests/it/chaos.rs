//! Crashes and replicas.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::json;
use shopify_sandbox::{FaultAction, FaultConfig, FaultRule};

use crate::harness::{Harness, Options, tx};

const SHOP: &str = "acme.myshopify.com";

#[tokio::test]
async fn two_replicas_consuming_together_push_every_transaction_once() {
    let mut h = Harness::with(Options {
        skus: 8,
        ..Options::default()
    })
    .await;
    h.start_replica();
    for n in 0..400 {
        let sku = format!("SKU-{}", n % 8);
        let warehouse = if n % 3 == 0 { "EAST" } else { "MAIN" };
        let kind = if n % 2 == 0 { "put" } else { "pull" };
        h.publish(&tx(
            &format!("r-{n}"),
            SHOP,
            kind,
            &sku,
            warehouse,
            json!({"quantity": 1 + n % 5}),
        ))
        .await;
        let delta = (1 + n % 5) as i64;
        h.expect(
            SHOP,
            &sku,
            warehouse,
            if kind == "put" { delta } else { -delta },
        );
    }
    h.assert_totals(Duration::from_secs(60)).await;
    let pushed: u64 = ["put", "pull"]
        .iter()
        .map(|kind| h.adjustments(SHOP, kind, "pushed"))
        .sum();
    assert_eq!(
        pushed, 400,
        "every adjustment acknowledged exactly once across replicas"
    );
    let groups = h.sandbox.adjustment_groups(SHOP).unwrap();
    let applied = h
        .count("SELECT count(*) FROM push_batches WHERE state = 'applied' AND change_count > 0")
        .await;
    assert_eq!(groups.len() as i64, applied, "no batch applied twice");
    h.stop().await;
}

fn spawn_pusher(h: &Harness, config: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_adjustment-pusher"))
        .args([
            "--config",
            config.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ])
        .env("AMQP_URL", &h.settings.amqp.url)
        .env("DATABASE_URL", &h.settings.database.url)
        .env("CHAOS_SHOPIFY_TOKEN", &h.shop(0).token)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn sigkill_at_random_points_of_a_long_stream_loses_and_doubles_nothing() {
    let mut h = Harness::with(Options {
        skus: 16,
        ..Options::default()
    })
    .await;
    // This test drives its own processes; the in-process replica stops.
    h.stop_replicas().await;
    let shop = h.shop(0).clone();
    let locations = shop
        .locations
        .iter()
        .map(|(w, id)| format!("{w} = {}", id.0))
        .collect::<Vec<_>>()
        .join("\n");
    let config = std::env::temp_dir().join(format!("pusher-chaos-{}.toml", h.env.id));
    std::fs::write(
        &config,
        format!(
            "[amqp]\nname_prefix = \"{prefix}\"\n[retry]\nbase_delay_ms = 200\nmultiplier = 2\ntiers = 3\nmax_attempts = 4\n\
             [adjustment_pusher]\nbatch_window_ms = 20\nretry_base_ms = 50\nretry_max_ms = 500\nrequest_timeout_ms = 2000\n\
             [[shops]]\ndomain = \"{SHOP}\"\napi_version = \"2026-04\"\nadmin_base_url = \"{base}\"\n\
             access_token_env = \"CHAOS_SHOPIFY_TOKEN\"\n[shops.locations]\n{locations}\n",
            prefix = h.env.names.prefix(),
            base = h.sandbox.base_url(),
        ),
    )
    .unwrap();
    // Shopify also cuts connections after applying now and then.
    let mut faults =
        FaultConfig::rule(FaultRule::probability(0.1, FaultAction::ApplyThenDrop).mutations_only());
    faults.seed = 42;
    h.sandbox.set_faults(faults).unwrap();

    let total = 2000;
    let mut pusher = spawn_pusher(&h, &config);
    let mut kills = 0;
    let mut rng_state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next_random = move |bound: u64| {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        rng_state % bound
    };
    for n in 0..total {
        let sku = format!("SKU-{}", n % 16);
        let (kind, warehouse) = match n % 4 {
            0 => ("put", "MAIN"),
            1 => ("pull", "EAST"),
            2 => ("put", "EAST"),
            _ => ("pull", "MAIN"),
        };
        let quantity = 1 + (n % 7) as i64;
        h.publish(&tx(
            &format!("chaos-{n}"),
            SHOP,
            kind,
            &sku,
            warehouse,
            json!({"quantity": quantity}),
        ))
        .await;
        h.expect(
            SHOP,
            &sku,
            warehouse,
            if kind == "put" { quantity } else { -quantity },
        );
        if n > 0 && n % 250 == 0 {
            // Let it work a random while, then kill it without warning and start it again.
            tokio::time::sleep(Duration::from_millis(50 + next_random(700))).await;
            pusher.kill().unwrap();
            pusher.wait().unwrap();
            kills += 1;
            pusher = spawn_pusher(&h, &config);
        }
    }
    h.assert_totals(Duration::from_secs(120)).await;
    pusher.kill().unwrap();
    pusher.wait().unwrap();
    let _ = std::fs::remove_file(&config);
    assert_eq!(kills, 7);
    let groups = h.sandbox.adjustment_groups(SHOP).unwrap();
    let applied = h
        .count("SELECT count(*) FROM push_batches WHERE state = 'applied' AND change_count > 0")
        .await;
    assert_eq!(groups.len() as i64, applied, "no batch applied twice");
    assert_eq!(
        h.count("SELECT count(*) FROM wos_transactions").await,
        total as i64
    );
}
