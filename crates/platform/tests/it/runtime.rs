//! The consumer runtime in-process, with handlers written for each scenario.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use lapin::{BasicProperties, types::FieldTable};
use platform::{
    amqp::{
        consumer::{ConsumerConfig, Disposition, Handler, Incoming, run_consumer},
        headers::{header_str, header_u64, set_str},
        topology::WorkQueue,
    },
    db::PgPool,
    http::Health,
    inbox::{InboxEntry, record_message},
    metrics::Metrics,
    shutdown::CancellationToken,
};
use testkit::{TestEnv, close_connections_named, wait_until};
use tokio::sync::Semaphore;

pub(crate) const SERVICE: &str = "runtime-test";

/// A running consumer and what the test needs to look at it.
pub(crate) struct Running {
    pub(crate) metrics: Metrics,
    pub(crate) health: Health,
    pub(crate) queue: WorkQueue,
    pub(crate) shutdown: CancellationToken,
    pub(crate) task: tokio::task::JoinHandle<()>,
}

impl Running {
    pub(crate) fn count(&self, outcome: &str) -> u64 {
        self.metrics
            .messages_total
            .with_label_values(&[SERVICE, self.queue.name.as_str(), outcome])
            .get()
    }

    pub(crate) async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .unwrap()
            .unwrap();
    }
}

async fn start<H: Handler>(env: &TestEnv, handler: H) -> Running {
    start_config(env, handler, consumer_config(env)).await
}

async fn start_with<H: Handler>(
    env: &TestEnv,
    handler: H,
    consumer: platform::amqp::consumer::ConsumerSettings,
) -> Running {
    let config = ConsumerConfig {
        settings: consumer,
        ..consumer_config(env)
    };
    start_config(env, handler, config).await
}

/// The test's consumer of item-ingest's queue, with the test settings.
pub(crate) fn consumer_config(env: &TestEnv) -> ConsumerConfig {
    let settings = env.settings();
    ConsumerConfig {
        service: SERVICE.to_owned(),
        amqp_url: settings.amqp.url.clone(),
        names: env.names.clone(),
        queue: env.names.item_ingest_queue(),
        settings: settings.consumer,
        retry: settings.retry.clone(),
    }
}

/// Starts a consumer and waits until it consumes.
pub(crate) async fn start_config<H: Handler>(
    _env: &TestEnv,
    handler: H,
    config: ConsumerConfig,
) -> Running {
    let queue = config.queue.clone();
    let metrics = Metrics::new();
    let health = Health::new(None);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run_consumer(
        config,
        Arc::new(handler),
        metrics.clone(),
        health.clone(),
        shutdown.clone(),
    ));
    let probe = health.clone();
    wait_until(Duration::from_secs(10), "consumer connected", || {
        let probe = probe.clone();
        async move { probe.broker_connected() }
    })
    .await;
    Running {
        metrics,
        health,
        queue,
        shutdown,
        task,
    }
}

pub(crate) fn message(id: &str) -> BasicProperties {
    let mut headers = FieldTable::default();
    set_str(&mut headers, "x-shopify-topic", "products/update");
    BasicProperties::default()
        .with_message_id(id.into())
        .with_content_type("application/json".into())
        .with_headers(headers)
}

/// Writes one `effects` row per message id, through the inbox, in one transaction.
struct InboxWriter {
    pool: PgPool,
}

impl InboxWriter {
    async fn new(env: &TestEnv) -> Self {
        env.pool
            .get()
            .await
            .unwrap()
            .batch_execute("CREATE TABLE effects (message_id text NOT NULL, body bytea NOT NULL)")
            .await
            .unwrap();
        Self {
            pool: env.pool.clone(),
        }
    }
}

impl Handler for InboxWriter {
    async fn handle(&self, message: &Incoming) -> Disposition {
        let Some(id) = message.message_id() else {
            return Disposition::malformed("no message id");
        };
        let result = async {
            let mut client = self.pool.get().await?;
            let tx = client.transaction().await?;
            if record_message(&tx, "test", id).await? == InboxEntry::AlreadyProcessed {
                return Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Disposition::Duplicate);
            }
            tx.execute("INSERT INTO effects VALUES ($1, $2)", &[&id, &message.body])
                .await?;
            tx.commit().await?;
            Ok(Disposition::Ack)
        }
        .await;
        result.unwrap_or_else(Disposition::retry)
    }
}

async fn effect_count(env: &TestEnv, id: &str) -> i64 {
    env.pool
        .get()
        .await
        .unwrap()
        .query_one("SELECT count(*) FROM effects WHERE message_id = $1", &[&id])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_message_delivered_three_times_is_applied_once_and_acked_each_time() {
    let env = TestEnv::new().await;
    let consumer = start(&env, InboxWriter::new(&env).await).await;
    let exchange = env.names.name("shopify.events");
    for _ in 0..3 {
        env.publish(
            &exchange,
            "products.update",
            b"{\"id\":1}",
            message("webhook-1"),
        )
        .await;
    }
    wait_until(
        Duration::from_secs(10),
        "three deliveries handled",
        || async { consumer.count("acked") + consumer.count("duplicate") == 3 },
    )
    .await;
    assert_eq!(consumer.count("acked"), 1);
    assert_eq!(consumer.count("duplicate"), 2);
    assert_eq!(effect_count(&env, "webhook-1").await, 1);
    assert_eq!(env.queue_depth(&consumer.queue.name).await, 0);
    assert_eq!(
        env.queue_depth(&consumer.queue.dead_letter_queue()).await,
        0
    );
    consumer.stop().await;
}

/// Fails the first `failures` attempts of every message, recording when each attempt ran.
pub(crate) struct Flaky {
    pub(crate) failures: u32,
    pub(crate) attempts: Mutex<HashMap<String, Vec<(u32, Instant)>>>,
}

impl Flaky {
    pub(crate) fn new(failures: u32) -> Arc<Self> {
        Arc::new(Self {
            failures,
            attempts: Mutex::default(),
        })
    }

    /// The attempt numbers the handler was given for `id`, in order.
    pub(crate) fn attempts_of(&self, id: &str) -> Vec<u32> {
        self.attempts
            .lock()
            .unwrap()
            .get(id)
            .map(|seen| seen.iter().map(|(n, _)| *n).collect())
            .unwrap_or_default()
    }
}

impl Handler for Flaky {
    async fn handle(&self, message: &Incoming) -> Disposition {
        let id = message.message_id().unwrap_or_default().to_owned();
        let mut attempts = self.attempts.lock().unwrap();
        let seen = attempts.entry(id).or_default();
        seen.push((message.attempt, Instant::now()));
        if seen.len() as u32 <= self.failures {
            Disposition::retry(format!(
                "database unavailable (attempt {})",
                message.attempt
            ))
        } else {
            Disposition::Ack
        }
    }
}

#[tokio::test]
async fn a_transient_failure_is_retried_with_growing_delays_and_then_succeeds() {
    let env = TestEnv::new().await;
    let handler = Arc::new(Flaky {
        failures: 2,
        attempts: Mutex::default(),
    });
    let consumer = start(&env, SharedHandler(handler.clone())).await;
    env.publish(
        &env.names.name("shopify.events"),
        "products.update",
        b"{}",
        message("m-1"),
    )
    .await;
    wait_until(Duration::from_secs(10), "acked after retries", || async {
        consumer.count("acked") == 1
    })
    .await;
    let attempts = handler.attempts.lock().unwrap()["m-1"].clone();
    let numbers: Vec<_> = attempts.iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, [1, 2, 3], "the runtime counts attempts");
    let first_wait = attempts[1].1 - attempts[0].1;
    let second_wait = attempts[2].1 - attempts[1].1;
    // Tier 1 is 200 ms ± 20%, tier 2 is 400 ms ± 20%. A retry queue's TTL keeps a copy at
    // least that long, so the lower bounds hold however loaded the machine is, and the second
    // wait's (320 ms) is above anything tier 1 could give (240 ms): the delays grow. Comparing
    // the two measured waits would not show that (a loaded machine stretches either one).
    assert!(
        first_wait >= Duration::from_millis(160),
        "first wait {first_wait:?}"
    );
    assert!(
        second_wait >= Duration::from_millis(320),
        "second wait {second_wait:?} is at least tier 2's shortest delay"
    );
    assert_eq!(consumer.count("retried"), 2);
    assert_eq!(
        env.queue_depth(&consumer.queue.dead_letter_queue()).await,
        0
    );
    consumer.stop().await;
}

#[tokio::test]
async fn a_message_that_keeps_failing_ends_in_the_dlq_with_every_error_header() {
    let env = TestEnv::new().await;
    let handler = Arc::new(Flaky {
        failures: u32::MAX,
        attempts: Mutex::default(),
    });
    let consumer = start(&env, SharedHandler(handler.clone())).await;
    let body = b"{\"id\": 42, \"title\": \"kept byte for byte\"}";
    env.publish(
        &env.names.name("shopify.events"),
        "products.update",
        body,
        message("m-2"),
    )
    .await;
    let dlq = consumer.queue.dead_letter_queue();
    let dead = env
        .wait_and_drain(&dlq, 1, Duration::from_secs(15))
        .await
        .remove(0)
        .delivery;
    let headers = dead.properties.headers().as_ref();
    assert_eq!(dead.data, body);
    assert_eq!(
        dead.properties.message_id().as_ref().unwrap().as_str(),
        "m-2"
    );
    assert_eq!(
        dead.properties.content_type().as_ref().unwrap().as_str(),
        "application/json"
    );
    assert_eq!(
        header_str(headers, "x-shopify-topic"),
        Some("products/update")
    );
    assert_eq!(header_str(headers, "x-error-kind"), Some("exhausted"));
    let error = header_str(headers, "x-error").unwrap();
    assert!(
        error.starts_with("gave up after 4 attempts; last error: database unavailable"),
        "{error}"
    );
    assert_eq!(header_u64(headers, "x-attempts"), Some(4));
    assert_eq!(header_str(headers, "x-service"), Some(SERVICE));
    let failed_at = header_str(headers, "x-failed-at").unwrap();
    chrono::DateTime::parse_from_rfc3339(failed_at).expect("x-failed-at is RFC 3339");
    assert_eq!(
        handler.attempts.lock().unwrap()["m-2"].len(),
        4,
        "max_attempts handler calls"
    );
    assert_eq!(consumer.count("retried"), 3);
    assert_eq!(consumer.count("dead_lettered"), 1);
    assert_eq!(env.queue_depth(&consumer.queue.name).await, 0);
    consumer.stop().await;
}

#[tokio::test]
async fn a_malformed_message_goes_straight_to_the_dlq() {
    let env = TestEnv::new().await;
    let consumer = start(&env, InboxWriter::new(&env).await).await;
    // No message id: the InboxWriter calls that malformed.
    env.publish(
        &env.names.name("shopify.events"),
        "products.create",
        b"not json",
        BasicProperties::default(),
    )
    .await;
    let dlq = consumer.queue.dead_letter_queue();
    let dead = env
        .wait_and_drain(&dlq, 1, Duration::from_secs(10))
        .await
        .remove(0)
        .delivery;
    let headers = dead.properties.headers().as_ref();
    assert_eq!(dead.data, b"not json");
    assert_eq!(header_str(headers, "x-error-kind"), Some("malformed"));
    assert_eq!(header_str(headers, "x-error"), Some("no message id"));
    assert_eq!(header_u64(headers, "x-attempts"), Some(1));
    assert_eq!(consumer.count("retried"), 0);
    assert_eq!(consumer.count("dead_lettered"), 1);
    consumer.stop().await;
}

/// Records the size of every body it is given, and acknowledges.
#[derive(Clone, Default)]
struct SizeRecorder {
    seen: Arc<Mutex<Vec<usize>>>,
}

impl Handler for SizeRecorder {
    async fn handle(&self, message: &Incoming) -> Disposition {
        self.seen.lock().unwrap().push(message.body.len());
        Disposition::Ack
    }
}

#[tokio::test]
async fn an_oversized_message_is_dead_lettered_before_the_handler_sees_it() {
    let env = TestEnv::new().await;
    let recorder = SizeRecorder::default();
    let mut settings = env.settings().consumer;
    settings.max_message_bytes = 1024;
    let consumer = start_with(&env, recorder.clone(), settings).await;
    let exchange = env.names.name("shopify.events");
    env.publish(&exchange, "products.update", &[b'x'; 1025], message("big"))
        .await;
    env.publish(&exchange, "products.update", &[b'x'; 1024], message("fits"))
        .await;

    let dlq = consumer.queue.dead_letter_queue();
    let dead = env
        .wait_and_drain(&dlq, 1, Duration::from_secs(10))
        .await
        .remove(0)
        .delivery;
    let headers = dead.properties.headers().as_ref();
    assert_eq!(header_str(headers, "x-error-kind"), Some("malformed"));
    assert_eq!(
        header_str(headers, "x-error"),
        Some(
            "message of 1025 bytes is over the limit of 1024 bytes (consumer.max_message_bytes); \
             not parsed"
        )
    );
    assert_eq!(dead.data.len(), 1025, "the original body is kept");
    wait_until(
        Duration::from_secs(10),
        "the fitting message handled",
        || {
            let seen = recorder.seen.clone();
            async move { !seen.lock().unwrap().is_empty() }
        },
    )
    .await;
    assert_eq!(
        *recorder.seen.lock().unwrap(),
        [1024],
        "the handler never saw the oversized message"
    );
    consumer.stop().await;
}

/// Panics on every message.
struct Panicking;

impl Handler for Panicking {
    async fn handle(&self, _message: &Incoming) -> Disposition {
        panic!("bug in the handler")
    }
}

#[tokio::test]
async fn a_panicking_handler_does_not_kill_the_consumer_and_ends_in_the_dlq() {
    let env = TestEnv::new().await;
    let consumer = start(&env, Panicking).await;
    env.publish(
        &env.names.name("shopify.events"),
        "products.update",
        b"{}",
        message("m-3"),
    )
    .await;
    let dlq = consumer.queue.dead_letter_queue();
    let dead = env
        .wait_and_drain(&dlq, 1, Duration::from_secs(15))
        .await
        .remove(0)
        .delivery;
    let error = header_str(dead.properties.headers().as_ref(), "x-error")
        .unwrap()
        .to_owned();
    assert!(
        error.contains("handler panicked: bug in the handler"),
        "{error}"
    );
    assert!(!consumer.task.is_finished(), "the consumer keeps running");
    consumer.stop().await;
}

#[tokio::test]
async fn the_consumer_resumes_by_itself_after_its_connection_is_closed() {
    let env = TestEnv::new().await;
    let consumer = start(&env, InboxWriter::new(&env).await).await;
    let exchange = env.names.name("shopify.events");
    env.publish(&exchange, "products.update", b"before", message("before"))
        .await;
    wait_until(Duration::from_secs(10), "first message", || async {
        consumer.count("acked") == 1
    })
    .await;

    // The connection name is "<service>/<queue>", and the queue name carries the test's id.
    let closed = tokio::task::spawn_blocking({
        let id = env.id.clone();
        move || close_connections_named(&format!("{SERVICE}/t-{id}."))
    })
    .await
    .unwrap();
    assert_eq!(closed, 1, "exactly the consumer's connection was closed");
    wait_until(Duration::from_secs(5), "disconnect noticed", || async {
        !consumer.health.broker_connected()
    })
    .await;

    env.publish(&exchange, "products.update", b"after", message("after"))
        .await;
    wait_until(
        Duration::from_secs(20),
        "message after the reconnect",
        || async { consumer.count("acked") == 2 },
    )
    .await;
    assert!(consumer.health.broker_connected());
    assert_eq!(effect_count(&env, "after").await, 1);
    consumer.stop().await;
}

#[tokio::test]
async fn shutdown_lets_running_handlers_finish_and_returns_the_rest_to_the_queue() {
    let env = TestEnv::new().await;
    // Every handler waits at a gate the test opens only after it asked the runtime to stop:
    // which messages were running at the shutdown is then known, not a matter of timing.
    let handler = Arc::new(Gated {
        inner: InboxWriter::new(&env).await,
        entered: AtomicUsize::new(0),
        gate: Semaphore::new(0),
    });
    let consumer = start(&env, SharedHandler(handler.clone())).await;
    let concurrency = consumer_config(&env).settings.concurrency;
    let total = concurrency + 24;
    let exchange = env.names.name("shopify.events");
    for n in 0..total {
        env.publish(
            &exchange,
            "products.update",
            b"{}",
            message(&format!("s-{n}")),
        )
        .await;
    }
    wait_until(Duration::from_secs(10), "handlers running", || async {
        handler.entered.load(Ordering::SeqCst) >= 1
    })
    .await;
    let queue = consumer.queue.clone();
    consumer.shutdown.cancel();
    handler.gate.add_permits(total);
    tokio::time::timeout(Duration::from_secs(8), consumer.task)
        .await
        .expect("stops within the grace period")
        .unwrap();

    let running = handler.entered.load(Ordering::SeqCst);
    let applied: Vec<String> = env
        .pool
        .get()
        .await
        .unwrap()
        .query("SELECT message_id FROM effects", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let left = env.drain(&queue.name).await;
    let left_ids: Vec<String> = left
        .iter()
        .map(|m| {
            m.delivery
                .properties
                .message_id()
                .as_ref()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(
        running <= concurrency,
        "no handler started after the shutdown ({running} ran, concurrency {concurrency})"
    );
    assert_eq!(
        applied.len(),
        running,
        "every handler running at the shutdown finished and committed"
    );
    assert!(
        left_ids.iter().all(|id| !applied.contains(id)),
        "a committed message was left unacked"
    );
    assert_eq!(
        applied.len() + left.len(),
        total,
        "every message is applied or back in the queue"
    );
}

/// Holds every message at a gate until the test adds permits, counting those that entered.
struct Gated {
    inner: InboxWriter,
    entered: AtomicUsize,
    gate: Semaphore,
}

impl Handler for Gated {
    async fn handle(&self, message: &Incoming) -> Disposition {
        self.entered.fetch_add(1, Ordering::SeqCst);
        let _permit = self.gate.acquire().await;
        self.inner.handle(message).await
    }
}

/// Lets a test keep a handle on its handler's state.
pub(crate) struct SharedHandler<H>(pub(crate) Arc<H>);

impl<H: Handler> Handler for SharedHandler<H> {
    async fn handle(&self, message: &Incoming) -> Disposition {
        self.0.handle(message).await
    }
}
