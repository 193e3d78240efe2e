//! `wos-sync-bench backlog`: the adjustment-pusher's memory with a million transactions queued.
//!
//! In a scratch namespace and database, one sandbox shop (Standard bucket) with `skus` mapped
//! items; `transactions` puts are published to `wos.transactions` before the pusher starts, so
//! the whole backlog waits in its queue. The pusher then runs as a child process
//! (`wos-sync-bench serve adjustment-pusher`) for `seconds`, taking the backlog in through intake
//! (the queue drains into `pending` rows) while the push side drains `pending` at the bucket's
//! pace, so both backlogs are large the whole time. Its resident memory (`VmRSS`) is sampled
//! every `sample_ms`: flat means the last samples are where the early ones were, whatever is
//! still queued or pending. Printed: the samples' course, the peak (`VmHWM`), what intake took in
//! and what is still queued and pending at the end.

use std::time::{Duration, Instant};

use lapin::{BasicProperties, options::QueueDeclareOptions, types::FieldTable};
use platform::{amqp::topology::WOS_TRANSACTIONS, db, settings::Settings};
use serde_json::json;
use shopify_sandbox::ThrottleConfig;

use crate::{
    Figures, Outgoing, publish_pipelined,
    pusher::{StockedShop, map_items, stock_shop},
    pusher_child::{PusherChild, declare_pusher_queues, in_scratch},
    scratch::Scratch,
    status_kib,
};

const SHOP: &str = "backlog.myshopify.com";

/// What to measure.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Transactions queued before the pusher starts.
    #[arg(long, default_value_t = 1_000_000)]
    pub transactions: u64,
    /// Distinct SKUs they are spread over (two locations each).
    #[arg(long, default_value_t = 20_000)]
    pub skus: u64,
    /// How long the pusher runs on the backlog, in seconds.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// How often its memory is sampled, in milliseconds.
    #[arg(long, default_value_t = 500)]
    pub sample_ms: u64,
}

#[derive(Debug)]
struct Report {
    queued: u64,
    publish_seconds: f64,
    seconds: f64,
    /// (seconds since start, VmRSS KiB)
    samples: Vec<(f64, u64)>,
    peak_rss_kib: u64,
    recorded: i64,
    pushed: i64,
    pending: i64,
    still_queued: u32,
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

impl Report {
    /// The mean of the samples in `from..to` (fractions of the run).
    fn rss_between(&self, from: f64, to: f64) -> f64 {
        let picked: Vec<u64> = self
            .samples
            .iter()
            .filter(|(t, _)| *t >= from * self.seconds && *t <= to * self.seconds)
            .map(|(_, kib)| *kib)
            .collect();
        if picked.is_empty() {
            return 0.0;
        }
        mib(picked.iter().sum::<u64>() / picked.len() as u64)
    }

    fn figures(&self) -> Figures {
        let mut figures = Figures::default();
        figures
            .add("backlog_queued", self.queued)
            .add(
                "backlog_rss_early_mib",
                format!("{:.1}", self.rss_between(0.1, 0.2)),
            )
            .add(
                "backlog_rss_late_mib",
                format!("{:.1}", self.rss_between(0.8, 1.0)),
            )
            .add(
                "backlog_peak_rss_mib",
                format!("{:.1}", mib(self.peak_rss_kib)),
            )
            .add(
                "backlog_intake_tx_per_s",
                format!("{:.0}", self.recorded as f64 / self.seconds),
            )
            .add("backlog_pending_at_end", self.pending)
            .add("backlog_queued_at_end", self.still_queued);
        figures
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "queued before start: {} transactions (published in {:.1} s)",
            self.queued, self.publish_seconds
        )?;
        writeln!(f, "pusher's RSS over {:.0} s (MiB):", self.seconds)?;
        for tenth in 0..10 {
            let (from, to) = (f64::from(tenth) / 10.0, f64::from(tenth + 1) / 10.0);
            writeln!(
                f,
                "  {:>3.0}-{:>3.0} %: {:.1}",
                from * 100.0,
                to * 100.0,
                self.rss_between(from, to)
            )?;
        }
        writeln!(f, "peak RSS (VmHWM): {:.1} MiB", mib(self.peak_rss_kib))?;
        writeln!(
            f,
            "taken in: {} transactions ({:.0}/s); pushed: {} adjustments",
            self.recorded,
            self.recorded as f64 / self.seconds,
            self.pushed
        )?;
        write!(
            f,
            "at the end: {} still queued, {} adjustments pending",
            self.still_queued, self.pending
        )
    }
}

/// Runs the benchmark, prints its report and returns its headline figures.
pub async fn run(settings: &Settings, args: &Args) -> anyhow::Result<Figures> {
    anyhow::ensure!(args.seconds > 0, "--seconds must be positive");
    anyhow::ensure!(args.sample_ms > 0, "--sample-ms must be positive");
    anyhow::ensure!(args.skus > 0, "--skus must be positive");
    let report = in_scratch(
        settings,
        ThrottleConfig::default(),
        async |scratch, sandbox| measure(scratch, sandbox, args).await,
    )
    .await?;
    println!("{report}");
    Ok(report.figures())
}

async fn measure(
    scratch: &Scratch,
    sandbox: &shopify_sandbox::SandboxHandle,
    args: &Args,
) -> anyhow::Result<Report> {
    let settings = &scratch.settings;
    let mut bench = settings.database.clone();
    bench.max_connections = 1;
    let pool = db::connect_pool(&bench)?;
    db::migrate(&pool).await?;
    let client = pool.get().await?;
    let StockedShop { items, main, east } = stock_shop(sandbox, SHOP, args.skus)?;
    map_items(&client, SHOP, &items).await?;

    let (connection, channel) = declare_pusher_queues(settings, "backlog-bench").await?;
    let names = settings.names();
    let exchange = names.name(WOS_TRANSACTIONS);
    let publishing = Instant::now();
    publish_pipelined(&channel, &exchange, args.transactions, |n| {
        let sku = format!("BENCH-{}", n % args.skus);
        let warehouse = if n.is_multiple_of(2) { "MAIN" } else { "EAST" };
        Outgoing {
            routing_key: "inventory.put".to_owned(),
            body: json!({
                "transaction_id": format!("backlog-{n}"), "shop_domain": SHOP, "type": "put",
                "sku": sku, "warehouse": warehouse, "quantity": 1 + n % 5,
                "occurred_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            })
            .to_string()
            .into_bytes(),
            properties: BasicProperties::default()
                .with_message_id(format!("backlog-{n}").as_str().into()),
        }
    })
    .await?;
    let publish_seconds = publishing.elapsed().as_secs_f64();

    let mut pusher =
        PusherChild::start(scratch, sandbox, &[(SHOP.to_owned(), items, main, east)]).await?;
    let pid = pusher.pid;

    let started = Instant::now();
    let run_for = Duration::from_secs(args.seconds);
    let mut samples = Vec::new();
    let mut failed = None;
    while started.elapsed() < run_for {
        if let Some(status) = pusher.child.try_wait()? {
            failed = Some(status);
            break;
        }
        samples.push((started.elapsed().as_secs_f64(), status_kib(pid, "VmRSS:")));
        tokio::time::sleep(Duration::from_millis(args.sample_ms)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let peak_rss_kib = status_kib(pid, "VmHWM:");
    pusher.stop().await;
    if let Some(status) = failed {
        anyhow::bail!("the pusher exited under the backlog: {status}");
    }

    let count = |sql: &'static str| {
        let client = &client;
        async move { anyhow::Ok(client.query_one(sql, &[]).await?.get::<_, i64>(0)) }
    };
    let recorded = count("SELECT count(*) FROM wos_transactions").await?;
    let pushed = count("SELECT count(*) FROM adjustments WHERE state = 'pushed'").await?;
    let pending = count("SELECT count(*) FROM adjustments WHERE state = 'pending'").await?;
    let queue = names.adjustment_pusher_queue().name;
    let still_queued = channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?
        .message_count();
    let _ = channel.close(200, "bench done".into()).await;
    let _ = connection.close(200, "bench done".into()).await;
    Ok(Report {
        queued: args.transactions,
        publish_seconds,
        seconds,
        samples,
        peak_rss_kib,
        recorded,
        pushed,
        pending,
        still_queued,
    })
}
