//! Process shutdown: SIGTERM and SIGINT become one [`CancellationToken`].
//!
//! Services take the token as an argument (`run(settings, shutdown)`) instead of listening for
//! signals themselves, so tests can stop a service by cancelling the token, and a process that
//! runs several services (`wos-sync up`) stops them all with one signal.

pub use tokio_util::sync::CancellationToken;

/// Returns a token that is cancelled when the process receives SIGTERM or SIGINT.
///
/// A second signal while the services are draining is not special-cased: the orchestrator's
/// grace period (Kubernetes `terminationGracePeriodSeconds`) is the hard limit, and messages that
/// were not acknowledged by then are redelivered by the broker.
pub fn on_termination_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("termination signal received, shutting down");
        cancel.cancel();
    });
    token
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        (Err(err), _) | (_, Err(err)) => {
            tracing::error!(error = %err, "cannot install signal handlers; falling back to Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
