//! Long-running background loops (a shop's push loop, a sweep) that never silently end.
//!
//! A loop reports each round to its [`LoopMonitor`]: a failure is logged, counted in
//! `wos_sync_loop_failures_total{service,loop,shop}` and shows in
//! `wos_sync_loop_consecutive_failures{service,loop,shop}` until a round succeeds again, and the
//! loop waits an exponential backoff (0.5 s doubling to 30 s) before its next round.
//! [`supervise`] runs the loop as a task of its own: a panic, or the loop ending before
//! shutdown, counts as a failure too, and the loop is started again after the backoff.

use std::{
    fmt::Display,
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use prometheus::{IntCounter, IntGauge};

use crate::{metrics::Metrics, shutdown::CancellationToken};

/// First wait after a failure.
const BACKOFF_BASE: Duration = Duration::from_millis(500);
/// Longest wait between failed rounds.
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// One loop's failure accounting. Cheap to clone (clones share the count).
#[derive(Debug, Clone)]
pub struct LoopMonitor {
    service: String,
    name: String,
    shop: String,
    failures: IntCounter,
    consecutive_gauge: IntGauge,
    consecutive: Arc<AtomicU32>,
}

impl LoopMonitor {
    /// The monitor of loop `name` of `service`, for `shop` (empty when the loop serves every
    /// shop).
    pub fn new(metrics: &Metrics, service: &str, name: &str, shop: &str) -> Self {
        let labels = [service, name, shop];
        let consecutive_gauge = metrics.loop_consecutive_failures.with_label_values(&labels);
        consecutive_gauge.set(0);
        Self {
            service: service.to_owned(),
            name: name.to_owned(),
            shop: shop.to_owned(),
            failures: metrics.loop_failures_total.with_label_values(&labels),
            consecutive_gauge,
            consecutive: Arc::new(AtomicU32::new(0)),
        }
    }

    /// A round went through: the loop is healthy again.
    pub fn succeeded(&self) {
        if self.consecutive.swap(0, Ordering::Relaxed) > 0 {
            tracing::info!(service = %self.service, r#loop = %self.name, shop = %self.shop, "loop recovered");
        }
        self.consecutive_gauge.set(0);
    }

    /// A round failed: logs and counts it, and returns how long to wait before the next one.
    pub fn failed(&self, error: &dyn Display) -> Duration {
        let consecutive = self.consecutive.fetch_add(1, Ordering::Relaxed) + 1;
        self.failures.inc();
        self.consecutive_gauge.set(i64::from(consecutive));
        let wait = backoff(consecutive);
        tracing::error!(
            service = %self.service,
            r#loop = %self.name,
            shop = %self.shop,
            consecutive,
            retry_in_ms = wait.as_millis() as u64,
            error = %error,
            "loop failed"
        );
        wait
    }
}

/// The wait after the `consecutive`-th failure in a row.
fn backoff(consecutive: u32) -> Duration {
    let exponent = consecutive.saturating_sub(1).min(16);
    BACKOFF_BASE
        .saturating_mul(1u32 << exponent)
        .min(BACKOFF_MAX)
}

/// Runs `start()` until `shutdown`, starting it again (after the monitor's backoff) when it
/// panics or returns before shutdown. Returns once shutdown was requested and the loop ended.
pub async fn supervise<F, Fut>(monitor: LoopMonitor, shutdown: CancellationToken, start: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let ended = tokio::spawn(start()).await;
        if shutdown.is_cancelled() {
            return;
        }
        let wait = match ended {
            Err(err) if err.is_panic() => {
                let panic = err.into_panic();
                monitor.failed(&format!("panicked: {}", panic_message(panic.as_ref())))
            }
            Err(err) => monitor.failed(&format!("task ended: {err}")),
            Ok(()) => monitor.failed(&"ended before shutdown"),
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// What a panic said (its payload as text), for the failure it is counted as.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)")
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    fn value(metrics: &Metrics, family: &str) -> f64 {
        metrics
            .render()
            .lines()
            .find(|l| l.starts_with(family) && l.contains("loop=\"l\""))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(f64::NAN)
    }

    #[test]
    fn backoff_doubles_to_a_ceiling() {
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(7), Duration::from_secs(30));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn failures_are_counted_until_a_round_succeeds() {
        let metrics = Metrics::new();
        let monitor = LoopMonitor::new(&metrics, "svc", "l", "s");
        monitor.failed(&"one");
        monitor.clone().failed(&"two");
        assert_eq!(value(&metrics, "wos_sync_loop_failures_total"), 2.0);
        assert_eq!(value(&metrics, "wos_sync_loop_consecutive_failures"), 2.0);
        monitor.succeeded();
        assert_eq!(value(&metrics, "wos_sync_loop_consecutive_failures"), 0.0);
        assert_eq!(value(&metrics, "wos_sync_loop_failures_total"), 2.0);
    }

    #[tokio::test]
    async fn a_loop_that_panics_is_counted_and_started_again() {
        let metrics = Metrics::new();
        let monitor = LoopMonitor::new(&metrics, "svc", "l", "s");
        let shutdown = CancellationToken::new();
        let starts = Arc::new(AtomicUsize::new(0));
        let supervisor = {
            let (starts, shutdown) = (starts.clone(), shutdown.clone());
            let monitor = monitor.clone();
            tokio::spawn(supervise(monitor, shutdown.clone(), move || {
                let (starts, shutdown) = (starts.clone(), shutdown.clone());
                async move {
                    if starts.fetch_add(1, Ordering::SeqCst) < 2 {
                        panic!("a bug in one round");
                    }
                    shutdown.cancelled().await;
                }
            }))
        };
        // Two panics: restarted after 0.5 s and 1 s.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while starts.load(Ordering::SeqCst) < 3 {
            assert!(tokio::time::Instant::now() < deadline, "not restarted");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(value(&metrics, "wos_sync_loop_failures_total"), 2.0);
        assert_eq!(value(&metrics, "wos_sync_loop_consecutive_failures"), 2.0);
        shutdown.cancel();
        supervisor.await.expect("the supervisor ends at shutdown");
        assert_eq!(
            starts.load(Ordering::SeqCst),
            3,
            "not started again after shutdown"
        );
    }
}
