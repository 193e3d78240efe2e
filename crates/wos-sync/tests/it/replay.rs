//! `dlq replay` of every kind of dead letter the system produces, through the CLI, exactly once
//! (shown by the sandbox's quantities), also when the same dead letter is in the DLQ twice and
//! when it is replayed again.

use std::time::Duration;

use serde_json::json;
use shopify_sandbox::{FaultAction, FaultConfig, FaultRule};

use crate::harness::{MAIN, STOCK, Setup, World, tx};

const PUSHER_QUEUE: &str = "adjustment-pusher.wos-transactions";

/// Replays everything in the pusher's DLQ and returns the per-message actions.
async fn replay_all(world: &World) -> Vec<String> {
    let run = world
        .cli(&["dlq", "replay", "--queue", PUSHER_QUEUE, "--all", "--json"])
        .await;
    run.assert_code(0);
    run.json()
        .as_array()
        .expect("array")
        .iter()
        .map(|r| r["action"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[tokio::test]
async fn a_rejected_transaction_is_replayed_once_with_the_items_current_mapping() {
    let mut world = World::new(Setup::default()).await;
    // WOS points SKU-1 at an inventory item Shopify does not know: the push is rejected.
    world.map("SKU-1", Some(4242)).await;
    world.start_pusher();
    world
        .wait_consuming(&world.env.names.adjustment_pusher_queue().name)
        .await;
    world
        .publish(&tx("rej-1", "put", "SKU-1", "MAIN", json!({"quantity": 7})))
        .await;
    // The outbox publishes dead letters at least once: the DLQ holds the same one twice.
    let dlq = world.pusher_dlq();
    world.duplicate_messages(&dlq, 1, 1).await;

    let listed = world
        .cli(&[
            "dlq",
            "list",
            "--queue",
            PUSHER_QUEUE,
            "--kind",
            "rejected",
            "--json",
        ])
        .await;
    listed.assert_code(0);
    let listed = listed.json();
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
    assert_eq!(listed[0]["message_id"], "rej-1");
    assert_eq!(listed[0]["shop"], "acme.myshopify.com");
    assert!(
        listed[0]["error"]
            .as_str()
            .unwrap_or("")
            .contains("INVALID_INVENTORY_ITEM"),
        "{listed}"
    );

    // The mapping is fixed; the replay uses it, once, although the dead letter is there twice.
    world.map("SKU-1", Some(world.item("SKU-1"))).await;
    let actions = replay_all(&world).await;
    assert_eq!(actions, ["database", "already_replayed"]);
    world
        .wait("the replayed put pushed", || async {
            world.available("SKU-1", MAIN) == STOCK + 7
        })
        .await;
    assert_eq!(world.env.queue_depth(&dlq).await, 0, "both copies removed");

    // Replaying again finds nothing; the quantity stays.
    let again = world
        .cli(&["dlq", "replay", "--queue", PUSHER_QUEUE, "rej-1"])
        .await;
    again.assert_code(1);
    assert!(
        again.stderr.contains("no dead letter with id rej-1"),
        "{again:?}"
    );
    assert_eq!(
        world
            .count("SELECT count(*) FROM adjustments WHERE state <> 'pushed'")
            .await,
        0
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(world.available("SKU-1", MAIN), STOCK + 7);
    assert_eq!(
        world
            .sandbox
            .adjustment_groups("acme.myshopify.com")
            .unwrap()
            .len(),
        1
    );
    world.stop_pusher().await;
}

#[tokio::test]
async fn an_exhausted_transaction_is_replayed_once_and_a_stale_copy_of_its_dead_letter_never_again()
{
    let mut world = World::new(Setup {
        pusher: "give_up_after_secs = 1",
        ..Setup::default()
    })
    .await;
    world.map("SKU-1", Some(world.item("SKU-1"))).await;
    // Every call's connection is cut before Shopify runs it: the pusher cannot know, keeps the
    // key, and gives up as `exhausted` when the key would expire.
    world
        .sandbox
        .set_faults(FaultConfig::rule(
            FaultRule::probability(1.0, FaultAction::Drop).mutations_only(),
        ))
        .unwrap();
    world.start_pusher();
    world
        .wait_consuming(&world.env.names.adjustment_pusher_queue().name)
        .await;
    world
        .publish(&tx("exh-1", "put", "SKU-1", "MAIN", json!({"quantity": 3})))
        .await;
    let dlq = world.pusher_dlq();
    let first = world
        .env
        .wait_and_drain(&dlq, 1, Duration::from_secs(30))
        .await
        .remove(0)
        .delivery;
    world
        .env
        .publish("", &dlq, &first.data, first.properties.clone())
        .await;
    assert_eq!(world.available("SKU-1", MAIN), STOCK, "nothing ran");

    // Replayed; this time Shopify applies it but the answer is lost again: a second
    // `exhausted` dead letter, of a transaction Shopify did apply.
    world
        .sandbox
        .set_faults(FaultConfig::rule(
            FaultRule::probability(1.0, FaultAction::ApplyThenDrop).mutations_only(),
        ))
        .unwrap();
    assert_eq!(replay_all(&world).await, ["database"]);
    world
        .wait("the second exhausted dead letter", || async {
            world.env.queue_depth(&dlq).await == 1
        })
        .await;
    world.sandbox.set_faults(FaultConfig::none()).unwrap();
    assert_eq!(world.available("SKU-1", MAIN), STOCK + 3, "applied once");
    // The operator checks Shopify's history (applied) and purges the second dead letter.
    world
        .cli(&["dlq", "purge", "--queue", PUSHER_QUEUE, "--all", "--yes"])
        .await
        .assert_code(0);

    // A stale copy of the first dead letter turns up again: its replay changes nothing.
    world
        .env
        .publish("", &dlq, &first.data, first.properties.clone())
        .await;
    assert_eq!(replay_all(&world).await, ["already_replayed"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        world
            .count("SELECT count(*) FROM adjustments WHERE state IN ('pending', 'batched')")
            .await,
        0
    );
    assert_eq!(world.available("SKU-1", MAIN), STOCK + 3);
    assert_eq!(
        world
            .sandbox
            .adjustment_groups("acme.myshopify.com")
            .unwrap()
            .len(),
        1
    );
    world.stop_pusher().await;
}

#[tokio::test]
async fn an_unmapped_transaction_is_replayed_once_when_its_item_is_mapped() {
    let mut world = World::new(Setup {
        pusher: "max_park_age_secs = 1",
        ..Setup::default()
    })
    .await;
    world.start_pusher();
    world
        .wait_consuming(&world.env.names.adjustment_pusher_queue().name)
        .await;
    world
        .publish(&tx("unm-1", "put", "SKU-2", "MAIN", json!({"quantity": 4})))
        .await;
    let dlq = world.pusher_dlq();
    world.duplicate_messages(&dlq, 1, 1).await;

    // Replayed while the item is still unmapped: parked again, with a new parking period, and
    // dead-lettered again when that is over (a new dead letter).
    let first = world
        .cli(&["dlq", "replay", "--queue", PUSHER_QUEUE, "unm-1", "--json"])
        .await;
    first.assert_code(0);
    let first = first.json();
    assert_eq!(first[0]["action"], "database");
    assert!(
        first[0]["detail"].as_str().unwrap().contains("parked"),
        "{first}"
    );
    assert_eq!(first[1]["action"], "already_replayed");
    world
        .wait("the second unmapped dead letter", || async {
            world.env.queue_depth(&dlq).await == 1
        })
        .await;

    // Now the item is mapped: replaying the new dead letter pushes the transaction, once.
    world.map("SKU-2", Some(world.item("SKU-2"))).await;
    assert_eq!(replay_all(&world).await, ["database"]);
    world
        .wait("the replayed put pushed", || async {
            world.available("SKU-2", MAIN) == STOCK + 4
        })
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(world.available("SKU-2", MAIN), STOCK + 4);
    assert_eq!(
        world
            .sandbox
            .adjustment_groups("acme.myshopify.com")
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        world
            .count("SELECT count(*) FROM dead_letter_replays")
            .await,
        2
    );
    world.stop_pusher().await;
}

#[tokio::test]
async fn a_malformed_transaction_is_republished_once_after_its_shop_is_configured() {
    const BETA: &str = "beta.myshopify.com";
    let mut world = World::new(Setup::default()).await;
    let beta_token = format!("beta-token-{}", world.env.id);
    world.sandbox.create_shop(BETA, &beta_token).unwrap();
    world
        .sandbox
        .create_location_with_id(BETA, MAIN, "Main")
        .unwrap();
    let created = world
        .sandbox
        .create_product(
            BETA,
            shopify_sandbox::ProductSpec {
                title: "Beta tee".into(),
                variants: vec![shopify_sandbox::VariantSpec {
                    stock: vec![shopify_sandbox::Stock {
                        location_id: MAIN,
                        available: STOCK,
                    }],
                    ..shopify_sandbox::VariantSpec::sku("SKU-B")
                }],
                ..Default::default()
            },
        )
        .unwrap();
    let beta_item = created.variants[0].inventory_item_id;
    world.start_pusher();
    world
        .wait_consuming(&world.env.names.adjustment_pusher_queue().name)
        .await;

    // A transaction for a shop that is not configured is `malformed`.
    let mut body = tx("mal-1", "put", "SKU-B", "MAIN", json!({"quantity": 2}));
    body["shop_domain"] = json!(BETA);
    world.publish(&body).await;
    let dlq = world.pusher_dlq();
    world.duplicate_messages(&dlq, 1, 1).await;
    let shown = world
        .cli(&["dlq", "show", "--queue", PUSHER_QUEUE, "mal-1"])
        .await;
    shown.assert_code(0);
    assert!(
        shown.stdout.contains("x-error-kind: malformed"),
        "{shown:?}"
    );
    assert!(shown.stdout.contains("not configured"), "{shown:?}");

    // The shop is added to the configuration (the pusher restarted with it), then replayed:
    // both copies are republished and intake applies the transaction once.
    world.stop_pusher().await;
    let mut settings = world.settings();
    let mut shops: Vec<_> = settings.shops.iter().cloned().collect();
    let mut beta = shops[0].clone();
    beta.domain = BETA.to_owned();
    beta.access_token_env = "BETA_TOKEN".to_owned();
    beta.locations = [("MAIN".to_owned(), MAIN)].into_iter().collect();
    shops.push(beta);
    settings.shops = model::config::ShopDirectory::new(shops).unwrap();
    world.vars.insert("BETA_TOKEN".into(), beta_token);
    world
        .env
        .pool
        .get()
        .await
        .unwrap()
        .execute(
            "INSERT INTO items (shop_domain, sku, inventory_item_id) VALUES ($1, 'SKU-B', $2)",
            &[&BETA, &(beta_item.0 as i64)],
        )
        .await
        .unwrap();
    world.start_pusher_with(settings);
    world
        .wait_consuming(&world.env.names.adjustment_pusher_queue().name)
        .await;

    assert_eq!(replay_all(&world).await, ["republished", "republished"]);
    world
        .wait("the replayed transaction pushed", || async {
            world.sandbox.quantity(BETA, beta_item, MAIN, "available") == Some(STOCK + 2)
        })
        .await;
    world
        .wait("both copies taken in", || async {
            world
                .env
                .queue_depth(&world.env.names.adjustment_pusher_queue().name)
                .await
                == 0
        })
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        world.sandbox.quantity(BETA, beta_item, MAIN, "available"),
        Some(STOCK + 2)
    );
    assert_eq!(world.sandbox.adjustment_groups(BETA).unwrap().len(), 1);
    assert_eq!(world.env.queue_depth(&dlq).await, 0);
    world.stop_pusher().await;
}

#[tokio::test]
async fn a_dead_letter_whose_transaction_was_pruned_is_refused_not_pushed_again() {
    let mut world = World::new(Setup::default()).await;
    world.map("SKU-1", Some(4242)).await;
    world.start_pusher();
    world
        .wait_consuming(&world.env.names.adjustment_pusher_queue().name)
        .await;
    world
        .publish(&tx(
            "pruned-1",
            "put",
            "SKU-1",
            "MAIN",
            json!({"quantity": 4}),
        ))
        .await;
    let dlq = world.pusher_dlq();
    let dead = world
        .env
        .wait_and_drain(&dlq, 1, Duration::from_secs(30))
        .await
        .remove(0)
        .delivery;
    // The operator fixes the mapping and replays: pushed once.
    world
        .env
        .publish("", &dlq, &dead.data, dead.properties.clone())
        .await;
    world.map("SKU-1", Some(world.item("SKU-1"))).await;
    assert_eq!(replay_all(&world).await, ["database"]);
    world
        .wait("the replayed put pushed", || async {
            world.available("SKU-1", MAIN) == STOCK + 4
        })
        .await;
    world.stop_pusher().await;

    // The retention window passes and the pusher prunes the settled transaction; then a stale
    // copy of its dead letter turns up (the outbox publishes at least once).
    world
        .env
        .pool
        .get()
        .await
        .unwrap()
        .batch_execute(
            "DELETE FROM adjustments WHERE transaction_id = 'pruned-1'; \
             DELETE FROM dead_letter_replays WHERE transaction_id = 'pruned-1'; \
             DELETE FROM wos_transactions WHERE transaction_id = 'pruned-1';",
        )
        .await
        .unwrap();
    world
        .env
        .publish("", &dlq, &dead.data, dead.properties.clone())
        .await;
    let run = world
        .cli(&["dlq", "replay", "--queue", PUSHER_QUEUE, "--all", "--json"])
        .await;
    run.assert_code(1);
    let results = run.json();
    assert_eq!(results[0]["action"], "refused", "{results}");
    assert!(
        results[0]["detail"]
            .as_str()
            .unwrap_or("")
            .contains("retention"),
        "{results}"
    );
    // The refused copy was given back with a nack; a quorum queue counts it as ready again
    // once the return is applied, which can be a moment after the CLI exited.
    world
        .wait("the refused dead letter back in the DLQ", || async {
            world.env.queue_depth(&dlq).await == 1
        })
        .await;
    assert_eq!(
        world
            .env
            .queue_depth(&world.env.names.adjustment_pusher_queue().name)
            .await,
        0,
        "nothing republished to the work queue"
    );
}

#[tokio::test]
async fn a_purged_dead_letter_discards_its_adjustments_so_they_can_be_pruned() {
    let mut world = World::new(Setup::default()).await;
    world.map("SKU-1", Some(4242)).await;
    world.start_pusher();
    world
        .wait_consuming(&world.env.names.adjustment_pusher_queue().name)
        .await;
    world
        .publish(&tx(
            "purged-1",
            "put",
            "SKU-1",
            "MAIN",
            json!({"quantity": 4}),
        ))
        .await;
    let dlq = world.pusher_dlq();
    world
        .wait("the dead letter", || async {
            world.env.queue_depth(&dlq).await == 1
        })
        .await;
    world.stop_pusher().await;
    world
        .cli(&["dlq", "purge", "--queue", PUSHER_QUEUE, "--all", "--yes"])
        .await
        .assert_code(0);
    assert_eq!(world.env.queue_depth(&dlq).await, 0);
    assert_eq!(
        world
            .count(
                "SELECT count(*) FROM adjustments \
                 WHERE transaction_id = 'purged-1' AND state = 'discarded'"
            )
            .await,
        1,
        "no longer dead: the operator gave up on it"
    );
    assert_eq!(world.available("SKU-1", MAIN), STOCK, "never pushed");
}
