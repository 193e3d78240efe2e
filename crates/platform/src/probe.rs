//! The consumer probe: the smallest real service on the platform.
//!
//! It consumes its own queue (`platform-probe`, plus retry tiers and dead-letter queue), and for
//! each message records the message id in the inbox and a row in `probe_effects` in one
//! transaction, then lets the runtime acknowledge. Operators use it to check that a deployment's
//! broker and database plumbing works end to end; the platform's process-level tests (SIGTERM,
//! a crash between commit and ack) run it as a child process; and `consumer-probe bench`
//! measures the runtime's throughput next to a bare consume-and-ack loop on the same broker.
//! Like every service it prunes what it writes (its inbox rows and `probe_effects`, after
//! `[retention] inbox_days`) and fails readiness before it drains at SIGTERM.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use deadpool_postgres::Pool;
use futures_util::StreamExt;
use lapin::{
    BasicProperties,
    options::{BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions},
    types::FieldTable,
};
use tokio_util::sync::CancellationToken;

use crate::{
    amqp::{
        consumer::{ConsumerConfig, Disposition, Handler, Incoming, run_consumer},
        publish::confirm_channel,
        topology::{Names, WorkQueue, declare_exchanges, declare_work_queue},
    },
    db::{self, DbError},
    http::Health,
    inbox::{InboxEntry, prune_inbox_chunk, record_message},
    metrics::Metrics,
    retention::{Pruned, RetentionJob, RetentionSettings, in_chunks, run_retention},
    scratch::Scratch,
    settings::Settings,
};

/// The probe's queue (under the deployment's name prefix).
pub fn probe_queue(names: &Names) -> WorkQueue {
    WorkQueue {
        name: names.name("platform-probe"),
        bindings: Vec::new(),
    }
}

/// Header that, with [`ProbeOptions::crash_after_commit`], makes the probe abort the process
/// right after committing a message's effect and before acknowledging it.
pub const CRASH_HEADER: &str = "x-probe-crash-after-commit";

/// How the probe's handler behaves.
#[derive(Debug, Clone, Default)]
pub struct ProbeOptions {
    /// Extra time each message takes (to keep messages in flight for shutdown tests).
    pub handler_delay: Duration,
    /// Abort the process after the commit of a first delivery carrying [`CRASH_HEADER`]
    /// (simulates a crash between commit and ack).
    pub crash_after_commit: bool,
}

/// The probe's handler: inbox row + effect row in one transaction.
#[derive(Debug)]
pub struct ProbeHandler {
    pool: Pool,
    options: ProbeOptions,
}

/// Inbox consumer name of the probe.
const CONSUMER: &str = "consumer-probe";

impl ProbeHandler {
    pub fn new(pool: Pool, options: ProbeOptions) -> Self {
        Self { pool, options }
    }

    async fn apply(&self, message_id: &str, message: &Incoming) -> Result<Disposition, DbError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        if record_message(&tx, CONSUMER, message_id).await? == InboxEntry::AlreadyProcessed {
            tx.rollback().await?;
            return Ok(Disposition::Duplicate);
        }
        let bytes = i64::try_from(message.body.len()).unwrap_or(i64::MAX);
        tx.execute(
            "INSERT INTO probe_effects (message_id, bytes) VALUES ($1, $2)",
            &[&message_id, &bytes],
        )
        .await?;
        tx.commit().await?;
        if self.options.crash_after_commit
            && !message.redelivered
            && message.header_str(CRASH_HEADER).is_some()
        {
            tracing::warn!(message_id, "crashing between commit and ack, as asked");
            std::process::abort();
        }
        Ok(Disposition::Ack)
    }
}

impl Handler for ProbeHandler {
    async fn handle(&self, message: &Incoming) -> Disposition {
        let Some(message_id) = message.message_id().map(str::to_owned) else {
            return Disposition::malformed("message has no message_id property");
        };
        if !self.options.handler_delay.is_zero() {
            tokio::time::sleep(self.options.handler_delay).await;
        }
        self.apply(&message_id, message)
            .await
            .unwrap_or_else(Disposition::retry)
    }
}

/// Creates the probe's effect table (it is not part of the product's schema).
pub async fn ensure_probe_table(pool: &Pool) -> Result<(), DbError> {
    pool.get()
        .await?
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS probe_effects (
                 message_id text PRIMARY KEY,
                 bytes bigint NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await?;
    Ok(())
}

/// Default HTTP address of the probe.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9469";

/// Runs the probe as a service until `shutdown`.
pub async fn run(
    settings: Settings,
    options: ProbeOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let metrics = Metrics::new();
    let default_listen = DEFAULT_LISTEN.parse().context("default address")?;
    let crate::startup::Prepared {
        pool,
        health,
        ops_server: server,
        stop,
    } = crate::startup::serve_ops_and_prepare_database(
        &settings,
        default_listen,
        metrics.clone(),
        shutdown,
    )
    .await?;
    ensure_probe_table(&pool)
        .await
        .context("creating probe_effects")?;
    let retention = tokio::spawn(run_retention(
        Arc::new(ProbeRetention {
            pool: pool.clone(),
            settings: settings.retention.clone(),
        }),
        "consumer-probe",
        settings.retention.interval(),
        metrics.clone(),
        stop.clone(),
    ));
    let config = consumer_config(&settings, "consumer-probe");
    run_consumer(
        config,
        Arc::new(ProbeHandler::new(pool, options)),
        metrics,
        health,
        stop,
    )
    .await;
    retention.await.context("retention task")?;
    server.await.context("HTTP server task")?;
    Ok(())
}

/// The probe's pruning: its inbox rows and its effect rows, after `[retention] inbox_days`.
#[derive(Debug)]
struct ProbeRetention {
    pool: Pool,
    settings: RetentionSettings,
}

impl RetentionJob for ProbeRetention {
    async fn prune(&self, shutdown: &CancellationToken) -> Result<Pruned, DbError> {
        let (window, chunk) = (self.settings.inbox(), self.settings.chunk());
        let mut pruned = Pruned::default();
        let inbox = in_chunks(chunk, shutdown, || {
            prune_inbox_chunk(&self.pool, CONSUMER, window, chunk)
        })
        .await?;
        pruned.add("inbox", inbox);
        let effects = in_chunks(chunk, shutdown, || async {
            Ok(self
                .pool
                .get()
                .await?
                .execute(
                    "DELETE FROM probe_effects WHERE message_id IN ( \
                         SELECT message_id FROM probe_effects \
                         WHERE applied_at < now() - make_interval(secs => $1) \
                         LIMIT $2 FOR UPDATE SKIP LOCKED)",
                    &[&window.as_secs_f64(), &chunk],
                )
                .await?)
        })
        .await?;
        pruned.add("probe_effects", effects);
        Ok(pruned)
    }
}

fn consumer_config(settings: &Settings, service: &str) -> ConsumerConfig {
    ConsumerConfig {
        service: service.to_owned(),
        amqp_url: settings.amqp.url.clone(),
        names: settings.names(),
        queue: probe_queue(&settings.names()),
        settings: settings.consumer.clone(),
        retry: settings.retry.clone(),
    }
}

/// Figures of one benchmark run.
#[derive(Debug, Clone)]
pub struct BenchReport {
    pub messages: u64,
    pub body_bytes: usize,
    pub prefetch: u16,
    pub concurrency: usize,
    pub bare_seconds: f64,
    pub runtime_seconds: f64,
}

impl BenchReport {
    pub fn bare_rate(&self) -> f64 {
        self.messages as f64 / self.bare_seconds
    }

    pub fn runtime_rate(&self) -> f64 {
        self.messages as f64 / self.runtime_seconds
    }
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "messages: {} x {} bytes, prefetch {}, concurrency {}",
            self.messages, self.body_bytes, self.prefetch, self.concurrency
        )?;
        writeln!(
            f,
            "bare consume+ack loop:                 {:>9.0} msg/s ({:.2} s)",
            self.bare_rate(),
            self.bare_seconds
        )?;
        writeln!(
            f,
            "consumer runtime (inbox commit + ack): {:>9.0} msg/s ({:.2} s)",
            self.runtime_rate(),
            self.runtime_seconds
        )?;
        write!(
            f,
            "runtime / bare: {:.1}%",
            100.0 * self.runtime_rate() / self.bare_rate()
        )
    }
}

/// Measures consume -> inbox commit -> ack through the runtime, and a bare consume-and-ack loop,
/// on the same broker in the same run. Uses a fresh database and queue namespace, removed after.
pub async fn bench(
    settings: &Settings,
    messages: u64,
    body_bytes: usize,
) -> anyhow::Result<BenchReport> {
    use anyhow::Context as _;
    let scratch = Scratch::create(settings).await?;
    let bench_settings = scratch.settings.clone();
    let names = scratch.names();
    let bare = WorkQueue {
        name: names.name("bare"),
        bindings: Vec::new(),
    };
    let probe = probe_queue(&names);

    let result = async {
        let connection = crate::amqp::connect(&settings.amqp.url, "consumer-probe-bench").await?;
        let channel = confirm_channel(&connection).await?;
        declare_exchanges(&channel, &names).await?;
        for queue in [&bare, &probe] {
            declare_work_queue(&channel, queue, &settings.retry).await?;
        }
        let body = vec![b'x'; body_bytes];

        // Bare loop: consume and ack, nothing else.
        publish_many(&channel, &bare.name, &body, messages, "bare").await?;
        let consumer_channel = connection.create_channel().await?;
        consumer_channel
            .basic_qos(settings.consumer.prefetch, BasicQosOptions::default())
            .await?;
        let mut deliveries = consumer_channel
            .basic_consume(
                bare.name.as_str().into(),
                "bench".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let started = Instant::now();
        let mut acked = 0;
        while acked < messages {
            let delivery = deliveries.next().await.context("consumer ended")??;
            delivery.acker.ack(BasicAckOptions::default()).await?;
            acked += 1;
        }
        let bare_seconds = started.elapsed().as_secs_f64();
        let _ = consumer_channel
            .basic_cancel(
                "bench".into(),
                lapin::options::BasicCancelOptions::default(),
            )
            .await;
        let _ = consumer_channel.close(200, "done".into()).await;

        // The runtime with the probe handler (inbox row + effect row per message).
        let pool = db::connect_pool(&bench_settings.database)?;
        db::migrate(&pool).await?;
        ensure_probe_table(&pool).await?;
        publish_many(&channel, &probe.name, &body, messages, "probe").await?;
        let metrics = Metrics::new();
        let shutdown = CancellationToken::new();
        let config = consumer_config(&bench_settings, "consumer-probe-bench");
        let acked_counter = metrics.messages_total.with_label_values(&[
            "consumer-probe-bench",
            probe.name.as_str(),
            "acked",
        ]);
        let started = Instant::now();
        let consumer = tokio::spawn(run_consumer(
            config,
            Arc::new(ProbeHandler::new(pool.clone(), ProbeOptions::default())),
            metrics.clone(),
            Health::new(None),
            shutdown.clone(),
        ));
        while acked_counter.get() < messages {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let runtime_seconds = started.elapsed().as_secs_f64();
        shutdown.cancel();
        consumer.await?;
        let effects: i64 = pool
            .get()
            .await?
            .query_one("SELECT count(*) FROM probe_effects", &[])
            .await?
            .get(0);
        anyhow::ensure!(
            effects == messages as i64,
            "expected {messages} effects, found {effects}"
        );
        drop(pool);

        // Channels first: closing a connection under an open channel makes lapin log an error.
        let _ = channel.close(200, "bench done".into()).await;
        let _ = connection.close(200, "bench done".into()).await;
        Ok::<_, anyhow::Error>(BenchReport {
            messages,
            body_bytes,
            prefetch: settings.consumer.prefetch,
            concurrency: settings.consumer.concurrency,
            bare_seconds,
            runtime_seconds,
        })
    }
    .await;
    scratch.teardown(&[bare, probe]).await;
    result
}

/// Publishes `count` messages with confirms, pipelined in windows of 1000.
async fn publish_many(
    channel: &lapin::Channel,
    queue: &str,
    body: &[u8],
    count: u64,
    tag: &str,
) -> anyhow::Result<()> {
    let mut sent = 0;
    while sent < count {
        let window = (count - sent).min(1000);
        let mut confirms = Vec::with_capacity(window as usize);
        for n in sent..sent + window {
            let properties = BasicProperties::default()
                .with_message_id(format!("{tag}-{n}").as_str().into())
                .with_delivery_mode(crate::amqp::publish::PERSISTENT);
            confirms.push(
                channel
                    .basic_publish(
                        "".into(),
                        queue.into(),
                        BasicPublishOptions::default(),
                        body,
                        properties,
                    )
                    .await?,
            );
        }
        for confirm in confirms {
            anyhow::ensure!(
                confirm.await?.is_ack(),
                "broker refused a benchmark message"
            );
        }
        sent += window;
    }
    Ok(())
}
