//! What every mapfleet process does the same way at its edges: logging set-up and the
//! shutdown signal. One copy, so the coordinator, the worker and the CLI cannot drift.

/// Installs the `tracing` subscriber: logs to stderr, filtered by `MAPFLEET_LOG`
/// (`MAPFLEET_LOG=debug`, `MAPFLEET_LOG=worker=debug,info`, ...), else by `default_filter`,
/// as text, or with `MAPFLEET_LOG_FORMAT=json` as one JSON object per line (the event's
/// fields flattened, with its span's) for log shippers.
/// A second call (tests starting several services in one process) is a no-op.
pub fn init_tracing(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MAPFLEET_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let format = std::env::var("MAPFLEET_LOG_FORMAT").unwrap_or_default();
    let _ = match log_format(&format) {
        Ok(LogFormat::Json) => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        Ok(LogFormat::Text) => builder.try_init(),
        Err(bad) => {
            eprintln!("warning: {bad}; logging as text");
            builder.try_init()
        }
    };
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// A `MAPFLEET_LOG_FORMAT` value that names no log format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("MAPFLEET_LOG_FORMAT={0:?} is not a log format (text or json)")]
pub struct UnknownLogFormat(pub String);

/// Reads a `MAPFLEET_LOG_FORMAT` value (empty: text).
pub fn log_format(value: &str) -> Result<LogFormat, UnknownLogFormat> {
    match value.trim().to_ascii_lowercase().as_str() {
        "" | "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        other => Err(UnknownLogFormat(other.to_string())),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_formats_are_read_and_bad_ones_named() {
        assert_eq!(log_format(""), Ok(LogFormat::Text));
        assert_eq!(log_format("JSON"), Ok(LogFormat::Json));
        assert_eq!(log_format("text"), Ok(LogFormat::Text));
        let e = log_format("yaml").unwrap_err().to_string();
        assert!(
            e.contains("MAPFLEET_LOG_FORMAT") && e.contains("yaml"),
            "{e}"
        );
    }
}
