//! Redeliveries and duplicates.

use std::time::Duration;

use serde_json::json;

use crate::harness::{Harness, tx};

const SHOP: &str = "acme.myshopify.com";

#[tokio::test]
async fn every_message_delivered_three_times_is_counted_once() {
    let mut h = Harness::start().await;
    let transactions: Vec<_> = (0..30)
        .map(|n| {
            tx(
                &format!("dup-{n}"),
                SHOP,
                "put",
                &format!("SKU-{}", n % 4),
                "EAST",
                json!({"quantity": n + 1}),
            )
        })
        .collect();
    for round in 0..3 {
        for (n, transaction) in transactions.iter().enumerate() {
            h.publish(transaction).await;
            if round == 0 {
                h.expect(SHOP, &format!("SKU-{}", n % 4), "EAST", n as i64 + 1);
            }
        }
    }
    h.assert_totals(Duration::from_secs(20)).await;
    assert_eq!(h.adjustments(SHOP, "put", "duplicate"), 60);
    assert_eq!(h.adjustments(SHOP, "put", "pushed"), 30);
    h.stop().await;
}

#[tokio::test]
async fn a_reused_transaction_id_with_other_content_is_dead_lettered_whichever_arrives_first() {
    let mut h = Harness::start().await;
    // WOS reuses an id for a different transaction. The two messages are handled concurrently:
    // whichever commits first is the transaction; the other is dead-lettered, never dropped.
    let put = tx(
        "reused-id",
        SHOP,
        "put",
        "SKU-0",
        "MAIN",
        json!({"quantity": 5}),
    );
    let pull = tx(
        "reused-id",
        SHOP,
        "pull",
        "SKU-1",
        "MAIN",
        json!({"quantity": 99}),
    );
    h.publish(&put).await;
    h.publish(&pull).await;
    let dlq = h.env.names.adjustment_pusher_queue().dead_letter_queue();
    let dead = h
        .env
        .wait_and_drain(&dlq, 1, Duration::from_secs(20))
        .await
        .remove(0)
        .delivery;
    let headers = dead.properties.headers().as_ref();
    let header = |name| platform::amqp::headers::header_str(headers, name);
    assert_eq!(header("x-error-kind"), Some("rejected"));
    let error = header("x-error").unwrap();
    assert!(error.contains("`reused-id`"), "{error}");
    assert!(error.contains("first"), "{error}");
    assert_eq!(
        dead.properties.message_id().as_ref().unwrap().as_str(),
        "reused-id"
    );
    let rejected: serde_json::Value = serde_json::from_slice(&dead.data).unwrap();
    let kept = if rejected == put {
        h.expect(SHOP, "SKU-1", "MAIN", -99);
        "pull"
    } else {
        assert_eq!(
            rejected, pull,
            "the dead letter is one of the two, unchanged"
        );
        h.expect(SHOP, "SKU-0", "MAIN", 5);
        "put"
    };
    h.assert_totals(Duration::from_secs(20)).await;
    let recorded: String = h
        .env
        .pool
        .get()
        .await
        .unwrap()
        .query_one("SELECT kind FROM wos_transactions", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(recorded, kept);
    let other = if kept == "put" { "pull" } else { "put" };
    assert_eq!(h.adjustments(SHOP, other, "dead_lettered"), 1);
    assert_eq!(h.count("SELECT count(*) FROM wos_transactions").await, 1);
    h.stop().await;
}

#[tokio::test]
async fn malformed_transactions_go_to_the_dlq_with_the_exact_problem() {
    let mut h = Harness::start().await;
    let unknown_shop = tx(
        "t-1",
        "other.myshopify.com",
        "put",
        "SKU-0",
        "MAIN",
        json!({"quantity": 1}),
    );
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"{not json".to_vec(), "JSON"),
        (
            tx("t-2", SHOP, "put", "SKU-0", "MAIN", json!({"quantity": 0}))
                .to_string()
                .into_bytes(),
            "`quantity`",
        ),
        (
            tx("t-3", SHOP, "teleport", "SKU-0", "MAIN", json!({}))
                .to_string()
                .into_bytes(),
            "`type`",
        ),
        (
            tx(
                "t-4",
                SHOP,
                "put",
                "SKU\u{7}",
                "MAIN",
                json!({"quantity": 1}),
            )
            .to_string()
            .into_bytes(),
            "`sku`",
        ),
        (
            unknown_shop.to_string().into_bytes(),
            "shop `other.myshopify.com` is not configured",
        ),
    ];
    for (n, (body, _)) in cases.iter().enumerate() {
        h.publish_raw(body, &format!("bad-{n}"), "put").await;
    }
    let dlq = h.env.names.adjustment_pusher_queue().dead_letter_queue();
    // Handlers run concurrently: match each dead letter to its case by message id.
    let mut dead = h
        .env
        .wait_and_drain(&dlq, cases.len(), Duration::from_secs(20))
        .await;
    dead.sort_by_key(|m| {
        m.delivery
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.to_string())
    });
    for (dead, (body, problem)) in dead.iter().zip(&cases) {
        let headers = dead.delivery.properties.headers().as_ref();
        assert_eq!(
            platform::amqp::headers::header_str(headers, "x-error-kind"),
            Some("malformed")
        );
        let error = platform::amqp::headers::header_str(headers, "x-error").unwrap();
        assert!(error.contains(problem), "expected {problem} in {error}");
        assert_eq!(&dead.delivery.data, body);
    }
    assert_eq!(h.count("SELECT count(*) FROM wos_transactions").await, 0);
    h.stop().await;
}
