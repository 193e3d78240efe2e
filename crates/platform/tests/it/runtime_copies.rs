//! The consumer runtime's copies and counts: a copy the broker cannot take yet, a retry queue
//! deleted under it, the headers copies drop, dead letters put back by hand, crash loops and
//! `delivery_limit`.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use lapin::{
    BasicProperties,
    options::QueueDeleteOptions,
    types::{AMQPValue, FieldTable},
};
use platform::amqp::{
    consumer::{Disposition, Handler, Incoming},
    headers::{header_str, header_u64, set_i64, set_str},
};
use testkit::{TestEnv, close_connections_named, proxy::Proxy, wait_until};

use crate::runtime::{Flaky, SERVICE, SharedHandler, consumer_config, message, start_config};

async fn publish(env: &TestEnv, properties: BasicProperties) {
    env.publish(
        &env.names.name("shopify.events"),
        "products.update",
        b"{}",
        properties,
    )
    .await;
}

/// Records whether each delivery was a redelivery.
struct RecordRedeliveries<H> {
    inner: Arc<H>,
    redelivered: Arc<AtomicU32>,
}

impl<H: Handler> Handler for RecordRedeliveries<H> {
    async fn handle(&self, message: &Incoming) -> Disposition {
        if message.redelivered {
            self.redelivered.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.handle(message).await
    }
}

#[tokio::test]
async fn a_retry_copy_the_broker_does_not_confirm_waits_in_process_and_never_reaches_the_dlq() {
    let env = TestEnv::new().await;
    let (proxy, url) = Proxy::for_amqp_url(&env.amqp_url).await.unwrap();
    let mut config = consumer_config(&env);
    config.amqp_url = url;
    config.settings.publish_timeout_ms = 1_000;
    // Low, so that a requeue per failed copy would reach it within a few tries.
    config.retry.delivery_limit = 2;
    let handler = Flaky::new(1);
    let redelivered = Arc::new(AtomicU32::new(0));
    let consumer = start_config(
        &env,
        RecordRedeliveries {
            inner: Arc::new(SharedHandler(handler.clone())),
            redelivered: redelivered.clone(),
        },
        config,
    )
    .await;

    // A first message through a retry, so the runtime's copy connection is open.
    publish(&env, message("warm-up")).await;
    wait_until(Duration::from_secs(15), "warm-up handled", || async {
        consumer.count("acked") == 1
    })
    .await;

    // The broker takes the copy connection's publishes and never confirms (nor answers a new
    // connection's handshake): as a broker whose confirms stall.
    let opened = proxy.accepted();
    proxy.stall_named("/forward");
    publish(&env, message("stalled")).await;
    // A second try opens a new connection: by then the copy is waiting, and the runtime starts
    // nothing new.
    wait_until(Duration::from_secs(30), "a second try", || async {
        proxy.accepted() > opened
    })
    .await;
    publish(&env, message("second")).await;
    // Each try after the first times out and replaces the connection: wait for a few tries
    // (or for the message to reach the DLQ, which it must not).
    let dlq = consumer.queue.dead_letter_queue();
    wait_until(Duration::from_secs(60), "three more tries", || async {
        proxy.accepted() >= opened + 3 || env.queue_depth(&dlq).await > 0
    })
    .await;
    assert_eq!(
        env.queue_depth(&dlq).await,
        0,
        "dead-lettered during the stall"
    );
    assert_eq!(
        handler.attempts_of("second"),
        [] as [u32; 0],
        "consumption paused while the copy waits"
    );

    proxy.resume();
    wait_until(
        Duration::from_secs(60),
        "the message handled from its retry copy",
        || async { handler.attempts_of("stalled").contains(&2) },
    )
    .await;
    let attempts = handler.attempts_of("stalled");
    // Attempt 2 comes from the copy in Q.retry.1 (its x-attempts); more than one is possible:
    // a copy whose confirm was held may have been stored too (at least once).
    assert_eq!(attempts[0], 1, "{attempts:?}");
    assert!(
        attempts[1..].iter().all(|&n| n == 2),
        "the original was handled once, its copies after: {attempts:?}"
    );
    assert_eq!(
        redelivered.load(Ordering::SeqCst),
        0,
        "the original was never requeued"
    );
    wait_until(
        Duration::from_secs(30),
        "the second message handled",
        || async { handler.attempts_of("second").contains(&2) },
    )
    .await;
    assert_eq!(consumer.count("dead_lettered"), 0);
    assert_eq!(
        env.queue_depth(&consumer.queue.dead_letter_queue()).await,
        0
    );
    consumer.stop().await;
}

#[tokio::test]
async fn shutdown_ends_the_wait_for_a_copy_and_returns_the_message_to_its_queue() {
    let env = TestEnv::new().await;
    let (proxy, url) = Proxy::for_amqp_url(&env.amqp_url).await.unwrap();
    let mut config = consumer_config(&env);
    config.amqp_url = url;
    config.settings.publish_timeout_ms = 1_000;
    // Longer than the test waits for the stop: the wait must end at shutdown, not at the grace.
    config.settings.shutdown_grace_ms = 60_000;
    let consumer = start_config(&env, SharedHandler(Flaky::new(u32::MAX)), config).await;
    proxy.stall_named("/forward");
    let opened = proxy.accepted();
    publish(&env, message("m")).await;
    wait_until(Duration::from_secs(30), "a second try", || async {
        proxy.accepted() > opened
    })
    .await;

    let queue = consumer.queue.clone();
    consumer.stop().await;
    let left = env.drain(&queue.name).await;
    assert!(
        left.iter().any(|m| {
            let headers = m.delivery.properties.headers().as_ref();
            header_u64(headers, "x-attempts").is_none()
        }),
        "the original is back in its queue"
    );
    assert_eq!(env.queue_depth(&queue.dead_letter_queue()).await, 0);
}

#[tokio::test]
async fn a_retry_queue_deleted_under_the_consumer_is_declared_again() {
    let env = TestEnv::new().await;
    let handler = Flaky::new(1);
    let consumer = start_config(&env, SharedHandler(handler.clone()), consumer_config(&env)).await;
    let retry_queue = consumer.queue.retry_queue(1);
    env.channel()
        .queue_delete(retry_queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();

    publish(&env, message("m")).await;
    wait_until(Duration::from_secs(30), "handled after a retry", || async {
        consumer.count("acked") == 1
    })
    .await;
    assert_eq!(handler.attempts_of("m"), [1, 2]);
    assert_eq!(env.queue_depth(&retry_queue).await, 0, "declared again");
    assert_eq!(
        env.queue_depth(&consumer.queue.dead_letter_queue()).await,
        0
    );
    consumer.stop().await;
}

/// Retries the first attempt and dead-letters the second.
struct RetryThenReject;

impl Handler for RetryThenReject {
    async fn handle(&self, message: &Incoming) -> Disposition {
        if message.attempt == 1 {
            Disposition::retry("not yet")
        } else {
            Disposition::malformed("not ever")
        }
    }
}

#[tokio::test]
async fn copies_drop_the_broker_headers_and_keep_the_publishers() {
    let env = TestEnv::new().await;
    let consumer = start_config(&env, RetryThenReject, consumer_config(&env)).await;
    // As a message moved here from another queue might look: broker headers of its past.
    let mut headers = FieldTable::default();
    set_str(&mut headers, "x-shopify-topic", "products/update");
    set_str(
        &mut headers,
        "traceparent",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    );
    set_i64(&mut headers, "x-delivery-count", 5);
    set_i64(&mut headers, "x-acquired-count", 6);
    set_str(&mut headers, "x-first-death-queue", "elsewhere");
    set_str(&mut headers, "x-last-death-reason", "rejected");
    headers.insert("x-death".into(), AMQPValue::FieldArray(Default::default()));
    publish(
        &env,
        BasicProperties::default()
            .with_message_id("m".into())
            .with_headers(headers),
    )
    .await;

    let dead = env
        .wait_and_drain(
            &consumer.queue.dead_letter_queue(),
            1,
            Duration::from_secs(15),
        )
        .await
        .remove(0)
        .delivery;
    let headers = dead.properties.headers().clone().unwrap_or_default();
    // RabbitMQ 3.10 adds `x-delivery-count: 0` to a message taken with basic.get: the reading,
    // not the copy.
    assert_eq!(
        header_u64(Some(&headers), "x-delivery-count").unwrap_or(0),
        0,
        "the copy's own delivery count"
    );
    let mut names: Vec<_> = headers
        .inner()
        .keys()
        .map(|k| k.to_string())
        .filter(|name| name != "x-delivery-count")
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "traceparent",
            "x-attempts",
            "x-error",
            "x-error-kind",
            "x-failed-at",
            "x-service",
            "x-shopify-topic"
        ],
        "the dead letter went through Q.retry.1 and still carries no x-death"
    );
    assert_eq!(header_u64(Some(&headers), "x-attempts"), Some(2));
    assert_eq!(
        header_str(Some(&headers), "traceparent"),
        Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    );
    consumer.stop().await;
}

#[tokio::test]
async fn a_dead_letter_shovelled_back_by_hand_gets_a_full_retry_budget() {
    let env = TestEnv::new().await;
    // max_attempts is 4: three failures and a success use the whole budget.
    let handler = Flaky::new(3);
    let consumer = start_config(&env, SharedHandler(handler.clone()), consumer_config(&env)).await;
    // A dead letter as it sits in Q.dlq after being looked at (the DLQ counted its returns),
    // moved back to the work queue with every header.
    let mut headers = FieldTable::default();
    set_str(&mut headers, "x-error-kind", "exhausted");
    set_str(&mut headers, "x-error", "gave up after 4 attempts");
    set_i64(&mut headers, "x-attempts", 4);
    set_str(&mut headers, "x-failed-at", "2026-11-27T10:00:00.000Z");
    set_str(&mut headers, "x-service", SERVICE);
    set_i64(&mut headers, "x-delivery-count", 3);
    publish(
        &env,
        BasicProperties::default()
            .with_message_id("shovelled".into())
            .with_headers(headers),
    )
    .await;
    wait_until(Duration::from_secs(20), "handled", || async {
        consumer.count("acked") == 1
    })
    .await;
    assert_eq!(handler.attempts_of("shovelled"), [1, 2, 3, 4]);
    assert_eq!(consumer.count("dead_lettered"), 0);
    assert_eq!(
        env.queue_depth(&consumer.queue.dead_letter_queue()).await,
        0
    );
    consumer.stop().await;
}

#[tokio::test]
async fn with_a_delivery_limit_of_one_a_fresh_message_is_handled() {
    let env = TestEnv::new().await;
    let handler = Flaky::new(0);
    let mut config = consumer_config(&env);
    config.retry.delivery_limit = 1;
    let consumer = start_config(&env, SharedHandler(handler.clone()), config).await;
    publish(&env, message("m")).await;
    wait_until(Duration::from_secs(10), "handled", || async {
        consumer.count("acked") + consumer.count("dead_lettered") == 1
    })
    .await;
    assert_eq!(consumer.count("acked"), 1);
    assert_eq!(handler.attempts_of("m"), [1]);
    consumer.stop().await;
}

/// Kills its own consumer's connections on every message (as a crash would end the delivery),
/// recording whether each delivery was a redelivery.
struct Crashing {
    fragment: String,
    seen: Mutex<Vec<bool>>,
}

impl Handler for Crashing {
    async fn handle(&self, message: &Incoming) -> Disposition {
        self.seen.lock().unwrap().push(message.redelivered);
        let fragment = self.fragment.clone();
        let _ = tokio::task::spawn_blocking(move || close_connections_named(&fragment)).await;
        // The session ends under it: the runtime aborts this handler.
        std::future::pending().await
    }
}

#[tokio::test]
async fn a_crash_loop_is_dead_lettered_after_delivery_limit_failed_deliveries() {
    let env = TestEnv::new().await;
    let crashing = Arc::new(Crashing {
        fragment: format!("{SERVICE}/t-{}.", env.id),
        seen: Mutex::default(),
    });
    let mut config = consumer_config(&env);
    config.retry.delivery_limit = 2;
    let consumer = start_config(&env, SharedHandler(crashing.clone()), config).await;
    publish(&env, message("looping")).await;

    let dead = env
        .wait_and_drain(
            &consumer.queue.dead_letter_queue(),
            1,
            Duration::from_secs(30),
        )
        .await
        .remove(0)
        .delivery;
    let headers = dead.properties.headers().as_ref();
    assert_eq!(header_str(headers, "x-error-kind"), Some("exhausted"));
    let error = header_str(headers, "x-error").unwrap();
    assert!(
        error.starts_with("2 deliveries ended without an acknowledgement"),
        "{error}"
    );
    assert_eq!(
        header_u64(headers, "x-delivery-count").unwrap_or(0),
        0,
        "not the count of the work queue"
    );
    assert_eq!(
        *crashing.seen.lock().unwrap(),
        [false, true],
        "the handler ran on delivery_limit deliveries, then not again"
    );
    consumer.stop().await;
}
