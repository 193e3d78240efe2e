//! Retention: the tables that grow with traffic are pruned by a background job of the service
//! that owns them, in chunks that each commit, so storage stays bounded and no statement holds
//! a large table for long.
//!
//! The windows (`[retention]`) outlast every way a copy of a message can still arrive, because
//! a row pruned too early turns that copy into new work: an inbox row or a WOS transaction
//! forgotten is applied again, a deleted product forgotten comes back to life. Rows that still
//! mean work (parked and dead adjustments, open batches, outbox dead letters, refresh requests)
//! are never pruned by age: they go when they are done, replayed or purged. The reasoning behind
//! each default is in `docs/architecture.md` ("Retention").
//!
//! A service implements [`RetentionJob`] (one pass over its tables) and runs it with
//! [`run_retention`]: a pass at start and every `interval_secs`, under [`crate::supervise`] (a
//! failed pass is logged, counted in `wos_sync_loop_failures_total{loop="retention"}` and tried
//! again after a backoff), rows deleted counted in
//! `wos_sync_retention_pruned_rows_total{service,table}`.

use std::{collections::BTreeMap, future::Future, sync::Arc, time::Duration};

use serde::Deserialize;

use crate::{
    db::DbError,
    metrics::Metrics,
    shutdown::CancellationToken,
    supervise::{LoopMonitor, supervise},
};

/// The loop label of every service's retention job.
pub const LOOP: &str = "retention";

const DAY: Duration = Duration::from_secs(24 * 3600);

/// `[retention]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSettings {
    /// Seconds between two pruning passes of a service.
    pub interval_secs: u64,
    /// Rows deleted per database transaction.
    pub chunk_rows: u32,
    /// Inbox rows (ids of messages a consumer applied): a copy arriving later is applied again.
    pub inbox_days: u32,
    /// WOS transactions whose every adjustment was pushed (or discarded by `wos-sync dlq
    /// purge`), counted from their last change, with their adjustments, their replay records
    /// and the push batches nothing refers to any more: a copy of the transaction arriving
    /// later is taken in as new.
    pub transactions_days: u32,
    /// Deleted products and variants of item-ingest's catalog mirror (tombstones): an older
    /// webhook of the product arriving later would bring it back.
    pub deleted_catalog_days: u32,
    /// Mapping announcements the outbox could not publish (their exchange is missing): dropped,
    /// since the pusher's sweep finds the mappings without them.
    pub undelivered_announcements_days: u32,
    /// Finished `wos-sync backfill-mappings` runs and their per-SKU results.
    pub backfill_runs_days: u32,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            interval_secs: 600,
            chunk_rows: 1000,
            inbox_days: 14,
            transactions_days: 14,
            deleted_catalog_days: 14,
            undelivered_announcements_days: 7,
            backfill_runs_days: 30,
        }
    }
}

impl RetentionSettings {
    /// Checks the values; the error names the key and says why.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.interval_secs == 0 {
            return Err((
                "retention.interval_secs".into(),
                "must be at least 1".into(),
            ));
        }
        if self.chunk_rows == 0 {
            return Err(("retention.chunk_rows".into(), "must be at least 1".into()));
        }
        // Shorter than a day would forget ids while Shopify (4 h) and the pusher (23 h key
        // window) may still send copies.
        for (key, days) in [
            ("inbox_days", self.inbox_days),
            ("transactions_days", self.transactions_days),
            ("deleted_catalog_days", self.deleted_catalog_days),
            (
                "undelivered_announcements_days",
                self.undelivered_announcements_days,
            ),
            ("backfill_runs_days", self.backfill_runs_days),
        ] {
            if days == 0 {
                return Err((
                    format!("retention.{key}"),
                    "must be at least 1 (day): copies of messages still arrive for hours".into(),
                ));
            }
        }
        Ok(())
    }

    /// Time between two passes.
    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.interval_secs)
    }

    /// Rows per chunk, as SQL takes it.
    pub fn chunk(&self) -> i64 {
        i64::from(self.chunk_rows)
    }

    pub fn inbox(&self) -> Duration {
        DAY * self.inbox_days
    }

    pub fn transactions(&self) -> Duration {
        DAY * self.transactions_days
    }

    pub fn deleted_catalog(&self) -> Duration {
        DAY * self.deleted_catalog_days
    }

    pub fn undelivered_announcements(&self) -> Duration {
        DAY * self.undelivered_announcements_days
    }

    pub fn backfill_runs(&self) -> Duration {
        DAY * self.backfill_runs_days
    }
}

/// Rows one pass deleted, per table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pruned(BTreeMap<&'static str, u64>);

impl Pruned {
    /// Counts `rows` deleted from `table`.
    pub fn add(&mut self, table: &'static str, rows: u64) {
        *self.0.entry(table).or_default() += rows;
    }

    /// Rows deleted from `table`.
    pub fn get(&self, table: &str) -> u64 {
        self.0.get(table).copied().unwrap_or(0)
    }

    /// Rows deleted in all.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// `(table, rows)` for every table with rows deleted.
    pub fn tables(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.0.iter().map(|(table, rows)| (*table, *rows))
    }
}

/// One service's pruning.
pub trait RetentionJob: Send + Sync + 'static {
    /// One pass over everything the service prunes, chunk by chunk (each chunk one committed
    /// transaction); stops early, with what it did so far, once `shutdown` is cancelled.
    fn prune(
        &self,
        shutdown: &CancellationToken,
    ) -> impl Future<Output = Result<Pruned, DbError>> + Send;
}

/// Repeats `chunk` (one transaction deleting at most `rows` rows and returning how many it
/// deleted) until a chunk deletes fewer than `rows` or `shutdown` is cancelled; returns the
/// rows deleted in all.
pub async fn in_chunks<F, Fut>(
    rows: i64,
    shutdown: &CancellationToken,
    mut chunk: F,
) -> Result<u64, DbError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<u64, DbError>>,
{
    let mut total = 0;
    while !shutdown.is_cancelled() {
        let deleted = chunk().await?;
        total += deleted;
        if (deleted as i64) < rows {
            break;
        }
    }
    Ok(total)
}

/// Runs `job` at once and then every `interval` until `shutdown`, supervised: a failed pass
/// waits the monitor's backoff and is tried again, a panic restarts the loop. Returns after
/// shutdown.
pub async fn run_retention<J: RetentionJob>(
    job: Arc<J>,
    service: &'static str,
    interval: Duration,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let monitor = LoopMonitor::new(&metrics, service, LOOP, "");
    let stop = shutdown.clone();
    supervise(monitor.clone(), shutdown, move || {
        let (job, monitor, metrics, stop) =
            (job.clone(), monitor.clone(), metrics.clone(), stop.clone());
        async move { prune_periodically(job, service, interval, monitor, metrics, stop).await }
    })
    .await;
}

async fn prune_periodically<J: RetentionJob>(
    job: Arc<J>,
    service: &'static str,
    interval: Duration,
    monitor: LoopMonitor,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    loop {
        let wait = match job.prune(&shutdown).await {
            Ok(pruned) => {
                monitor.succeeded();
                for (table, rows) in pruned.tables() {
                    metrics
                        .retention_pruned_rows_total
                        .with_label_values(&[service, table])
                        .inc_by(rows);
                }
                if pruned.total() > 0 {
                    tracing::info!(service, pruned = ?pruned.0, "retention: old rows pruned");
                }
                interval
            }
            Err(err) => monitor.failed(&format!("retention pass: {err}")),
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    };

    use super::*;

    #[test]
    fn windows_of_less_than_a_day_are_refused() {
        assert_eq!(RetentionSettings::default().validate(), Ok(()));
        let refused = |settings: RetentionSettings| settings.validate().map_err(|(key, _)| key);
        assert_eq!(
            refused(RetentionSettings {
                inbox_days: 0,
                ..RetentionSettings::default()
            }),
            Err("retention.inbox_days".into())
        );
        assert_eq!(
            refused(RetentionSettings {
                chunk_rows: 0,
                ..RetentionSettings::default()
            }),
            Err("retention.chunk_rows".into())
        );
        assert_eq!(RetentionSettings::default().inbox(), DAY * 14);
    }

    #[tokio::test]
    async fn chunks_repeat_until_one_is_not_full() {
        let sizes = Mutex::new(vec![10, 10, 3, 10]);
        let shutdown = CancellationToken::new();
        let total = in_chunks(10, &shutdown, || {
            let next = sizes.lock().expect("sizes").remove(0);
            async move { Ok(next) }
        })
        .await
        .expect("chunks");
        assert_eq!(total, 23);
        assert_eq!(
            *sizes.lock().expect("sizes"),
            [10],
            "stopped after the short chunk"
        );
    }

    /// A job that fails its first pass, then counts rows.
    struct Flaky {
        passes: AtomicUsize,
    }

    impl RetentionJob for Flaky {
        async fn prune(&self, _shutdown: &CancellationToken) -> Result<Pruned, DbError> {
            if self.passes.fetch_add(1, Ordering::SeqCst) == 0 {
                return Err(DbError::Config("the first pass fails".into()));
            }
            let mut pruned = Pruned::default();
            pruned.add("inbox", 2);
            Ok(pruned)
        }
    }

    #[tokio::test]
    async fn a_failed_pass_is_counted_and_tried_again() {
        let metrics = Metrics::new();
        let shutdown = CancellationToken::new();
        let job = Arc::new(Flaky {
            passes: AtomicUsize::new(0),
        });
        let running = tokio::spawn(run_retention(
            job.clone(),
            "svc",
            Duration::from_secs(3600),
            metrics.clone(),
            shutdown.clone(),
        ));
        let pruned = || {
            metrics
                .retention_pruned_rows_total
                .with_label_values(&["svc", "inbox"])
                .get()
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while pruned() < 2 {
            assert!(tokio::time::Instant::now() < deadline, "never tried again");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let failures = metrics
            .loop_failures_total
            .with_label_values(&["svc", LOOP, ""])
            .get();
        assert_eq!(failures, 1);
        shutdown.cancel();
        running.await.expect("ends at shutdown");
        assert_eq!(job.passes.load(Ordering::SeqCst), 2);
    }
}
