//! Releasing parked adjustments: when an item gets its Shopify mapping, the adjustments parked
//! for it become pending, with the inventory item mapped at release time.
//!
//! Two paths, so that nothing waits forever: item-ingest's mapping announcements (immediate),
//! and a periodic sweep (announcements missed while the pusher was down or before its queue was
//! bound). The sweep also dead-letters adjustments parked longer than the configured age as
//! `unmapped`, and refreshes the `wos_sync_parked_adjustments` gauge. Both work in chunks that
//! each commit, so a backlog of any size goes through under the statement timeout.

use std::{sync::Arc, time::Duration};

use deadpool_postgres::Pool;
use model::announcement::MappingAnnouncement;
use platform::{
    amqp::consumer::{Disposition, Handler, Incoming},
    metrics::Metrics,
    shutdown::CancellationToken,
    supervise::LoopMonitor,
};
use tokio::sync::Notify;

use crate::{push::ReadyShops, store};

/// The handler of `adjustment-pusher.item-mappings`.
#[derive(Debug)]
pub struct MappingReleases {
    pub pool: Pool,
    /// Where each shop with new work is woken (`push::ready`).
    pub ready: Arc<ReadyShops>,
    /// Rows released per database transaction.
    pub chunk: i64,
}

impl Handler for MappingReleases {
    async fn handle(&self, message: &Incoming) -> Disposition {
        let announcement: MappingAnnouncement = match serde_json::from_slice(&message.body) {
            Ok(announcement) => announcement,
            Err(err) => {
                return Disposition::malformed(format!("not a mapping announcement: {err}"));
            }
        };
        // The announcement is a hint: the mapping is read from `items` when releasing.
        match store::release_parked(
            &self.pool,
            &announcement.shop_domain,
            &announcement.sku,
            self.chunk,
        )
        .await
        {
            Err(err) => Disposition::retry(err),
            Ok(released) => {
                if released > 0 {
                    tracing::info!(shop = %announcement.shop_domain, sku = %announcement.sku, released, "parked adjustments released");
                    self.ready.wake(&announcement.shop_domain);
                }
                Disposition::Ack
            }
        }
    }
}

/// The periodic sweep.
#[derive(Debug)]
pub struct Sweeper {
    pub pool: Pool,
    pub metrics: Metrics,
    /// Where each shop with new work is woken (`push::ready`).
    pub ready: Arc<ReadyShops>,
    pub outbox_wake: Arc<Notify>,
    pub interval: Duration,
    pub max_park_age: Duration,
    pub dead_letter_queue: String,
    /// Rows released (transactions expired) per database transaction.
    pub chunk: i64,
    /// Counts failed sweeps (`wos_sync_loop_*{loop="sweep"}`).
    pub monitor: LoopMonitor,
}

impl Sweeper {
    /// Sweeps at once, then every `interval` (sooner after a failure, with backoff), until
    /// `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            let wait = match self.sweep().await {
                Ok(()) => {
                    self.monitor.succeeded();
                    self.interval
                }
                Err(err) => self
                    .monitor
                    .failed(&format!("parked-adjustment sweep: {err}")),
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn sweep(&self) -> Result<(), platform::db::DbError> {
        for shop in store::release_all_mapped(&self.pool, self.chunk).await? {
            self.ready.wake(&shop);
        }
        let expired = store::expire_parked(
            &self.pool,
            self.max_park_age,
            &self.dead_letter_queue,
            self.chunk,
        )
        .await?;
        if !expired.is_empty() {
            self.outbox_wake.notify_one();
        }
        for (shop, kind) in &expired {
            self.metrics
                .adjustments_total
                .with_label_values(&[shop, kind, "dead_lettered"])
                .inc();
        }
        let counts = store::parked_counts(&self.pool).await?;
        for shop in &self.ready.shops() {
            let parked = counts.get(shop).copied().unwrap_or(0);
            self.metrics
                .parked_adjustments
                .with_label_values(&[shop])
                .set(parked);
        }
        Ok(())
    }
}
