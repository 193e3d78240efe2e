//! Topology declaration against the real broker.

use std::time::Duration;

use lapin::{BasicProperties, options::QueueDeclareOptions, types::FieldTable};
use platform::amqp::{
    consumer::ATTEMPTS_HEADER,
    headers::header_u64,
    topology::{declare_exchanges, declare_work_queue},
};
use testkit::{TestEnv, wait_until};

#[tokio::test]
async fn declaring_twice_is_harmless_and_a_retry_tier_returns_messages_to_the_work_queue() {
    let env = TestEnv::new().await;
    let settings = env.settings();
    let queue = env.names.item_ingest_queue();
    for _ in 0..2 {
        declare_exchanges(env.channel(), &env.names).await.unwrap();
        declare_work_queue(env.channel(), &queue, &settings.retry)
            .await
            .unwrap();
    }

    // Bound: a publish to shopify.events with products.update lands in the work queue.
    env.publish(
        &env.names.name("shopify.events"),
        "products.update",
        b"{}",
        BasicProperties::default(),
    )
    .await;
    wait_until(
        Duration::from_secs(5),
        "routed to the work queue",
        || async { env.queue_depth(&queue.name).await == 1 },
    )
    .await;
    env.drain(&queue.name).await;

    // A message parked in retry tier 2 with a short expiration comes back to the work queue
    // by itself, headers intact.
    let mut headers = FieldTable::default();
    platform::amqp::headers::set_i64(&mut headers, ATTEMPTS_HEADER, 2);
    let properties = BasicProperties::default()
        .with_headers(headers)
        .with_expiration("100".into());
    env.publish("", &queue.retry_queue(2), b"later", properties)
        .await;
    wait_until(
        Duration::from_secs(5),
        "expired back into the work queue",
        || async { env.queue_depth(&queue.name).await == 1 },
    )
    .await;
    let back = env.drain(&queue.name).await;
    assert_eq!(back[0].delivery.data, b"later");
    assert_eq!(
        header_u64(
            back[0].delivery.properties.headers().as_ref(),
            ATTEMPTS_HEADER
        ),
        Some(2)
    );
    assert_eq!(
        back[0].delivery.properties.expiration(),
        &None,
        "the broker strips the expiration"
    );
}

#[tokio::test]
async fn work_queues_are_quorum_queues_with_dead_lettering_to_their_dlq() {
    let env = TestEnv::new().await;
    let queue = env.names.adjustment_pusher_queue();
    declare_exchanges(env.channel(), &env.names).await.unwrap();
    declare_work_queue(env.channel(), &queue, &env.settings().retry)
        .await
        .unwrap();

    // Redeclaring as a classic queue must fail: the broker knows it as a quorum queue.
    let probe = env.channel().clone();
    let classic = probe
        .queue_declare(
            queue.name.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await;
    assert!(
        classic.is_err(),
        "queue must not be redeclarable as classic"
    );

    // Every queue of the family exists (checked on new channels: the failed declaration
    // closed the one above).
    for name in [
        queue.dead_letter_queue(),
        queue.retry_queue(1),
        queue.retry_queue(3),
        queue.name.clone(),
    ] {
        assert_eq!(
            env.queue_depth(&name).await,
            0,
            "{name} exists and is empty"
        );
    }
}
