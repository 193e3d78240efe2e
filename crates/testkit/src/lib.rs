//! Test support shared by every crate's integration tests.
//!
//! [`TestEnv`] gives each test its own PostgreSQL database (migrated) and its own exchange/queue
//! name prefix on the shared RabbitMQ, so tests run in parallel without seeing each other, and
//! removes both when dropped (also when the test panicked). Tests never restart the shared
//! broker or database and never close other tests' connections: [`close_connections_named`]
//! closes only connections whose name contains a string unique to the test.
//!
//! A test that must configure a server differently (TLS listeners, a resource alarm, access
//! rules) starts its own: [`private::PrivateBroker`], [`private::PrivatePostgres`], with
//! certificates from [`certs::TestCertificates`].

pub mod certs;
pub mod private;
pub mod proxy;

use std::{future::Future, sync::Mutex, time::Duration};

use lapin::{
    BasicProperties, Channel, Connection,
    message::BasicGetMessage,
    options::{
        BasicAckOptions, BasicGetOptions, ExchangeDeleteOptions, QueueBindOptions,
        QueueDeclareOptions, QueueDeleteOptions,
    },
    types::FieldTable,
};
use platform::{
    amqp::{
        publisher::confirm_channel,
        publisher::{Confirmed, Publisher},
        topology::{Names, RetrySettings, WorkQueue},
    },
    db::PgPool,
    settings::Settings,
};

/// The broker every test uses (overridable for a non-default machine).
pub fn amqp_url() -> String {
    std::env::var("TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// The database server every test uses; tests create their own database on it.
pub fn postgres_base_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// One test's private database and broker namespace.
#[derive(Debug)]
pub struct TestEnv {
    pub id: String,
    pub names: Names,
    pub database_name: String,
    pub database_url: String,
    pub amqp_url: String,
    pub pool: PgPool,
    connection: Connection,
    channel: Channel,
    publisher: Publisher,
    tracked: Mutex<Vec<WorkQueue>>,
}

impl TestEnv {
    /// Creates the database (migrated) and a unique name prefix.
    pub async fn new() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let database_name = format!("wos_test_{id}");
        admin_sql(&format!("CREATE DATABASE {database_name}")).await;
        let database_url = format!("{}/{database_name}", postgres_base_url());
        let settings = platform::db::DatabaseSettings {
            url: database_url.clone(),
            ..platform::db::DatabaseSettings::default()
        };
        let pool = platform::db::connect_pool(&settings).expect("pool");
        platform::db::migrate(&pool)
            .await
            .expect("migrations apply to a fresh database");

        let amqp_url = amqp_url();
        let connection = platform::amqp::connect(&amqp_url, &format!("test-{id}"))
            .await
            .expect("RabbitMQ is reachable");
        let channel = confirm_channel(&connection).await.expect("channel");
        let publisher = Publisher::new(amqp_url.clone(), format!("test-{id}-publisher"));
        Self {
            names: Names::new(format!("t-{id}.")),
            id,
            database_name,
            database_url,
            amqp_url,
            pool,
            connection,
            channel,
            publisher,
            tracked: Mutex::new(Vec::new()),
        }
    }

    /// Makes the cleanup delete `queue` (with its retry tiers and dead-letter queue) too; the
    /// contract's work queues under this test's prefix are always deleted.
    pub fn track_queue(&self, queue: &WorkQueue) {
        if let Ok(mut tracked) = self.tracked.lock() {
            tracked.push(queue.clone());
        }
    }

    /// Settings pointing at this test's database and namespace, with fast retries and no
    /// pre-stop delay, so tests need not wait for production delays.
    pub fn settings(&self) -> Settings {
        let mut settings = Settings::default();
        settings.amqp.url = self.amqp_url.clone();
        settings.amqp.name_prefix = self.names.prefix().to_owned();
        settings.database.url = self.database_url.clone();
        settings.retry = RetrySettings {
            base_delay_ms: 200,
            multiplier: 2,
            tiers: 3,
            jitter: 0.2,
            max_attempts: 4,
            delivery_limit: 20,
        };
        settings.consumer.shutdown_grace_ms = 5_000;
        // A test stops its services by cancelling their token: no endpoints to leave first.
        settings.http.pre_stop_delay_ms = 0;
        settings
    }

    /// A publisher-confirm channel on the test's own connection.
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Declares `queue` exclusive to the test's connection (the broker removes it when the test
    /// ends, whatever happens).
    pub async fn declare_exclusive_queue(&self, queue: &str) {
        self.channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    exclusive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("queue.declare");
    }

    /// The test's own tap on what a service publishes: an exclusive queue `<prefix><name>`
    /// bound to the contract exchange `exchange` (prefixed here) with `routing_key`. Returns
    /// the queue's name, for [`TestEnv::drain`].
    pub async fn tap(&self, name: &str, exchange: &str, routing_key: &str) -> String {
        let queue = self.names.name(name);
        self.declare_exclusive_queue(&queue).await;
        self.channel
            .queue_bind(
                queue.as_str().into(),
                self.names.name(exchange).as_str().into(),
                routing_key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("queue.bind");
        queue
    }

    /// Publishes with confirms (panics if the broker does not take it).
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) {
        let confirmed = self
            .publisher
            .publish(
                exchange,
                routing_key,
                body,
                properties,
                Duration::from_secs(10),
            )
            .await
            .expect("publish confirmed");
        assert_eq!(
            confirmed,
            Confirmed::Routed,
            "no queue bound for `{exchange}` / `{routing_key}`"
        );
    }

    /// Messages ready in `queue` (not counting unacknowledged ones).
    pub async fn queue_depth(&self, queue: &str) -> u32 {
        let channel = self.connection.create_channel().await.expect("channel");
        let declared = channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("queue exists");
        let _ = channel.close(200, "done".into()).await;
        declared.message_count()
    }

    /// Waits until `queue` holds `count` messages (at most `within`), takes them, and checks
    /// there were exactly that many.
    pub async fn wait_and_drain(
        &self,
        queue: &str,
        count: usize,
        within: Duration,
    ) -> Vec<BasicGetMessage> {
        wait_until(
            within,
            &format!("{count} message(s) in {queue}"),
            || async { self.queue_depth(queue).await as usize >= count },
        )
        .await;
        let messages = self.drain(queue).await;
        assert_eq!(messages.len(), count, "messages in {queue}");
        messages
    }

    /// Takes (and acknowledges) every message currently in `queue`.
    pub async fn drain(&self, queue: &str) -> Vec<BasicGetMessage> {
        let mut messages = Vec::new();
        while let Some(message) = self
            .channel
            .basic_get(queue.into(), BasicGetOptions::default())
            .await
            .expect("basic.get")
        {
            message
                .delivery
                .acker
                .ack(BasicAckOptions::default())
                .await
                .expect("ack");
            messages.push(message);
        }
        messages
    }

    fn cleanup(&self) {
        let names = self.names.clone();
        let database_name = self.database_name.clone();
        let amqp_url = self.amqp_url.clone();
        let mut queues = vec![
            names.item_ingest_queue(),
            names.adjustment_pusher_queue(),
            names.item_mappings_queue(),
        ];
        if let Ok(tracked) = self.tracked.lock() {
            queues.extend(tracked.iter().cloned());
        }
        // Drop cannot be async, and the test's runtime may be gone: clean up on a thread of our own.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            let Ok(runtime) = runtime else { return };
            runtime.block_on(async move {
                if let Ok(connection) = platform::amqp::connect(&amqp_url, "test-cleanup").await
                    && let Ok(channel) = connection.create_channel().await
                {
                    for queue in queues {
                        let mut doomed = vec![queue.name.clone(), queue.dead_letter_queue()];
                        doomed.extend((1..=20).map(|tier| queue.retry_queue(tier)));
                        for name in doomed {
                            let _ = channel
                                .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                                .await;
                        }
                    }
                    for exchange in names.exchanges() {
                        let _ = channel
                            .exchange_delete(
                                exchange.as_str().into(),
                                ExchangeDeleteOptions::default(),
                            )
                            .await;
                    }
                    let _ = channel.close(200, "cleanup".into()).await;
                    let _ = connection.close(200, "cleanup".into()).await;
                }
                admin_sql(&format!(
                    "DROP DATABASE IF EXISTS {database_name} WITH (FORCE)"
                ))
                .await;
            });
        });
        let _ = cleanup.join();
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// Runs one statement on the server's `postgres` database.
pub async fn admin_sql(statement: &str) {
    platform::db::admin_execute(&postgres_base_url(), statement)
        .await
        .unwrap_or_else(|err| panic!("{statement}: {err}"));
}

/// Waits for a child process to exit (polling every 50 ms) and returns its status; panics with
/// `what` after `timeout`.
pub async fn wait_for_exit(
    child: &mut std::process::Child,
    timeout: Duration,
    what: &str,
) -> std::process::ExitStatus {
    let mut status = None;
    wait_until(timeout, what, || {
        status = status.or_else(|| child.try_wait().expect("the child's status"));
        std::future::ready(status.is_some())
    })
    .await;
    status.expect("wait_until returned, so the child exited")
}

/// Polls `condition` every 50 ms until it holds; panics with `what` after `timeout`.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if condition().await {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Force-closes every broker connection whose name contains `fragment` (via `rabbitmqctl`),
/// returning how many were closed. Use a fragment unique to the test (its [`TestEnv::id`]).
pub fn close_connections_named(fragment: &str) -> usize {
    // Table output: the JSON formatter prints pids in a form `close_connection` does not take.
    let output = std::process::Command::new("rabbitmqctl")
        .args([
            "list_connections",
            "pid",
            "client_properties",
            "-q",
            "--no-table-headers",
        ])
        .output()
        .expect("rabbitmqctl runs");
    let listing = String::from_utf8_lossy(&output.stdout);
    let mut closed = 0;
    for line in listing.lines().filter(|line| line.contains(fragment)) {
        let Some(pid) = line.split('\t').next() else {
            continue;
        };
        let status = std::process::Command::new("rabbitmqctl")
            .args(["close_connection", pid, "closed by a test"])
            .status()
            .expect("rabbitmqctl runs");
        if status.success() {
            closed += 1;
        }
    }
    closed
}
