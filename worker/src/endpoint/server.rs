//! The HTTP side: HTTP/1.1 on hyper, `POST /` with `X-Amz-Target: RekognitionService.<Op>`,
//! JSON in and out (`application/x-amz-json-1.1`), Rekognition's error bodies.
//!
//! Requests must carry a SigV4 signature by one of the configured key pairs (service
//! `rekognition`, checked by `mapfleet_auth` as AWS checks it: scope, 15 minutes of clock skew,
//! key, signature over the raw body), unless the endpoint was started with anonymous access.
//! Refusals are AWS's (`MissingAuthenticationTokenException`, `UnrecognizedClientException`,
//! `InvalidSignatureException`, HTTP 400). Neither signatures nor any other header are logged.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

use mapfleet_auth::Access;

use super::ops::{self, OpError};
use crate::face::FaceEngine;
use crate::face::rekognition::RESERVE_FOR_HEADER;

/// awsJson 1.1's content type.
pub const CONTENT_TYPE_JSON: &str = "application/x-amz-json-1.1";
/// The `X-Amz-Target` prefix of Rekognition's operations.
const TARGET_PREFIX: &str = "RekognitionService.";

/// The signing name Rekognition's clients put in their credential scope.
pub const SIGNING_NAME: &str = "rekognition";

/// Settings of the endpoint.
#[derive(Debug, Clone)]
pub struct EndpointOptions {
    /// Who may call: signed requests by known keys, or anyone.
    pub access: Access,
    /// Largest request body. Default 8 MiB: a 5 MB `Image.Bytes` (Rekognition's limit) in
    /// base64, with room for the rest of the request.
    pub max_body_bytes: usize,
    /// How long a client may take to send a request's headers. Default 30 s.
    pub header_timeout: Duration,
    /// How long open connections get to finish after shutdown. Default 10 s.
    pub shutdown_grace: Duration,
}

impl EndpointOptions {
    /// The default limits with `access`.
    pub fn new(access: Access) -> Self {
        Self {
            access,
            max_body_bytes: 8 * 1024 * 1024,
            header_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Errors of the endpoint's own (non-request) work.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot read the listening address: {0}")]
    LocalAddr(std::io::Error),
}

struct State {
    engine: Arc<dyn FaceEngine>,
    options: EndpointOptions,
    requests: AtomicU64,
}

/// A bound endpoint; [`Endpoint::run`] serves it.
pub struct Endpoint {
    listener: TcpListener,
    state: Arc<State>,
}

impl Endpoint {
    /// Listens on `addr` (port 0 picks a free port; see [`Endpoint::local_addr`]).
    pub async fn bind(
        addr: SocketAddr,
        engine: Arc<dyn FaceEngine>,
        options: EndpointOptions,
    ) -> Result<Self, Error> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })?;
        Ok(Self {
            listener,
            state: Arc::new(State {
                engine,
                options,
                requests: AtomicU64::new(0),
            }),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> Result<SocketAddr, Error> {
        self.listener.local_addr().map_err(Error::LocalAddr)
    }

    /// Serves until `shutdown` completes; then stops accepting, lets open connections finish
    /// their request (up to the grace period) and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut connections = tokio::task::JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            let (stream, _peer) = tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            // Reap finished connections so the set does not grow with the server's age.
            while connections.try_join_next().is_some() {}
            connections.spawn(serve_connection(
                stream,
                self.state.clone(),
                stop_rx.clone(),
            ));
        }
        let _ = stop_tx.send(true);
        let grace = self.state.options.shutdown_grace;
        let _ = tokio::time::timeout(grace, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        connections.abort_all();
    }
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    state: Arc<State>,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let header_timeout = state.options.header_timeout;
    let service = hyper::service::service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(handle(&state, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// One request: the operation's answer, or Rekognition's error body.
async fn handle(state: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let n = state.requests.fetch_add(1, Ordering::Relaxed);
    let operation = operation(req.headers()).unwrap_or_default().to_owned();
    let (status, body, exception) = match dispatch(state, &operation, req).await {
        Ok(v) => (200, v, None),
        Err(e) => (
            e.status(),
            json!({"__type": e.exception, "Message": e.message}),
            Some(e),
        ),
    };
    let elapsed_ms = started.elapsed().as_millis() as u64;
    match &exception {
        Some(e) if e.status() >= 500 => {
            tracing::warn!(operation, status, exception = e.exception, message = %e.message, elapsed_ms, "request failed")
        }
        Some(e) => tracing::debug!(
            operation,
            status,
            exception = e.exception,
            elapsed_ms,
            "request refused"
        ),
        None => tracing::debug!(operation, status, elapsed_ms, "request served"),
    }
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_JSON));
    if let Ok(id) = HeaderValue::from_str(&format!("mapfleet-{:x}-{n:x}", std::process::id())) {
        headers.insert("x-amzn-requestid", id);
    }
    if let Some(e) = exception {
        headers.insert("x-amzn-errortype", HeaderValue::from_static(e.exception));
    }
    resp
}

/// The operation named by `X-Amz-Target`.
fn operation(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("x-amz-target")?
        .to_str()
        .ok()?
        .strip_prefix(TARGET_PREFIX)
}

/// The decoded reservation header, if any.
fn reserve_for(headers: &HeaderMap) -> Result<Option<String>, OpError> {
    let Some(v) = headers.get(RESERVE_FOR_HEADER) else {
        return Ok(None);
    };
    let bad = || {
        OpError::new(
            "InvalidParameterException",
            format!("{RESERVE_FOR_HEADER} must be base64 of UTF-8"),
        )
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v.as_bytes())
        .map_err(|_| bad())?;
    String::from_utf8(bytes).map(Some).map_err(|_| bad())
}

async fn dispatch(
    state: &State,
    operation: &str,
    req: Request<Incoming>,
) -> Result<Value, OpError> {
    let (parts, body) = req.into_parts();
    let limit = state.options.max_body_bytes;
    let body = match Limited::new(body, limit).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(OpError::new(
                "ImageTooLargeException",
                format!("Request body is larger than {limit} bytes"),
            ));
        }
        Err(e) => {
            return Err(OpError::new(
                "SerializationException",
                format!("cannot read the request body: {e}"),
            ));
        }
    };
    // Who is calling comes first, as with AWS: an unsigned request learns nothing else.
    check_access(&state.options.access, &parts, &body)?;
    if parts.method != Method::POST || parts.uri.path() != "/" {
        return Err(OpError::new(
            "UnknownOperationException",
            "Rekognition requests are POST / with an X-Amz-Target header",
        ));
    }
    if operation.is_empty() {
        return Err(OpError::new(
            "UnknownOperationException",
            format!("missing or unknown X-Amz-Target (expected {TARGET_PREFIX}<Operation>)"),
        ));
    }
    let reserve = reserve_for(&parts.headers)?;
    ops::call(state.engine.as_ref(), operation, &body, reserve).await
}

/// The signature check, over the raw body as received.
fn check_access(
    access: &Access,
    parts: &hyper::http::request::Parts,
    body: &[u8],
) -> Result<(), OpError> {
    let headers = parts
        .headers
        .iter()
        .filter_map(|(n, v)| Some((n.as_str(), v.to_str().ok()?)))
        .collect();
    let request = mapfleet_auth::Request {
        method: parts.method.as_str(),
        path_and_query: parts.uri.path_and_query().map_or("/", |p| p.as_str()),
        headers,
        body,
    };
    access
        .check(&request)
        .map(|_| ())
        .map_err(|e| OpError::new(e.code(), e.to_string()))
}
