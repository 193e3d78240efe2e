//! `up --sandbox` end to end as a process: start it, publish with the CLI, see the sandbox's
//! quantity change, SIGTERM, clean exit.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use shopify_sandbox::client::HttpClient;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::harness::{Setup, World};

/// The demo shop of config/local.toml.
const DEMO_SHOP: &str = "local.myshopify.com";

#[tokio::test]
async fn up_runs_the_whole_flow_against_the_sandbox_and_stops_cleanly_on_sigterm() {
    let world = World::new(Setup {
        skus: vec![],
        ..Setup::default()
    })
    .await;
    // No [[shops]]: `up` runs the built-in demo (config/local.toml) against its own sandbox.
    let config = std::env::temp_dir().join(format!("wos-sync-{}-up.toml", world.env.id));
    let without_shops = world.toml[..world.toml.find("[[shops]]").unwrap()].to_owned();
    std::fs::write(
        &config,
        without_shops.replace("[http]\nlisten = \"127.0.0.1:0\"\n", ""),
    )
    .unwrap();
    let mut command = world.command(
        &[
            "up",
            "--sandbox-listen",
            "127.0.0.1:0",
            "--relay-listen",
            "127.0.0.1:0",
            "--ingest-listen",
            "127.0.0.1:0",
            "--pusher-listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    command.env("WOS_SYNC_CONFIG", &config);
    // A database that does not exist yet, as on a fresh machine: `up` creates it, as the demo's
    // file allows (`[database] create_if_missing`). The `wos_test_` name is CI's to clean up
    // should this test be interrupted.
    let fresh_database = format!("wos_test_{}_up", world.env.id);
    command.env(
        "DATABASE_URL",
        format!("{}/{fresh_database}", testkit::postgres_base_url()),
    );
    let mut up = command.spawn().unwrap();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let stdout = up.stdout.take().unwrap();
    let collected = lines.clone();
    let stdout_read = tokio::spawn(async move {
        let mut reader = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            collected.lock().unwrap().push(line);
        }
    });
    let stderr = up.stderr.take().unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let log_sink = log.clone();
    tokio::spawn(async move {
        let mut reader = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            let mut log = log_sink.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    let printed = |needle: &str| lines.lock().unwrap().iter().any(|l| l.contains(needle));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !printed("ready. In another terminal:") {
        if let Ok(Some(status)) = up.try_wait() {
            panic!(
                "up exited with {status}:\n{}\n{}",
                lines.lock().unwrap().join("\n"),
                log.lock().unwrap()
            );
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "`up` not ready within 60 s:\n{}\n{}",
            lines.lock().unwrap().join("\n"),
            log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sandbox_url = lines
        .lock()
        .unwrap()
        .iter()
        .find_map(|l| {
            l.strip_prefix("Shopify sandbox on ")
                .map(|rest| rest.split_whitespace().next().unwrap().to_owned())
        })
        .unwrap();
    assert!(
        printed("relay: products/create webhook"),
        "{:?}",
        lines.lock().unwrap()
    );
    assert!(printed(
        "item-ingest: local.myshopify.com / TEE-S mapped to inventory item"
    ));
    assert!(printed(&format!(
        "publish put --shop {DEMO_SHOP} --sku TEE-S --warehouse MAIN --quantity 5"
    )));

    let http = HttpClient::new(Duration::from_secs(5));
    let inventory_url = format!("{sandbox_url}/sandbox/shops/{DEMO_SHOP}/inventory");
    let available = || async {
        let levels = http.get(&inventory_url).await.unwrap().json();
        levels
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["sku"] == "TEE-S" && l["location_id"] == 68_845_568_042_u64)
            .map(|l| l["quantities"]["available"].as_i64().unwrap())
    };
    assert_eq!(available().await, Some(20), "the seed's quantity");

    let published = world
        .cli_in(
            &config,
            &[
                "publish",
                "put",
                "--shop",
                DEMO_SHOP,
                "--sku",
                "TEE-S",
                "--warehouse",
                "MAIN",
                "--quantity",
                "5",
            ],
            &[],
        )
        .await;
    published.assert_code(0);
    testkit::wait_until(
        Duration::from_secs(30),
        "the sandbox quantity to change",
        || async { available().await == Some(25) },
    )
    .await;
    testkit::wait_until(
        Duration::from_secs(10),
        "`up` to print the adjustment",
        || async {
            printed("Shopify sandbox: local.myshopify.com TEE-S at MAIN: available +5 (now 25")
        },
    )
    .await;

    let pid = up.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(45), up.wait())
        .await
        .expect("up stops within 45 s of SIGTERM")
        .unwrap();
    let _ = std::fs::remove_file(&config);
    // Everything `up` printed before it exited is read once its stdout ends.
    tokio::time::timeout(Duration::from_secs(5), stdout_read)
        .await
        .expect("up's stdout ends when it exits")
        .unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "{}\n{}",
        lines.lock().unwrap().join("\n"),
        log.lock().unwrap()
    );
    assert!(printed("stopped"));
    testkit::admin_sql(&format!(
        "DROP DATABASE IF EXISTS {fresh_database} WITH (FORCE)"
    ))
    .await;
}
