//! `wos-sync-bench ingest`: item-ingest's variant upserts per second for a stream of products, and the service's
//! peak memory while it ingests them.
//!
//! In a scratch namespace and database it publishes `products` `products/create` webhooks of
//! `variants` variants each (every variant a new SKU), then starts item-ingest as a child
//! process (`wos-sync-bench serve item-ingest`: the service's own entry; the benchmark's other
//! code is linked but never runs, so little of it is resident), times it from the first variant stored to the last, samples the
//! child's peak resident set size (`VmHWM`), stops it with SIGTERM and removes everything.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use lapin::{BasicProperties, types::FieldTable};
use platform::{
    amqp::{
        headers::set_str,
        publisher::confirm_channel,
        topology::{SHOPIFY_EVENTS, declare_exchanges, declare_work_queue},
    },
    db,
    settings::Settings,
};
use serde_json::json;

use crate::{
    Figures, Outgoing, publish_pipelined,
    scratch::Scratch,
    serve::{Service, serve_command},
    status_kib,
};

const SHOP: &str = "bench.myshopify.com";

/// Figures of one run.
#[derive(Debug, Clone)]
pub struct BenchReport {
    pub products: u64,
    pub variants_per_product: u64,
    pub seconds: f64,
    pub peak_rss_kib: u64,
}

impl BenchReport {
    /// The headline figures, for the `RESULT` line.
    pub fn figures(&self) -> Figures {
        let variants = self.products * self.variants_per_product;
        let mut figures = Figures::default();
        figures
            .add("products", self.products)
            .add("variants_per_product", self.variants_per_product)
            .add(
                "upserts_per_s",
                format!("{:.0}", variants as f64 / self.seconds),
            )
            .add(
                "peak_rss_mib",
                format!("{:.1}", self.peak_rss_kib as f64 / 1024.0),
            );
        figures
    }
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let variants = self.products * self.variants_per_product;
        writeln!(
            f,
            "products: {} x {} variants = {variants} variant upserts",
            self.products, self.variants_per_product
        )?;
        writeln!(
            f,
            "ingest time (first to last variant stored): {:.2} s",
            self.seconds
        )?;
        writeln!(
            f,
            "variant upserts/s: {:.0}",
            variants as f64 / self.seconds
        )?;
        writeln!(f, "products/s: {:.1}", self.products as f64 / self.seconds)?;
        write!(
            f,
            "item-ingest peak RSS: {:.1} MiB",
            self.peak_rss_kib as f64 / 1024.0
        )
    }
}

/// What to measure.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Products to ingest (each a products/create webhook).
    #[arg(long, default_value_t = 500)]
    pub products: u64,
    /// Variants per product, each with its own SKU.
    #[arg(long, default_value_t = 20)]
    pub variants: u64,
}

/// Runs the benchmark, prints its report and returns its headline figures.
pub async fn run(settings: &Settings, args: &Args) -> anyhow::Result<Figures> {
    let report = measure(settings, args.products, args.variants).await?;
    println!("{report}");
    Ok(report.figures())
}

/// Measures against the configured broker and database server.
pub async fn measure(
    settings: &Settings,
    products: u64,
    variants: u64,
) -> anyhow::Result<BenchReport> {
    let scratch = Scratch::create(settings)
        .await
        .context("creating the scratch database")?;
    let queue = scratch.names().item_ingest_queue();
    let result = ingest_in(&scratch, products, variants).await;
    scratch.teardown(&[queue]).await;
    result
}

async fn ingest_in(scratch: &Scratch, products: u64, variants: u64) -> anyhow::Result<BenchReport> {
    let settings = &scratch.settings;
    let names = scratch.names();
    let connection = platform::amqp::connect(&settings.amqp.url, "item-ingest-bench").await?;
    let channel = confirm_channel(&connection).await?;
    declare_exchanges(&channel, &names).await?;
    declare_work_queue(&channel, &names.item_ingest_queue(), &settings.retry).await?;

    let exchange = names.name(SHOPIFY_EVENTS);
    publish_pipelined(&channel, &exchange, products, |product| {
        let mut headers = FieldTable::default();
        set_str(&mut headers, "x-shopify-topic", "products/create");
        set_str(&mut headers, "x-shopify-shop-domain", SHOP);
        set_str(
            &mut headers,
            "x-shopify-webhook-id",
            format!("bench-{product}"),
        );
        Outgoing {
            routing_key: "products.create".to_owned(),
            body: product_payload(product, variants).to_string().into_bytes(),
            properties: BasicProperties::default()
                .with_message_id(format!("bench-{product}").as_str().into())
                .with_content_type("application/json".into())
                .with_headers(headers),
        }
    })
    .await?;
    // Channels first: closing a connection under an open channel makes lapin log an error.
    let _ = channel.close(200, "published".into()).await;
    let _ = connection.close(200, "published".into()).await;

    let config = write_config(settings)?;
    let mut child = serve_command(
        Service::ItemIngest,
        [
            "--config",
            config.to_str().context("config path")?,
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ],
    )?
    .env("AMQP_URL", &settings.amqp.url)
    .env("DATABASE_URL", &settings.database.url)
    .env("RUST_LOG", "warn")
    .kill_on_drop(true)
    .spawn()
    .context("starting item-ingest")?;
    let pid = child.id().context("child pid")?;

    let pool = db::connect_pool(&settings.database)?;
    let expected = i64::try_from(products * variants)?;
    let deadline = Instant::now() + Duration::from_secs(1800);
    let mut first: Option<Instant> = None;
    let mut peak_rss_kib = 0;
    loop {
        anyhow::ensure!(
            Instant::now() < deadline,
            "item-ingest did not finish within 30 minutes"
        );
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("item-ingest exited early: {status}");
        }
        peak_rss_kib = peak_rss_kib.max(status_kib(pid, "VmHWM:"));
        let stored: i64 = match pool.get().await {
            Ok(client) => client
                .query_one("SELECT count(*) FROM shopify_variants", &[])
                .await
                .map(|row| row.get(0))
                .unwrap_or(0),
            Err(_) => 0,
        };
        if stored > 0 && first.is_none() {
            first = Some(Instant::now());
        }
        if stored >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds = first.map_or(0.0, |t| t.elapsed().as_secs_f64()).max(0.001);
    peak_rss_kib = peak_rss_kib.max(status_kib(pid, "VmHWM:"));
    let _ = tokio::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await;
    let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
    let _ = std::fs::remove_file(&config);
    drop(pool);
    Ok(BenchReport {
        products,
        variants_per_product: variants,
        seconds,
        peak_rss_kib,
    })
}

fn write_config(settings: &Settings) -> anyhow::Result<PathBuf> {
    let path = std::env::temp_dir().join(format!("item-ingest-bench-{}.toml", std::process::id()));
    let text = format!(
        "[amqp]\nname_prefix = \"{prefix}\"\n\n[consumer]\nprefetch = {prefetch}\nconcurrency = {concurrency}\n\n\
         [[shops]]\ndomain = \"{SHOP}\"\napi_version = \"2026-04\"\nadmin_base_url = \"http://127.0.0.1:9\"\n\
         access_token_env = \"BENCH_SHOPIFY_TOKEN\"\n",
        prefix = settings.amqp.name_prefix,
        prefetch = settings.consumer.prefetch,
        concurrency = settings.consumer.concurrency,
    );
    std::fs::write(&path, text)?;
    Ok(path)
}

fn product_payload(product: u64, variants: u64) -> serde_json::Value {
    let id = 1_000_000 + product;
    let variants: Vec<_> = (0..variants)
        .map(|n| {
            // Room for 100,000 variants per product: ids never collide across products.
            let variant = id * 100_000 + n;
            json!({
                "id": variant, "product_id": id, "title": format!("Size {n}"),
                "sku": format!("BENCH-{product}-{n}"), "barcode": format!("{variant}"),
                "price": "24.99", "inventory_item_id": variant + 500_000_000,
                "created_at": "2026-11-27T10:00:00-05:00", "updated_at": "2026-11-27T10:00:00-05:00",
            })
        })
        .collect();
    json!({
        "id": id, "title": format!("Bench product {product}"), "vendor": "Bench", "product_type": "Shirts",
        "created_at": "2026-11-27T10:00:00-05:00", "updated_at": "2026-11-27T10:00:00-05:00",
        "variants": variants,
    })
}
