//! `wos-sync-bench pusher`: end-to-end figures against an in-process Shopify sandbox, for the
//! batched mode and the one-call-per-transaction mode of this same code, in one invocation.
//!
//! Each measurement gets a scratch queue namespace and database and a fresh sandbox shop with
//! `skus` stocked items (mapped in `items` as item-ingest would). WOS transactions are published
//! on `wos.transactions` as fast as the broker confirms them; the figures are taken from the
//! database clock: a transaction is done when its adjustment is `pushed`.
//!
//! - throughput with sandbox throttling off (transactions/s, Shopify calls per transaction);
//! - throughput with Shopify Standard throttling (2000 points, 100/s), as a fraction of the
//!   throttle-bound maximum: the shortest time in which that many calls fit through the bucket,
//!   divided by the time taken (1.0 = as fast as the rate limit allows);
//! - lag (`occurred_at` to Shopify's acknowledgement) p50/p99 at a light constant load, with
//!   Standard throttling;
//! - the backlog scenario (`--backlog-only` runs just this): `backlog_transactions` puts over
//!   `backlog_skus` SKUs already pending when the pusher starts (written as intake records
//!   them), so every call carries 250 distinct changes, with a Standard (2,000 / 100 per s) and a
//!   Plus (20,000 / 1,000 per s) bucket drained to two calls' worth at start (a shop at its
//!   ceiling): changes/s beside the throttle-bound ceiling, `restore_rate / actual cost of a
//!   call x 250`, with the call's actual cost measured in the sandbox; the `THROTTLED` replies;
//!   and the one-call-per-transaction mode on the same backlog for comparison.

use std::time::{Duration, Instant};

use lapin::{BasicProperties, options::BasicPublishOptions};
use model::{
    config::{ShopDirectory, ShopSettings},
    ids::LocationId,
};
use platform::{
    amqp::{
        publisher::{PERSISTENT, confirm_channel},
        topology::{WOS_TRANSACTIONS, declare_exchanges, declare_work_queue},
    },
    db,
    metrics::Metrics,
    settings::Settings,
    shutdown::CancellationToken,
};
use serde_json::json;
use shopify_sandbox::{ProductSpec, SandboxHandle, Stock, ThrottleConfig, VariantSpec};

use adjustment_pusher::{ShopTokens, serve};

use crate::{Figures, Outgoing, publish_pipelined, pusher_child::in_scratch, scratch::Scratch};

const SHOP: &str = "bench.myshopify.com";
/// A bench shop's access token in the sandbox (each shop has its own).
pub(crate) fn shop_token(domain: &str) -> String {
    format!("bench-token-{domain}")
}

/// The environment variable a bench shop's settings name for its token.
pub(crate) fn shop_token_env(domain: &str) -> String {
    let name: String = domain
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("BENCH_TOKEN_{name}")
}

/// Benchmark sizes.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Transactions per throughput run without throttling.
    #[arg(long, default_value_t = 5000)]
    pub transactions: u64,
    /// Transactions per throughput run with Standard throttling (one-call-per-transaction mode
    /// is bound to about 10 calls/s there, so keep it modest).
    #[arg(long, default_value_t = 600)]
    pub throttled_transactions: u64,
    /// Distinct SKUs the transactions are spread over.
    #[arg(long, default_value_t = 1000)]
    pub skus: u64,
    /// Transactions per second of the light constant load.
    #[arg(long, default_value_t = 5.0)]
    pub light_rate: f64,
    /// Duration of the light load, in seconds.
    #[arg(long, default_value_t = 10)]
    pub light_seconds: u64,
    /// Transactions of the backlog scenario (pending before the pusher starts).
    #[arg(long, default_value_t = 50_000)]
    pub backlog_transactions: u64,
    /// Distinct SKUs of the backlog (two locations each), so every call carries 250 changes.
    #[arg(long, default_value_t = 20_000)]
    pub backlog_skus: u64,
    /// Transactions of the backlog in the one-call-per-transaction mode (bound to about one
    /// call per cost of the restore rate, so keep it modest).
    #[arg(long, default_value_t = 400)]
    pub per_tx_backlog_transactions: u64,
    /// Only the backlog scenario (Standard and Plus buckets).
    #[arg(long)]
    pub backlog_only: bool,
    /// `[adjustment_pusher] batches_in_flight` of the backlog runs (default: the pusher's).
    #[arg(long)]
    pub batches_in_flight: Option<u16>,
    /// Only these plans of the backlog scenario (`standard`, `plus`).
    #[arg(long, value_delimiter = ',', default_values_t = ["standard".to_owned(), "plus".to_owned()])]
    pub plans: Vec<String>,
}

/// One mode's figures.
#[derive(Debug, Default)]
struct ModeFigures {
    free_tps: f64,
    free_calls_per_tx: f64,
    throttled_tps: f64,
    throttled_calls: usize,
    throttled_fraction: Option<f64>,
    lag_p50: f64,
    lag_p99: f64,
}

/// Runs every measurement, prints the figures and returns the headline ones.
pub async fn run(settings: &Settings, args: &Args) -> anyhow::Result<Figures> {
    let mut figures = if args.backlog_only {
        Figures::default()
    } else {
        run_streams(settings, args).await?
    };
    run_backlogs(settings, args, &mut figures).await?;
    Ok(figures)
}

/// About the size of a WOS transaction message (the bare loop's yardstick).
const TX_BYTES: usize = 256;

/// The stream measurements: transactions published to the broker, intake included.
async fn run_streams(settings: &Settings, args: &Args) -> anyhow::Result<Figures> {
    let free = ThrottleConfig {
        enabled: false,
        ..ThrottleConfig::default()
    };
    let standard = ThrottleConfig::default();
    let mut rows = Vec::new();
    for (name, batching) in [("batched", true), ("one call per transaction", false)] {
        let mut figures = ModeFigures::default();
        let run = measure(
            settings,
            args,
            batching,
            free,
            Load::Burst(args.transactions),
        )
        .await?;
        figures.free_tps = run.transactions as f64 / run.seconds;
        figures.free_calls_per_tx = run.calls as f64 / run.transactions as f64;
        let run = measure(
            settings,
            args,
            batching,
            standard,
            Load::Burst(args.throttled_transactions),
        )
        .await?;
        figures.throttled_tps = run.transactions as f64 / run.seconds;
        figures.throttled_calls = run.calls;
        // Shortest time for `calls` calls through a bucket of `size` points restoring `rate`/s.
        let needed = run.calls as f64 * run.cost_per_call - standard.bucket_size;
        figures.throttled_fraction =
            (needed > 0.0).then(|| (needed / standard.restore_rate) / run.seconds);
        let load = Load::Constant {
            rate: args.light_rate,
            seconds: args.light_seconds,
        };
        let run = measure(settings, args, batching, standard, load).await?;
        (figures.lag_p50, figures.lag_p99) = (run.lag_p50, run.lag_p99);
        rows.push((name, figures));
    }
    // The yardstick: a bare consume-and-ack loop of transaction-sized messages, this run.
    let bare = crate::runtime::bare_rate(settings, args.transactions.max(20_000), TX_BYTES).await?;
    println!(
        "adjustment-pusher end to end: {} transactions over {} SKUs (throttled runs: {})",
        args.transactions, args.skus, args.throttled_transactions
    );
    println!(
        "bare consume+ack loop ({TX_BYTES}-byte messages, same broker): {bare:.0} msg/s; \
         batched end to end, throttling off: {:.2}x that",
        rows[0].1.free_tps / bare
    );
    for (name, f) in &rows {
        println!("[{name}]");
        println!(
            "  throughput, throttling off:        {:>8.0} transactions/s",
            f.free_tps
        );
        println!(
            "  Shopify calls per transaction:     {:>8.3}",
            f.free_calls_per_tx
        );
        match f.throttled_fraction {
            Some(fraction) => println!(
                "  throughput, Standard throttling:   {:>8.1} transactions/s ({} calls, {:.0}% of the throttle-bound maximum)",
                f.throttled_tps,
                f.throttled_calls,
                fraction * 100.0
            ),
            None => println!(
                "  throughput, Standard throttling:   {:>8.1} transactions/s ({} calls fit in the bucket: not throttle-bound)",
                f.throttled_tps, f.throttled_calls
            ),
        }
        println!(
            "  lag at {:.0} tx/s (Standard throttling): p50 {:.0} ms, p99 {:.0} ms",
            args.light_rate,
            f.lag_p50 * 1000.0,
            f.lag_p99 * 1000.0
        );
    }
    let mut figures = Figures::default();
    figures
        .add("bare_msgs_per_s", format!("{bare:.0}"))
        .add("pusher_ratio", format!("{:.2}", rows[0].1.free_tps / bare));
    for (prefix, (_, f)) in ["batched", "per_tx"].iter().zip(&rows) {
        figures
            .add(&format!("{prefix}_tx_per_s"), format!("{:.0}", f.free_tps))
            .add(
                &format!("{prefix}_calls_per_tx"),
                format!("{:.3}", f.free_calls_per_tx),
            )
            .add(
                &format!("{prefix}_standard_tx_per_s"),
                format!("{:.1}", f.throttled_tps),
            )
            .add(
                &format!("{prefix}_standard_ceiling_ratio"),
                f.throttled_fraction
                    .map_or_else(|| "not_throttle_bound".to_owned(), |r| format!("{r:.2}")),
            )
            .add(
                &format!("{prefix}_lag_p99_ms"),
                format!("{:.0}", f.lag_p99 * 1000.0),
            );
    }
    Ok(figures)
}

/// Shopify's bucket in a backlog run.
#[derive(Debug, Clone, Copy)]
struct Plan {
    /// The figures' prefix.
    name: &'static str,
    title: &'static str,
    throttle: ThrottleConfig,
}

const PLANS: [Plan; 2] = [
    Plan {
        name: "standard",
        title: "Shopify Standard bucket (2,000 points, 100 restored per second)",
        throttle: ThrottleConfig {
            enabled: true,
            bucket_size: 2000.0,
            restore_rate: 100.0,
        },
    },
    Plan {
        name: "plus",
        title: "Shopify Plus bucket (20,000 points, 1,000 restored per second)",
        throttle: ThrottleConfig {
            enabled: true,
            bucket_size: 20_000.0,
            restore_rate: 1000.0,
        },
    },
];

/// One backlog run's figures.
#[derive(Debug)]
struct BacklogRun {
    transactions: u64,
    /// From the first batch formed to the last one applied, by the database's clock.
    seconds: f64,
    calls: u64,
    changes: u64,
    cost: CallCost,
    throttled: u64,
}

impl BacklogRun {
    fn changes_per_s(&self) -> f64 {
        self.changes as f64 / self.seconds
    }

    fn tx_per_s(&self) -> f64 {
        self.transactions as f64 / self.seconds
    }
}

/// The backlog scenario, for each plan: `backlog_transactions` puts over `backlog_skus` SKUs
/// already pending when the pusher starts, the bucket drained to two calls' worth (a shop at
/// its ceiling), batched and in the one-call-per-transaction mode.
async fn run_backlogs(
    settings: &Settings,
    args: &Args,
    figures: &mut Figures,
) -> anyhow::Result<()> {
    let max_changes = model::batch::MAX_CHANGES as f64;
    let in_flight = args
        .batches_in_flight
        .unwrap_or(adjustment_pusher::PusherSettings::default().batches_in_flight);
    let pusher = format!("batches_in_flight = {in_flight}");
    println!(
        "adjustment-pusher backlog: {} transactions over {} SKUs pending at start (one call per \
         transaction: {}); {in_flight} batches in flight; the bucket drained to two calls at start",
        args.backlog_transactions, args.backlog_skus, args.per_tx_backlog_transactions
    );
    let mut throttled = 0;
    for plan in PLANS
        .into_iter()
        .filter(|plan| args.plans.iter().any(|name| name == plan.name))
    {
        let batched = measure_backlog(
            settings,
            plan.throttle,
            true,
            &pusher,
            args.backlog_transactions,
            args.backlog_skus,
        )
        .await?;
        let per_tx = measure_backlog(
            settings,
            plan.throttle,
            false,
            &pusher,
            args.per_tx_backlog_transactions,
            args.backlog_skus,
        )
        .await?;
        throttled += batched.throttled + per_tx.throttled;
        // The throttle-bound ceiling: the bucket restores `restore_rate` points a second, a call
        // keeps its actual cost, and carries at most 250 changes.
        let ceiling = plan.throttle.restore_rate / batched.cost.actual * max_changes;
        let ratio = batched.changes_per_s() / ceiling;
        let versus = batched.tx_per_s() / per_tx.tx_per_s();
        println!("[{}]", plan.title);
        println!(
            "  call cost (sandbox, 250 changes): requested {:.0}, actual {:.0} points",
            batched.cost.requested, batched.cost.actual
        );
        println!(
            "  throttle-bound ceiling:  {ceiling:>8.0} changes/s ({:.0} / {:.0} calls/s x 250 changes)",
            plan.throttle.restore_rate, batched.cost.actual
        );
        println!(
            "  measured, batched:       {:>8.0} changes/s ({:.2} of the ceiling; {:.0} transactions/s, \
             {} calls, {:.1} changes a call, {:.1} s)",
            batched.changes_per_s(),
            ratio,
            batched.tx_per_s(),
            batched.calls,
            batched.changes as f64 / batched.calls.max(1) as f64,
            batched.seconds
        );
        println!(
            "  one call per transaction:{:>8.1} transactions/s ({} calls): batched is {versus:.0}x",
            per_tx.tx_per_s(),
            per_tx.calls
        );
        println!(
            "  THROTTLED replies:       {:>8} batched, {} one call per transaction",
            batched.throttled, per_tx.throttled
        );
        let name = plan.name;
        figures
            .add(
                &format!("{name}_changes_per_s"),
                format!("{:.0}", batched.changes_per_s()),
            )
            .add(
                &format!("{name}_ceiling_changes_per_s"),
                format!("{ceiling:.0}"),
            )
            .add(&format!("{name}_ceiling_ratio"), format!("{ratio:.2}"))
            .add(
                &format!("{name}_backlog_tx_per_s"),
                format!("{:.0}", batched.tx_per_s()),
            )
            .add(
                &format!("{name}_per_tx_backlog_tx_per_s"),
                format!("{:.1}", per_tx.tx_per_s()),
            )
            .add(&format!("{name}_vs_per_tx"), format!("{versus:.0}"));
    }
    figures.add("throttled_replies", throttled);
    Ok(())
}

async fn measure_backlog(
    settings: &Settings,
    throttle: ThrottleConfig,
    batching: bool,
    pusher: &str,
    transactions: u64,
    skus: u64,
) -> anyhow::Result<BacklogRun> {
    in_scratch(settings, throttle, async |scratch, sandbox| {
        measure_backlog_in(scratch, sandbox, batching, pusher, transactions, skus).await
    })
    .await
}

async fn measure_backlog_in(
    scratch: &Scratch,
    sandbox: &SandboxHandle,
    batching: bool,
    pusher: &str,
    transactions: u64,
    skus: u64,
) -> anyhow::Result<BacklogRun> {
    let shop = set_up_shop(scratch, sandbox, skus, batching, pusher).await?;
    let probe = shop.items.len().min(model::batch::MAX_CHANGES);
    let cost = measure_call_cost(sandbox, SHOP, &shop.items[..probe], shop.main).await?;
    let before = sandbox.adjustment_groups(SHOP)?.len();

    let client = shop.pool.get().await?;
    insert_backlog(&client, SHOP, transactions, skus, shop.main, shop.east).await?;
    let count = i64::try_from(transactions)?;
    client.execute("ANALYZE adjustments", &[]).await?;
    // A shop at its ceiling: the bucket holds two calls' worth, and restores from there.
    sandbox.set_bucket_available(SHOP, 2.0 * cost.requested)?;

    let metrics = Metrics::new();
    let shutdown = CancellationToken::new();
    let tokens = ShopTokens::new([(SHOP.to_owned(), shop_token(SHOP))]);
    let mut service = tokio::spawn(serve(
        shop.settings.clone(),
        tokens,
        metrics.clone(),
        shutdown.clone(),
    ));
    wait_for_pushed(&client, count, Duration::from_secs(3600), &mut service).await?;
    let row = client
        .query_one(
            "SELECT extract(epoch FROM max(completed_at) - min(created_at))::float8, \
                 coalesce(sum(change_count), 0)::bigint \
             FROM push_batches WHERE state = 'applied' AND change_count > 0",
            &[],
        )
        .await?;
    let throttled = metrics
        .shopify_requests_total
        .with_label_values(&[SHOP, adjustment_pusher::shopify::OPERATION, "throttled"])
        .get();
    let calls = sandbox.adjustment_groups(SHOP)?.len() - before;
    shutdown.cancel();
    service.await??;
    Ok(BacklogRun {
        transactions,
        seconds: row.get::<_, f64>(0).max(0.001),
        calls: u64::try_from(calls)?,
        changes: u64::try_from(row.get::<_, i64>(1))?,
        cost,
        throttled,
    })
}

/// Writes a backlog of `transactions` puts of `domain` as intake records them, pending: the n-th
/// is +(1 + n % 5) of BENCH-(n % skus), at MAIN for even n and EAST for odd n, in id order.
pub(crate) async fn insert_backlog(
    client: &deadpool_postgres::Object,
    domain: &str,
    transactions: u64,
    skus: u64,
    main: LocationId,
    east: LocationId,
) -> anyhow::Result<()> {
    let (count, skus) = (i64::try_from(transactions)?, i64::try_from(skus)?);
    client
        .execute(
            "INSERT INTO wos_transactions (shop_domain, transaction_id, kind, sku, occurred_at, \
                 content_digest, body) \
             SELECT $1::text, 'bench-' || n, 'put', 'BENCH-' || n % $3, now(), 'bench-' || n, \
                 convert_to(json_build_object('transaction_id', 'bench-' || n, \
                     'shop_domain', $1::text, 'type', 'put', 'sku', 'BENCH-' || n % $3, \
                     'warehouse', CASE WHEN n % 2 = 0 THEN 'MAIN' ELSE 'EAST' END, \
                     'quantity', 1 + n % 5, 'occurred_at', now())::text, 'UTF8') \
             FROM generate_series(0, $2::bigint - 1) AS n",
            &[&domain, &count, &skus],
        )
        .await?;
    let (main, east) = (i64::try_from(main.0)?, i64::try_from(east.0)?);
    client
        .execute(
            "INSERT INTO adjustments (shop_domain, transaction_id, kind, sku, location_id, delta, \
                 reason, occurred_at, state, inventory_item_id) \
             SELECT $1::text, 'bench-' || n, 'put', i.sku, \
                 CASE WHEN n % 2 = 0 THEN $4::bigint ELSE $5::bigint END, 1 + n % 5, 'received', \
                 now(), 'pending', i.inventory_item_id \
             FROM generate_series(0, $2::bigint - 1) AS n \
             JOIN items i ON i.shop_domain = $1 AND i.sku = 'BENCH-' || n % $3 \
             ORDER BY n",
            &[&domain, &count, &skus, &main, &east],
        )
        .await?;
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum Load {
    /// This many transactions, published as fast as the broker confirms.
    Burst(u64),
    /// A constant rate for a while.
    Constant { rate: f64, seconds: u64 },
}

#[derive(Debug)]
struct Run {
    transactions: u64,
    seconds: f64,
    calls: usize,
    cost_per_call: f64,
    lag_p50: f64,
    lag_p99: f64,
}

async fn measure(
    settings: &Settings,
    args: &Args,
    batching: bool,
    throttle: ThrottleConfig,
    load: Load,
) -> anyhow::Result<Run> {
    in_scratch(settings, throttle, async |scratch, sandbox| {
        measure_in(scratch, sandbox, args, batching, load).await
    })
    .await
}

/// The bench shop, stocked in the sandbox and mapped in the scratch database, and the
/// pusher's settings against it.
struct BenchShop {
    settings: Settings,
    pool: deadpool_postgres::Pool,
    items: Vec<shopify_sandbox::CreatedVariant>,
    main: LocationId,
    east: LocationId,
}

/// Creates the bench shop with `skus` stocked items (mapped in `items` as item-ingest would),
/// migrates the scratch database and writes the pusher's settings: `batching` and the other
/// `[adjustment_pusher]` keys of `pusher` (TOML).
async fn set_up_shop(
    scratch: &Scratch,
    sandbox: &SandboxHandle,
    skus: u64,
    batching: bool,
    pusher: &str,
) -> anyhow::Result<BenchShop> {
    let StockedShop { items, main, east } = stock_shop(sandbox, SHOP, skus)?;
    let mut settings = scratch.settings.clone();
    settings.http.listen = Some("127.0.0.1:0".parse()?);
    settings.shops = ShopDirectory::new(vec![shop_settings(SHOP, sandbox, main, east)])
        .map_err(|err| anyhow::anyhow!("{err}"))?;
    let mut section: toml::Table = pusher.parse()?;
    section.insert("batching".into(), toml::Value::Boolean(batching));
    settings
        .services
        .insert("adjustment_pusher".into(), toml::Value::Table(section));

    let pool = db::connect_pool(&settings.database)?;
    db::migrate(&pool).await?;
    map_items(&pool.get().await?, SHOP, &items).await?;
    Ok(BenchShop {
        settings,
        pool,
        items,
        main,
        east,
    })
}

/// A shop stocked in the sandbox.
pub(crate) struct StockedShop {
    /// `BENCH-0` .. `BENCH-<skus - 1>`, in order.
    pub items: Vec<shopify_sandbox::CreatedVariant>,
    /// Warehouse `MAIN`.
    pub main: LocationId,
    /// Warehouse `EAST`.
    pub east: LocationId,
}

/// Creates `domain` in the sandbox (access token [`shop_token`]) with locations Main and East and
/// `skus` variants `BENCH-n`, stocked 0 at both, in products of 100.
pub(crate) fn stock_shop(
    sandbox: &SandboxHandle,
    domain: &str,
    skus: u64,
) -> anyhow::Result<StockedShop> {
    sandbox.create_shop(domain, &shop_token(domain))?;
    let main = sandbox.create_location(domain, "Main")?;
    let east = sandbox.create_location(domain, "East")?;
    let mut items = Vec::new();
    for chunk in 0..skus.div_ceil(100) {
        let variants = (chunk * 100..((chunk + 1) * 100).min(skus))
            .map(|n| VariantSpec {
                sku: Some(format!("BENCH-{n}")),
                stock: vec![
                    Stock {
                        location_id: main,
                        available: 0,
                    },
                    Stock {
                        location_id: east,
                        available: 0,
                    },
                ],
                ..VariantSpec::default()
            })
            .collect();
        let spec = ProductSpec {
            title: format!("Bench {chunk}"),
            vendor: None,
            product_type: None,
            status: None,
            body_html: None,
            variants,
        };
        items.extend(sandbox.create_product(domain, spec)?.variants);
    }
    Ok(StockedShop { items, main, east })
}

/// `domain`'s `[[shops]]` entry against the sandbox: warehouses MAIN and EAST, its token in
/// [`shop_token_env`].
pub(crate) fn shop_settings(
    domain: &str,
    sandbox: &SandboxHandle,
    main: LocationId,
    east: LocationId,
) -> ShopSettings {
    ShopSettings {
        domain: domain.into(),
        api_version: "2026-04".into(),
        admin_base_url: sandbox.base_url(),
        access_token_env: shop_token_env(domain),
        webhook_secret_env: None,
        previous_webhook_secret_env: None,
        locations: [("MAIN".to_owned(), main), ("EAST".to_owned(), east)]
            .into_iter()
            .collect(),
        fields: Default::default(),
    }
}

/// Maps `items` of `domain` in `items`, as item-ingest would have.
pub(crate) async fn map_items(
    client: &impl deadpool_postgres::GenericClient,
    domain: &str,
    items: &[shopify_sandbox::CreatedVariant],
) -> anyhow::Result<()> {
    let (skus, ids): (Vec<&str>, Vec<i64>) = items
        .iter()
        .map(|item| {
            let sku = item.sku.as_deref().unwrap_or_default();
            (
                sku,
                i64::try_from(item.inventory_item_id.0).unwrap_or_default(),
            )
        })
        .unzip();
    client
        .execute(
            "INSERT INTO items (shop_domain, sku, inventory_item_id) \
             SELECT $1, sku, id FROM unnest($2::text[], $3::bigint[]) AS u(sku, id)",
            &[&domain, &skus, &ids],
        )
        .await?;
    Ok(())
}

async fn measure_in(
    scratch: &Scratch,
    sandbox: &SandboxHandle,
    args: &Args,
    batching: bool,
    load: Load,
) -> anyhow::Result<Run> {
    let BenchShop {
        settings,
        pool,
        items,
        main,
        ..
    } = set_up_shop(scratch, sandbox, args.skus, batching, "").await?;
    let cost_per_call = measure_call_cost(sandbox, SHOP, &items[..1], main)
        .await?
        .requested;

    let connection = platform::amqp::connect(&settings.amqp.url, "adjustment-pusher-bench").await?;
    let channel = confirm_channel(&connection).await?;
    let names = settings.names();
    declare_exchanges(&channel, &names).await?;
    for queue in [names.adjustment_pusher_queue(), names.item_mappings_queue()] {
        declare_work_queue(&channel, &queue, &settings.retry).await?;
    }
    let shutdown = CancellationToken::new();
    let tokens = ShopTokens::new([(SHOP.to_owned(), shop_token(SHOP))]);
    let mut service = tokio::spawn(serve(
        settings.clone(),
        tokens,
        Metrics::new(),
        shutdown.clone(),
    ));

    let exchange = names.name(WOS_TRANSACTIONS);
    let publish = |n: u64| {
        let sku = format!("BENCH-{}", n % args.skus);
        let warehouse = if n.is_multiple_of(2) { "MAIN" } else { "EAST" };
        json!({
            "transaction_id": format!("bench-{n}"), "shop_domain": SHOP, "type": "put",
            "sku": sku, "warehouse": warehouse, "quantity": 1 + n % 5,
            "occurred_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        })
        .to_string()
    };
    let started = Instant::now();
    let transactions = match load {
        Load::Burst(count) => {
            publish_pipelined(&channel, &exchange, count, |n| Outgoing {
                routing_key: "inventory.put".to_owned(),
                body: publish(n).into_bytes(),
                properties: BasicProperties::default()
                    .with_message_id(format!("bench-{n}").as_str().into()),
            })
            .await?;
            count
        }
        Load::Constant { rate, seconds } => {
            let count = (rate * seconds as f64) as u64;
            let interval = Duration::from_secs_f64(1.0 / rate);
            for n in 0..count {
                tokio::time::sleep_until((started + interval * u32::try_from(n)?).into()).await;
                let properties = BasicProperties::default()
                    .with_message_id(format!("bench-{n}").as_str().into())
                    .with_delivery_mode(PERSISTENT);
                let confirm = channel
                    .basic_publish(
                        exchange.as_str().into(),
                        "inventory.put".into(),
                        BasicPublishOptions::default(),
                        publish(n).as_bytes(),
                        properties,
                    )
                    .await?;
                anyhow::ensure!(confirm.await?.is_ack(), "the broker refused a transaction");
            }
            count
        }
    };

    let client = pool.get().await?;
    let count = i64::try_from(transactions)?;
    wait_for_pushed(&client, count, Duration::from_secs(1800), &mut service).await?;
    let figures = client
        .query_one(
            "SELECT extract(epoch FROM max(a.updated_at) - min(t.received_at))::float8, \
                 percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM a.updated_at - a.occurred_at))::float8, \
                 percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM a.updated_at - a.occurred_at))::float8 \
             FROM adjustments a JOIN wos_transactions t USING (shop_domain, transaction_id)",
            &[],
        )
        .await?;
    let busy_seconds: f64 = figures.get(0);
    let seconds = busy_seconds
        .max(started.elapsed().as_secs_f64().min(busy_seconds + 1.0))
        .max(0.001);
    let calls = sandbox.adjustment_groups(SHOP)?.len().saturating_sub(1); // less the cost probe
    shutdown.cancel();
    service.await??;
    // Channels first: closing a connection under an open channel makes lapin log an error.
    let _ = channel.close(200, "bench done".into()).await;
    let _ = connection.close(200, "bench done".into()).await;
    Ok(Run {
        transactions,
        seconds,
        calls,
        cost_per_call,
        lag_p50: figures.get(1),
        lag_p99: figures.get(2),
    })
}

/// Waits until `count` adjustments are pushed; fails when the pusher `service` stopped first or
/// after `within`.
async fn wait_for_pushed(
    client: &deadpool_postgres::Object,
    count: i64,
    within: Duration,
    service: &mut tokio::task::JoinHandle<anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let pushed: i64 = client
            .query_one(
                "SELECT count(*) FROM adjustments WHERE state = 'pushed'",
                &[],
            )
            .await?
            .get(0);
        if pushed >= count {
            return Ok(());
        }
        if service.is_finished() {
            service.await??;
            anyhow::bail!("the pusher stopped with {pushed} of {count} pushed");
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "not done after {} s ({pushed} of {count})",
            within.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What one `inventoryAdjustQuantities` call costs in the sandbox.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallCost {
    /// `requestedQueryCost`: what is taken from the bucket before the call runs.
    pub requested: f64,
    /// `actualQueryCost`: what the call keeps once it ran (the rest is given back).
    pub actual: f64,
}

/// The cost of an `inventoryAdjustQuantities` call like the pusher's in `domain`, with one
/// change (+1) per item of `items` at `location`.
pub(crate) async fn measure_call_cost(
    sandbox: &SandboxHandle,
    domain: &str,
    items: &[shopify_sandbox::CreatedVariant],
    location: LocationId,
) -> anyhow::Result<CallCost> {
    let client = shopify_admin::ShopClient::for_url(
        shopify_admin::http_client()?,
        domain,
        format!("{}/admin/api/2026-04/graphql.json", sandbox.base_url()),
        shop_token(domain),
    );
    let changes: Vec<_> = items
        .iter()
        .map(|item| {
            json!({"delta": 1, "inventoryItemId": item.inventory_item_id.gid(),
                   "locationId": location.gid(), "changeFromQuantity": null})
        })
        .collect();
    let input = json!({
        "name": "available", "reason": "correction", "referenceDocumentUri": "wos-sync://bench/cost-probe",
        "changes": changes,
    });
    let request = json!({
        "query": adjustment_pusher::shopify::ADJUST_MUTATION,
        "operationName": "AdjustInventory",
        "variables": { "input": input, "idempotencyKey": uuid::Uuid::new_v4().to_string() },
    });
    let answer = client
        .send(
            "inventoryAdjustQuantities",
            &request,
            Duration::from_secs(10),
        )
        .await;
    let reply = answer
        .reply
        .map_err(|failure| anyhow::anyhow!("the cost probe call failed: {}", failure.reason))?;
    let outcome = adjustment_pusher::shopify::interpret(reply.status, None, &reply.body).outcome;
    anyhow::ensure!(
        matches!(
            outcome,
            adjustment_pusher::shopify::CallOutcome::Applied { .. }
        ),
        "the cost probe call failed: {outcome:?}"
    );
    let cost = |name: &str| {
        reply
            .document
            .as_ref()
            .and_then(|document| document.pointer(&format!("/extensions/cost/{name}")))
            .and_then(serde_json::Value::as_f64)
    };
    let requested = cost("requestedQueryCost").unwrap_or(10.0);
    Ok(CallCost {
        requested,
        actual: cost("actualQueryCost").unwrap_or(requested),
    })
}
