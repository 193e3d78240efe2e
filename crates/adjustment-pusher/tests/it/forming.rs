//! Batch forming across replicas: one open batch per shop, enforced by the database.

use std::{sync::Arc, time::Duration};

use adjustment_pusher::store::{self, BatchRules};

use crate::harness::Harness;

const SHOP: &str = "acme.myshopify.com";

#[tokio::test]
async fn concurrent_batch_forming_by_two_replicas_never_leaves_two_open_batches_for_a_shop() {
    let mut h = Harness::start().await;
    // Only this test forms batches.
    h.stop_replicas().await;
    let main = h.shop(0).locations["MAIN"].0 as i64;
    let item = h.item_of(0, "SKU-0");
    // More pending adjustments than one forming takes (5000), so every former finds some.
    let client = h.env.pool.get().await.unwrap();
    client
        .execute(
            "INSERT INTO wos_transactions (shop_domain, transaction_id, kind, sku, occurred_at, \
                 content_digest, body) \
             SELECT $1::text, 'race-' || n, 'put', 'SKU-0', now(), 'digest', '\\x7b7d'::bytea \
             FROM generate_series(1, 16000) AS n",
            &[&SHOP],
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO adjustments (shop_domain, transaction_id, kind, sku, location_id, delta, \
                 reason, occurred_at, state, inventory_item_id) \
             SELECT shop_domain, transaction_id, 'put', 'SKU-0', $2, 1, 'received', occurred_at, \
                 'pending', $3 FROM wos_transactions WHERE shop_domain = $1",
            &[&SHOP, &main, &item],
        )
        .await
        .unwrap();
    drop(client);

    // Two replicas (two pools), eight push loops each, all forming at the same instant, the
    // way a push loop does: look for an open batch, then form one.
    let replicas = [
        platform::db::connect_pool(&h.settings.database).unwrap(),
        platform::db::connect_pool(&h.settings.database).unwrap(),
    ];
    let dlq = h.env.names.adjustment_pusher_queue().dead_letter_queue();
    let barrier = Arc::new(tokio::sync::Barrier::new(16));
    let mut formers = Vec::new();
    for n in 0..16 {
        let pool = replicas[n % 2].clone();
        let barrier = barrier.clone();
        let dlq = dlq.clone();
        formers.push(tokio::spawn(async move {
            barrier.wait().await;
            if store::has_open_batch(&pool, SHOP).await.unwrap() {
                return false;
            }
            store::form_batch(
                &pool,
                SHOP,
                BatchRules {
                    max_changes: 250,
                    coalesce_transactions: true,
                },
                &dlq,
            )
            .await
            .unwrap()
            .is_some()
        }));
    }
    let mut formed = 0;
    for former in formers {
        formed += usize::from(
            tokio::time::timeout(Duration::from_secs(60), former)
                .await
                .unwrap()
                .unwrap(),
        );
    }
    let open = h
        .count("SELECT count(*) FROM push_batches WHERE shop_domain = 'acme.myshopify.com' AND state = 'open'")
        .await;
    assert_eq!(open, 1, "{formed} formers said they formed a batch");
    // The open batch holds exactly the adjustments it took; the rest still wait.
    let batched = h
        .count("SELECT count(*) FROM adjustments WHERE state = 'batched'")
        .await;
    assert_eq!(
        h.count("SELECT count(*) FROM adjustments WHERE state = 'pending'")
            .await,
        16000 - batched
    );
}
