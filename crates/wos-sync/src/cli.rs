//! The command line: every command and flag of `wos-sync`, with its `--help` text.
//!
//! The spellings of CONTRACT 1.1 are fixed (runbooks and scripts call them); further commands
//! and flags are ours. clap exits with status 2 on a usage error.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};
use platform::telemetry::LogFormat;

/// The operator CLI of wos-shopify-sync.
///
/// Reads the same configuration as the services: `--config FILE` (or `WOS_SYNC_CONFIG`), with
/// `AMQP_URL` and `DATABASE_URL` overriding the file; Shopify tokens and webhook secrets come
/// from the environment variables the file names. Exit status: 0 success, 1 failure, 2 usage
/// error. Start with `wos-sync up` (everything in one process against a local Shopify sandbox)
/// and `wos-sync check` (is a real configuration ready?). docs/operations.md is the runbook.
#[derive(Debug, Parser)]
#[command(
    name = "wos-sync",
    version,
    about,
    long_about,
    propagate_version = true
)]
pub struct Cli {
    /// Configuration file (TOML), the same as the services'. Without one, the defaults for a
    /// local RabbitMQ and PostgreSQL apply.
    #[arg(long, global = true, env = "WOS_SYNC_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log format on standard error: auto (text on a terminal, JSON otherwise), json or text.
    #[arg(long, global = true, env = "LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply pending database migrations (idempotent; the services also do it at start).
    Migrate(JsonArg),
    /// Declare the RabbitMQ topology: exchanges, work queues, retry tiers, dead-letter queues,
    /// bindings (idempotent; the services also do it at start).
    Topology(JsonArg),
    /// Check a configuration before going live: the file, the broker, the database, and per
    /// shop its environment variables, that Shopify accepts the token with the scopes the
    /// services need, and that every configured location is a location of the shop. One line
    /// per check; exit status 1 if any failed.
    Check(JsonArg),
    /// Dead letters of every service: list, show, replay, purge.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Adjustments parked because their item has no Shopify mapping yet.
    #[command(subcommand)]
    Parked(ParkedCommand),
    /// SKUs carried by several live Shopify variants (e.g. a cloned product), with the variant
    /// each item points at and the mapping rule that chose it.
    Conflicts(ConflictsArgs),
    /// Give items without a Shopify mapping the inventory item of the only Shopify variant with
    /// their SKU (looked up in Shopify, paced by the shop's rate limit). Ambiguous SKUs are
    /// reported, not filled. An interrupted run is resumed by running the command again.
    BackfillMappings(BackfillArgs),
    /// Publish a WOS inventory transaction on `wos.transactions`, validated against the schema
    /// first: from flags (`publish put --shop S --sku X --warehouse W --quantity 5`) or from a
    /// JSON file (`publish --file tx.json`).
    Publish(PublishArgs),
    /// One screen: queue and DLQ depths, per shop pending and parked adjustments, the open
    /// batch, Shopify's last answer and rate-limit level, SKU conflicts.
    Status(StatusArgs),
    /// Run everything in one process: migrations, topology, item-ingest, adjustment-pusher and
    /// the webhook relay, and with `--sandbox` (the default when no shop is configured) a local
    /// Shopify sandbox seeded with a demo shop. Ctrl-C (or SIGTERM) stops everything cleanly.
    Up(UpArgs),
}

/// `--json` alone.
#[derive(Debug, Clone, Copy, Args)]
pub struct JsonArg {
    /// Print machine-readable JSON on standard output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead letters (every DLQ, or one queue's), oldest first, with their error.
    List(DlqListArgs),
    /// Print dead letters' headers and body (pretty-printed JSON).
    Show(DlqShowArgs),
    /// Put dead letters back with a fresh attempt count. A push-loop dead letter of the pusher
    /// (rejected, exhausted, unmapped) returns its transaction's adjustments to pending (or
    /// parked) through the database, once; every other one is republished to its work queue.
    /// Replaying the same dead letter twice never applies it twice.
    Replay(DlqSelectArgs),
    /// Remove dead letters for good; needs --yes, and prints what it removes.
    Purge(DlqPurgeArgs),
}

/// Which dead letters: filters every `dlq` command shares.
#[derive(Debug, Clone, Default, Args)]
pub struct DlqFilterArgs {
    /// Only this error kind.
    #[arg(long, value_enum)]
    pub kind: Option<DeadLetterKind>,
    /// Only this shop (`name.myshopify.com`).
    #[arg(long, value_name = "SHOP")]
    pub shop: Option<String>,
    /// Only dead letters older than this (e.g. 30m, 2h, 7d).
    #[arg(long, value_name = "AGE", value_parser = parse_age)]
    pub older_than: Option<Duration>,
    /// Only dead letters younger than this (e.g. 30m, 2h, 7d).
    #[arg(long, value_name = "AGE", value_parser = parse_age)]
    pub newer_than: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct DlqListArgs {
    /// A work queue (`adjustment-pusher.wos-transactions`); its DLQ is implied. Every DLQ
    /// when absent.
    #[arg(long, value_name = "Q", value_parser = parse_work_queue)]
    pub queue: Option<String>,
    #[command(flatten)]
    pub filter: DlqFilterArgs,
    /// Look at no more than this many messages per DLQ.
    #[arg(long, default_value_t = 10_000)]
    pub limit: usize,
    /// Print machine-readable JSON on standard output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DlqShowArgs {
    /// A work queue (`adjustment-pusher.wos-transactions`); its DLQ is implied.
    #[arg(long, value_name = "Q", value_parser = parse_work_queue)]
    pub queue: String,
    /// The message id (as `dlq list` shows it).
    #[arg(value_name = "MESSAGE_ID", required = true)]
    pub ids: Vec<String>,
    /// Print machine-readable JSON on standard output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("which").required(true).args(["all", "ids"]))]
pub struct DlqSelectArgs {
    /// A work queue (`adjustment-pusher.wos-transactions`); its DLQ is implied.
    #[arg(long, value_name = "Q", value_parser = parse_work_queue)]
    pub queue: String,
    /// Every dead letter of the queue that passes the filters.
    #[arg(long)]
    pub all: bool,
    /// These message ids (as `dlq list` shows them).
    #[arg(value_name = "MESSAGE_ID")]
    pub ids: Vec<String>,
    #[command(flatten)]
    pub filter: DlqFilterArgs,
    /// Print machine-readable JSON on standard output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DlqPurgeArgs {
    #[command(flatten)]
    pub select: DlqSelectArgs,
    /// Really remove them (without it, purge only says what it would remove).
    #[arg(long)]
    pub yes: bool,
}

/// `x-error-kind` values (CONTRACT 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeadLetterKind {
    Malformed,
    Rejected,
    Exhausted,
    Unmapped,
}

impl DeadLetterKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Rejected => "rejected",
            Self::Exhausted => "exhausted",
            Self::Unmapped => "unmapped",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum ParkedCommand {
    /// Parked adjustments by shop and SKU, oldest first, with whether the item is mapped now.
    List(ShopJsonArgs),
    /// Re-resolve the mapping of parked adjustments now: those whose item has a Shopify
    /// mapping become pending and are pushed; the others stay parked.
    Release(ShopJsonArgs),
}

#[derive(Debug, Args)]
pub struct ShopJsonArgs {
    /// Only this shop.
    #[arg(long, value_name = "SHOP")]
    pub shop: Option<String>,
    /// Print machine-readable JSON on standard output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ConflictsArgs {
    /// Only this shop (every configured shop, and every shop in the catalog mirror, otherwise).
    #[arg(long, value_name = "SHOP")]
    pub shop: Option<String>,
    /// Print machine-readable JSON on standard output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BackfillArgs {
    /// The shop (one of the configuration's `[[shops]]`).
    #[arg(long, value_name = "SHOP")]
    pub shop: String,
    /// Look the SKUs up and report what would be filled; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Abandon an interrupted run and start over.
    #[arg(long, conflicts_with = "dry_run")]
    pub restart: bool,
    /// Print machine-readable JSON on standard output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct PublishArgs {
    /// A JSON file with one transaction, or an array of them (`-`: standard input).
    #[arg(long, value_name = "FILE.json", required = true)]
    pub file: Option<PathBuf>,
    /// Print machine-readable JSON on standard output.
    #[arg(long)]
    pub json: bool,
    #[command(subcommand)]
    pub transaction: Option<TransactionCommand>,
}

/// A transaction from flags; `--transaction-id` defaults to a fresh UUID and `--occurred-at`
/// to now.
#[derive(Debug, Subcommand)]
pub enum TransactionCommand {
    /// Stock put away: +quantity at the warehouse's Shopify location.
    Put(QuantityTx),
    /// Stock pulled out: -quantity.
    Pull(QuantityTx),
    /// A bin counted: counted - previous.
    CycleCount(CycleCountTx),
    /// Stock moved to another warehouse: -quantity at the source, +quantity at the destination
    /// (nothing when both map to the same Shopify location).
    Move(MoveTx),
    /// Stock picked for an order: -quantity, nothing when the order came from Shopify.
    Pick(PickTx),
}

/// Fields every transaction has.
#[derive(Debug, Clone, Args)]
pub struct CommonTx {
    /// The shop (`name.myshopify.com`).
    #[arg(long, value_name = "SHOP")]
    pub shop: String,
    /// The WOS item code.
    #[arg(long)]
    pub sku: String,
    /// The WOS warehouse code (mapped to a Shopify location by the shop's configuration).
    #[arg(long)]
    pub warehouse: String,
    /// The bin within the warehouse.
    #[arg(long, value_name = "BIN")]
    pub location: Option<String>,
    /// WOS's transaction id (default: a fresh UUID).
    #[arg(long, value_name = "ID")]
    pub transaction_id: Option<String>,
    /// When it happened, RFC 3339 (default: now).
    #[arg(long, value_name = "TIME")]
    pub occurred_at: Option<String>,
    /// Who did it.
    #[arg(long)]
    pub user: Option<String>,
    /// Print machine-readable JSON on standard output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct QuantityTx {
    #[command(flatten)]
    pub common: CommonTx,
    /// Units.
    #[arg(long)]
    pub quantity: i64,
}

#[derive(Debug, Clone, Args)]
pub struct CycleCountTx {
    #[command(flatten)]
    pub common: CommonTx,
    /// What WOS believed was in the bin.
    #[arg(long)]
    pub previous_quantity: i64,
    /// What was counted.
    #[arg(long)]
    pub counted_quantity: i64,
}

#[derive(Debug, Clone, Args)]
pub struct MoveTx {
    #[command(flatten)]
    pub common: CommonTx,
    /// Units.
    #[arg(long)]
    pub quantity: i64,
    /// Destination warehouse code.
    #[arg(long)]
    pub to_warehouse: String,
    /// Destination bin.
    #[arg(long, value_name = "BIN")]
    pub to_location: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct PickTx {
    #[command(flatten)]
    pub common: CommonTx,
    /// Units.
    #[arg(long)]
    pub quantity: i64,
    /// The order's sales channel (`shopify`: Shopify already decremented).
    #[arg(long)]
    pub order_source: String,
    /// The order's id in that channel.
    #[arg(long)]
    pub order_id: Option<String>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print machine-readable JSON on standard output.
    #[arg(long, conflicts_with = "watch")]
    pub json: bool,
    /// Refresh the screen every few seconds until Ctrl-C.
    #[arg(long)]
    pub watch: bool,
    /// Seconds between refreshes with --watch.
    #[arg(long, default_value_t = 2, value_name = "SECONDS", requires = "watch")]
    pub interval: u64,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Run against a local Shopify sandbox (the default when no shop is configured): seeded
    /// with the configured shops, or with a demo shop (two locations, a product) when there
    /// are none.
    #[arg(long)]
    pub sandbox: bool,
    /// The webhook relay's address (Shopify posts to /webhooks/shopify there).
    #[arg(long, value_name = "ADDR")]
    pub relay_listen: Option<SocketAddr>,
    /// item-ingest's /metrics, /healthz, /readyz address.
    #[arg(long, value_name = "ADDR")]
    pub ingest_listen: Option<SocketAddr>,
    /// adjustment-pusher's /metrics, /healthz, /readyz address.
    #[arg(long, value_name = "ADDR")]
    pub pusher_listen: Option<SocketAddr>,
    /// The sandbox's address (GraphQL and its /sandbox admin API).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9470")]
    pub sandbox_listen: SocketAddr,
}

/// `--queue`: a work queue's contract name; `.dlq` may be added.
fn parse_work_queue(value: &str) -> Result<String, String> {
    let name = value.strip_suffix(".dlq").unwrap_or(value);
    let known = [
        platform::amqp::topology::ITEM_INGEST_QUEUE,
        platform::amqp::topology::ADJUSTMENT_PUSHER_QUEUE,
        platform::amqp::topology::PUSHER_MAPPINGS_QUEUE,
    ];
    if known.contains(&name) {
        Ok(name.to_owned())
    } else {
        Err(format!("not a work queue; one of: {}", known.join(", ")))
    }
}

/// `30s`, `15m`, `2h`, `7d` (a bare number is seconds).
pub fn parse_age(value: &str) -> Result<Duration, String> {
    let value = value.trim();
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{value:?}: expected a number and a unit (30s, 15m, 2h, 7d)"))?;
    let seconds = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{value:?}: the unit is one of s, m, h, d")),
    };
    Ok(Duration::from_secs(number.saturating_mul(seconds)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn ages_and_queues_parse() {
        assert_eq!(parse_age("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_age("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_age("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_age("7d"), Ok(Duration::from_secs(604_800)));
        assert!(parse_age("2w").is_err());
        assert!(parse_age("h").is_err());
        assert_eq!(
            parse_work_queue("adjustment-pusher.wos-transactions.dlq").as_deref(),
            Ok("adjustment-pusher.wos-transactions")
        );
        assert!(parse_work_queue("nope").is_err());
    }

    #[test]
    fn the_contract_spellings_parse() {
        let ok = |args: &[&str]| {
            let mut full = vec!["wos-sync"];
            full.extend_from_slice(args);
            Cli::try_parse_from(full).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        };
        ok(&["--config", "f.toml", "migrate"]);
        ok(&["topology"]);
        ok(&["check"]);
        ok(&[
            "dlq",
            "list",
            "--queue",
            "item-ingest.shopify-products",
            "--kind",
            "malformed",
            "--shop",
            "a.myshopify.com",
            "--json",
        ]);
        ok(&[
            "dlq",
            "show",
            "--queue",
            "adjustment-pusher.wos-transactions",
            "m-1",
        ]);
        ok(&[
            "dlq",
            "replay",
            "--queue",
            "adjustment-pusher.wos-transactions",
            "--all",
            "--kind",
            "rejected",
            "--shop",
            "a.myshopify.com",
        ]);
        ok(&[
            "dlq",
            "replay",
            "--queue",
            "adjustment-pusher.wos-transactions",
            "m-1",
            "m-2",
        ]);
        ok(&[
            "dlq",
            "purge",
            "--queue",
            "adjustment-pusher.wos-transactions",
            "--all",
            "--yes",
        ]);
        ok(&["parked", "list", "--shop", "a.myshopify.com", "--json"]);
        ok(&["parked", "release", "--shop", "a.myshopify.com"]);
        ok(&["conflicts", "--shop", "a.myshopify.com", "--json"]);
        ok(&[
            "backfill-mappings",
            "--shop",
            "a.myshopify.com",
            "--dry-run",
        ]);
        ok(&["publish", "--file", "tx.json"]);
        ok(&[
            "publish",
            "put",
            "--shop",
            "a.myshopify.com",
            "--sku",
            "X",
            "--warehouse",
            "W",
            "--quantity",
            "5",
        ]);
        ok(&["status", "--json"]);
        ok(&["status", "--watch"]);
        ok(&["up", "--sandbox"]);
        ok(&["up"]);
        for bad in [
            &[
                "dlq",
                "replay",
                "--queue",
                "adjustment-pusher.wos-transactions",
            ][..],
            &["dlq", "replay", "--all"],
            &["publish"],
            &["status", "--json", "--watch"],
        ] {
            let mut full = vec!["wos-sync"];
            full.extend_from_slice(bad);
            assert!(Cli::try_parse_from(full).is_err(), "{bad:?}");
        }
    }
}
