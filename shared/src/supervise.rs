//! Keeping a long-running service (a coordinator, a worker's consumers) up through broker and
//! Redis failures, in the process itself.
//!
//! Coordinators and workers keep nothing that the broker and Redis do not, so starting one
//! again after a failure is always safe: that is what a restart by a process supervisor
//! would do, minus the lost seconds. RabbitMQ closes a whole connection on some errors (a
//! hard `INTERNAL_ERROR`, for instance when a consumer attaches to a quorum queue whose
//! process is not up yet right after its declaration, or on a forced close), and lapin's
//! recovery does not cover those; this does.
//!
//! What ends the process instead:
//! - a misconfiguration that no retry can cure, at once: a refused login (`ACCESS_REFUSED`,
//!   or Redis's `WRONGPASS`), a TLS handshake that fails (an unknown CA, a plain port), a bad
//!   URL or certificate file ([`ConnectError::is_permanent`],
//!   [`crate::redis_schema::is_refused`]);
//! - a broker that cannot be reached at start-up, once `--connect-timeout-secs` of retrying
//!   has passed. A service that has been connected rides out a broker outage of any length
//!   instead: its work waits in the broker, and it reconnects within a second of it being back;
//! - a service that keeps failing quickly once connected (queues declared with other
//!   arguments), after [`MAX_QUICK_FAILURES`] tries in a row, with its error.

use std::future::Future;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::amqp::ConnectError;

/// Failures in a row, each soon after its start, before giving up.
pub const MAX_QUICK_FAILURES: u32 = 10;

/// A run that lasted at least this long was healthy: its failure starts the count afresh.
const HEALTHY_AFTER: Duration = Duration::from_secs(30);

const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Short: after a broker restart, work should resume within seconds of it being back.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// A shutdown request that any number of runs (and restarts) can wait for.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// Requested when `signal` resolves (e.g. SIGTERM or Ctrl-C).
    pub fn on(signal: impl Future<Output = ()> + Send + 'static) -> Shutdown {
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            signal.await;
            let _ = tx.send(true);
        });
        Shutdown(rx)
    }

    pub fn requested(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once shutdown is requested.
    pub fn wait(&self) -> impl Future<Output = ()> + Send + use<> {
        let mut rx = self.0.clone();
        async move {
            // An error means the sender is gone without a request: never resolve.
            if rx.wait_for(|requested| *requested).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Why [`restart_on_failure`] gave up on a service (see the module docs); the failure of its
/// last run is the source.
#[derive(Debug, thiserror::Error)]
pub enum Error<E> {
    /// A misconfiguration no retry can cure ([`ConnectError::is_permanent`]).
    #[error("{service} cannot start")]
    Permanent {
        service: String,
        #[source]
        source: E,
    },
    /// The broker could not be reached within the connect time-out, before the service was
    /// ever up.
    #[error("{service} could not reach the broker; giving up")]
    Unreachable {
        service: String,
        #[source]
        source: E,
    },
    /// The service kept failing soon after each start.
    #[error("{service} failed {failures} times in a row; giving up")]
    Failing {
        service: String,
        failures: u32,
        #[source]
        source: E,
    },
}

/// Runs `start()` until shutdown is requested, starting it again after it fails or ends on
/// its own, with a growing pause (200 ms doubling to 2 s). Returns `Ok` on shutdown (whatever
/// the last run returned: it was asked to stop), or the error that ends it (see the module
/// docs): a permanent connection error, a broker unreachable at start-up, or the last of
/// [`MAX_QUICK_FAILURES`] quick failures in a row.
///
/// A run's failure is classified by the [`ConnectError`] in its source chain, if any: a
/// service's error type keeps it there as a source of its own (not `#[error(transparent)]`,
/// which would skip it).
pub async fn restart_on_failure<F, Fut, E>(
    what: &str,
    shutdown: &Shutdown,
    mut start: F,
) -> Result<(), Error<E>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::error::Error + 'static,
{
    let mut backoff = FIRST_BACKOFF;
    let mut quick_failures = 0;
    let mut connected_once = false;
    loop {
        let started = Instant::now();
        let result = start().await;
        if shutdown.requested() {
            if let Err(e) = result {
                tracing::info!(service = what, error = %Chain(&e), "stopped while failing");
            }
            return Ok(());
        }
        let service = || what.to_string();
        let error = match result {
            Ok(()) => {
                tracing::warn!(service = what, retry_in = ?backoff, "stopped on its own; starting it again");
                None
            }
            Err(e) => Some(e),
        };
        let connect_error = error.as_ref().and_then(|e| connect_error(e));
        if error.as_ref().is_some_and(|e| redis_refused(e)) {
            return Err(Error::Permanent {
                service: service(),
                source: error.expect("checked above"),
            });
        }
        match connect_error {
            Some(e) if e.is_permanent() => {
                return Err(Error::Permanent {
                    service: service(),
                    source: error.expect("a connect error is an error"),
                });
            }
            Some(ConnectError::GaveUp { .. }) if !connected_once => {
                return Err(Error::Unreachable {
                    service: service(),
                    source: error.expect("a connect error is an error"),
                });
            }
            Some(_) => {
                // A broker outage after this service was up: not a quick failure of its own.
                quick_failures = 0;
            }
            None => {
                connected_once = true;
                if started.elapsed() >= HEALTHY_AFTER {
                    quick_failures = 0;
                    backoff = FIRST_BACKOFF;
                }
                quick_failures += 1;
            }
        }
        match error {
            None => {}
            Some(e) if quick_failures >= MAX_QUICK_FAILURES => {
                return Err(Error::Failing {
                    service: service(),
                    failures: quick_failures,
                    source: e,
                });
            }
            Some(e) => {
                tracing::warn!(service = what, error = %Chain(&e), retry_in = ?backoff, "failed; starting it again")
            }
        }
        crate::metrics::get()
            .service_restarts
            .with_label_values(&[what])
            .inc();
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.wait() => return Ok(()),
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// The [`ConnectError`] in `e`'s source chain (`e` included), if any.
fn connect_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a ConnectError> {
    std::iter::successors(Some(e), |cause| cause.source())
        .find_map(|cause| cause.downcast_ref::<ConnectError>())
}

/// Whether `e`'s source chain holds a Redis error that no retry can cure (a refused login).
fn redis_refused(e: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(e), |cause| cause.source())
        .filter_map(|cause| cause.downcast_ref::<redis::RedisError>())
        .any(crate::redis_schema::is_refused)
}

/// Displays an error with its sources, `outer: inner: innermost`, for logs and for the
/// message a binary exits with. A source whose message the error's own already ends with
/// (an error that prints its source itself) is not repeated.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut shown = self.0.to_string();
        f.write_str(&shown)?;
        let mut cause = self.0.source();
        while let Some(e) = cause {
            let message = e.to_string();
            if !shown.ends_with(&message) {
                write!(f, ": {message}")?;
                shown = message;
            }
            cause = e.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A service's failure: a connection error kept as a source, as the real services do.
    #[derive(Debug, thiserror::Error)]
    enum TestError {
        #[error("{0}")]
        Other(&'static str),
        #[error("cannot connect")]
        Connect(#[from] ConnectError),
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_service_is_started_again_until_it_gives_up() {
        let shutdown = Shutdown::on(std::future::pending());
        let runs = Arc::new(AtomicU32::new(0));
        let r = runs.clone();
        let result = restart_on_failure("test", &shutdown, move || {
            let r = r.clone();
            async move {
                r.fetch_add(1, Ordering::SeqCst);
                Err(TestError::Other("broker gone"))
            }
        })
        .await;
        assert_eq!(runs.load(Ordering::SeqCst), MAX_QUICK_FAILURES);
        let e = Chain(&result.unwrap_err()).to_string();
        assert!(e.contains("giving up") && e.contains("broker gone"), "{e}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_service_that_recovers_runs_until_shutdown() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let shutdown = Shutdown::on(async {
            let _ = rx.await;
        });
        let runs = Arc::new(AtomicU32::new(0));
        let r = runs.clone();
        let sd = shutdown.clone();
        let mut tx = Some(tx);
        let result = restart_on_failure("test", &shutdown, move || {
            let n = r.fetch_add(1, Ordering::SeqCst);
            let wait = sd.wait();
            // Fails twice, then runs until shutdown, which the third run requests itself.
            let stop = if n == 2 { tx.take() } else { None };
            async move {
                if n < 2 {
                    return Err(TestError::Other("INTERNAL_ERROR"));
                }
                if let Some(stop) = stop {
                    let _ = stop.send(());
                }
                wait.await;
                Ok(())
            }
        })
        .await;
        assert!(result.is_ok());
        assert_eq!(runs.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_login_ends_it_at_once() {
        let shutdown = Shutdown::on(std::future::pending());
        let runs = Arc::new(AtomicU32::new(0));
        let r = runs.clone();
        let result = restart_on_failure("test", &shutdown, move || {
            let r = r.clone();
            async move {
                r.fetch_add(1, Ordering::SeqCst);
                Err(TestError::from(ConnectError::AccessRefused {
                    url: "amqp://u:***@h/".into(),
                    reason: "ACCESS_REFUSED - Login was refused".into(),
                }))
            }
        })
        .await;
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        let e = Chain(&result.unwrap_err()).to_string();
        assert!(e.contains("refused the login"), "{e}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_broker_ends_it_at_start_up_but_not_later() {
        let gave_up = || {
            TestError::from(ConnectError::GaveUp {
                url: "amqp://h/".into(),
                attempts: 3,
                elapsed: Duration::from_secs(30),
                last: "Connection refused".into(),
            })
        };
        let shutdown = Shutdown::on(std::future::pending());
        let result =
            restart_on_failure("test", &shutdown, move || async move { Err(gave_up()) }).await;
        let e = Chain(&result.unwrap_err()).to_string();
        assert!(
            e.contains("giving up") && e.contains("Connection refused"),
            "{e}"
        );

        // Up once, then the broker is gone for longer than ten connect time-outs: it goes on
        // trying until the broker is back (here: shutdown, requested by the 15th run).
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let shutdown = Shutdown::on(async {
            let _ = rx.await;
        });
        let runs = Arc::new(AtomicU32::new(0));
        let r = runs.clone();
        let mut tx = Some(tx);
        let result = restart_on_failure("test", &shutdown, move || {
            let n = r.fetch_add(1, Ordering::SeqCst);
            let stop = if n == 14 { tx.take() } else { None };
            async move {
                if let Some(stop) = stop {
                    let _ = stop.send(());
                    tokio::task::yield_now().await;
                    return Ok(());
                }
                if n == 0 {
                    return Err(TestError::Other("connection reset"));
                }
                Err(gave_up())
            }
        })
        .await;
        assert!(result.is_ok());
        assert_eq!(runs.load(Ordering::SeqCst), 15);
    }

    #[test]
    fn a_chain_shows_each_source_once() {
        let e = Error::Failing {
            service: "worker".into(),
            failures: 3,
            source: TestError::from(ConnectError::Cancelled {
                url: "amqp://h/".into(),
            }),
        };
        assert_eq!(
            Chain(&e).to_string(),
            "worker failed 3 times in a row; giving up: cannot connect: \
             stopped connecting to amqp://h/: shutdown requested"
        );
        // An error that prints its source itself does not print it twice.
        #[derive(Debug, thiserror::Error)]
        #[error("outer: {0}")]
        struct Outer(#[source] TestError);
        let e = Outer(TestError::Other("inner"));
        assert_eq!(Chain(&e).to_string(), "outer: inner");
    }
}
