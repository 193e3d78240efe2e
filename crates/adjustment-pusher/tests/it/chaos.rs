//! Crashes and replicas.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::json;
use shopify_sandbox::{FaultAction, FaultConfig, FaultRule};

use crate::harness::{Harness, Options, STOCK, tx};

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

/// What one published message asks of Shopify: `(sku, warehouse, delta)`.
struct Sent {
    id: String,
    body: Vec<u8>,
    effect: (String, &'static str, i64),
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
    // A spare variant SKU-15 is moved to in the middle of the stream.
    let spare = h
        .sandbox
        .create_product(
            SHOP,
            shopify_sandbox::ProductSpec {
                title: "Spare".into(),
                variants: vec![
                    shopify_sandbox::VariantSpec::sku("SPARE")
                        .stocked_at(shop.locations["MAIN"], STOCK)
                        .stocked_at(shop.locations["EAST"], STOCK),
                ],
                ..shopify_sandbox::ProductSpec::default()
            },
        )
        .unwrap()
        .variants[0]
        .inventory_item_id;
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
             [adjustment_pusher]\nbatch_window_ms = 20\nretry_base_ms = 50\nretry_max_ms = 500\nrequest_timeout_ms = 2000\nbatches_in_flight = 4\n\
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
    let mut sent: Vec<Sent> = Vec::new();
    let mut reused = 0;
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
        let (mut kind, mut warehouse) = match n % 4 {
            0 => ("put", "MAIN"),
            1 => ("pull", "EAST"),
            2 => ("put", "EAST"),
            _ => ("pull", "MAIN"),
        };
        let mut quantity = 1 + (n % 7) as i64;
        let mut sku = sku;
        // Bursts of three huge puts, later three huge pulls, on one item: sums that must be cut
        // at the Int bound, and quantities Shopify refuses past 2,000,000,000.
        match n % 250 {
            7..=9 => (kind, warehouse, quantity) = ("put", "EAST", 1_000_000_000),
            130..=132 => (kind, warehouse, quantity) = ("pull", "EAST", 1_000_000_000),
            _ => {}
        }
        if matches!(n % 250, 7..=9 | 130..=132) {
            sku = "SKU-14".to_owned();
        }
        let body = tx(
            &format!("chaos-{n}"),
            SHOP,
            kind,
            &sku,
            warehouse,
            json!({"quantity": quantity}),
        );
        h.publish(&body).await;
        let delta = if kind == "put" { quantity } else { -quantity };
        sent.push(Sent {
            id: format!("chaos-{n}"),
            body: body.to_string().into_bytes(),
            effect: (sku, warehouse, delta),
        });
        if n % 300 == 150 {
            // WOS reuses the id just sent for another transaction: one of the two is the
            // transaction, the other a dead letter (which one depends on who commits first).
            let other = tx(
                &format!("chaos-{n}"),
                SHOP,
                "put",
                "SKU-0",
                "MAIN",
                json!({"quantity": 3}),
            );
            h.publish(&other).await;
            sent.push(Sent {
                id: format!("chaos-{n}"),
                body: other.to_string().into_bytes(),
                effect: ("SKU-0".to_owned(), "MAIN", 3),
            });
            reused += 1;
        }
        if n == total / 2 {
            // item-ingest moves SKU-15 to another variant (a clone fixed, a backfill).
            h.map(SHOP, "SKU-15", Some(spare)).await;
        }
        if n > 0 && n % 250 == 0 {
            // Let it work a random while, then kill it without warning and start it again.
            tokio::time::sleep(Duration::from_millis(50 + next_random(700))).await;
            pusher.kill().unwrap();
            pusher.wait().unwrap();
            kills += 1;
            pusher = spawn_pusher(&h, &config);
        }
    }

    // Everything taken in, sent or dead-lettered, every dead letter published.
    let dlq = h.env.names.adjustment_pusher_queue().dead_letter_queue();
    testkit::wait_until(Duration::from_secs(180), "the stream settled", || async {
        h.count("SELECT count(*) FROM wos_transactions").await == total as i64
            && h.in_flight().await == 0
            && h.count(
                "SELECT (SELECT count(*) FROM adjustments WHERE state = 'parked') \
                 + (SELECT count(*) FROM push_batches WHERE state = 'open') \
                 + (SELECT count(*) FROM outbox)",
            )
            .await
                == 0
            && i64::from(h.env.queue_depth(&dlq).await)
                >= reused
                    + h.count(
                        "SELECT count(DISTINCT transaction_id) FROM adjustments WHERE state = 'dead'",
                    )
                    .await
    })
    .await;
    pusher.kill().unwrap();
    pusher.wait().unwrap();
    let _ = std::fs::remove_file(&config);
    assert_eq!(kills, 7);

    // Dead letters are at least once: one per (id, body), whatever was published twice.
    let mut dead: std::collections::BTreeMap<(String, Vec<u8>), String> = Default::default();
    for message in h.env.drain(&dlq).await {
        let id = message
            .delivery
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.to_string())
            .unwrap_or_default();
        let headers = message.delivery.properties.headers().as_ref();
        let error = platform::amqp::headers::header_str(headers, "x-error")
            .unwrap_or_default()
            .to_owned();
        dead.insert((id, message.delivery.data.clone()), error);
    }
    let mut reuses_dead = 0;
    for ((id, body), error) in &dead {
        let source = sent
            .iter()
            .find(|s| &s.id == id && &s.body == body)
            .unwrap_or_else(|| panic!("dead letter {id} is not a published message"));
        if error.contains("already used") {
            reuses_dead += 1;
        } else {
            assert_eq!(
                source.effect.2.abs(),
                1_000_000_000,
                "only huge adjustments are refused: {id}: {error}"
            );
            assert!(error.contains("INVALID_QUANTITY_TOO"), "{id}: {error}");
        }
    }
    assert_eq!(reuses_dead, reused, "one of each reused pair dead-lettered");

    // Shopify holds exactly the effect of every message that was not dead-lettered; SKU-15's
    // units are on its old variant or the spare one, never lost, never twice.
    for message in &sent {
        if dead.contains_key(&(message.id.clone(), message.body.clone())) {
            continue;
        }
        let (sku, warehouse, delta) = &message.effect;
        h.expect(SHOP, sku, warehouse, *delta);
    }
    let moved = shop.items["SKU-15"];
    for warehouse in ["MAIN", "EAST"] {
        let location = shop.locations[warehouse];
        let key = (SHOP.to_owned(), moved, location);
        let expected_sum = h.expected.remove(&key).unwrap() + STOCK;
        let actual_sum = h
            .sandbox
            .quantity(SHOP, moved, location, "available")
            .unwrap()
            + h.sandbox
                .quantity(SHOP, spare, location, "available")
                .unwrap();
        assert_eq!(
            actual_sum, expected_sum,
            "SKU-15 at {warehouse}, old and new variant"
        );
    }
    h.assert_totals(Duration::from_secs(10)).await;
    let groups = h.sandbox.adjustment_groups(SHOP).unwrap();
    let applied = h
        .count("SELECT count(*) FROM push_batches WHERE state = 'applied' AND change_count > 0")
        .await;
    assert_eq!(groups.len() as i64, applied, "no batch applied twice");
    // Several batches were in flight at once (each slot holds one open batch at a time).
    let slots = h
        .count("SELECT count(DISTINCT slot) FROM push_batches")
        .await;
    assert!(slots >= 2, "batches formed in {slots} slot(s) only");
    // No change ever left the pusher outside GraphQL's Int.
    let widest = h
        .count(
            "SELECT coalesce(max(abs((c->>'delta')::bigint)), 0) FROM push_batches b, \
             jsonb_array_elements(b.variables->'changes') c",
        )
        .await;
    assert!(
        widest <= i64::from(i32::MAX),
        "a change of {widest} was sent"
    );
}
