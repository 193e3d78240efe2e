//! Batch forming across replicas: at most `batches_in_flight` open batches per shop, one per
//! slot, enforced by the database; rows of one batch never in another; an `(item, location)`
//! pair in flight in one batch only.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use adjustment_pusher::store::{self, BatchRules};
use tokio_postgres::error::SqlState;

use crate::harness::{Harness, Options};

const SHOP: &str = "acme.myshopify.com";

/// `formers` formers from two replicas (two pools) forming at the same instant, the way the
/// push loops' workers do, with `slots` batches in flight allowed. How many batches they formed.
async fn form_together(h: &Harness, formers: usize, slots: u16, rules: BatchRules) -> usize {
    let replicas = [
        platform::db::connect_pool(&h.settings.database).unwrap(),
        platform::db::connect_pool(&h.settings.database).unwrap(),
    ];
    let dlq = h.env.names.adjustment_pusher_queue().dead_letter_queue();
    let barrier = Arc::new(tokio::sync::Barrier::new(formers));
    let mut tasks = Vec::new();
    for n in 0..formers {
        let pool = replicas[n % 2].clone();
        let barrier = barrier.clone();
        let dlq = dlq.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            store::form_batches(&pool, SHOP, rules, slots, &dlq)
                .await
                .unwrap()
                .iter()
                .filter(|formed| formed.id.is_some())
                .count()
        }));
    }
    let mut formed = 0;
    for task in tasks {
        formed += tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .unwrap()
            .unwrap();
    }
    formed
}

/// Pending `+1`s straight into the store: `per_sku` for each of `skus` SKUs, at MAIN.
async fn insert_pending_over(h: &Harness, skus: usize, per_sku: i64) {
    let main = h.shop(0).locations["MAIN"].0 as i64;
    let client = h.env.pool.get().await.unwrap();
    for n in 0..skus {
        let sku = format!("SKU-{n}");
        client
            .execute(
                "INSERT INTO wos_transactions (shop_domain, transaction_id, kind, sku, \
                     occurred_at, content_digest, body) \
                 SELECT $1::text, 'f-' || $2::text || '-' || k, 'put', $2::text, now(), \
                     'digest', '\\x7b7d'::bytea \
                 FROM generate_series(1, $3::bigint) AS k",
                &[&SHOP, &sku, &per_sku],
            )
            .await
            .unwrap();
    }
    client
        .execute(
            "INSERT INTO adjustments (shop_domain, transaction_id, kind, sku, location_id, delta, \
                 reason, occurred_at, state, inventory_item_id) \
             SELECT w.shop_domain, w.transaction_id, 'put', w.sku, $2, 1, 'received', \
                 w.occurred_at, 'pending', i.inventory_item_id \
             FROM wos_transactions w JOIN items i USING (shop_domain, sku) \
             WHERE w.shop_domain = $1 ORDER BY w.transaction_id",
            &[&SHOP, &main],
        )
        .await
        .unwrap();
}

/// Every adjustment id named in the open batches' stored changes, and the pairs they carry.
async fn open_batch_contents(h: &Harness) -> (Vec<i64>, Vec<(i64, i64)>) {
    let client = h.env.pool.get().await.unwrap();
    let ids = client
        .query(
            "SELECT (jsonb_array_elements(c->'adjustments'))::bigint FROM push_batches b, \
                 jsonb_array_elements(b.changes) c WHERE b.state = 'open'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let pairs = client
        .query(
            "SELECT (c->>'inventory_item_id')::bigint, (c->>'location_id')::bigint \
             FROM push_batches b, jsonb_array_elements(b.changes) c WHERE b.state = 'open'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    (ids, pairs)
}

#[tokio::test]
async fn concurrent_formers_of_two_replicas_fill_every_slot_and_never_more() {
    let mut h = Harness::with(Options {
        skus: 64,
        ..Options::default()
    })
    .await;
    // Only this test forms batches.
    h.stop_replicas().await;
    insert_pending_over(&h, 64, 3).await;
    let rules = BatchRules {
        max_changes: 10,
        coalesce_transactions: true,
    };

    // Sixteen formers at once, four slots: four batches, one per slot.
    let formed = form_together(&h, 16, 4, rules).await;
    assert_eq!(formed, 4, "every slot filled, no more");
    let slots: BTreeSet<i64> = h
        .env
        .pool
        .get()
        .await
        .unwrap()
        .query(
            "SELECT slot::bigint FROM push_batches WHERE state = 'open'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(slots, BTreeSet::from([0, 1, 2, 3]));

    // Disjoint rows: each batched adjustment is behind exactly one change of one open batch,
    // and the open batches never share a pair.
    let (ids, pairs) = open_batch_contents(&h).await;
    let distinct_ids: BTreeSet<i64> = ids.iter().copied().collect();
    assert_eq!(
        distinct_ids.len(),
        ids.len(),
        "an adjustment in two batches"
    );
    let distinct_pairs: BTreeSet<(i64, i64)> = pairs.iter().copied().collect();
    assert_eq!(pairs.len(), 40, "four batches of ten changes");
    assert_eq!(distinct_pairs.len(), 40, "a pair in flight in two batches");
    let batched = h
        .count("SELECT count(*) FROM adjustments WHERE state = 'batched'")
        .await;
    assert_eq!(batched, ids.len() as i64);
    assert_eq!(
        h.count(
            "SELECT count(*) FROM adjustments a JOIN push_batches b ON b.id = a.batch_id \
             WHERE a.state = 'batched' AND b.state = 'open'"
        )
        .await,
        batched
    );
    assert_eq!(
        h.count("SELECT count(*) FROM adjustments WHERE state = 'pending'")
            .await,
        64 * 3 - batched
    );

    // A settled batch frees its slot, and exactly one more forms in it.
    h.env
        .pool
        .get()
        .await
        .unwrap()
        .execute(
            "UPDATE push_batches SET state = 'applied', completed_at = now() WHERE slot = 2",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(form_together(&h, 8, 4, rules).await, 1);
    assert_eq!(
        h.count("SELECT count(*) FROM push_batches WHERE state = 'open' AND slot = 2")
            .await,
        1
    );
    assert_eq!(
        h.count("SELECT count(*) FROM push_batches WHERE state = 'open'")
            .await,
        4
    );
}

#[tokio::test]
async fn a_pair_in_flight_waits_for_its_batch_whatever_the_free_slots() {
    let mut h = Harness::start().await;
    h.stop_replicas().await;
    // More pending adjustments of one pair than one forming takes (5000).
    h.insert_pending("SKU-0", 1, 16000).await;
    let formed = form_together(&h, 16, 4, BatchRules::default()).await;
    assert_eq!(formed, 1, "SKU-0 at MAIN in flight in one batch only");
    assert_eq!(
        h.count("SELECT count(*) FROM push_batches WHERE state = 'open'")
            .await,
        1
    );
    // The open batch holds exactly the adjustments it took; the rest still wait.
    let batched = h
        .count("SELECT count(*) FROM adjustments WHERE state = 'batched'")
        .await;
    assert_eq!(batched, 5000);
    assert_eq!(
        h.count("SELECT count(*) FROM adjustments WHERE state = 'pending'")
            .await,
        16000 - batched
    );
}

#[tokio::test]
async fn the_database_refuses_a_second_open_batch_in_a_slot_and_slots_past_the_bound() {
    let mut h = Harness::start().await;
    h.stop_replicas().await;
    let client = h.env.pool.get().await.unwrap();
    let insert = |slot: i16, key: &'static str| {
        let client = &client;
        async move {
            client
                .execute(
                    "INSERT INTO push_batches (shop_domain, reason, idempotency_key, variables, \
                         changes, change_count, state, slot) \
                     VALUES ($1, 'received', $2, '{}', '[]', 1, 'open', $3)",
                    &[&SHOP, &key, &slot],
                )
                .await
        }
    };
    insert(0, "k-0").await.unwrap();
    insert(15, "k-15").await.unwrap();
    let taken = insert(0, "k-0-again").await.unwrap_err();
    assert_eq!(taken.code(), Some(&SqlState::UNIQUE_VIOLATION), "{taken}");
    let beyond = insert(16, "k-16").await.unwrap_err();
    assert_eq!(beyond.code(), Some(&SqlState::CHECK_VIOLATION), "{beyond}");
}
