//! What every mapfleet process does the same way at its edges: logging set-up and the
//! shutdown signal. One copy, so the coordinator, the worker and the CLI cannot drift.

/// Installs the `tracing` subscriber: logs to stderr, filtered by `MAPFLEET_LOG`
/// (`MAPFLEET_LOG=debug`, `MAPFLEET_LOG=worker=debug,info`, ...), else by `default_filter`.
/// A second call (tests starting several services in one process) is a no-op.
pub fn init_tracing(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MAPFLEET_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT). If a handler cannot be installed, only the
/// other one is waited for, rather than failing the process.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await
        }
    };
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
    }
}
