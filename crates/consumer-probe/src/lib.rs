//! The consumer probe: the smallest real service on the platform.
//!
//! It consumes its own queue (`platform-probe`, plus retry tiers and dead-letter queue), and for
//! each message records the message id in the inbox and a row in `probe_effects` in one
//! transaction, then lets the runtime acknowledge. Operators use it to check that a deployment's
//! broker and database plumbing works end to end; the process-level tests of the runtime
//! (SIGTERM, a crash between commit and ack) run it as a child process; and
//! `wos-sync-bench runtime` measures the runtime with its handler next to a bare
//! consume-and-ack loop on the same broker. Like every service it prunes what it writes (its
//! inbox rows and `probe_effects`, after `[retention] inbox_days`) and fails readiness before
//! it drains at SIGTERM.

use std::{sync::Arc, time::Duration};

use deadpool_postgres::Pool;
use platform::{
    amqp::{
        consumer::{ConsumerConfig, Disposition, GroupOutcome, Handler, Incoming, run_consumer},
        topology::{Names, WorkQueue},
    },
    db::DbError,
    inbox::{InboxEntry, prune_inbox_chunk, record_messages},
    metrics::Metrics,
    retention::{Pruned, RetentionJob, RetentionSettings, in_chunks, run_retention},
    settings::Settings,
    shutdown::CancellationToken,
};

/// The probe's queue (under the deployment's name prefix).
pub fn probe_queue(names: &Names) -> WorkQueue {
    WorkQueue {
        name: names.name("platform-probe"),
        bindings: Vec::new(),
    }
}

/// Header that, with [`ProbeOptions::crash_after_commit`], makes the probe abort the process
/// right after committing a message's effect and before acknowledging it.
pub const CRASH_HEADER: &str = "x-probe-crash-after-commit";

/// How the probe's handler behaves.
#[derive(Debug, Clone, Default)]
pub struct ProbeOptions {
    /// Extra time each message takes (to keep messages in flight for shutdown tests).
    pub handler_delay: Duration,
    /// Abort the process after the commit of a first delivery carrying [`CRASH_HEADER`]
    /// (simulates a crash between commit and ack).
    pub crash_after_commit: bool,
}

/// The probe's handler: inbox row + effect row in one transaction.
#[derive(Debug)]
pub struct ProbeHandler {
    pool: Pool,
    options: ProbeOptions,
}

/// Inbox consumer name of the probe.
const CONSUMER: &str = "consumer-probe";

impl ProbeHandler {
    pub fn new(pool: Pool, options: ProbeOptions) -> Self {
        Self { pool, options }
    }

    /// Messages (one, or a group) in one transaction: the inbox rows in one statement, the new
    /// messages' effect rows in another.
    async fn apply(
        &self,
        ids: &[&str],
        messages: &[Incoming],
    ) -> Result<Vec<Disposition>, DbError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let entries = record_messages(&tx, CONSUMER, ids).await?;
        let (new_ids, new_bytes): (Vec<&str>, Vec<i64>) = ids
            .iter()
            .zip(messages)
            .zip(&entries)
            .filter(|(_, entry)| **entry == InboxEntry::New)
            .map(|((id, message), _)| (*id, i64::try_from(message.body.len()).unwrap_or(i64::MAX)))
            .unzip();
        tx.execute(
            "INSERT INTO probe_effects (message_id, bytes) SELECT * FROM unnest($1::text[], $2::bigint[])",
            &[&new_ids, &new_bytes],
        )
        .await?;
        tx.commit().await?;
        if self.options.crash_after_commit
            && messages
                .iter()
                .any(|m| !m.redelivered && m.header_str(CRASH_HEADER).is_some())
        {
            tracing::warn!("crashing between commit and ack, as asked");
            std::process::abort();
        }
        Ok(entries
            .iter()
            .map(|entry| match entry {
                InboxEntry::New => Disposition::Ack,
                InboxEntry::AlreadyProcessed => Disposition::Duplicate,
            })
            .collect())
    }
}

impl Handler for ProbeHandler {
    const GROUPS: bool = true;

    async fn handle(&self, message: &Incoming) -> Disposition {
        let Some(message_id) = message.message_id().map(str::to_owned) else {
            return Disposition::malformed("message has no message_id property");
        };
        if !self.options.handler_delay.is_zero() {
            tokio::time::sleep(self.options.handler_delay).await;
        }
        match self
            .apply(&[message_id.as_str()], std::slice::from_ref(message))
            .await
        {
            Ok(mut dispositions) => dispositions
                .pop()
                .unwrap_or_else(|| Disposition::retry("no disposition for the message")),
            Err(err) => Disposition::retry(err),
        }
    }

    async fn handle_group(&self, messages: &[Incoming]) -> GroupOutcome {
        // A message without an id is dead-lettered alone.
        let Some(ids) = messages
            .iter()
            .map(Incoming::message_id)
            .collect::<Option<Vec<&str>>>()
        else {
            return GroupOutcome::HandleAlone;
        };
        if !self.options.handler_delay.is_zero() {
            tokio::time::sleep(self.options.handler_delay).await;
        }
        match self.apply(&ids, messages).await {
            Ok(dispositions) => GroupOutcome::Handled(dispositions),
            Err(err) if err.is_unavailable() => {
                GroupOutcome::Handled(vec![Disposition::retry(err); messages.len()])
            }
            Err(_) => GroupOutcome::HandleAlone,
        }
    }
}

/// Creates the probe's effect table (it is not part of the product's schema).
pub async fn ensure_probe_table(pool: &Pool) -> Result<(), DbError> {
    pool.get()
        .await?
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS probe_effects (
                 message_id text PRIMARY KEY,
                 bytes bigint NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await?;
    Ok(())
}

/// Default HTTP address of the probe.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9469";

/// Runs the probe as a service until `shutdown`.
pub async fn run(
    settings: Settings,
    options: ProbeOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let metrics = Metrics::new();
    let default_listen = DEFAULT_LISTEN.parse().context("default address")?;
    let platform::startup::Prepared {
        pool,
        health,
        ops_server: server,
        stop,
    } = platform::startup::serve_ops_and_prepare_database(
        &settings,
        default_listen,
        metrics.clone(),
        shutdown,
    )
    .await?;
    ensure_probe_table(&pool)
        .await
        .context("creating probe_effects")?;
    let retention = tokio::spawn(run_retention(
        Arc::new(ProbeRetention {
            pool: pool.clone(),
            settings: settings.retention.clone(),
        }),
        "consumer-probe",
        settings.retention.interval(),
        metrics.clone(),
        stop.clone(),
    ));
    let config = consumer_config(&settings, "consumer-probe");
    run_consumer(
        config,
        Arc::new(ProbeHandler::new(pool, options)),
        metrics,
        health,
        stop,
    )
    .await;
    retention.await.context("retention task")?;
    server.await.context("HTTP server task")?;
    Ok(())
}

/// The probe's pruning: its inbox rows and its effect rows, after `[retention] inbox_days`.
#[derive(Debug)]
struct ProbeRetention {
    pool: Pool,
    settings: RetentionSettings,
}

impl RetentionJob for ProbeRetention {
    async fn prune(&self, shutdown: &CancellationToken) -> Result<Pruned, DbError> {
        let (window, chunk) = (self.settings.inbox(), self.settings.chunk());
        let mut pruned = Pruned::default();
        let inbox = in_chunks(chunk, shutdown, || {
            prune_inbox_chunk(&self.pool, CONSUMER, window, chunk)
        })
        .await?;
        pruned.add("inbox", inbox);
        let effects = in_chunks(chunk, shutdown, || async {
            Ok(self
                .pool
                .get()
                .await?
                .execute(
                    "DELETE FROM probe_effects WHERE message_id IN ( \
                         SELECT message_id FROM probe_effects \
                         WHERE applied_at < now() - make_interval(secs => $1) \
                         LIMIT $2 FOR UPDATE SKIP LOCKED)",
                    &[&window.as_secs_f64(), &chunk],
                )
                .await?)
        })
        .await?;
        pruned.add("probe_effects", effects);
        Ok(pruned)
    }
}

pub fn consumer_config(settings: &Settings, service: &str) -> ConsumerConfig {
    ConsumerConfig {
        service: service.to_owned(),
        amqp_url: settings.amqp.url.clone(),
        names: settings.names(),
        queue: probe_queue(&settings.names()),
        settings: settings.consumer.clone(),
        retry: settings.retry.clone(),
    }
}
