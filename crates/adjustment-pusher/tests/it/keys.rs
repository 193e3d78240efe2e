//! A claimed batch and the call that sends it: a key Shopify may have forgotten is never sent,
//! and a wait for one batch never holds the shop. These tests drive one shop's push loop by
//! hand, so they can stand where a paused process or a slow Shopify would leave it.

use std::time::{Duration, Instant};

use adjustment_pusher::store::{self, BatchRules};
use shopify_sandbox::{FaultAction, FaultConfig, FaultRule};

use crate::harness::Harness;

const SHOP: &str = "acme.myshopify.com";
const DAY: Duration = Duration::from_secs(86_400);

#[tokio::test]
async fn a_key_that_aged_between_claim_and_send_is_never_sent() {
    let mut h = Harness::start().await;
    h.stop_replicas().await;
    let pusher = h.shop_pusher(0);
    h.insert_pending("SKU-0", 3, 1).await;
    let formed = store::form_batches(
        &h.env.pool,
        SHOP,
        BatchRules::default(),
        1,
        &pusher.dead_letter_queue,
    )
    .await
    .unwrap();
    assert_eq!(formed.len(), 1, "one batch formed");
    let batch = store::claim_open_batch(&h.env.pool, SHOP, Duration::from_secs(60), DAY)
        .await
        .unwrap()
        .expect("claimed");
    assert!(!batch.key_expired, "a fresh key");
    // The process stops right after its claim (a GC pause, a suspended VM) for longer than the
    // pusher may send a key: by the database's clock, its first send is two days old.
    h.env
        .pool
        .get()
        .await
        .unwrap()
        .execute(
            "UPDATE push_batches SET first_sent_at = now() - interval '2 days'",
            &[],
        )
        .await
        .unwrap();
    pusher.send(batch).await.unwrap();
    let requests: u64 = ["200", "timeout", "connection"]
        .iter()
        .map(|status| {
            pusher
                .metrics
                .shopify_requests_total
                .with_label_values(&[SHOP, "inventoryAdjustQuantities", status])
                .get()
        })
        .sum();
    assert_eq!(requests, 0, "a key Shopify may have forgotten was sent");
    assert!(h.sandbox.adjustment_groups(SHOP).unwrap().is_empty());
    // Never applied: its adjustment goes out again in a new batch, under a new key.
    assert_eq!(
        h.count("SELECT count(*) FROM adjustments WHERE state = 'pending' AND batch_id IS NULL")
            .await,
        1
    );
    assert_eq!(
        h.count("SELECT count(*) FROM push_batches WHERE state = 'failed'")
            .await,
        1
    );
}

#[tokio::test]
async fn a_concurrent_request_waits_for_its_batch_not_for_the_shop() {
    let mut h = Harness::start().await;
    h.stop_replicas().await;
    let pusher = std::sync::Arc::new(h.shop_pusher(0));
    // The shop has answered before (until it has, the pacer lets one call out at a time).
    pusher.client.pacer().reserve_now().settle(
        Some(shopify_admin::ThrottleStatus {
            maximum_available: 2000.0,
            currently_available: 2000.0,
            restore_rate: 100.0,
        }),
        Some(10.0),
        Instant::now(),
    );
    h.insert_pending("SKU-1", 2, 1).await;
    let formed = store::form_batches(
        &h.env.pool,
        SHOP,
        BatchRules::default(),
        1,
        &pusher.dead_letter_queue,
    )
    .await
    .unwrap();
    assert_eq!(formed.len(), 1, "one batch formed");
    let batch = store::claim_open_batch(&h.env.pool, SHOP, Duration::from_secs(60), DAY)
        .await
        .unwrap()
        .expect("claimed");
    // Shopify holds the first call; a second call with the same key (a resend after a
    // timeout) meets it still running: IDEMPOTENCY_CONCURRENT_REQUEST.
    h.sandbox
        .set_faults(FaultConfig::rule(
            FaultRule::next(1, FaultAction::Hold).mutations_only(),
        ))
        .unwrap();
    let first = {
        let (pusher, batch) = (pusher.clone(), batch.clone());
        tokio::spawn(async move { pusher.send(batch).await })
    };
    testkit::wait_until(Duration::from_secs(10), "the first call held", || async {
        h.sandbox.held_requests() == 1
    })
    .await;
    pusher.send(batch.clone()).await.unwrap();
    let concurrent = h
        .count("SELECT count(*) FROM push_batches WHERE last_error = 'IDEMPOTENCY_CONCURRENT_REQUEST' AND not_before > now()")
        .await;
    assert_eq!(
        concurrent, 1,
        "the batch waits for the request running under its key"
    );
    assert_eq!(
        pusher.client.pacer().delay_before_call(Instant::now()),
        Duration::ZERO,
        "the shop's other calls do not wait for it"
    );
    h.sandbox.release_held();
    first.await.unwrap().unwrap();
    h.expect(SHOP, "SKU-1", "MAIN", 2);
    h.assert_totals(Duration::from_secs(10)).await;
}
