//! `wos-sync-bench sandbox`: how many full-size adjustments per second the sandbox serves.
//!
//! It starts a sandbox in-process (throttling off, no faults) on 127.0.0.1, creates one shop
//! with as many stocked items as a call has changes, and lets N concurrent clients send
//! `inventoryAdjustQuantities` calls with 250 changes each and a fresh idempotency key, until
//! the request count or the time limit is reached. It prints requests/s and latency
//! percentiles, and checks the sandbox applied exactly one group per successful call.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use model::ids::{InventoryItemId, LocationId};
use serde_json::{Value, json};

use crate::Figures;
use shopify_sandbox::{
    Sandbox, SandboxConfig, ThrottleConfig,
    client::HttpClient,
    store::{ProductSpec, VariantSpec},
};

/// What to measure.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct Args {
    /// Concurrent clients.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Requests to send (after a warm-up of one per client).
    #[arg(long, default_value_t = 4000)]
    pub requests: u64,
    /// Time limit of the measurement, in seconds.
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// Changes per request (1..=250).
    #[arg(long, default_value_t = 250)]
    pub changes: usize,
}

/// What was measured.
#[derive(Debug, Clone)]
pub struct BenchReport {
    /// What was asked.
    pub options: Args,
    /// Successful calls.
    pub ok: u64,
    /// Failed calls.
    pub failed: u64,
    /// Measurement time.
    pub elapsed: Duration,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
    /// Largest latency.
    pub max: Duration,
}

impl BenchReport {
    /// Successful calls per second.
    pub fn requests_per_second(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }
}

impl BenchReport {
    /// The headline figures, for the `RESULT` line.
    pub fn figures(&self) -> Figures {
        let mut figures = Figures::default();
        figures.add(
            "sandbox_requests_per_s",
            format!("{:.0}", self.requests_per_second()),
        );
        figures
    }
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "shopify-sandbox bench: inventoryAdjustQuantities, {} changes per call, {} clients, throttling off",
            self.options.changes, self.options.clients
        )?;
        writeln!(
            f,
            "  requests: {} ok, {} failed in {:.2} s",
            self.ok,
            self.failed,
            self.elapsed.as_secs_f64()
        )?;
        writeln!(
            f,
            "  throughput: {:.0} requests/s ({:.0} changes/s)",
            self.requests_per_second(),
            self.requests_per_second() * self.options.changes as f64
        )?;
        write!(
            f,
            "  latency: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3,
            self.max.as_secs_f64() * 1e3
        )
    }
}

const MUTATION: &str = "mutation Bench($input: InventoryAdjustQuantitiesInput!, $key: String!) {
  inventoryAdjustQuantities(input: $input) @idempotent(key: $key) {
    inventoryAdjustmentGroup { id createdAt reason changes { name delta item { id } location { id } } }
    userErrors { field message code }
  }
}";

const SHOP: &str = "bench.myshopify.com";
const TOKEN: &str = "shpat_bench";

/// Runs the benchmark, prints its report and returns its headline figures.
pub async fn run(args: &Args) -> anyhow::Result<Figures> {
    let report = measure(*args).await?;
    println!("{report}");
    Ok(report.figures())
}

/// Measures requests per second of `options.changes`-change calls.
pub async fn measure(options: Args) -> anyhow::Result<BenchReport> {
    if options.changes == 0
        || options.changes > shopify_sandbox::adjust::MAX_CHANGES
        || options.clients == 0
    {
        bail!("changes must be 1..=250 and clients at least 1");
    }
    let sandbox = Sandbox::start(SandboxConfig {
        throttle: ThrottleConfig::disabled(),
        ..SandboxConfig::default()
    })
    .await?;
    sandbox.create_shop(SHOP, TOKEN)?;
    let location = sandbox.create_location(SHOP, "Bench")?;
    let product = sandbox.create_product(
        SHOP,
        ProductSpec {
            title: "Bench".into(),
            variants: (0..options.changes)
                .map(|i| VariantSpec::sku(format!("BENCH-{i}")).stocked_at(location, 0))
                .collect(),
            ..ProductSpec::default()
        },
    )?;
    let items: Vec<InventoryItemId> = product
        .variants
        .iter()
        .map(|v| v.inventory_item_id)
        .collect();
    let input: Arc<str> = Arc::from(adjust_input(&items, location).to_string());
    let base_url = sandbox.base_url();
    let client = HttpClient::new(Duration::from_secs(30));

    // Warm-up: connections, allocator, caches.
    for _ in 0..options.clients {
        send(&client, &base_url, &input).await?;
    }
    let warmup = options.clients as u64;

    let issued = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(options.seconds);
    let mut workers = Vec::with_capacity(options.clients);
    for _ in 0..options.clients {
        let client = client.clone();
        let base_url = base_url.clone();
        let input = Arc::clone(&input);
        let issued = Arc::clone(&issued);
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failed = 0u64;
            while issued.fetch_add(1, Ordering::Relaxed) < options.requests
                && Instant::now() < deadline
            {
                let sent = Instant::now();
                match send(&client, &base_url, &input).await {
                    Ok(()) => latencies.push(sent.elapsed()),
                    Err(_) => failed += 1,
                }
            }
            (latencies, failed)
        }));
    }
    let mut latencies = Vec::new();
    let mut failed = 0;
    for worker in workers {
        let (l, f) = worker.await.context("a bench client panicked")?;
        latencies.extend(l);
        failed += f;
    }
    let elapsed = start.elapsed();
    latencies.sort_unstable();
    let ok = latencies.len() as u64;
    let groups = sandbox.adjustment_groups(SHOP)?.len() as u64;
    if groups != ok + warmup {
        bail!(
            "the sandbox applied {groups} groups for {} successful calls",
            ok + warmup
        );
    }
    let applied = sandbox
        .quantity(SHOP, items[0], location, "available")
        .unwrap_or_default();
    if u64::try_from(applied).ok() != Some(ok + warmup) {
        bail!("available is {applied} after {} calls of +1", ok + warmup);
    }
    sandbox.shutdown().await;
    let percentile = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or_default()
    };
    Ok(BenchReport {
        options,
        ok,
        failed,
        elapsed,
        p50: percentile(0.50),
        p99: percentile(0.99),
        max: latencies.last().copied().unwrap_or_default(),
    })
}

fn adjust_input(items: &[InventoryItemId], location: LocationId) -> Value {
    json!({
        "name": "available",
        "reason": "correction",
        "referenceDocumentUri": "logistics://bench/1",
        "changes": items.iter().map(|item| json!({
            "inventoryItemId": item.gid(),
            "locationId": location.gid(),
            "delta": 1,
            "changeFromQuantity": null,
        })).collect::<Vec<_>>(),
    })
}

async fn send(client: &HttpClient, base_url: &str, input_json: &str) -> anyhow::Result<()> {
    // The body is assembled from the pre-serialised input: the load generator shares the
    // machine (and this process) with the sandbox, so it should spend as little as it can.
    let body = format!(
        r#"{{"query":{},"variables":{{"input":{input_json},"key":"{}"}}}}"#,
        Value::String(MUTATION.to_owned()),
        uuid::Uuid::new_v4()
    );
    let url = format!("{base_url}/admin/api/2026-04/graphql.json");
    let response = client
        .send(
            "POST",
            &url,
            &[
                ("content-type", "application/json"),
                ("x-shopify-access-token", TOKEN),
            ],
            body.into_bytes(),
        )
        .await?;
    // A cheap check instead of parsing 100 kB: an applied group and no user errors.
    let text = std::str::from_utf8(&response.body).unwrap_or_default();
    if response.status != 200
        || !text.contains(r#""inventoryAdjustmentGroup":{"id""#)
        || !text.contains(r#""userErrors":[]"#)
    {
        bail!("unexpected response {}: {}", response.status, text);
    }
    Ok(())
}
