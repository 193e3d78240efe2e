//! `up [--sandbox]`: the whole system in one process.
//!
//! Order, so that nothing is published before something consumes it: migrations, the topology
//! (every queue bound), item-ingest and the adjustment-pusher (waiting until both consume),
//! the webhook relay; with the sandbox, its shops and locations first (the services need its
//! address), and its products last, once the relay listens, so their `products/create`
//! webhooks travel sandbox -> relay -> `shopify.events` -> item-ingest -> `items`, as Shopify's
//! would. Then it prints what to do next, and each adjustment the sandbox applies.
//!
//! Without a configured shop, the demo of `config/local.toml` (built in) is used: one shop,
//! two locations, a product with two SKUs. Tokens and webhook secrets for the sandbox come
//! from the variables the configuration names when they are set, otherwise they are random
//! throw-away values made in this process (the sandbox is local); they are never printed.
//!
//! SIGINT/SIGTERM cancels one token every service watches; each finishes its in-flight work
//! and closes its connections, and `up` exits 0. A service that stops on its own (a port in
//! use, a refused configuration) stops the others too, and `up` exits 1 naming it.

use std::{
    collections::{BTreeMap, HashMap},
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Duration,
};

use anyhow::Context as _;
use model::config::{ShopDirectory, ShopSettings};
use platform::{
    metrics::Metrics,
    settings::{Settings, redact_url},
    shutdown::{CancellationToken, on_termination_signal},
};
use shopify_admin::ShopTokens;
use shopify_sandbox::{
    ProductSpec, Sandbox, SandboxHandle,
    settings::{SECTION as SANDBOX_SECTION, SandboxSettings},
};
use tokio::task::JoinSet;
use webhook_relay::secrets::ShopSecrets;

use crate::{cli::UpArgs, context::Context, dead_letters::DeadLetterQueue};

/// The quick start's configuration: the demo shop and product of the sandbox.
const QUICK_START: &str = include_str!("../../../../config/local.toml");

/// How long the services may take to start consuming.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the demo product's webhook may take to become a mapped item.
const SEED_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the services may take to stop after the signal (their own grace periods are
/// shorter).
const STOP_TIMEOUT: Duration = Duration::from_secs(40);

pub async fn run(mut context: Context, args: &UpArgs) -> anyhow::Result<()> {
    let shutdown = on_termination_signal();
    let demo = context.settings.shops.is_empty();
    let use_sandbox = args.sandbox || demo;
    // The sandbox's own section: the quick start's for the demo, else the configured file's.
    let mut sandbox_settings = None;
    if demo {
        let quick = Settings::from_toml_str_with_sections(
            QUICK_START,
            "config/local.toml (built in)",
            &[SANDBOX_SECTION],
        )?;
        context.settings.shops = quick.shops.clone();
        // The demo's database may be created at first start, as its file says: a fresh machine
        // needs no createdb (a configured deployment decides that in its own file).
        context.settings.database.create_if_missing |= quick.database.create_if_missing;
        sandbox_settings = Some(SandboxSettings::from_settings(&quick)?);
    } else if use_sandbox {
        sandbox_settings = Some(SandboxSettings::from_settings(&context.settings)?);
    }
    let secrets = Secrets::new(&mut context.settings, use_sandbox)?;

    let mut sandbox = None;
    if let Some(sandbox_settings) = sandbox_settings {
        let (handle, products) =
            start_sandbox(&mut context.settings, sandbox_settings, &secrets, args).await?;
        sandbox = Some((handle, products));
    }
    let settings = context.settings.clone();

    let pool = context.database().await?;
    println!(
        "database {}: migrations applied",
        redact_url(&settings.database.url)
    );
    context.declare_topology().await?;
    println!("topology declared (prefix {:?})", settings.names().prefix());

    let local = use_sandbox;
    let listen = |given: Option<SocketAddr>, default: SocketAddr| {
        let mut settings = settings.clone();
        settings.http.listen = Some(given.unwrap_or(if local {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), default.port())
        } else {
            default
        }));
        settings
    };
    let relay_default: SocketAddr = webhook_relay::DEFAULT_LISTEN.parse()?;
    let mut services: JoinSet<(&'static str, anyhow::Result<()>)> = JoinSet::new();
    let ingest = listen(args.ingest_listen, item_ingest::DEFAULT_LISTEN);
    let (token, tokens) = (shutdown.clone(), secrets.tokens.clone());
    services.spawn(async move {
        (
            "item-ingest",
            item_ingest::serve(ingest, tokens, Metrics::new(), token).await,
        )
    });
    let pusher = listen(args.pusher_listen, adjustment_pusher::DEFAULT_LISTEN);
    let (token, tokens) = (shutdown.clone(), secrets.tokens.clone());
    services.spawn(async move {
        (
            "adjustment-pusher",
            adjustment_pusher::serve(pusher, tokens, Metrics::new(), token).await,
        )
    });
    if let Err(err) = wait_consuming(&context, &mut services, &shutdown).await {
        return stop(services, sandbox.map(|(h, _)| h), &shutdown, Err(err)).await;
    }
    let relay = match webhook_relay::start(
        listen(args.relay_listen, relay_default),
        secrets.webhook.clone(),
        shutdown.clone(),
    )
    .await
    {
        Ok(relay) => relay,
        Err(err) => {
            let err = err.context("starting the webhook relay");
            return stop(services, sandbox.map(|(h, _)| h), &shutdown, Err(err)).await;
        }
    };
    let relay_addr = relay.addr;
    services.spawn(async move { ("webhook-relay", relay.wait().await) });
    println!(
        "item-ingest, adjustment-pusher and webhook-relay running (relay: http://{}/webhooks/shopify)",
        reachable(relay_addr)
    );

    let mut example = None;
    let sandbox_handle = match sandbox {
        Some((handle, products)) => {
            match seed_products(&handle, products, relay_addr, &pool).await {
                Ok(skus) => example = skus.into_iter().next(),
                Err(err) => return stop(services, Some(handle), &shutdown, Err(err)).await,
            }
            Some(handle)
        }
        None => None,
    };
    print_next_steps(&context, sandbox_handle.as_ref(), relay_addr, example);

    let watcher = sandbox_handle.as_ref().map(|handle| {
        let shops: Vec<ShopSettings> = context.settings.shops.iter().cloned().collect();
        watch_adjustments(handle, shops, shutdown.clone())
    });
    let ended = tokio::select! {
        () = shutdown.cancelled() => Ok(()),
        () = async { if let Some(watcher) = watcher { watcher.await } else { std::future::pending().await } } => Ok(()),
        ended = services.join_next() => Err(service_ended(ended)),
    };
    stop(services, sandbox_handle, &shutdown, ended).await
}

/// Tokens and webhook secrets: from the environment, or made up for the sandbox.
struct Secrets {
    tokens: ShopTokens,
    webhook: ShopSecrets,
    /// Values made in this process (sandbox only), by variable name.
    generated: HashMap<String, String>,
}

impl Secrets {
    fn new(settings: &mut Settings, sandbox: bool) -> anyhow::Result<Self> {
        let mut generated = HashMap::new();
        if sandbox {
            let mut shops: Vec<ShopSettings> = settings.shops.iter().cloned().collect();
            for shop in &mut shops {
                // The relay needs a webhook secret per shop; the sandbox signs with it.
                let secret_env = shop.webhook_secret_env.get_or_insert_with(|| {
                    format!(
                        "WOS_SYNC_UP_WEBHOOK_SECRET_{}",
                        shop.domain.replace(['.', '-'], "_").to_uppercase()
                    )
                });
                for variable in [shop.access_token_env.clone(), secret_env.clone()] {
                    if env(&variable).is_none() {
                        generated
                            .insert(variable, format!("local-{}", uuid::Uuid::new_v4().simple()));
                    }
                }
            }
            settings.shops = ShopDirectory::new(shops).map_err(|err| anyhow::anyhow!("{err}"))?;
        }
        let lookup = |name: &str| env(name).or_else(|| generated.get(name).cloned());
        let mut tokens = Vec::new();
        for shop in settings.shops.iter() {
            let token = lookup(&shop.access_token_env).with_context(|| {
                format!(
                    "shop {}: environment variable {} (its Admin API access token) is not set",
                    shop.domain, shop.access_token_env
                )
            })?;
            tokens.push((shop.domain.clone(), token));
        }
        let webhook =
            ShopSecrets::resolve(&settings.shops, lookup).context("reading webhook secrets")?;
        Ok(Self {
            tokens: ShopTokens::new(tokens),
            webhook,
            generated,
        })
    }

    fn lookup(&self, name: &str) -> Option<String> {
        env(name).or_else(|| self.generated.get(name).cloned())
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Starts the sandbox with the shops and locations (products come later), and points every
/// shop's `admin_base_url` at it.
async fn start_sandbox(
    settings: &mut Settings,
    sandbox_settings: SandboxSettings,
    secrets: &Secrets,
    args: &UpArgs,
) -> anyhow::Result<(SandboxHandle, Vec<(String, ProductSpec)>)> {
    let mut config =
        sandbox_settings.into_config(&settings.shops, args.sandbox_listen, |name| {
            secrets.lookup(name)
        })?;
    config.webhook_url = None;
    let mut products = Vec::new();
    for seed in &mut config.seed {
        for product in std::mem::take(&mut seed.products) {
            products.push((seed.domain.clone(), product));
        }
    }
    let handle = Sandbox::start(config)
        .await
        .with_context(|| format!("starting the Shopify sandbox on {}", args.sandbox_listen))?;
    let base = handle.base_url();
    let shops: Vec<ShopSettings> = settings
        .shops
        .iter()
        .cloned()
        .map(|mut shop| {
            shop.admin_base_url = base.clone();
            shop
        })
        .collect();
    settings.shops = ShopDirectory::new(shops).map_err(|err| anyhow::anyhow!("{err}"))?;
    println!("Shopify sandbox on {base} (shops: {})", shop_list(settings));
    Ok((handle, products))
}

fn shop_list(settings: &Settings) -> String {
    settings
        .shops
        .iter()
        .map(|s| s.domain.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Waits until item-ingest's and the pusher's queues have a consumer (or a service ended).
async fn wait_consuming(
    context: &Context,
    services: &mut JoinSet<(&'static str, anyhow::Result<()>)>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let names = context.settings.names();
    let queues = [
        names.item_ingest_queue().name,
        names.adjustment_pusher_queue().name,
    ];
    let connection = context.broker("up").await?;
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    loop {
        let mut consuming = 0;
        for queue in &queues {
            if let Ok(channel) = connection.create_channel().await {
                if let Some((_, consumers)) = DeadLetterQueue::depth(&channel, queue).await
                    && consumers > 0
                {
                    consuming += 1;
                }
                let _ = channel.close(200, "looked".into()).await;
            }
        }
        if consuming == queues.len() {
            let _ = connection.close(200, "services up".into()).await;
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the services did not start consuming within {START_TIMEOUT:?}"
        );
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            ended = services.join_next() => return Err(service_ended(ended)),
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}

fn service_ended(
    ended: Option<Result<(&'static str, anyhow::Result<()>), tokio::task::JoinError>>,
) -> anyhow::Error {
    match ended {
        Some(Ok((name, Err(err)))) => err.context(format!("{name} stopped")),
        Some(Ok((name, Ok(())))) => anyhow::anyhow!("{name} stopped unexpectedly"),
        Some(Err(err)) => anyhow::anyhow!("a service task failed: {err}"),
        None => anyhow::anyhow!("no service is running"),
    }
}

/// Creates the demo products once the relay listens: their `products/create` webhooks go
/// through the relay to item-ingest, which maps their SKUs.
async fn seed_products(
    sandbox: &SandboxHandle,
    products: Vec<(String, ProductSpec)>,
    relay: SocketAddr,
    pool: &deadpool_postgres::Pool,
) -> anyhow::Result<Vec<(String, String)>> {
    sandbox.set_webhook_url(Some(&format!(
        "http://{}/webhooks/shopify",
        reachable(relay)
    )));
    let mut skus: Vec<(String, String)> = Vec::new();
    for (shop, product) in products {
        let title = product.title.clone();
        let created = sandbox.create_product(&shop, product)?;
        let names: Vec<String> = created
            .variants
            .iter()
            .filter_map(|v| v.sku.clone())
            .collect();
        println!(
            "sandbox: created product {:?} in {shop} ({}); its products/create webhook goes to the relay",
            title,
            names.join(", ")
        );
        skus.extend(names.into_iter().map(|sku| (shop.clone(), sku)));
    }
    if !sandbox.wait_for_webhooks(SEED_TIMEOUT).await {
        anyhow::bail!(
            "the sandbox's webhooks were not delivered to the relay within {SEED_TIMEOUT:?}"
        );
    }
    for delivery in sandbox.webhook_deliveries() {
        println!(
            "relay: {} webhook {} for {} answered {}",
            delivery.topic,
            delivery.webhook_id,
            delivery.shop,
            delivery.last_status.map_or_else(
                || delivery.last_error.clone().unwrap_or_default(),
                |s| s.to_string()
            )
        );
    }
    let deadline = tokio::time::Instant::now() + SEED_TIMEOUT;
    let client = pool.get().await?;
    loop {
        let mut mapped = BTreeMap::new();
        for (shop, sku) in &skus {
            let row = client
                .query_opt(
                    "SELECT inventory_item_id FROM items WHERE shop_domain = $1 AND sku = $2",
                    &[shop, sku],
                )
                .await?;
            if let Some(id) = row.and_then(|r| r.get::<_, Option<i64>>(0)) {
                mapped.insert((shop.clone(), sku.clone()), id);
            }
        }
        if mapped.len() == skus.len() {
            for ((shop, sku), id) in mapped {
                println!("item-ingest: {shop} / {sku} mapped to inventory item {id}");
            }
            return Ok(skus);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "item-ingest did not map the demo SKUs within {SEED_TIMEOUT:?} (see the log above)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An address others can connect to: `0.0.0.0` becomes `127.0.0.1`.
fn reachable(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
    } else {
        addr
    }
}

/// The commands to try now, spelled for how this process was started.
fn print_next_steps(
    context: &Context,
    sandbox: Option<&SandboxHandle>,
    relay: SocketAddr,
    example: Option<(String, String)>,
) {
    let exe = std::env::current_exe()
        .ok()
        .and_then(|path| {
            let cwd = std::env::current_dir().ok()?;
            path.strip_prefix(&cwd)
                .ok()
                .map(|p| format!("./{}", p.display()))
        })
        .unwrap_or_else(|| "wos-sync".to_owned());
    let config = context
        .settings
        .source
        .as_ref()
        .map(|p| format!(" --config {}", p.display()))
        .unwrap_or_default();
    let cli = format!("{exe}{config}");
    let shop = example
        .as_ref()
        .and_then(|(shop, _)| context.settings.shops.get(shop))
        .or_else(|| context.settings.shops.iter().next());
    let Some(shop) = shop else {
        return;
    };
    let sku = example.map_or_else(|| "YOUR-SKU".to_owned(), |(_, sku)| sku);
    let warehouse = if shop.locations.contains_key("MAIN") {
        "MAIN".to_owned()
    } else {
        shop.locations
            .keys()
            .next()
            .cloned()
            .unwrap_or_else(|| "MAIN".into())
    };
    println!();
    println!("ready. In another terminal:");
    println!();
    println!("  # send a WOS transaction: +5 of {sku} in warehouse {warehouse}");
    println!(
        "  {cli} publish put --shop {} --sku {sku} --warehouse {warehouse} --quantity 5",
        shop.domain
    );
    if let Some(sandbox) = sandbox {
        println!();
        println!("  # see the quantity change in the Shopify sandbox (\"available\" of {sku})");
        println!(
            "  curl -s {}/sandbox/shops/{}/inventory",
            sandbox.base_url(),
            shop.domain
        );
    }
    println!();
    println!("  # queues, pending and parked adjustments, Shopify's last answer");
    println!("  {cli} status");
    println!();
    println!(
        "Shopify webhooks: http://{}/webhooks/shopify. Ctrl-C stops everything.",
        reachable(relay)
    );
    if sandbox.is_some() {
        println!("Adjustments the sandbox applies are printed below as they happen.");
    }
    println!();
}

/// Prints every adjustment group the sandbox applies, with the quantities after it.
async fn watch_adjustments(
    sandbox: &SandboxHandle,
    shops: Vec<ShopSettings>,
    stop: CancellationToken,
) {
    let mut seen: BTreeMap<String, usize> = shops.iter().map(|s| (s.domain.clone(), 0)).collect();
    loop {
        for shop in &shops {
            let Ok(groups) = sandbox.adjustment_groups(&shop.domain) else {
                continue;
            };
            let already = seen.get(&shop.domain).copied().unwrap_or(0);
            if groups.len() <= already {
                continue;
            }
            let levels = sandbox.inventory(&shop.domain).unwrap_or_default();
            for group in &groups[already..] {
                for change in group.changes_named(group.name) {
                    let level = levels.iter().find(|l| {
                        l.inventory_item_id == change.inventory_item_id
                            && l.location_id == change.location_id
                    });
                    let warehouse = shop
                        .locations
                        .iter()
                        .find(|(_, id)| **id == change.location_id)
                        .map_or_else(|| change.location_id.0.to_string(), |(w, _)| w.clone());
                    println!(
                        "Shopify sandbox: {} {} at {warehouse}: {} {:+} (now {}; reason {}, {})",
                        shop.domain,
                        level
                            .and_then(|l| l.sku.clone())
                            .unwrap_or_else(|| change.inventory_item_id.0.to_string()),
                        group.name.as_str(),
                        change.delta,
                        level
                            .and_then(|l| l.quantities.get(&group.name))
                            .map_or_else(|| "?".to_owned(), |q| q.to_string()),
                        group.reason,
                        group.reference_document_uri.as_deref().unwrap_or("-")
                    );
                }
            }
            seen.insert(shop.domain.clone(), groups.len());
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}

/// Stops everything (the services finish their in-flight work), then the sandbox.
async fn stop(
    mut services: JoinSet<(&'static str, anyhow::Result<()>)>,
    sandbox: Option<SandboxHandle>,
    shutdown: &CancellationToken,
    outcome: anyhow::Result<()>,
) -> anyhow::Result<()> {
    if outcome.is_ok() {
        println!("stopping: the services finish their in-flight work");
    }
    shutdown.cancel();
    let mut failures = Vec::new();
    let drained = tokio::time::timeout(STOP_TIMEOUT, async {
        while let Some(ended) = services.join_next().await {
            match ended {
                Ok((_, Ok(()))) => {}
                Ok((name, Err(err))) => failures.push(format!("{name}: {err:#}")),
                Err(err) => failures.push(format!("a service task: {err}")),
            }
        }
    })
    .await;
    if drained.is_err() {
        services.abort_all();
        failures.push(format!(
            "services still running after {STOP_TIMEOUT:?}: aborted"
        ));
    }
    if let Some(sandbox) = sandbox {
        sandbox.shutdown().await;
    }
    outcome?;
    if failures.is_empty() {
        println!("stopped");
        Ok(())
    } else {
        Err(anyhow::anyhow!("{}", failures.join("; ")))
    }
}
