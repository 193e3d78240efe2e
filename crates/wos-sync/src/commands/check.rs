//! `check`: is this configuration ready to run? One line per check, the reason in words.
//!
//! - the configuration file parses and validates (as the services load it);
//! - the broker answers (and whether the topology is declared yet);
//! - the database answers (and whether migrations are pending);
//! - per shop: its token variable is set; Shopify accepts the token for this very shop; the
//!   token has the scopes the services need; every configured location id is an active
//!   location of the shop; its webhook secret variable is set (the relay needs it).
//!
//! Scopes the services need (Shopify Admin API reference): `inventoryAdjustQuantities`
//! requires `write_inventory`; reading products and variants (item-ingest's reads, the
//! backfill) `read_products`; reading locations (this check) `read_locations`. A `write_`
//! scope includes its `read_` scope. The granted scopes are read from
//! `currentAppInstallation { accessScopes { handle } }`.

use std::time::Duration;

use model::{
    config::{ShopDirectory, ShopSettings},
    ids::LocationId,
};
use platform::{
    db,
    settings::{CommonArgs, Settings, redact_url},
};
use serde::Serialize;
use serde_json::{Value, json};
use shopify_admin::{ReadError, ReadPolicy};
use webhook_relay::secrets::ShopSecrets;

use crate::{
    cli::Cli,
    context::Context,
    output::{Reported, print_json},
};

/// The scopes the services need, and who needs each.
pub const REQUIRED_SCOPES: [(&str, &str); 3] = [
    (
        "write_inventory",
        "adjustment-pusher: inventoryAdjustQuantities",
    ),
    (
        "read_products",
        "item-ingest and backfill-mappings: product variants",
    ),
    ("read_locations", "check: the configured locations"),
];

const IDENTITY_QUERY: &str = "query CheckToken {
  shop { myshopifyDomain }
  currentAppInstallation { accessScopes { handle } }
}";

const LOCATIONS_QUERY: &str = "query CheckLocations($ids: [ID!]!) {
  nodes(ids: $ids) { __typename ... on Location { id name isActive } }
}";

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Not wrong, but worth knowing (pending migrations, topology not declared yet).
    Warn,
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    pub check: String,
    pub status: Status,
    pub detail: String,
}

#[derive(Debug, Default)]
struct Report {
    lines: Vec<Line>,
    json: bool,
}

impl Report {
    fn add(&mut self, check: impl Into<String>, status: Status, detail: impl Into<String>) {
        let line = Line {
            check: check.into(),
            status,
            detail: detail.into(),
        };
        if !self.json {
            let tag = match line.status {
                Status::Ok => "ok  ",
                Status::Warn => "warn",
                Status::Fail => "FAIL",
            };
            println!("{tag}  {}: {}", line.check, line.detail);
        }
        self.lines.push(line);
    }

    fn failed(&self) -> usize {
        self.lines
            .iter()
            .filter(|l| l.status == Status::Fail)
            .count()
    }
}

pub async fn run(cli: &Cli, json: bool) -> anyhow::Result<()> {
    let mut report = Report {
        json,
        ..Report::default()
    };
    let args = CommonArgs {
        config: cli.config.clone(),
        listen: None,
        log_format: None,
    };
    match Settings::load_with_sections(&args, &[shopify_sandbox::settings::SECTION]) {
        Err(err) => report.add("configuration", Status::Fail, err.to_string()),
        Ok(settings) => {
            let source = settings.source.as_ref().map_or_else(
                || "built-in defaults (no --config)".to_owned(),
                |p| p.display().to_string(),
            );
            report.add(
                "configuration",
                Status::Ok,
                format!("{source}: valid, {} shop(s)", settings.shops.len()),
            );
            let context = Context { settings };
            check_broker(&context, &mut report).await;
            check_database(&context, &mut report).await;
            if context.settings.shops.is_empty() {
                report.add(
                    "shops",
                    Status::Fail,
                    "no [[shops]] configured: the services have nothing to work for",
                );
            }
            for shop in context.settings.shops.iter() {
                check_shop(&context, shop, &mut report).await;
            }
        }
    }
    let failed = report.failed();
    if json {
        print_json(&json!({ "ok": failed == 0, "checks": report.lines }))?;
    } else if failed == 0 {
        println!("all checks passed");
    } else {
        println!("{failed} check(s) failed");
    }
    if failed == 0 {
        Ok(())
    } else {
        Err(Reported(format!("{failed} check(s) failed")).into())
    }
}

async fn check_broker(context: &Context, report: &mut Report) {
    let url = redact_url(&context.settings.amqp.url);
    let connection = match context.broker("check").await {
        Ok(connection) => connection,
        Err(err) => {
            report.add("broker", Status::Fail, format!("{err}"));
            return;
        }
    };
    report.add("broker", Status::Ok, format!("{url} answers"));
    let mut missing = Vec::new();
    for queue in context.work_queues() {
        for name in [queue.name.clone(), queue.dead_letter_queue()] {
            // A passive declare of a missing queue closes the channel: one channel per queue.
            let present = match connection.create_channel().await {
                Ok(channel) => {
                    let found = crate::dead_letters::DeadLetterQueue::depth(&channel, &name)
                        .await
                        .is_some();
                    let _ = channel.close(200, "checked".into()).await;
                    found
                }
                Err(_) => false,
            };
            if !present {
                missing.push(name);
            }
        }
    }
    if missing.is_empty() {
        report.add(
            "topology",
            Status::Ok,
            "every work queue and DLQ is declared",
        );
    } else {
        report.add(
            "topology",
            Status::Warn,
            format!(
                "not declared yet: {} (`wos-sync topology` declares them; the services do at start)",
                missing.join(", ")
            ),
        );
    }
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        connection.close(200, "check done".into()),
    )
    .await;
}

async fn check_database(context: &Context, report: &mut Report) {
    let settings = &context.settings.database;
    let url = redact_url(&settings.url);
    let pool = match db::connect_pool(settings) {
        Ok(pool) => pool,
        Err(err) => {
            report.add("database", Status::Fail, err.to_string());
            return;
        }
    };
    match db::pending_migrations(&pool).await {
        Err(err) => {
            let backend = match &err {
                db::DbError::Pool(deadpool_postgres::PoolError::Backend(pg)) => pg.as_db_error(),
                _ => None,
            };
            match backend {
                // The services (and `wos-sync migrate`) create it when the role may.
                Some(db) if db.code() == &tokio_postgres::error::SqlState::INVALID_CATALOG_NAME => {
                    report.add(
                        "database",
                        Status::Warn,
                        format!(
                            "{url}: {}; `wos-sync migrate` (or the first service to start) creates it when the role may create databases",
                            db.message()
                        ),
                    )
                }
                Some(db) => report.add("database", Status::Fail, format!("{url}: {}", db.message())),
                None => report.add("database", Status::Fail, format!("{url}: {err}")),
            }
        }
        Ok(pending) if pending.is_empty() => {
            report.add("database", Status::Ok, format!("{url} answers, migrations up to date"));
        }
        Ok(pending) => report.add(
            "database",
            Status::Warn,
            format!(
                "{url} answers; migrations not applied yet: {} (`wos-sync migrate`; the services apply them at start)",
                pending.join(", ")
            ),
        ),
    }
}

async fn check_shop(context: &Context, shop: &ShopSettings, report: &mut Report) {
    let name = format!("shop {}", shop.domain);
    check_webhook_secret(shop, &name, report);
    let client = match context.shop_client(shop) {
        Ok(client) => client,
        Err(err) => {
            report.add(format!("{name} token"), Status::Fail, format!("{err:#}"));
            return;
        }
    };
    let policy = ReadPolicy {
        timeout: Duration::from_secs(10),
        attempts: 3,
        backoff: Duration::from_millis(300),
        max_backoff: Duration::from_secs(2),
    };
    let identity = client
        .read("CheckToken", IDENTITY_QUERY, json!({}), &policy)
        .await;
    let data = match identity {
        Ok(data) => data,
        Err(ReadError::AccessDenied(why)) => {
            report.add(
                format!("{name} token"),
                Status::Fail,
                format!(
                    "Shopify refused the token in {} ({why}): a wrong, revoked or other shop's token",
                    shop.access_token_env
                ),
            );
            return;
        }
        Err(err) => {
            report.add(
                format!("{name} token"),
                Status::Fail,
                format!("{} at {}: {err}", shop.domain, shop.admin_base_url),
            );
            return;
        }
    };
    let answered = data["shop"]["myshopifyDomain"].as_str().unwrap_or_default();
    if answered.eq_ignore_ascii_case(&shop.domain) {
        report.add(
            format!("{name} token"),
            Status::Ok,
            format!("accepted by Shopify ({})", shop.access_token_env),
        );
    } else {
        report.add(
            format!("{name} token"),
            Status::Fail,
            format!(
                "the token in {} belongs to {answered:?}, not to {}",
                shop.access_token_env, shop.domain
            ),
        );
        return;
    }
    let granted: Vec<String> = data["currentAppInstallation"]["accessScopes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["handle"].as_str().map(str::to_owned))
        .collect();
    let missing = missing_scopes(&granted);
    if missing.is_empty() {
        report.add(
            format!("{name} scopes"),
            Status::Ok,
            format!(
                "{} granted",
                REQUIRED_SCOPES.map(|(scope, _)| scope).join(", ")
            ),
        );
    } else {
        report.add(
            format!("{name} scopes"),
            Status::Fail,
            format!(
                "missing {} (granted: {})",
                missing
                    .iter()
                    .map(|(scope, who)| format!("{scope}, needed by {who}"))
                    .collect::<Vec<_>>()
                    .join("; "),
                if granted.is_empty() {
                    "none".to_owned()
                } else {
                    granted.join(", ")
                }
            ),
        );
    }
    check_locations(&client, shop, &name, &policy, report).await;
}

/// The required scopes `granted` lacks (a `write_` scope includes its `read_`).
pub fn missing_scopes(granted: &[String]) -> Vec<(&'static str, &'static str)> {
    let has = |scope: &str| {
        granted.iter().any(|g| g == scope)
            || scope
                .strip_prefix("read_")
                .is_some_and(|resource| granted.iter().any(|g| *g == format!("write_{resource}")))
    };
    REQUIRED_SCOPES
        .into_iter()
        .filter(|(scope, _)| !has(scope))
        .collect()
}

async fn check_locations(
    client: &shopify_admin::ShopClient,
    shop: &ShopSettings,
    name: &str,
    policy: &ReadPolicy,
    report: &mut Report,
) {
    let configured: Vec<(&String, &LocationId)> = shop.locations.iter().collect();
    if configured.is_empty() {
        report.add(
            format!("{name} locations"),
            Status::Warn,
            "no [shops.locations]: every transaction will be skipped",
        );
        return;
    }
    let ids: Vec<String> = configured.iter().map(|(_, id)| id.gid()).collect();
    let data = match client
        .read(
            "CheckLocations",
            LOCATIONS_QUERY,
            json!({ "ids": ids }),
            policy,
        )
        .await
    {
        Ok(data) => data,
        Err(err) => {
            report.add(
                format!("{name} locations"),
                Status::Fail,
                format!("cannot read the shop's locations: {err}"),
            );
            return;
        }
    };
    let nodes = data["nodes"].as_array().cloned().unwrap_or_default();
    for (index, (warehouse, id)) in configured.iter().enumerate() {
        let node = nodes.get(index).unwrap_or(&Value::Null);
        let check = format!("{name} location {warehouse}");
        if node.is_null() || node["__typename"] != "Location" {
            report.add(
                check,
                Status::Fail,
                format!("{} is not a location of {} (unknown id)", id.0, shop.domain),
            );
        } else if node["isActive"] == false {
            report.add(
                check,
                Status::Fail,
                format!(
                    "{} ({}) is deactivated: Shopify refuses adjustments there",
                    id.0,
                    node["name"].as_str().unwrap_or("")
                ),
            );
        } else {
            report.add(
                check,
                Status::Ok,
                format!("{} is {:?}", id.0, node["name"].as_str().unwrap_or("")),
            );
        }
    }
}

fn check_webhook_secret(shop: &ShopSettings, name: &str, report: &mut Report) {
    let Ok(directory) = ShopDirectory::new(vec![shop.clone()]) else {
        return;
    };
    let lookup = |var: &str| std::env::var(var).ok().filter(|v| !v.trim().is_empty());
    match ShopSecrets::resolve(&directory, lookup) {
        Err(err) => report.add(
            format!("{name} webhook secret"),
            Status::Fail,
            format!("{err} (the relay refuses to start without it)"),
        ),
        Ok(_) => {
            let variable = shop.webhook_secret_env.as_deref().unwrap_or("");
            match shop.previous_webhook_secret_env.as_deref() {
                Some(previous) if lookup(previous).is_none() => report.add(
                    format!("{name} webhook secret"),
                    Status::Warn,
                    format!(
                        "{variable} set; {previous} (previous secret) is unset: only the current secret is accepted"
                    ),
                ),
                _ => report.add(
                    format!("{name} webhook secret"),
                    Status::Ok,
                    format!("{variable} set"),
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_scopes_include_their_read_scope() {
        let granted = |s: &[&str]| s.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(
            missing_scopes(&granted(&[
                "write_inventory",
                "write_products",
                "read_locations"
            ]))
            .is_empty()
        );
        let missing = missing_scopes(&granted(&["read_inventory", "read_products"]));
        let names: Vec<&str> = missing.iter().map(|(s, _)| *s).collect();
        assert_eq!(names, ["write_inventory", "read_locations"]);
    }
}
