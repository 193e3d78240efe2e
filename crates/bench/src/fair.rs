//! `wos-sync-bench fair`: many shops served fairly by one adjustment-pusher.
//!
//! In a scratch namespace and database, `shops` shops live in the in-process Shopify sandbox,
//! all with a Standard bucket (2,000 points, 100 per second). One of them holds a backlog of
//! `backlog` pending transactions over `backlog_skus` SKUs (two locations each, written as
//! intake records them) when the pusher starts; the others get a trickle of puts,
//! `trickle_rate` transactions per second round-robin over them for `trickle_seconds`,
//! published to `wos.transactions`. The pusher runs as a child process
//! (`wos-sync-bench serve adjustment-pusher`), so its memory is its own.
//!
//! Figures: the trickle shops' lag, from `occurred_at` to the adjustment recorded as pushed
//! (p50, p99, max); the database connections the pusher holds (open, and busy at once: active
//! or in a transaction), sampled every 50 ms; the pusher's resident memory once it serves every
//! shop before any traffic, and its peak; and the backlog shop's changes per second over the
//! run beside its bucket's ceiling, so fairness is not bought by starving it.

use std::time::{Duration, Instant};

use lapin::{BasicProperties, options::QueueDeclareOptions, types::FieldTable};
use platform::{
    amqp::{publisher::PERSISTENT, topology::WOS_TRANSACTIONS},
    db,
    settings::Settings,
};
use serde_json::json;
use shopify_sandbox::{SandboxHandle, ThrottleConfig};

use crate::{
    Figures,
    pusher::{StockedShop, insert_backlog, map_items, measure_call_cost, stock_shop},
    pusher_child::{PusherChild, Shops, declare_pusher_queues, in_scratch},
    scratch::Scratch,
    status_kib,
};

/// What to measure.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Shops in all: one with the backlog, the others with the trickle.
    #[arg(long, default_value_t = 1000)]
    pub shops: u64,
    /// Transactions pending for the backlog shop when the pusher starts.
    #[arg(long, default_value_t = 100_000)]
    pub backlog: u64,
    /// Distinct SKUs of the backlog (two locations each), so its calls carry 250 changes.
    #[arg(long, default_value_t = 20_000)]
    pub backlog_skus: u64,
    /// SKUs of each trickle shop.
    #[arg(long, default_value_t = 4)]
    pub trickle_skus: u64,
    /// Transactions per second over all the trickle shops together.
    #[arg(long, default_value_t = 100.0)]
    pub trickle_rate: f64,
    /// How long the trickle runs, in seconds.
    #[arg(long, default_value_t = 30)]
    pub trickle_seconds: u64,
}

/// Figures of one run.
#[derive(Debug, Clone)]
struct Report {
    shops: u64,
    trickle_transactions: u64,
    lag_p50_ms: f64,
    lag_p99_ms: f64,
    lag_max_ms: f64,
    /// p99 of the part before intake recorded the transaction.
    intake_p99_ms: f64,
    connections_open_peak: i64,
    connections_busy_peak: i64,
    rss_serving_kib: u64,
    peak_rss_kib: u64,
    backlog_changes_per_s: f64,
    backlog_ceiling: f64,
    run_seconds: f64,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "shops: {} (1 with a backlog, {} with a trickle: {} transactions over {:.1} s)",
            self.shops,
            self.shops - 1,
            self.trickle_transactions,
            self.run_seconds
        )?;
        writeln!(
            f,
            "trickle shops' lag (occurred_at to pushed): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms \
             (p99 to intake's record: {:.0} ms)",
            self.lag_p50_ms, self.lag_p99_ms, self.lag_max_ms, self.intake_p99_ms
        )?;
        writeln!(
            f,
            "pusher's database connections: {} open at most, {} busy at once at most",
            self.connections_open_peak, self.connections_busy_peak
        )?;
        writeln!(
            f,
            "pusher's RSS serving every shop before traffic: {:.1} MiB; peak: {:.1} MiB",
            self.rss_serving_kib as f64 / 1024.0,
            self.peak_rss_kib as f64 / 1024.0
        )?;
        write!(
            f,
            "backlog shop meanwhile: {:.0} changes/s (its Standard ceiling {:.0}: {:.2})",
            self.backlog_changes_per_s,
            self.backlog_ceiling,
            self.backlog_changes_per_s / self.backlog_ceiling
        )
    }
}

impl Report {
    fn figures(&self) -> Figures {
        let mut figures = Figures::default();
        figures
            .add("fair_shops", self.shops)
            .add("fair_p50_ms", format!("{:.0}", self.lag_p50_ms))
            .add("fair_p99_ms", format!("{:.0}", self.lag_p99_ms))
            .add("fair_db_connections_open", self.connections_open_peak)
            .add("fair_db_connections_busy", self.connections_busy_peak)
            .add(
                "fair_serving_rss_mib",
                format!("{:.1}", self.rss_serving_kib as f64 / 1024.0),
            )
            .add(
                "fair_peak_rss_mib",
                format!("{:.1}", self.peak_rss_kib as f64 / 1024.0),
            )
            .add(
                "fair_backlog_ceiling_ratio",
                format!("{:.2}", self.backlog_changes_per_s / self.backlog_ceiling),
            );
        figures
    }
}

/// Runs the benchmark, prints its report and returns its headline figures.
pub async fn run(settings: &Settings, args: &Args) -> anyhow::Result<Figures> {
    anyhow::ensure!(args.shops >= 2, "--shops must be at least 2");
    anyhow::ensure!(args.trickle_rate > 0.0, "--trickle-rate must be positive");
    let report = in_scratch(
        settings,
        ThrottleConfig::default(),
        async |scratch, sandbox| measure(scratch, sandbox, args).await,
    )
    .await?;
    println!("{report}");
    Ok(report.figures())
}

fn shop_name(n: u64) -> String {
    if n == 0 {
        "backlog.myshopify.com".to_owned()
    } else {
        format!("trickle-{n}.myshopify.com")
    }
}

async fn measure(
    scratch: &Scratch,
    sandbox: &SandboxHandle,
    args: &Args,
) -> anyhow::Result<Report> {
    let settings = &scratch.settings;
    let mut bench = settings.database.clone();
    bench.max_connections = 1; // the bench's own, told apart from the pusher's below
    let pool = db::connect_pool(&bench)?;
    db::migrate(&pool).await?;
    let client = pool.get().await?;

    let mut shops = Vec::new();
    for n in 0..args.shops {
        let domain = shop_name(n);
        let skus = if n == 0 {
            args.backlog_skus
        } else {
            args.trickle_skus
        };
        let StockedShop { items, main, east } = stock_shop(sandbox, &domain, skus)?;
        map_items(&client, &domain, &items).await?;
        if n == 0 {
            insert_backlog(
                &client,
                &domain,
                args.backlog,
                args.backlog_skus,
                main,
                east,
            )
            .await?;
        }
        shops.push((domain, items, main, east));
    }
    client.execute("ANALYZE", &[]).await?;
    let backlog = &shops[0];
    let probe = backlog.1.len().min(model::batch::MAX_CHANGES);
    let cost = measure_call_cost(sandbox, &backlog.0, &backlog.1[..probe], backlog.2).await?;
    // Changes per second the backlog shop's bucket allows: restore rate / cost of a full call.
    let backlog_ceiling =
        ThrottleConfig::default().restore_rate / cost.actual * model::batch::MAX_CHANGES as f64;

    let (connection, channel) = declare_pusher_queues(settings, "fair-bench").await?;
    let names = settings.names();
    let mut pusher = PusherChild::start(scratch, sandbox, &shops).await?;
    let pid = pusher.pid;
    let result = drive(
        args,
        &client,
        &channel,
        &names,
        &mut pusher.child,
        pid,
        &shops,
        backlog_ceiling,
    )
    .await;
    pusher.stop().await;
    let _ = channel.close(200, "bench done".into()).await;
    let _ = connection.close(200, "bench done".into()).await;
    result
}

#[allow(clippy::too_many_arguments)]
async fn drive(
    args: &Args,
    client: &deadpool_postgres::Object,
    channel: &lapin::Channel,
    names: &platform::amqp::topology::Names,
    child: &mut tokio::process::Child,
    pid: u32,
    shops: &Shops,
    backlog_ceiling: f64,
) -> anyhow::Result<Report> {
    // Ready when it consumes the transaction queue.
    let queue = names.adjustment_pusher_queue().name;
    let ready_by = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("the pusher exited before it was ready: {status}");
        }
        let declared = channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        if declared.consumer_count() > 0 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < ready_by,
            "the pusher did not consume within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rss_serving_kib = status_kib(pid, "VmRSS:");

    let (mut open_peak, mut busy_peak) = (0, 0);
    let mut sample = |open: i64, busy: i64| {
        open_peak = open_peak.max(open);
        busy_peak = busy_peak.max(busy);
    };

    let exchange = names.name(WOS_TRANSACTIONS);
    let trickle_shops = shops.len() as u64 - 1;
    let count = (args.trickle_rate * args.trickle_seconds as f64) as u64;
    let interval = Duration::from_secs_f64(1.0 / args.trickle_rate);
    let started = Instant::now();
    let mut next_sample = started;
    for n in 0..count {
        let due = started + interval * u32::try_from(n)?;
        while Instant::now() < due {
            if Instant::now() >= next_sample {
                let (open, busy) = connections(client).await?;
                sample(open, busy);
                next_sample += Duration::from_millis(50);
            }
            tokio::time::sleep_until(due.min(next_sample).into()).await;
        }
        let shop = &shops[usize::try_from(1 + n % trickle_shops)?];
        let sku = format!("BENCH-{}", (n / trickle_shops) % args.trickle_skus);
        let body = json!({
            "transaction_id": format!("trickle-{n}"), "shop_domain": shop.0, "type": "put",
            "sku": sku, "warehouse": "MAIN", "quantity": 1,
            "occurred_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        })
        .to_string();
        // Not awaited one by one: the trickle keeps its rate whatever the broker's confirms
        // take; every confirm is checked below.
        let confirm = channel
            .basic_publish(
                exchange.as_str().into(),
                "inventory.put".into(),
                lapin::options::BasicPublishOptions::default(),
                body.as_bytes(),
                BasicProperties::default()
                    .with_message_id(format!("trickle-{n}").as_str().into())
                    .with_delivery_mode(PERSISTENT),
            )
            .await?;
        tokio::spawn(async move {
            if !confirm.await.is_ok_and(|c| c.is_ack()) {
                tracing::error!("the broker refused a trickle transaction");
            }
        });
    }
    // Until every trickle transaction is pushed.
    let expected = i64::try_from(count)?;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("the pusher exited: {status}");
        }
        let (open, busy) = connections(client).await?;
        sample(open, busy);
        // The trickle shops as a range of `adjustments_by_transaction` (every name after the
        // backlog shop's, in any collation): a scan of the whole table every few milliseconds
        // would cost the pusher CPU the figures then blame on it.
        let pushed: i64 = client
            .query_one(
                "SELECT count(*) FROM adjustments \
                 WHERE shop_domain > $1 AND state = 'pushed'",
                &[&shops[0].0],
            )
            .await?
            .get(0);
        if pushed >= expected {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the trickle was not pushed within 5 minutes of its end ({pushed} of {expected})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let run_seconds = started.elapsed().as_secs_f64();
    let peak_rss_kib = status_kib(pid, "VmHWM:");
    // The lag, and the part of it before intake recorded the transaction (the broker's queue
    // and intake), so a slow push side is told apart from a slow intake.
    let lag = client
        .query_one(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY total), \
                 percentile_cont(0.99) WITHIN GROUP (ORDER BY total), max(total), \
                 percentile_cont(0.99) WITHIN GROUP (ORDER BY intake) \
             FROM (SELECT extract(epoch FROM a.updated_at - a.occurred_at)::float8 * 1000 \
                          AS total, \
                      extract(epoch FROM t.received_at - a.occurred_at)::float8 * 1000 AS intake \
                   FROM adjustments a JOIN wos_transactions t USING (shop_domain, transaction_id) \
                   WHERE a.shop_domain > $1) AS lags",
            &[&shops[0].0],
        )
        .await?;
    let backlog_changes: i64 = client
        .query_one(
            "SELECT coalesce(sum(change_count), 0)::bigint FROM push_batches \
             WHERE shop_domain = $1 AND state = 'applied' \
               AND completed_at >= now() - make_interval(secs => $2)",
            &[&shops[0].0, &run_seconds],
        )
        .await?
        .get(0);
    Ok(Report {
        shops: shops.len() as u64,
        trickle_transactions: count,
        lag_p50_ms: lag.get(0),
        lag_p99_ms: lag.get(1),
        lag_max_ms: lag.get(2),
        intake_p99_ms: lag.get(3),
        connections_open_peak: open_peak,
        connections_busy_peak: busy_peak,
        rss_serving_kib,
        peak_rss_kib,
        backlog_changes_per_s: backlog_changes as f64 / run_seconds,
        backlog_ceiling,
        run_seconds,
    })
}

/// The connections to the scratch database other than the bench's own: open, and busy (active
/// or in a transaction).
async fn connections(client: &deadpool_postgres::Object) -> anyhow::Result<(i64, i64)> {
    let row = client
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE state <> 'idle') FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() \
               AND backend_type = 'client backend'",
            &[],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}
