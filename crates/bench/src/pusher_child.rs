//! The adjustment-pusher as a benchmark's child process (`wos-sync-bench serve
//! adjustment-pusher`), so its memory is its own, against shops of the in-process sandbox; and
//! the scratch namespace, database and sandbox every pusher benchmark runs in.

use std::{path::PathBuf, process::Stdio, time::Duration};

use anyhow::Context as _;
use model::ids::LocationId;
use platform::{
    amqp::{
        publisher::confirm_channel,
        topology::{declare_exchanges, declare_work_queue},
    },
    settings::Settings,
};
use shopify_sandbox::{CreatedVariant, Sandbox, SandboxConfig, SandboxHandle, ThrottleConfig};

use crate::{
    pusher::{shop_settings, shop_token, shop_token_env},
    scratch::Scratch,
    serve::{Service, serve_command},
};

/// Shops as set up: domain, items, MAIN, EAST.
pub(crate) type Shops = [(String, Vec<CreatedVariant>, LocationId, LocationId)];

/// Runs `measure` in a fresh scratch namespace and database with a sandbox of `throttle`, and
/// removes them whatever it returns.
pub(crate) async fn in_scratch<T>(
    settings: &Settings,
    throttle: ThrottleConfig,
    measure: impl AsyncFnOnce(&Scratch, &SandboxHandle) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
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
    let result = measure(&scratch, &sandbox).await;
    sandbox.shutdown().await;
    scratch.teardown(&queues).await;
    result
}

/// A confirm channel on the broker with the exchanges and the pusher's two work queues declared
/// (so what is published before the pusher starts waits in its queue).
pub(crate) async fn declare_pusher_queues(
    settings: &Settings,
    connection_name: &str,
) -> anyhow::Result<(lapin::Connection, lapin::Channel)> {
    let connection = platform::amqp::connect(&settings.amqp.url, connection_name).await?;
    let channel = confirm_channel(&connection).await?;
    let names = settings.names();
    declare_exchanges(&channel, &names).await?;
    for queue in [names.adjustment_pusher_queue(), names.item_mappings_queue()] {
        declare_work_queue(&channel, &queue, &settings.retry).await?;
    }
    Ok((connection, channel))
}

/// A running adjustment-pusher child process.
#[derive(Debug)]
pub(crate) struct PusherChild {
    pub child: tokio::process::Child,
    pub pid: u32,
    config: PathBuf,
}

impl PusherChild {
    /// Starts the pusher on the scratch prefix and database for `shops` (their tokens in its
    /// environment), logging warnings only.
    pub async fn start(
        scratch: &Scratch,
        sandbox: &SandboxHandle,
        shops: &Shops,
    ) -> anyhow::Result<Self> {
        let settings = &scratch.settings;
        let config = write_config(scratch, sandbox, shops)?;
        let child = serve_command(
            Service::AdjustmentPusher,
            [
                "--config",
                config.to_str().context("config path")?,
                "--listen",
                "127.0.0.1:0",
            ],
        )?
        .env("AMQP_URL", &settings.amqp.url)
        .env("DATABASE_URL", &settings.database.url)
        .envs(
            shops
                .iter()
                .map(|(domain, ..)| (shop_token_env(domain), shop_token(domain))),
        )
        .env("RUST_LOG", "warn")
        .env("LOG_FORMAT", "json")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting the adjustment-pusher")?;
        let pid = child.id().context("the pusher's process id")?;
        Ok(Self { child, pid, config })
    }

    /// Stops it with SIGTERM (it drains: every call in flight answered and recorded), waits up
    /// to a minute, and removes its configuration file.
    pub async fn stop(mut self) {
        let _ = tokio::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await;
        let _ = tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await;
        let _ = std::fs::remove_file(&self.config);
    }
}

/// The pusher's configuration: the scratch prefix and every shop (warehouses MAIN and EAST).
fn write_config(
    scratch: &Scratch,
    sandbox: &SandboxHandle,
    shops: &Shops,
) -> anyhow::Result<PathBuf> {
    let mut text = format!(
        "[amqp]\nname_prefix = \"{}\"\n\n",
        scratch.settings.amqp.name_prefix
    );
    for (domain, _, main, east) in shops {
        let shop = shop_settings(domain, sandbox, *main, *east);
        text.push_str(&format!(
            "[[shops]]\ndomain = \"{}\"\napi_version = \"{}\"\nadmin_base_url = \"{}\"\n\
             access_token_env = \"{}\"\n[shops.locations]\nMAIN = {}\nEAST = {}\n\n",
            shop.domain,
            shop.api_version,
            shop.admin_base_url,
            shop.access_token_env,
            main.0,
            east.0
        ));
    }
    let path = std::env::temp_dir().join(format!(
        "pusher-bench-{}.toml",
        scratch.settings.amqp.name_prefix.trim_end_matches('.')
    ));
    std::fs::write(&path, text).context("writing the pusher's configuration")?;
    Ok(path)
}
