//! The retention job: old inbox rows, tombstones nothing needs, undeliverable announcements and
//! old backfill runs go; recent rows, tombstones something still needs and dead letters stay;
//! a redelivery inside the window is still a duplicate.

use platform::amqp::topology::ITEM_MAPPINGS;
use serde_json::json;

use crate::harness::{Ingest, SHOP, product, v};

/// Runs `sql` with `params` on the test's database.
async fn execute(
    ingest: &Ingest,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) {
    ingest
        .env
        .pool
        .get()
        .await
        .unwrap()
        .execute(sql, params)
        .await
        .unwrap();
}

async fn count(ingest: &Ingest, sql: &str) -> i64 {
    ingest
        .env
        .pool
        .get()
        .await
        .unwrap()
        .query_one(sql, &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn old_rows_nothing_needs_are_pruned_and_a_redelivery_inside_the_window_is_a_duplicate() {
    let mut ingest = Ingest::start().await;
    // Product 1: created, then deleted (a tombstone and a deleted variant).
    ingest
        .send(
            "products/create",
            &product(1, "Gone", 1, &[v(11, "GONE", 101)]),
            "w-1",
        )
        .await;
    ingest
        .send("products/delete", &json!({"id": 1}), "w-2")
        .await;
    // Product 2: a newer complete listing drops variant 22; the product lives on.
    ingest
        .send(
            "products/create",
            &product(2, "Pair", 1, &[v(21, "KEEP", 201), v(22, "DROPPED", 202)]),
            "w-3",
        )
        .await;
    ingest
        .send(
            "products/update",
            &product(2, "Pair", 2, &[v(21, "KEEP", 201)]),
            "w-4",
        )
        .await;
    // Product 3: deleted, but WOS writes its inventory item back into the item afterwards.
    ingest
        .send(
            "products/create",
            &product(3, "Pinned", 1, &[v(31, "PINNED", 301)]),
            "w-5",
        )
        .await;
    ingest
        .send("products/delete", &json!({"id": 3}), "w-6")
        .await;
    ingest
        .send(
            "products/create",
            &product(4, "New", 1, &[v(41, "NEW", 401)]),
            "w-recent",
        )
        .await;
    assert_eq!(ingest.messages("acked"), 7);
    ingest.stop_service().await;

    execute(
        &ingest,
        "UPDATE items SET inventory_item_id = 301 WHERE sku = 'PINNED'",
        &[],
    )
    .await;
    // Everything but w-3 (13 days: inside the 14-day window) and w-recent is 15 days old.
    execute(
        &ingest,
        "UPDATE inbox SET processed_at = now() - make_interval(days => 15) \
         WHERE message_id NOT IN ($1, $2)",
        &[&format!("{SHOP}/w-3"), &format!("{SHOP}/w-recent")],
    )
    .await;
    execute(
        &ingest,
        "UPDATE inbox SET processed_at = now() - make_interval(days => 13) WHERE message_id = $1",
        &[&format!("{SHOP}/w-3")],
    )
    .await;
    execute(
        &ingest,
        "UPDATE shopify_variants SET mirrored_at = now() - make_interval(days => 15) WHERE deleted",
        &[],
    )
    .await;
    execute(
        &ingest,
        "UPDATE shopify_products SET version = now() - make_interval(days => 15) WHERE deleted",
        &[],
    )
    .await;
    // The outbox: an announcement that could not be published for 8 days (its retry is not
    // due), and a dead letter of the pusher that could not be for 30.
    let exchange = ingest.env.names.name(ITEM_MAPPINGS);
    execute(
        &ingest,
        "INSERT INTO outbox (exchange, routing_key, message_id, body, created_at, attempts, \
             next_attempt_at, last_error) \
         VALUES ($1, 'mapping.set', 'old-announcement', '{}', now() - make_interval(days => 8), \
             40, now() + make_interval(days => 1), 'broker: NOT_FOUND'), \
                ('', 'gone.dlq', 'old-dead-letter', '{}', now() - make_interval(days => 30), \
             40, now() + make_interval(days => 1), 'queue `gone.dlq` does not exist')",
        &[&exchange],
    )
    .await;
    // Backfill runs: finished 31 days ago, finished yesterday, never finished.
    execute(
        &ingest,
        "WITH runs AS ( \
             INSERT INTO mapping_backfill_runs (shop_domain, started_at, finished_at) VALUES \
                 ($1, now() - make_interval(days => 31), now() - make_interval(days => 31)), \
                 ($1, now() - make_interval(days => 1), now() - make_interval(days => 1)), \
                 ($1, now() - make_interval(days => 40), NULL) \
             RETURNING id) \
         INSERT INTO mapping_backfill_results (run_id, sku, outcome) \
         SELECT id, sku, 'not_found' FROM runs, (VALUES ('A'), ('B')) AS skus (sku)",
        &[&SHOP],
    )
    .await;

    // A pass runs at start.
    ingest.start_service();
    ingest
        .wait_metric_at_least(
            "wos_sync_retention_pruned_rows_total",
            &[("table", "inbox")],
            5.0,
        )
        .await;
    let inbox: Vec<String> = ingest
        .env
        .pool
        .get()
        .await
        .unwrap()
        .query("SELECT message_id FROM inbox ORDER BY message_id", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(inbox, [format!("{SHOP}/w-3"), format!("{SHOP}/w-recent")]);
    assert_eq!(
        count(
            &ingest,
            "SELECT count(*) FROM shopify_variants WHERE variant_id IN (11, 22)"
        )
        .await,
        0,
        "tombstones nothing needs are gone"
    );
    assert_eq!(
        count(
            &ingest,
            "SELECT count(*) FROM shopify_variants WHERE variant_id IN (21, 31, 41)"
        )
        .await,
        3,
        "live variants, and a deleted one an item still points at, stay"
    );
    let products: Vec<(i64, bool)> = ingest
        .env
        .pool
        .get()
        .await
        .unwrap()
        .query(
            "SELECT product_id, deleted FROM shopify_products ORDER BY product_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(
        products,
        [(2, false), (3, true), (4, false)],
        "product 1's tombstone went after its variant; product 3's guards its variant"
    );
    let outbox: Vec<String> = ingest
        .env
        .pool
        .get()
        .await
        .unwrap()
        .query("SELECT message_id FROM outbox", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(outbox, ["old-dead-letter"], "dead letters are never pruned");
    assert_eq!(
        count(&ingest, "SELECT count(*) FROM mapping_backfill_runs").await,
        2
    );
    assert_eq!(
        count(
            &ingest,
            "SELECT count(*) FROM mapping_backfill_results r \
             JOIN mapping_backfill_runs u ON u.id = r.run_id \
             WHERE u.finished_at IS NULL OR u.finished_at > now() - make_interval(days => 2)"
        )
        .await,
        4
    );
    for (table, rows) in [
        ("inbox", 5.0),
        ("shopify_variants", 2.0),
        ("shopify_products", 1.0),
        ("outbox", 1.0),
        ("mapping_backfill_results", 2.0),
        ("mapping_backfill_runs", 1.0),
    ] {
        assert_eq!(
            ingest.metric(
                "wos_sync_retention_pruned_rows_total",
                &[("service", "item-ingest"), ("table", table)]
            ),
            rows,
            "{table}"
        );
    }

    // Shopify retries w-3 (13 days old): still a duplicate.
    ingest
        .send(
            "products/create",
            &product(2, "Pair", 1, &[v(21, "KEEP", 201), v(22, "DROPPED", 202)]),
            "w-3",
        )
        .await;
    assert_eq!(ingest.messages("duplicate"), 1);
    // A late update of the deleted product 3 meets its tombstone: stale, nothing revived.
    ingest
        .send(
            "products/update",
            &product(3, "Pinned", 2, &[v(31, "PINNED", 301)]),
            "w-late",
        )
        .await;
    assert_eq!(
        count(
            &ingest,
            "SELECT count(*) FROM shopify_variants WHERE NOT deleted AND product_id = 3"
        )
        .await,
        0
    );
    ingest.stop().await;
}
