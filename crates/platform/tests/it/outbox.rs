//! The outbox relay: a row the broker does not take is put aside, the rest goes on; a broker
//! out of reach charges no row.

use std::time::Duration;

use platform::{
    amqp::publisher::Publisher,
    metrics::Metrics,
    outbox::{OutboxMessage, OutboxMetrics, Relayed, enqueue, publish_batch},
};
use testkit::TestEnv;

/// A queue of the test's connection, deleted with it.
/// `(message_id, attempts, last_error, due later)` of every row, by id.
async fn rows(env: &TestEnv) -> Vec<(String, i32, Option<String>, bool)> {
    env.pool
        .get()
        .await
        .unwrap()
        .query(
            "SELECT message_id, attempts, last_error, coalesce(next_attempt_at > now(), false) \
             FROM outbox ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3)))
        .collect()
}

fn failures(metrics: &Metrics, reason: &str) -> u64 {
    metrics
        .outbox_publish_failures_total
        .with_label_values(&["svc", reason])
        .get()
}

#[tokio::test]
async fn rows_the_broker_does_not_take_are_put_aside_and_the_rows_after_them_are_published() {
    let env = TestEnv::new().await;
    let prefix = env.names.prefix().to_owned();
    let (missing_queue, target) = (format!("{prefix}missing"), format!("{prefix}target"));
    env.declare_exclusive_queue(&target).await;
    let client = env.pool.get().await.unwrap();
    let missing_exchange = format!("{prefix}no-such-exchange");
    for message in [
        OutboxMessage::json("", &missing_queue, "to-a-missing-queue", b"{}"),
        OutboxMessage::json(&missing_exchange, "key", "to-a-missing-exchange", b"{}"),
        OutboxMessage::json("", &target, "fine", b"{}"),
    ] {
        enqueue(&client, &message).await.unwrap();
    }
    drop(client);
    let publisher = Publisher::new(env.amqp_url.clone(), format!("test-{}-outbox", env.id));
    let metrics = Metrics::new();
    let relay_metrics = OutboxMetrics::new(&metrics, "svc");

    let relayed = publish_batch(&env.pool, &publisher, &relay_metrics)
        .await
        .unwrap();
    assert_eq!(
        relayed,
        Relayed {
            published: 1,
            deferred: 2
        }
    );
    let delivered = env
        .wait_and_drain(&target, 1, Duration::from_secs(10))
        .await;
    assert_eq!(
        delivered[0]
            .delivery
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.as_str()),
        Some("fine")
    );
    let left = rows(&env).await;
    assert_eq!(left.len(), 2, "{left:?}");
    assert_eq!(
        (left[0].0.as_str(), left[0].1, left[0].3),
        ("to-a-missing-queue", 1, true)
    );
    assert!(
        left[0]
            .2
            .as_deref()
            .unwrap_or("")
            .contains("does not exist"),
        "{left:?}"
    );
    assert_eq!(
        (left[1].0.as_str(), left[1].1, left[1].3),
        ("to-a-missing-exchange", 1, true)
    );
    assert!(
        left[1].2.as_deref().unwrap_or("").contains("NOT_FOUND"),
        "{left:?}"
    );
    assert_eq!(failures(&metrics, "unroutable"), 1);
    assert_eq!(failures(&metrics, "refused"), 1);
    assert_eq!(
        platform::outbox::deferred_count(&env.pool).await.unwrap(),
        2
    );

    // Put aside: not tried again before their backoff ends.
    assert_eq!(
        publish_batch(&env.pool, &publisher, &relay_metrics)
            .await
            .unwrap(),
        Relayed::default()
    );
    // Once due, and the queue exists, the dead letter goes; the other waits longer.
    env.declare_exclusive_queue(&missing_queue).await;
    env.pool
        .get()
        .await
        .unwrap()
        .execute("UPDATE outbox SET next_attempt_at = now()", &[])
        .await
        .unwrap();
    assert_eq!(
        publish_batch(&env.pool, &publisher, &relay_metrics)
            .await
            .unwrap(),
        Relayed {
            published: 1,
            deferred: 1
        }
    );
    env.wait_and_drain(&missing_queue, 1, Duration::from_secs(10))
        .await;
    let left = rows(&env).await;
    assert_eq!(
        (left[0].0.as_str(), left[0].1),
        ("to-a-missing-exchange", 2)
    );
    publisher.close().await;
}

#[tokio::test]
async fn a_broker_out_of_reach_stops_the_batch_and_puts_no_row_aside() {
    let env = TestEnv::new().await;
    let client = env.pool.get().await.unwrap();
    for id in ["a", "b"] {
        enqueue(&client, &OutboxMessage::json("", "somewhere", id, b"{}"))
            .await
            .unwrap();
    }
    drop(client);
    // Nothing listens on port 1.
    let publisher = Publisher::new(
        "amqp://guest:guest@127.0.0.1:1/%2f".into(),
        format!("test-{}-down", env.id),
    );
    let metrics = Metrics::new();
    let relayed = publish_batch(&env.pool, &publisher, &OutboxMetrics::new(&metrics, "svc")).await;
    assert!(relayed.is_err(), "{relayed:?}");
    let left = rows(&env).await;
    assert_eq!(
        left.iter().map(|r| (r.0.as_str(), r.1)).collect::<Vec<_>>(),
        [("a", 0), ("b", 0)],
        "every row stays as it was, due at once"
    );
    assert_eq!(failures(&metrics, "unavailable"), 1);
}
