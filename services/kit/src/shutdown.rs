//! One shutdown signal for the whole process: SIGINT or SIGTERM cancels the
//! token, every task watches it and drains what it holds.

pub use tokio_util::sync::CancellationToken as Shutdown;

/// Waits for Ctrl-C or SIGTERM, then cancels `shutdown`.
pub async fn cancel_on_signal(shutdown: Shutdown) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
        _ = shutdown.cancelled() => return,
    }
    tracing::info!("shutdown signal received, draining");
    shutdown.cancel();
}
