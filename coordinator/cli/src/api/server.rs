//! The HTTP side on axum: `POST /` for the API (the web console's routes are merged in, see
//! [`crate::console`]), the operation named by `X-Amz-Target`, every request
//! checked by [`Access`] over the raw body and the headers as received (the `Host` too, so a
//! client's `sync-` host prefix signs and verifies like any other host). Neither keys nor
//! signatures nor any other header are logged.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use mapfleet_auth::Access;
use serde_json::Value;

use super::backend::Store;
use super::ops;
use super::wire::{ApiError, CONTENT_TYPE_JSON, Input, TARGET_PREFIX};

/// The largest request body: a 1 MiB definition, JSON-escaped, with room for the rest.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

struct Api {
    store: Store,
    access: Access,
    activities: Option<ops::activities::ActivityApi>,
    requests: AtomicU64,
}

/// The router of the API (`POST /`) and of the web console (`GET /` and `/console/`).
pub fn router(
    store: Store,
    access: Access,
    console: Arc<crate::console::Console>,
    activities: Option<ops::activities::ActivityApi>,
) -> Router {
    let api = Arc::new(Api {
        store,
        access,
        activities,
        requests: AtomicU64::new(0),
    });
    Router::new()
        .route("/", post(handle).get(crate::console::index))
        .with_state(api)
        .merge(crate::console::router(console))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

async fn handle(
    State(api): State<Arc<Api>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let n = api.requests.fetch_add(1, Ordering::Relaxed);
    let operation = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix(TARGET_PREFIX))
        .unwrap_or_default()
        .to_string();
    let result = answer(&api, &operation, &uri, &headers, &body).await;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    let (status, body, error_type) = match result {
        Ok(v) => {
            tracing::debug!(operation, elapsed_ms, "request served");
            (StatusCode::OK, v, None)
        }
        Err(e) => {
            if e.status >= 500 {
                tracing::warn!(operation, code = e.code, message = %e.message, elapsed_ms, "request failed");
            } else {
                tracing::debug!(operation, code = e.code, elapsed_ms, "request refused");
            }
            (
                StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                e.body(),
                Some(e.code),
            )
        }
    };
    let mut resp = (status, body.to_string()).into_response();
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static(CONTENT_TYPE_JSON));
    if let Ok(id) = HeaderValue::from_str(&format!("mapfleet-{:x}-{n:x}", std::process::id())) {
        h.insert("x-amzn-requestid", id);
    }
    if let Some(code) = error_type {
        h.insert("x-amzn-errortype", HeaderValue::from_static(code));
    }
    resp
}

async fn answer(
    api: &Api,
    operation: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Value, ApiError> {
    let request = mapfleet_auth::Request {
        method: "POST",
        path_and_query: uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"),
        headers: headers
            .iter()
            .filter_map(|(n, v)| Some((n.as_str(), v.to_str().ok()?)))
            .collect(),
        body,
    };
    api.access
        .check(&request)
        .map_err(|e| ApiError::new(e.code(), e.to_string()))?;
    if operation.is_empty() {
        return Err(ApiError::new(
            "UnknownOperationException",
            format!("X-Amz-Target must be {TARGET_PREFIX}<Operation>"),
        ));
    }
    let input = Input::parse(body)?;
    if api.activities.is_none()
        && let Some(answer) = ops::activities::answer_in_store(&api.store, operation, &input).await
    {
        return answer;
    }
    match &api.activities {
        Some(activities) => {
            if let Some(answer) = ops::activities::call(activities, operation, &input).await {
                return answer;
            }
        }
        None if ops::activities::OPERATIONS.contains(&operation) => {
            return Err(ApiError::validation(format!(
                "{operation}: activities run on the fleet only; start mapfleet serve with \
                 --redis and --amqp"
            )));
        }
        None => {}
    }
    ops::call(&api.store, operation, input).await
}
