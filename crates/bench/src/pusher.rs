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
//!   Standard throttling.

use std::time::{Duration, Instant};

use anyhow::Context as _;
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
use shopify_sandbox::{
    ProductSpec, Sandbox, SandboxConfig, SandboxHandle, Stock, ThrottleConfig, VariantSpec,
};

use adjustment_pusher::{ShopTokens, serve};

use crate::{Figures, Outgoing, publish_pipelined, scratch::Scratch};

const SHOP: &str = "bench.myshopify.com";
const TOKEN: &str = "bench-token";

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
    println!(
        "adjustment-pusher end to end: {} transactions over {} SKUs (throttled runs: {})",
        args.transactions, args.skus, args.throttled_transactions
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
    let scratch = Scratch::create(settings)
        .await
        .context("creating the scratch database")?;
    let queues = [
        scratch.names().adjustment_pusher_queue(),
        scratch.names().item_mappings_queue(),
    ];
    let sandbox = Sandbox::start(SandboxConfig {
        throttle,
        ..SandboxConfig::default()
    })
    .await?;
    let result = measure_in(&scratch, &sandbox, args, batching, load).await;
    sandbox.shutdown().await;
    scratch.teardown(&queues).await;
    result
}

async fn measure_in(
    scratch: &Scratch,
    sandbox: &SandboxHandle,
    args: &Args,
    batching: bool,
    load: Load,
) -> anyhow::Result<Run> {
    sandbox.create_shop(SHOP, TOKEN)?;
    let main = sandbox.create_location(SHOP, "Main")?;
    let east = sandbox.create_location(SHOP, "East")?;
    let mut items = Vec::new();
    for chunk in 0..args.skus.div_ceil(100) {
        let variants = (chunk * 100..((chunk + 1) * 100).min(args.skus))
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
        items.extend(sandbox.create_product(SHOP, spec)?.variants);
    }

    let mut settings = scratch.settings.clone();
    settings.http.listen = Some("127.0.0.1:0".parse()?);
    let locations = [("MAIN".to_owned(), main), ("EAST".to_owned(), east)]
        .into_iter()
        .collect();
    settings.shops = ShopDirectory::new(vec![ShopSettings {
        domain: SHOP.into(),
        api_version: "2026-04".into(),
        admin_base_url: sandbox.base_url(),
        access_token_env: "BENCH_SHOPIFY_TOKEN".into(),
        webhook_secret_env: None,
        previous_webhook_secret_env: None,
        locations,
        fields: Default::default(),
    }])
    .map_err(|err| anyhow::anyhow!("{err}"))?;
    let mut section = toml::Table::new();
    section.insert("batching".into(), toml::Value::Boolean(batching));
    settings
        .services
        .insert("adjustment_pusher".into(), toml::Value::Table(section));

    let pool = db::connect_pool(&settings.database)?;
    db::migrate(&pool).await?;
    {
        let client = pool.get().await?;
        for item in &items {
            client
                .execute(
                    "INSERT INTO items (shop_domain, sku, inventory_item_id) VALUES ($1, $2, $3)",
                    &[&SHOP, &item.sku, &i64::try_from(item.inventory_item_id.0)?],
                )
                .await?;
        }
    }
    let cost_per_call = measure_call_cost(sandbox, &items[0].inventory_item_id, main).await?;

    let connection = platform::amqp::connect(&settings.amqp.url, "adjustment-pusher-bench").await?;
    let channel = confirm_channel(&connection).await?;
    let names = settings.names();
    declare_exchanges(&channel, &names).await?;
    for queue in [names.adjustment_pusher_queue(), names.item_mappings_queue()] {
        declare_work_queue(&channel, &queue, &settings.retry).await?;
    }
    let shutdown = CancellationToken::new();
    let tokens = ShopTokens::new([(SHOP.to_owned(), TOKEN.to_owned())]);
    let service = tokio::spawn(serve(
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

    let deadline = Instant::now() + Duration::from_secs(1800);
    let client = pool.get().await?;
    loop {
        let pushed: i64 = client
            .query_one(
                "SELECT count(*) FROM adjustments WHERE state = 'pushed'",
                &[],
            )
            .await?
            .get(0);
        if pushed >= i64::try_from(transactions)? {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "not done after 30 minutes ({pushed} of {transactions})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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

/// The points one `inventoryAdjustQuantities` call takes from the bucket (its actual cost),
/// measured with a one-change call like the pusher's.
async fn measure_call_cost(
    sandbox: &SandboxHandle,
    item: &model::ids::InventoryItemId,
    location: LocationId,
) -> anyhow::Result<f64> {
    let client = shopify_admin::ShopClient::for_url(
        shopify_admin::http_client()?,
        SHOP,
        format!("{}/admin/api/2026-04/graphql.json", sandbox.base_url()),
        TOKEN.to_owned(),
    );
    let input = json!({
        "name": "available", "reason": "correction", "referenceDocumentUri": "wos-sync://bench/cost-probe",
        "changes": [{"delta": 1, "inventoryItemId": item.gid(), "locationId": location.gid(), "changeFromQuantity": null}],
    });
    let result = adjustment_pusher::shopify::adjust(
        &client,
        &input,
        &uuid::Uuid::new_v4().to_string(),
        Duration::from_secs(10),
    )
    .await;
    anyhow::ensure!(
        matches!(
            result.outcome,
            adjustment_pusher::shopify::CallOutcome::Applied { .. }
        ),
        "the cost probe call failed: {:?}",
        result.outcome
    );
    Ok(result.requested_cost.unwrap_or(10.0))
}
