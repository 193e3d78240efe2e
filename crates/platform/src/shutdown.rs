//! Process shutdown: SIGTERM and SIGINT become one [`CancellationToken`], and a service stops
//! in the order Kubernetes needs.
//!
//! Services take the token as an argument (`run(settings, shutdown)`) instead of listening for
//! signals themselves, so tests can stop a service by cancelling the token, and a process that
//! runs several services (`wos-sync up`) stops them all with one signal.
//!
//! Kubernetes sends SIGTERM and removes the pod from its Service's endpoints at the same time,
//! and the removal takes a few seconds to reach every kube-proxy and ingress controller: a pod
//! that stopped accepting at once would refuse requests still routed to it. So [`pre_stop`]
//! splits the stop in two: at the signal `/readyz` answers 503 while the service keeps
//! serving (webhooks, consuming, `/metrics`) for `[http] pre_stop_delay_ms` (5 s); then the
//! token it returns is cancelled and the service drains (stops accepting, finishes what it
//! holds). A second signal ends the delay at once (an impatient Ctrl-C).

use std::{sync::OnceLock, time::Duration};

pub use tokio_util::sync::CancellationToken;

use crate::http::Health;

/// Cancelled by a second SIGTERM/SIGINT: the pre-stop delays end at once.
fn second_signal() -> &'static CancellationToken {
    static SECOND: OnceLock<CancellationToken> = OnceLock::new();
    SECOND.get_or_init(CancellationToken::new)
}

/// Returns a token that is cancelled when the process receives SIGTERM or SIGINT.
///
/// A second signal cuts the pre-stop delay short ([`pre_stop`]); it does not abort the drain
/// itself: the orchestrator's grace period (Kubernetes `terminationGracePeriodSeconds`) is the
/// hard limit, and messages that were not acknowledged by then are redelivered by the broker.
pub fn on_termination_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let mut signals = Signals::install();
        signals.next().await;
        tracing::info!("termination signal received, shutting down");
        cancel.cancel();
        signals.next().await;
        tracing::info!("second termination signal: ending the pre-stop delay");
        second_signal().cancel();
    });
    token
}

/// The token a service drains on: cancelled `delay` after `shutdown` (or at a second signal),
/// with `health`'s readiness failing from the moment `shutdown` is cancelled. Everything the
/// service runs (HTTP servers, consumers, background loops) takes the returned token, so the
/// service keeps serving while it is taken out of the endpoints.
pub fn pre_stop(
    shutdown: &CancellationToken,
    health: &Health,
    delay: Duration,
) -> CancellationToken {
    let stop = CancellationToken::new();
    let (shutdown, stopping, drain) = (shutdown.clone(), health.stopping_token(), stop.clone());
    tokio::spawn(async move {
        tokio::select! {
            () = shutdown.cancelled() => {}
            // The service ended by itself (a failed start): nothing to wait for.
            () = drain.cancelled() => return,
        }
        stopping.cancel();
        if !delay.is_zero() {
            tracing::info!(
                delay_ms = delay.as_millis() as u64,
                "not ready any more; serving on until the endpoints are gone, then draining"
            );
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = second_signal().cancelled() => {}
            }
        }
        drain.cancel();
    });
    stop
}

/// SIGTERM and SIGINT, received in turn (Ctrl-C where there are no Unix signals, or when
/// their handlers cannot be installed).
struct Signals {
    #[cfg(unix)]
    unix: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    #[cfg(unix)]
    fn install() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => Self {
                unix: Some((term, int)),
            },
            (Err(err), _) | (_, Err(err)) => {
                tracing::error!(error = %err, "cannot install signal handlers; falling back to Ctrl-C");
                Self { unix: None }
            }
        }
    }

    #[cfg(not(unix))]
    fn install() -> Self {
        Self {}
    }

    /// Waits for the next signal.
    async fn next(&mut self) {
        #[cfg(unix)]
        if let Some((term, int)) = &mut self.unix {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn readiness_fails_at_the_signal_and_the_drain_starts_after_the_delay() {
        let shutdown = CancellationToken::new();
        let health = Health::new(None);
        let stop = pre_stop(&shutdown, &health, Duration::from_secs(5));
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(
            !health.is_stopping() && !stop.is_cancelled(),
            "nothing before the signal"
        );

        shutdown.cancel();
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(health.is_stopping(), "readiness fails at the signal");
        assert!(!stop.is_cancelled(), "still serving during the delay");
        tokio::time::sleep(Duration::from_millis(4_900)).await;
        assert!(!stop.is_cancelled(), "still serving 4.9 s after the signal");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(stop.is_cancelled(), "draining 5 s after the signal");
    }

    #[tokio::test]
    async fn without_a_delay_the_drain_starts_at_once() {
        let shutdown = CancellationToken::new();
        let health = Health::new(None);
        let stop = pre_stop(&shutdown, &health, Duration::ZERO);
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), stop.cancelled())
            .await
            .expect("drained without waiting");
        assert!(health.is_stopping());
    }
}
