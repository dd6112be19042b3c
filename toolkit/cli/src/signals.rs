//! The signals that stop a long-running command.

/// Resolves on Ctrl-C or, on Unix, SIGTERM (what a service manager sends).
///
/// A signal that cannot be listened for is logged and left out, never taken
/// as a request to stop.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut sigterm) => drop(sigterm.recv().await),
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    futures::future::select(std::pin::pin!(interrupt), std::pin::pin!(terminate)).await;
}
