//! `wos-sync-bench runtime`: the consumer runtime with the probe's handler (inbox row + effect
//! row in one transaction, then ack) next to a bare consume-and-ack loop, on the same broker in
//! the same run, in a scratch namespace and database.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use consumer_probe::{
    ProbeHandler, ProbeOptions, consumer_config, ensure_probe_table, probe_queue,
};
use futures_util::StreamExt;
use lapin::{
    BasicProperties,
    options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions},
    types::FieldTable,
};
use platform::{
    amqp::{
        consumer::run_consumer,
        publisher::confirm_channel,
        topology::{WorkQueue, declare_exchanges, declare_work_queue},
    },
    db,
    http::Health,
    metrics::Metrics,
    settings::Settings,
    shutdown::CancellationToken,
};

use crate::{Figures, Outgoing, publish_pipelined, scratch::Scratch};

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

impl BenchReport {
    /// The headline figures, for the `RESULT` line.
    pub fn figures(&self) -> Figures {
        let mut figures = Figures::default();
        figures
            .add("bare_msgs_per_s", format!("{:.0}", self.bare_rate()))
            .add("runtime_msgs_per_s", format!("{:.0}", self.runtime_rate()))
            .add(
                "runtime_ratio",
                format!("{:.2}", self.runtime_rate() / self.bare_rate()),
            );
        figures
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

/// What to measure.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Messages per measurement.
    #[arg(long, default_value_t = 20_000)]
    pub messages: u64,
    /// Body size in bytes.
    #[arg(long, default_value_t = 128)]
    pub body_bytes: usize,
}

/// Runs the benchmark, prints its report and returns its headline figures.
pub async fn run(settings: &Settings, args: &Args) -> anyhow::Result<Figures> {
    let report = measure(settings, args.messages, args.body_bytes).await?;
    println!("{report}");
    Ok(report.figures())
}

/// Measures consume -> inbox commit -> ack through the runtime, and a bare consume-and-ack loop,
/// on the same broker in the same run. Uses a fresh database and queue namespace, removed after.
pub async fn measure(
    settings: &Settings,
    messages: u64,
    body_bytes: usize,
) -> anyhow::Result<BenchReport> {
    let scratch = Scratch::create(settings).await?;
    let bench_settings = scratch.settings.clone();
    let names = scratch.names();
    let bare = WorkQueue {
        name: names.name("bare"),
        bindings: Vec::new(),
    };
    let probe = probe_queue(&names);

    let result = async {
        let connection =
            platform::amqp::connect(&settings.amqp.url, "consumer-probe-bench").await?;
        let channel = confirm_channel(&connection).await?;
        declare_exchanges(&channel, &names).await?;
        for queue in [&bare, &probe] {
            declare_work_queue(&channel, queue, &settings.retry).await?;
        }
        let body = vec![b'x'; body_bytes];

        // Bare loop: consume and ack, nothing else.
        publish_many(&channel, &bare.name, &body, messages, "bare").await?;
        let bare_seconds = consume_and_ack(
            &connection,
            &bare.name,
            settings.consumer.prefetch,
            messages,
        )
        .await?;

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

/// The bare consume-and-ack rate (messages/s) of `messages` bodies of `body_bytes` on the
/// configured broker, with `[consumer] prefetch`: the yardstick other benchmarks compare their
/// end-to-end rate with, measured in their own run. Uses a scratch queue, removed after.
pub async fn bare_rate(
    settings: &Settings,
    messages: u64,
    body_bytes: usize,
) -> anyhow::Result<f64> {
    let scratch = Scratch::create(settings).await?;
    let names = scratch.names();
    let bare = WorkQueue {
        name: names.name("bare"),
        bindings: Vec::new(),
    };
    let result = async {
        let connection = platform::amqp::connect(&settings.amqp.url, "bare-bench").await?;
        let channel = confirm_channel(&connection).await?;
        declare_work_queue(&channel, &bare, &settings.retry).await?;
        publish_many(
            &channel,
            &bare.name,
            &vec![b'x'; body_bytes],
            messages,
            "bare",
        )
        .await?;
        let seconds = consume_and_ack(
            &connection,
            &bare.name,
            settings.consumer.prefetch,
            messages,
        )
        .await?;
        let _ = channel.close(200, "bench done".into()).await;
        let _ = connection.close(200, "bench done".into()).await;
        Ok::<_, anyhow::Error>(messages as f64 / seconds)
    }
    .await;
    scratch.teardown(&[bare]).await;
    result
}

/// Consumes and acknowledges `messages` from `queue`, one ack per message, nothing else;
/// returns the seconds it took.
async fn consume_and_ack(
    connection: &lapin::Connection,
    queue: &str,
    prefetch: u16,
    messages: u64,
) -> anyhow::Result<f64> {
    let consumer_channel = connection.create_channel().await?;
    consumer_channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    let mut deliveries = consumer_channel
        .basic_consume(
            queue.into(),
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
    let seconds = started.elapsed().as_secs_f64();
    let _ = consumer_channel
        .basic_cancel(
            "bench".into(),
            lapin::options::BasicCancelOptions::default(),
        )
        .await;
    let _ = consumer_channel.close(200, "done".into()).await;
    Ok(seconds)
}

/// Publishes `count` messages of `body` straight to `queue`, ids `<tag>-<n>`.
async fn publish_many(
    channel: &lapin::Channel,
    queue: &str,
    body: &[u8],
    count: u64,
    tag: &str,
) -> anyhow::Result<()> {
    publish_pipelined(channel, "", count, |n| Outgoing {
        routing_key: queue.to_owned(),
        body: body.to_vec(),
        properties: BasicProperties::default()
            .with_message_id(format!("{tag}-{n}").as_str().into()),
    })
    .await
}
