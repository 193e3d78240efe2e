//! `wos-sync-bench relay`: how many webhooks per second the relay accepts with publisher
//! confirms, its latency at half that rate, and whether it keeps answering Shopify while
//! hostile clients try to exhaust it.
//!
//! It runs against the configured broker, under a scratch name prefix (`bench-<id>.`) with the
//! contract's `item-ingest.shopify-products` queue bound (so every publish is routed and
//! confirmed by a quorum queue, as in production), and drives the relay from a load generator
//! on loopback:
//!
//! 1. closed loop (relay in this process): `concurrency` workers send signed webhooks back to
//!    back for `seconds`; the accepted (200) count over the time is the throughput;
//! 2. open loop at half that rate: requests leave on a fixed schedule whether or not earlier
//!    ones were answered, and each latency is measured from its scheduled start, so a stall
//!    shows up in the percentiles instead of silently slowing the generator down;
//! 3. under attack (relay in a process of its own, `wos-sync-bench serve webhook-relay`,
//!    so its memory can be measured alone): `slow_clients` connections trickle a request head one byte a second
//!    (reconnecting when cut off) and `big_bodies` workers send maximum-size bodies with a
//!    wrong signature back to back, while signed webhooks arrive in an open loop at
//!    `signed_rate` per second; reported: their latency percentiles, how many were accepted,
//!    and the relay process's peak resident memory (`VmHWM`).
//!
//! Every loop is bounded in count and time and stops by itself; the scratch queues and
//! exchanges are deleted afterwards (also after a failure), the relay process is stopped.

use std::{
    fmt,
    net::SocketAddr,
    path::PathBuf,
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use axum::body::Bytes;
use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions, QueuePurgeOptions};
use model::signature::sign_webhook;
use platform::{
    amqp::topology::{Names, WorkQueue, declare_exchanges, declare_work_queue},
    settings::Settings,
    shutdown::CancellationToken,
};
use tokio::{io::AsyncWriteExt, net::TcpStream, task::JoinSet, time::Instant};

use crate::{
    Figures,
    serve::{Service, serve_command},
    status_kib,
};
use webhook_relay::{
    client::{RelayClient, webhook_headers},
    secrets::ShopSecrets,
    settings::RelaySettings,
};

/// What to measure.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Length of each measured phase, in seconds.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Concurrent workers of the throughput phase.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Size of each webhook body in bytes.
    #[arg(long, default_value_t = 4096)]
    pub body_bytes: usize,
    /// Phase 3: connections trickling a request head one byte a second.
    #[arg(long, default_value_t = 500)]
    pub slow_clients: usize,
    /// Phase 3: workers sending maximum-size bodies with a wrong signature back to back.
    #[arg(long, default_value_t = 200)]
    pub big_bodies: usize,
    /// Phase 3: signed webhooks per second while under attack.
    #[arg(long, default_value_t = 100.0)]
    pub signed_rate: f64,
}

/// Latency percentiles of one phase.
#[derive(Debug, Clone, Default)]
pub struct Latencies {
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Latencies {
    fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        let at = |q: f64| {
            if samples.is_empty() {
                return Duration::ZERO;
            }
            let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
            samples[rank - 1]
        };
        Self {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: samples.last().copied().unwrap_or_default(),
        }
    }
}

impl fmt::Display for Latencies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        write!(
            f,
            "p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            ms(self.p50),
            ms(self.p90),
            ms(self.p99),
            ms(self.max)
        )
    }
}

/// Figures of one benchmark run.
#[derive(Debug, Clone)]
pub struct BenchReport {
    pub options: Args,
    pub max_accepted: u64,
    pub max_failed: u64,
    /// Messages found in the queue after the phase.
    pub max_queued: u64,
    pub max_seconds: f64,
    pub max_latency: Latencies,
    pub paced_rate: f64,
    pub paced_sent: u64,
    pub paced_accepted: u64,
    pub paced_failed: u64,
    pub paced_queued: u64,
    pub paced_latency: Latencies,
    pub hostile: HostileReport,
}

/// Phase 3's figures.
#[derive(Debug, Clone, Default)]
pub struct HostileReport {
    /// The relay's body limit, the size of every attacking body.
    pub body_limit: usize,
    pub signed_sent: u64,
    pub signed_accepted: u64,
    pub signed_failed: u64,
    pub signed_latency: Latencies,
    /// Slow connections the relay cut off (each then reconnected).
    pub slow_cut_off: u64,
    /// Attacking bodies answered (401, 503) or cut off.
    pub big_answered: u64,
    /// The relay process's peak resident memory.
    pub peak_rss_bytes: u64,
    /// CPU time the relay process used during the measured seconds, per second (2.0 = two
    /// cores busy); the rest of the machine ran the broker and the load generator.
    pub relay_cpu_per_second: f64,
}

impl BenchReport {
    /// Accepted webhooks per second in the closed-loop phase.
    pub fn max_rate(&self) -> f64 {
        self.max_accepted as f64 / self.max_seconds
    }
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "webhooks: {} bytes, signed, loopback HTTP/1.1 -> relay -> confirmed publish -> \
             quorum queue item-ingest.shopify-products",
            self.options.body_bytes
        )?;
        writeln!(
            f,
            "phase 1, closed loop, {} workers, {:.1} s: {:.0} accepted/s ({} accepted, {} failed, \
             {} in the queue); latency {}",
            self.options.concurrency,
            self.max_seconds,
            self.max_rate(),
            self.max_accepted,
            self.max_failed,
            self.max_queued,
            self.max_latency
        )?;
        writeln!(
            f,
            "phase 2, open loop at {:.0}/s (half), {} s: {} sent, {} accepted, {} failed, \
             {} in the queue; latency {}",
            self.paced_rate,
            self.options.seconds,
            self.paced_sent,
            self.paced_accepted,
            self.paced_failed,
            self.paced_queued,
            self.paced_latency
        )?;
        let hostile = &self.hostile;
        write!(
            f,
            "phase 3, under attack ({} connections trickling headers 1 byte/s, {} workers \
             sending {}-byte unsigned bodies), signed webhooks at {:.0}/s for {} s: {} sent, \
             {} accepted, {} failed; latency {}; {} slow connections cut off, {} attacking \
             bodies answered; relay peak RSS {:.1} MiB, relay CPU {:.2} s/s",
            self.options.slow_clients,
            self.options.big_bodies,
            hostile.body_limit,
            self.options.signed_rate,
            self.options.seconds,
            hostile.signed_sent,
            hostile.signed_accepted,
            hostile.signed_failed,
            hostile.signed_latency,
            hostile.slow_cut_off,
            hostile.big_answered,
            mib(hostile.peak_rss_bytes),
            hostile.relay_cpu_per_second
        )
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

impl BenchReport {
    /// The headline figures, for the `RESULT` line.
    pub fn figures(&self) -> Figures {
        let ms = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1000.0);
        let mut figures = Figures::default();
        figures
            .add("accepted_per_s", format!("{:.0}", self.max_rate()))
            .add("paced_p99_ms", ms(self.paced_latency.p99))
            .add("hostile_signed_p99_ms", ms(self.hostile.signed_latency.p99))
            .add("hostile_signed_max_ms", ms(self.hostile.signed_latency.max))
            .add("hostile_signed_accepted", self.hostile.signed_accepted)
            .add("hostile_signed_failed", self.hostile.signed_failed)
            .add(
                "relay_peak_rss_mib",
                format!("{:.1}", mib(self.hostile.peak_rss_bytes)),
            )
            .add(
                "relay_cpu_per_s",
                format!("{:.2}", self.hostile.relay_cpu_per_second),
            );
        figures
    }
}

/// The bench shop and its scratch secret.
const SHOP: &str = "bench.myshopify.com";
/// A request that gets no answer in this time counts as failed (the relay answers within 5 s).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between the phases.
const SETTLE: Duration = Duration::from_secs(3);
/// Open-loop requests still unanswered at once, beyond which the generator counts new ones as
/// failed instead of piling up without bound.
const MAX_OUTSTANDING: usize = 20_000;

/// Runs the benchmark, prints its report and returns its headline figures.
pub async fn run(settings: &Settings, args: &Args) -> anyhow::Result<Figures> {
    let report = measure(settings, args.clone()).await?;
    println!("{report}");
    Ok(report.figures())
}

/// Runs the phases against a relay started here; `settings` gives the broker (and the
/// `[webhook_relay]` table, so a tuned configuration can be measured).
pub async fn measure(settings: &Settings, options: Args) -> anyhow::Result<BenchReport> {
    anyhow::ensure!(options.seconds >= 1, "--seconds must be at least 1");
    anyhow::ensure!(
        (1..=4096).contains(&options.concurrency),
        "--concurrency must be between 1 and 4096"
    );
    anyhow::ensure!(options.body_bytes >= 64, "--body-bytes must be at least 64");
    anyhow::ensure!(
        options.signed_rate > 0.0 && options.signed_rate <= 10_000.0,
        "--signed-rate must be above 0 and at most 10000"
    );
    let id = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
    let names = Names::new(format!("bench-{id}."));
    let mut relay_settings = Settings::from_toml_str(
        &format!(
            "[[shops]]\ndomain = \"{SHOP}\"\napi_version = \"2026-04\"\n\
             admin_base_url = \"http://127.0.0.1:9\"\naccess_token_env = \"BENCH_TOKEN\"\n\
             webhook_secret_env = \"BENCH_WEBHOOK_SECRET\"\n"
        ),
        "(bench)",
    )?;
    relay_settings.amqp.url = settings.amqp.url.clone();
    relay_settings.amqp.name_prefix = names.prefix().to_owned();
    relay_settings.retry = settings.retry.clone();
    relay_settings.services = settings.services.clone();
    relay_settings.http.listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    let secret = format!("bench-secret-{id}");
    let secrets = ShopSecrets::resolve(&relay_settings.shops, |_| Some(secret.clone()))?;

    let connection =
        platform::amqp::connect(&settings.amqp.url, &format!("webhook-relay-bench/{id}"))
            .await
            .context("connecting to the broker")?;
    let channel = connection.create_channel().await?;
    declare_exchanges(&channel, &names).await?;
    let queue = names.item_ingest_queue();
    declare_work_queue(&channel, &queue, &relay_settings.retry).await?;

    let result = async {
        let mut report = measure_in_process(
            relay_settings.clone(),
            secrets,
            secret.as_bytes(),
            &channel,
            &queue,
            options.clone(),
        )
        .await?;
        tokio::time::sleep(SETTLE).await;
        report.hostile = under_attack(
            &relay_settings,
            settings,
            &secret,
            &channel,
            &queue,
            &options,
        )
        .await?;
        anyhow::Ok(report)
    }
    .await;

    let mut doomed = vec![queue.name.clone(), queue.dead_letter_queue()];
    doomed.extend((1..=settings.retry.tiers).map(|tier| queue.retry_queue(tier)));
    for name in doomed {
        let _ = channel
            .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    for exchange in names.exchanges() {
        let _ = channel
            .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
            .await;
    }
    let _ = connection.close(200, "bench done".into()).await;
    result
}

async fn measure_in_process(
    settings: Settings,
    secrets: ShopSecrets,
    secret: &[u8],
    channel: &lapin::Channel,
    queue: &WorkQueue,
    options: Args,
) -> anyhow::Result<BenchReport> {
    let shutdown = CancellationToken::new();
    let relay = webhook_relay::start(settings, secrets, shutdown.clone()).await?;
    let connected = Instant::now() + Duration::from_secs(10);
    while !relay.publisher.is_connected() {
        anyhow::ensure!(
            Instant::now() < connected,
            "the relay did not connect to the broker within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let body = Bytes::from(webhook_body(options.body_bytes));
    let load = Load {
        client: RelayClient::new(relay.addr, options.concurrency),
        signature: sign_webhook(secret, &body),
        body,
        next_id: Arc::new(AtomicU64::new(0)),
    };

    // Warm-up: connections, channels and the broker's queue processes get going.
    closed_loop(&load, options.concurrency, Duration::from_secs(1)).await;
    purge(channel, queue).await?;

    let seconds = Duration::from_secs(options.seconds);
    let started = Instant::now();
    let max = closed_loop(&load, options.concurrency, seconds).await;
    let max_seconds = started.elapsed().as_secs_f64();
    let max_queued = purge(channel, queue).await?;
    let max_rate = max.accepted as f64 / max_seconds;
    anyhow::ensure!(
        max.accepted > 0,
        "no webhook was accepted in the closed-loop phase ({} failed)",
        max.failed
    );

    let paced_rate = max_rate / 2.0;
    // The broker just dropped a phase's worth of queue segments: let it settle first.
    tokio::time::sleep(SETTLE).await;
    let paced = open_loop(&load, paced_rate, seconds).await;
    let paced_queued = purge(channel, queue).await?;
    // Every accepted webhook must be in the queue (a request that failed on the client's side
    // may still have been published, so more is possible, fewer is a bug).
    anyhow::ensure!(
        max_queued >= max.accepted && paced_queued >= paced.accepted,
        "accepted webhooks missing from the queue: phase 1 {max_queued} queued of {} accepted, \
         phase 2 {paced_queued} of {}",
        max.accepted,
        paced.accepted
    );

    shutdown.cancel();
    relay.wait().await?;
    Ok(BenchReport {
        options,
        max_accepted: max.accepted,
        max_failed: max.failed,
        max_queued,
        max_seconds,
        max_latency: Latencies::of(max.latencies),
        paced_rate,
        paced_sent: paced.sent,
        paced_accepted: paced.accepted,
        paced_failed: paced.failed,
        paced_queued,
        paced_latency: Latencies::of(paced.latencies),
        hostile: HostileReport::default(),
    })
}

/// Phase 3: a relay process of its own, attacked while signed webhooks arrive.
async fn under_attack(
    relay_settings: &Settings,
    settings: &Settings,
    secret: &str,
    channel: &lapin::Channel,
    queue: &WorkQueue,
    options: &Args,
) -> anyhow::Result<HostileReport> {
    let config: RelaySettings = relay_settings.service_section("webhook_relay")?;
    let relay = RelayProcess::start(relay_settings, settings, secret).await?;
    let outcome = async {
        let stop = CancellationToken::new();
        let mut attackers = JoinSet::new();
        let slow_cut_off = Arc::new(AtomicU64::new(0));
        for n in 0..options.slow_clients {
            attackers.spawn(trickle_headers(
                relay.addr,
                n,
                Arc::clone(&slow_cut_off),
                stop.clone(),
            ));
        }
        let big_answered = Arc::new(AtomicU64::new(0));
        let attack = Load {
            client: RelayClient::new(relay.addr, options.big_bodies),
            body: Bytes::from(webhook_body(config.max_body_bytes.max(64))),
            // A valid-looking signature of another body: the relay has to read this one to
            // find out.
            signature: sign_webhook(b"not the secret", b"{}"),
            next_id: Arc::new(AtomicU64::new(0)),
        };
        for _ in 0..options.big_bodies {
            let attack = attack.clone();
            let answered = Arc::clone(&big_answered);
            let stop = stop.clone();
            attackers.spawn(async move {
                while !stop.is_cancelled() {
                    attack.send().await;
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        // Let the attack build up: every slow connection open, the big bodies flowing.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let signed = Load {
            client: RelayClient::new(relay.addr, 64),
            body: Bytes::from(webhook_body(options.body_bytes)),
            signature: String::new(),
            next_id: Arc::new(AtomicU64::new(0)),
        };
        let signed = Load {
            signature: sign_webhook(secret.as_bytes(), &signed.body),
            ..signed
        };
        let sampler = tokio::spawn(relay.sample_rss(stop.clone()));
        let (cpu_before, measured_from) = (relay.cpu_seconds(), Instant::now());
        let result = open_loop(
            &signed,
            options.signed_rate,
            Duration::from_secs(options.seconds),
        )
        .await;
        let relay_cpu_per_second =
            (relay.cpu_seconds() - cpu_before) / measured_from.elapsed().as_secs_f64().max(0.001);
        stop.cancel();
        let sampled_peak = sampler.await.unwrap_or(0);
        while attackers.join_next().await.is_some() {}
        let queued = purge(channel, queue).await?;
        anyhow::ensure!(
            queued >= result.accepted,
            "accepted webhooks missing from the queue under attack: {queued} queued of {}",
            result.accepted
        );
        anyhow::Ok(HostileReport {
            body_limit: config.max_body_bytes,
            signed_sent: result.sent,
            signed_accepted: result.accepted,
            signed_failed: result.failed,
            signed_latency: Latencies::of(result.latencies),
            slow_cut_off: slow_cut_off.load(Ordering::Relaxed),
            big_answered: big_answered.load(Ordering::Relaxed),
            peak_rss_bytes: relay.peak_rss().max(sampled_peak),
            relay_cpu_per_second,
        })
    }
    .await;
    relay.stop().await;
    outcome
}

/// One connection trickling a request head a byte a second; reconnects when cut off.
async fn trickle_headers(
    addr: SocketAddr,
    n: usize,
    cut_off: Arc<AtomicU64>,
    stop: CancellationToken,
) {
    let head = format!(
        "POST /webhooks/shopify HTTP/1.1\r\nHost: relay\r\nX-Shopify-Topic: products/update\r\n\
         X-Shopify-Shop-Domain: {SHOP}\r\nX-Shopify-Webhook-Id: slow-{n}\r\n"
    );
    // Spread the connects over the first second.
    let offset = Duration::from_millis((n as u64 * 997) % 1000);
    tokio::select! {
        () = stop.cancelled() => return,
        () = tokio::time::sleep(offset) => {}
    }
    while !stop.is_cancelled() {
        let Ok(mut stream) = TcpStream::connect(addr).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        for byte in head.bytes().cycle() {
            if stream.write_all(&[byte]).await.is_err() {
                cut_off.fetch_add(1, Ordering::Relaxed);
                break;
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}

/// The relay as a process of its own (so its memory is its own), on free loopback ports.
struct RelayProcess {
    child: tokio::process::Child,
    pid: u32,
    addr: SocketAddr,
    config_file: PathBuf,
}

impl RelayProcess {
    async fn start(
        relay_settings: &Settings,
        settings: &Settings,
        secret: &str,
    ) -> anyhow::Result<Self> {
        let free = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|listener| listener.local_addr())
                .context("a free port")
        };
        let (addr, ops_addr) = (free()?, free()?);
        let mut text = format!(
            "[amqp]\nname_prefix = \"{}\"\n\n[[shops]]\ndomain = \"{SHOP}\"\napi_version = \"2026-04\"\n\
             admin_base_url = \"http://127.0.0.1:9\"\naccess_token_env = \"BENCH_TOKEN\"\n\
             webhook_secret_env = \"BENCH_WEBHOOK_SECRET\"\n",
            relay_settings.amqp.name_prefix
        );
        if let Some(table) = settings.services.get("webhook_relay") {
            let mut section = toml::Table::new();
            section.insert("webhook_relay".to_owned(), table.clone());
            text.push('\n');
            text.push_str(&toml::to_string(&section).context("the [webhook_relay] table")?);
        }
        let config_file = std::env::temp_dir().join(format!(
            "webhook-relay-bench-{}.toml",
            relay_settings.amqp.name_prefix.trim_end_matches('.')
        ));
        std::fs::write(&config_file, text).context("writing the relay's configuration")?;
        let mut child = serve_command(
            Service::WebhookRelay,
            [
                "--config",
                &config_file.display().to_string(),
                "--listen",
                &addr.to_string(),
            ],
        )?
        .args(["--ops-listen", &ops_addr.to_string()])
        .env("AMQP_URL", &settings.amqp.url)
        .env("BENCH_WEBHOOK_SECRET", secret)
        .env("RUST_LOG", "warn")
        .env("LOG_FORMAT", "json")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting webhook-relay")?;
        let pid = child.id().context("the relay process id")?;
        let ops = RelayClient::new(ops_addr, 1);
        let ready_by = Instant::now() + Duration::from_secs(30);
        loop {
            if ops
                .get("/readyz")
                .await
                .is_ok_and(|r| r.status.is_success())
            {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                anyhow::bail!("the relay process exited before it was ready: {status}");
            }
            anyhow::ensure!(
                Instant::now() < ready_by,
                "the relay process was not ready within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Self {
            child,
            pid,
            addr,
            config_file,
        })
    }

    /// `VmHWM` of the process: its peak resident memory so far.
    fn peak_rss(&self) -> u64 {
        status_kib(self.pid, "VmHWM:").saturating_mul(1024)
    }

    /// User and system CPU time the process used so far (`/proc/<pid>/stat`, in the kernel's
    /// 100 Hz `USER_HZ` ticks); 0 when unreadable.
    fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap_or_default();
        // Fields after the command name (which may contain spaces) start at `state`.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let ticks = |index: usize| {
            fields
                .get(index)
                .and_then(|value| value.parse::<u64>().ok())
                .unwrap_or(0)
        };
        // utime and stime: fields 14 and 15 of the line, indexes 11 and 12 from `state` on.
        (ticks(11) + ticks(12)) as f64 / 100.0
    }

    /// The largest `VmRSS` seen every 100 ms until `stop` (in case `VmHWM` is unavailable).
    fn sample_rss(&self, stop: CancellationToken) -> impl Future<Output = u64> + use<> {
        let pid = self.pid;
        async move {
            let mut peak = 0;
            while !stop.is_cancelled() {
                peak = peak.max(status_kib(pid, "VmRSS:").saturating_mul(1024));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            peak
        }
    }

    async fn stop(mut self) {
        let _ = tokio::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await;
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
        let _ = std::fs::remove_file(&self.config_file);
    }
}

/// Empties the bench queue (so the broker does not carry a phase's messages into the next)
/// and returns how many messages it held.
async fn purge(channel: &lapin::Channel, queue: &WorkQueue) -> anyhow::Result<u64> {
    let purged = channel
        .queue_purge(queue.name.as_str().into(), QueuePurgeOptions::default())
        .await
        .context("purging the bench queue")?;
    Ok(u64::from(purged))
}

/// What every request of the load needs.
#[derive(Debug, Clone)]
struct Load {
    client: RelayClient,
    body: Bytes,
    signature: String,
    next_id: Arc<AtomicU64>,
}

impl Load {
    /// Sends one webhook with a fresh webhook id; `true` when it was accepted.
    async fn send(&self) -> bool {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let headers = webhook_headers(
            "products/update",
            SHOP,
            &format!("bench-{n}"),
            self.signature.clone(),
        );
        let sent = self.client.post_webhook(&headers, self.body.clone());
        matches!(
            tokio::time::timeout(CLIENT_TIMEOUT, sent).await,
            Ok(Ok(reply)) if reply.status.is_success()
        )
    }
}

#[derive(Debug, Default)]
struct PhaseResult {
    sent: u64,
    accepted: u64,
    failed: u64,
    latencies: Vec<Duration>,
}

impl PhaseResult {
    fn record(&mut self, accepted: bool, latency: Duration) {
        self.sent += 1;
        if accepted {
            self.accepted += 1;
        } else {
            self.failed += 1;
        }
        self.latencies.push(latency);
    }
}

/// `workers` tasks sending back to back until `length` is over.
async fn closed_loop(load: &Load, workers: usize, length: Duration) -> PhaseResult {
    let deadline = Instant::now() + length;
    let mut tasks = JoinSet::new();
    for _ in 0..workers {
        let load = load.clone();
        tasks.spawn(async move {
            let mut result = PhaseResult::default();
            while Instant::now() < deadline {
                let started = Instant::now();
                let accepted = load.send().await;
                result.record(accepted, started.elapsed());
            }
            result
        });
    }
    let mut total = PhaseResult::default();
    while let Some(worker) = tasks.join_next().await {
        if let Ok(result) = worker {
            total.sent += result.sent;
            total.accepted += result.accepted;
            total.failed += result.failed;
            total.latencies.extend(result.latencies);
        }
    }
    total
}

/// Requests at `rate` per second for `length`, each sent at its scheduled time.
async fn open_loop(load: &Load, rate: f64, length: Duration) -> PhaseResult {
    let total = (rate * length.as_secs_f64()).floor().max(1.0) as u64;
    let interval = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    let mut result = PhaseResult::default();
    for n in 0..total {
        let scheduled = started + interval.mul_f64(n as f64);
        tokio::time::sleep_until(scheduled).await;
        while let Some(done) = tasks.try_join_next() {
            if let Ok((accepted, latency)) = done {
                result.record(accepted, latency);
            }
        }
        if tasks.len() >= MAX_OUTSTANDING {
            result.record(false, scheduled.elapsed());
            continue;
        }
        let load = load.clone();
        tasks.spawn(async move {
            let accepted = load.send().await;
            // From the scheduled start: a late start counts as latency, not as a lower rate.
            (accepted, scheduled.elapsed())
        });
    }
    while let Some(done) = tasks.join_next().await {
        if let Ok((accepted, latency)) = done {
            result.record(accepted, latency);
        }
    }
    result
}

/// A product-shaped JSON body of exactly `size` bytes (at least 64).
fn webhook_body(size: usize) -> Vec<u8> {
    let head = br#"{"id":788032119674292922,"title":"Bench product","body_html":""#;
    let tail = br#""}"#;
    let padding = size.saturating_sub(head.len() + tail.len());
    let mut body = Vec::with_capacity(size);
    body.extend_from_slice(head);
    body.extend(std::iter::repeat_n(b'x', padding));
    body.extend_from_slice(tail);
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_have_the_requested_size_and_are_json() {
        for size in [64, 4096] {
            let body = webhook_body(size);
            assert_eq!(body.len(), size);
            assert!(body.starts_with(b"{") && body.ends_with(b"\"}"));
        }
    }

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let samples = (1..=100).map(Duration::from_millis).collect();
        let latencies = Latencies::of(samples);
        assert_eq!(latencies.p50, Duration::from_millis(50));
        assert_eq!(latencies.p99, Duration::from_millis(99));
        assert_eq!(latencies.max, Duration::from_millis(100));
        assert_eq!(Latencies::of(Vec::new()).p99, Duration::ZERO);
    }
}
