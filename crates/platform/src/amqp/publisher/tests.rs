//! Unit tests of `publisher`.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use lapin::{
    ExchangeKind,
    options::{
        BasicGetOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
        QueueDeclareOptions, QueueDeleteOptions,
    },
    types::FieldTable,
};
use testkit::{proxy::Proxy, wait_until};

use super::*;

#[test]
fn backoff_doubles_to_the_cap() {
    let (first, cap) = (Duration::from_millis(100), Duration::from_secs(1));
    let delays: Vec<_> = (1..=6)
        .map(|n| backoff(n, first, cap).as_millis())
        .collect();
    assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
    assert_eq!(backoff(u32::MAX, first, cap), cap);
}

/// A scratch exchange with one bound queue (`routed.*`), removed on drop.
struct Scratch {
    exchange: String,
    queue: String,
    connection: Connection,
    channel: Channel,
}

impl Scratch {
    async fn new() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let connection = super::super::connect(&testkit::amqp_url(), &format!("test-{id}"))
            .await
            .unwrap();
        let channel = connection.create_channel().await.unwrap();
        let exchange = format!("t-{id}.publisher");
        let queue = format!("t-{id}.publisher-queue");
        channel
            .exchange_declare(
                exchange.as_str().into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        channel
            .queue_bind(
                queue.as_str().into(),
                exchange.as_str().into(),
                "routed.*".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        Self {
            exchange,
            queue,
            connection,
            channel,
        }
    }

    async fn message_ids(&self) -> Vec<String> {
        let mut ids = Vec::new();
        while let Some(message) = self
            .channel
            .basic_get(self.queue.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            let id = message.delivery.properties.message_id().clone().unwrap();
            ids.push(id.to_string());
        }
        ids
    }

    async fn remove(self) {
        let _ = self
            .channel
            .queue_delete(self.queue.as_str().into(), QueueDeleteOptions::default())
            .await;
        let _ = self
            .channel
            .exchange_delete(
                self.exchange.as_str().into(),
                ExchangeDeleteOptions::default(),
            )
            .await;
        let _ = self.connection.close(200, "done".into()).await;
    }
}

fn message(id: &str) -> BasicProperties {
    BasicProperties::default().with_message_id(id.into())
}

fn fast_options() -> PublisherOptions {
    PublisherOptions {
        connect_timeout: Duration::from_millis(500),
        max_in_flight: 16,
        min_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(200),
    }
}

#[tokio::test]
async fn tells_routed_from_unroutable_even_when_both_are_in_flight_together() {
    let scratch = Scratch::new().await;
    let publisher = Publisher::new(testkit::amqp_url(), "test-publisher-routing".into());
    assert!(!publisher.is_connected(), "lazy: nothing opened yet");

    // Odd messages go to a routing key nothing is bound to.
    let tasks: Vec<_> = (0..200)
        .map(|n| {
            let publisher = publisher.clone();
            let exchange = scratch.exchange.clone();
            tokio::spawn(async move {
                let key = if n % 2 == 0 { "routed.x" } else { "nowhere.x" };
                let result = publisher
                    .publish(
                        &exchange,
                        key,
                        format!("body {n}").as_bytes(),
                        message(&format!("m-{n}")),
                        Duration::from_secs(10),
                    )
                    .await;
                (n, result)
            })
        })
        .collect();
    for task in tasks {
        let (n, result) = task.await.unwrap();
        let expected = if n % 2 == 0 {
            Confirmed::Routed
        } else {
            Confirmed::Unroutable
        };
        assert_eq!(result.unwrap(), expected, "message {n}");
    }
    assert!(publisher.is_connected());
    assert_eq!(publisher.connections_opened(), 1, "one shared connection");

    let ids: BTreeSet<_> = scratch.message_ids().await.into_iter().collect();
    let expected: BTreeSet<_> = (0..200).step_by(2).map(|n| format!("m-{n}")).collect();
    assert_eq!(ids, expected, "exactly the routed messages, once each");
    publisher.close().await;
    assert!(!publisher.is_connected());
    scratch.remove().await;
}

#[tokio::test]
async fn reconnects_once_after_the_broker_comes_back() {
    let scratch = Scratch::new().await;
    let (proxy, url) = Proxy::for_amqp_url(&testkit::amqp_url()).await.unwrap();
    let publisher =
        Publisher::with_options(url, "test-publisher-reconnect".into(), fast_options(), None);
    let publish = |id: String| {
        let publisher = publisher.clone();
        let exchange = scratch.exchange.clone();
        async move {
            publisher
                .publish(
                    &exchange,
                    "routed.x",
                    b"{}",
                    message(&id),
                    Duration::from_secs(2),
                )
                .await
        }
    };
    assert_eq!(publish("before".into()).await.unwrap(), Confirmed::Routed);
    assert_eq!(proxy.accepted(), 1);

    proxy.cut();
    wait_until(Duration::from_secs(5), "the publisher notices", || {
        let connected = publisher.is_connected();
        async move { !connected }
    })
    .await;
    let started = std::time::Instant::now();
    let err = publish("during".into()).await.unwrap_err();
    assert!(
        matches!(err, PublisherError::Unavailable(_)),
        "unexpected error: {err}"
    );
    assert!(started.elapsed() < Duration::from_secs(2), "fails fast");

    proxy.restore();
    let accepted_before = proxy.accepted();
    // Many callers at once after the outage: one new connection serves them all.
    wait_until(Duration::from_secs(5), "backoff over", || {
        let publisher = publisher.clone();
        async move { publisher.ensure_connected().await.is_ok() }
    })
    .await;
    let results =
        futures_util::future::join_all((0..50).map(|n| publish(format!("after-{n}")))).await;
    for result in results {
        assert_eq!(result.unwrap(), Confirmed::Routed);
    }
    assert_eq!(proxy.accepted() - accepted_before, 1, "reconnected once");

    let ids = scratch.message_ids().await;
    assert_eq!(ids.len(), 51, "{ids:?}");
    assert!(!ids.contains(&"during".to_owned()));
    publisher.close().await;
    scratch.remove().await;
}

#[tokio::test]
async fn concurrent_callers_during_an_outage_do_not_each_reconnect() {
    let (proxy, url) = Proxy::for_amqp_url(&testkit::amqp_url()).await.unwrap();
    proxy.cut();
    let publisher = Publisher::with_options(
        url,
        "test-publisher-storm".into(),
        PublisherOptions {
            // Longer than the whole test: every caller after the first meets the backoff.
            min_backoff: Duration::from_secs(30),
            max_backoff: Duration::from_secs(30),
            ..fast_options()
        },
        None,
    );
    let results = futures_util::future::join_all((0..40).map(|n| {
        let publisher = publisher.clone();
        async move {
            publisher
                .publish(
                    "amq.topic",
                    "x",
                    b"{}",
                    message(&format!("m-{n}")),
                    Duration::from_secs(2),
                )
                .await
        }
    }))
    .await;
    assert!(results.iter().all(Result::is_err));
    // The first caller tried and failed; the others got that failure during the backoff.
    assert_eq!(proxy.refused(), 1, "one connect attempt for 40 callers");
}

#[tokio::test]
async fn a_broker_that_never_answers_is_an_error_within_the_budget() {
    // Accepts TCP connections and never says a word: the AMQP handshake cannot finish.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let publisher = Publisher::with_options(
        format!("amqp://guest:guest@{addr}/%2f"),
        "test-publisher-silent".into(),
        fast_options(),
        None,
    );
    let started = std::time::Instant::now();
    let err = publisher
        .publish(
            "amq.topic",
            "x",
            b"{}",
            message("m"),
            Duration::from_secs(3),
        )
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(err, PublisherError::Unavailable(_)),
        "unexpected error: {err}"
    );
    assert!(
        elapsed >= Duration::from_millis(400) && elapsed < Duration::from_secs(2),
        "bounded by the connect timeout, took {elapsed:?}"
    );
    holder.abort();
}

#[tokio::test]
async fn a_blocked_broker_costs_one_connection_not_one_per_timeout() {
    let broker = testkit::private::PrivateBroker::start(None).await;
    let publisher = Publisher::with_options(
        broker.amqp_url(),
        "test-publisher-blocked".into(),
        fast_options(),
        None,
    );
    let publish = |id: &str| {
        let publisher = publisher.clone();
        let id = id.to_owned();
        async move {
            publisher
                .publish(
                    "amq.topic",
                    "x",
                    b"{}",
                    message(&id),
                    Duration::from_secs(2),
                )
                .await
        }
    };
    publish("before").await.unwrap();
    assert_eq!(publisher.connections_opened(), 1);

    // A disk alarm: the broker blocks every connection that publishes. The first publish
    // after it gets the connection blocked (and no confirm); four more follow.
    broker.rabbitmqctl(&["set_disk_free_limit", "1000000GB"]);
    wait_until(Duration::from_secs(30), "a publish is refused", || {
        let publish = publish("during-0");
        async move { publish.await.is_err() }
    })
    .await;
    for n in 1..5 {
        let err = publish(&format!("during-{n}")).await.unwrap_err();
        assert!(
            matches!(err, PublisherError::Unavailable(_)),
            "publish {n}: {err}"
        );
    }
    assert_eq!(
        publisher.connections_opened(),
        1,
        "the blocked connection is kept, not replaced after each timeout"
    );
    assert!(
        !publisher.is_connected(),
        "a blocked publisher is not ready"
    );

    // The alarm clears: the same connection publishes again.
    broker.rabbitmqctl(&["set_disk_free_limit", "1MB"]);
    wait_until(Duration::from_secs(30), "publishing again", || {
        let publish = publish("after");
        async move { publish.await.is_ok() }
    })
    .await;
    assert_eq!(publisher.connections_opened(), 1);
    publisher.close().await;
}

#[tokio::test]
async fn the_connect_hook_runs_at_every_connect_and_its_failure_is_a_failed_connect() {
    let scratch = Scratch::new().await;
    let (proxy, url) = Proxy::for_amqp_url(&testkit::amqp_url()).await.unwrap();
    let runs = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&runs);
    let exchange = scratch.exchange.clone();
    let hook = Publisher::on_connect(move |channel: Channel| {
        let counter = Arc::clone(&counter);
        let exchange = exchange.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            channel
                .exchange_declare(
                    exchange.as_str().into(),
                    ExchangeKind::Topic,
                    ExchangeDeclareOptions::default(),
                    FieldTable::default(),
                )
                .await
        }
    });
    let publisher = Publisher::with_options(
        url,
        "test-publisher-hook".into(),
        fast_options(),
        Some(hook),
    );
    publisher.ensure_connected().await.unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    proxy.cut();
    wait_until(
        Duration::from_secs(5),
        "the publisher notices the cut",
        || {
            let connected = publisher.is_connected();
            async move { !connected }
        },
    )
    .await;
    proxy.restore();
    wait_until(Duration::from_secs(5), "reconnected", || {
        let publisher = publisher.clone();
        async move { publisher.ensure_connected().await.is_ok() && publisher.is_connected() }
    })
    .await;
    assert_eq!(
        runs.load(Ordering::SeqCst),
        2,
        "declared again after reconnect"
    );
    publisher.close().await;

    // A hook that fails (here: the exchange redeclared with another type) fails the connect.
    let exchange = scratch.exchange.clone();
    let failing = Publisher::on_connect(move |channel: Channel| {
        let exchange = exchange.clone();
        async move {
            channel
                .exchange_declare(
                    exchange.as_str().into(),
                    ExchangeKind::Fanout,
                    ExchangeDeclareOptions::default(),
                    FieldTable::default(),
                )
                .await
        }
    });
    let refused = Publisher::with_options(
        testkit::amqp_url(),
        "test-publisher-hook-fails".into(),
        fast_options(),
        Some(failing),
    );
    let err = refused.ensure_connected().await.unwrap_err();
    assert!(
        err.to_string().contains("declaring at connect"),
        "unexpected error: {err}"
    );
    assert!(!refused.is_connected());
    scratch.remove().await;
}
