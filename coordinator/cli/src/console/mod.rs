//! The web console at `/` on `mapfleet serve`: state machines, their graphs, executions,
//! event histories, and every Map iteration of a run, in a browser.
//!
//! The page is static (HTML, CSS and JavaScript modules embedded in the binary; no front-end
//! build). Its data comes from the API's own operations ([`crate::api::ops::call`], read-only
//! ones only) and from three read-only views of a run's history ([`runview`]), all under the
//! same rule as the API: a session from the login form (a configured key pair, or the start
//! token `serve` prints), or nobody needs one with `--allow-anonymous`.
//!
//! # Layout
//! - [`session`]: logins and session cookies.
//! - [`runview`]: state visits, tallies and Map iterations read off a history (pure).
//! - `assets/`: the page; `assets/vendor/` holds dagre (graph layout, MIT, see its NOTICE).

pub mod runview;
pub mod session;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::api::backend::Store;
use crate::api::ops;
use crate::api::wire::{ApiError, Input, epoch};
use coordinator::engine::history::Event;
use runview::{IterationStatus, MapRun};
use session::{COOKIE, Login, SESSION_TTL, Sessions};

/// The API operations the page may call: reads only.
const READ_OPERATIONS: &[&str] = &[
    "ListStateMachines",
    "DescribeStateMachine",
    "ListExecutions",
    "DescribeExecution",
    "GetExecutionHistory",
    "ValidateStateMachineDefinition",
    "ListMapRuns",
    "DescribeMapRun",
];

/// The most iterations one page of the Map run table holds.
const MAX_ITERATION_PAGE: usize = 500;
/// The most events the iteration view returns (the rest are in GetExecutionHistory).
const MAX_ITERATION_EVENTS: usize = 1000;

const INDEX: &str = include_str!("assets/index.html");

/// The embedded files under `/console/assets/`: name, content type, bytes.
const ASSETS: &[(&str, &str, &str)] = &[
    ("style.css", "text/css", include_str!("assets/style.css")),
    ("app.js", "text/javascript", include_str!("assets/app.js")),
    (
        "graph.js",
        "text/javascript",
        include_str!("assets/graph.js"),
    ),
    (
        "views.js",
        "text/javascript",
        include_str!("assets/views.js"),
    ),
    (
        "dagre.min.js",
        "text/javascript",
        include_str!("assets/vendor/dagre.min.js"),
    ),
];

/// What the console's handlers share.
pub struct Console {
    pub store: Store,
    pub sessions: Sessions,
}

/// The console's routes, all under `/console/` (the page itself is `GET /`, see [`index`]).
pub fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/console/assets/{name}", get(asset))
        .route("/console/login", post(login))
        .route("/console/logout", post(logout))
        .route("/console/api/whoami", get(whoami))
        .route("/console/api/call/{operation}", post(call))
        .route("/console/api/execution", get(execution))
        .route("/console/api/maprun", get(map_run))
        .route("/console/api/iteration", get(iteration))
        .with_state(console)
}

/// Headers every console answer carries: no framing, no sniffing, nothing from elsewhere.
fn harden(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// `GET /`: the page (data comes after login).
pub async fn index() -> Response {
    harden(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX).into_response())
}

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, kind, body)) => harden(([(header::CONTENT_TYPE, *kind)], *body).into_response()),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

fn json_response(status: StatusCode, v: &Value) -> Response {
    harden(
        (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            v.to_string(),
        )
            .into_response(),
    )
}

fn error_response(e: &ApiError) -> Response {
    json_response(
        StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &e.body(),
    )
}

fn unauthorized() -> Response {
    json_response(
        StatusCode::UNAUTHORIZED,
        &json!({"__type": "UnrecognizedClientException", "message": "log in to use the console"}),
    )
}

/// Whether the request carries a live session (or none is needed). Reads also need the
/// console's own header, which a cross-site form cannot send.
fn allowed(console: &Console, headers: &HeaderMap) -> bool {
    headers.contains_key("x-mapfleet-console")
        && console
            .sessions
            .allowed(headers.get(header::COOKIE).and_then(|v| v.to_str().ok()))
}

async fn whoami(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    json_response(
        StatusCode::OK,
        &json!({
            "anonymous": c.sessions.anonymous(),
            "loggedIn": allowed(&c, &headers),
        }),
    )
}

async fn login(State(c): State<Arc<Console>>, body: Bytes) -> Response {
    let Ok(Value::Object(form)) = serde_json::from_slice::<Value>(&body) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({"message": "send a JSON object"}),
        );
    };
    let text = |k: &str| form.get(k).and_then(Value::as_str).unwrap_or("");
    let attempt = if !text("token").is_empty() {
        Login::StartToken(text("token"))
    } else {
        Login::KeyPair {
            access_key_id: text("accessKeyId"),
            secret: text("secretAccessKey"),
        }
    };
    match c.sessions.login(attempt) {
        Some(id) => {
            tracing::info!("console login");
            let cookie = format!(
                "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
                SESSION_TTL.as_secs()
            );
            let mut r = json_response(StatusCode::OK, &json!({"loggedIn": true}));
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        None => {
            tracing::info!("console login refused");
            json_response(
                StatusCode::UNAUTHORIZED,
                &json!({"message": "unknown access key pair or expired token"}),
            )
        }
    }
}

async fn logout(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    if let Some(id) = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(session::session_cookie)
    {
        c.sessions.logout(id);
    }
    let mut r = json_response(StatusCode::OK, &json!({"loggedIn": false}));
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("mapfleet_console=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    r
}

/// `POST /console/api/call/{operation}`: one read-only API operation, same shapes as the API.
async fn call(
    State(c): State<Arc<Console>>,
    Path(operation): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !allowed(&c, &headers) {
        return unauthorized();
    }
    if !READ_OPERATIONS.contains(&operation.as_str()) {
        return error_response(&ApiError::new(
            "UnknownOperationException",
            format!("the console reads only: {}", READ_OPERATIONS.join(", ")),
        ));
    }
    let result = match Input::parse(&body) {
        Ok(input) => ops::call(&c.store, &operation, input).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(v) => json_response(StatusCode::OK, &v),
        Err(e) => error_response(&e),
    }
}

/// Describes the execution through the API (which checks the ARN and that it exists) and
/// reads its history.
async fn run_of(c: &Console, arn: &str) -> Result<(Value, Vec<Event>), ApiError> {
    let mut m = serde_json::Map::new();
    m.insert("executionArn".into(), json!(arn));
    let described = ops::call(&c.store, "DescribeExecution", Input(m)).await?;
    let events = c.store.history(arn).await?;
    Ok((described, events))
}

/// The execution's Distributed Map runs, as ListMapRuns has them (one page: a run starts
/// one per Map state visit).
async fn distributed_map_runs(c: &Console, arn: &str) -> Result<Value, ApiError> {
    let mut m = serde_json::Map::new();
    m.insert("executionArn".into(), json!(arn));
    m.insert("maxResults".into(), json!(1000));
    let runs = ops::call(&c.store, "ListMapRuns", Input(m)).await?;
    Ok(runs["mapRuns"].clone())
}

fn ms_between(a: &DateTime<Utc>, b: Option<&DateTime<Utc>>) -> Option<i64> {
    b.map(|b| (*b - *a).num_milliseconds())
}

fn run_summary(r: &MapRun) -> Value {
    let counts: BTreeMap<IterationStatus, u64> = r.counts();
    json!({
        "parent": r.parent,
        "name": r.name,
        "total": r.iterations.len(),
        "counts": counts.iter().map(|(k, v)| (format!("{k:?}").to_uppercase(), *v)).collect::<BTreeMap<_, _>>(),
    })
}

/// `GET /console/api/execution?arn=`: the execution as DescribeExecution has it, its state
/// machine's definition, each state's tally and the Map runs.
async fn execution(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !allowed(&c, &headers) {
        return unauthorized();
    }
    let arn = q.get("arn").map(String::as_str).unwrap_or("");
    let result = async {
        let (described, events) = run_of(&c, arn).await?;
        let machine_arn = described["stateMachineArn"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let mut m = serde_json::Map::new();
        m.insert("stateMachineArn".into(), json!(machine_arn));
        // The machine may have been deleted since; the page then draws no graph.
        let definition = ops::call(&c.store, "DescribeStateMachine", Input(m))
            .await
            .ok()
            .and_then(|d| d["definition"].as_str().map(str::to_string));
        let steps = runview::steps(&events);
        let runs = runview::map_runs(&events);
        // Distributed Maps' runs: their children are executions of their own (the
        // `dmaprun` page lists them through DescribeMapRun and ListExecutions).
        let distributed = distributed_map_runs(&c, arn).await?;
        Ok::<Value, ApiError>(json!({
            "execution": described,
            "definition": definition,
            "states": runview::tally(&steps),
            "mapRuns": runs.iter().map(run_summary).collect::<Vec<_>>(),
            "distributedMapRuns": distributed,
            "events": events.len(),
        }))
    }
    .await;
    match result {
        Ok(v) => json_response(StatusCode::OK, &v),
        Err(e) => error_response(&e),
    }
}

/// `GET /console/api/maprun?arn=&parent=&name=&status=&offset=&limit=`: one Map run's counts
/// and one page of its iterations (by index, optionally of one status).
async fn map_run(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !allowed(&c, &headers) {
        return unauthorized();
    }
    let arg = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    let result = async {
        let status = match arg("status") {
            "" | "ALL" => None,
            s => Some(IterationStatus::parse(s).ok_or_else(|| {
                ApiError::validation(format!(
                    "status must be RUNNING, SUCCEEDED, FAILED or ABORTED, not '{s}'"
                ))
            })?),
        };
        let offset: usize = arg("offset").parse().unwrap_or(0);
        let limit: usize = arg("limit")
            .parse()
            .unwrap_or(100)
            .clamp(1, MAX_ITERATION_PAGE);
        let (described, events) = run_of(&c, arg("arn")).await?;
        let runs = runview::map_runs(&events);
        let run = runs
            .iter()
            .find(|r| r.parent == arg("parent") && r.name == arg("name"))
            .ok_or_else(|| {
                ApiError::new(
                    "ResourceNotFound",
                    format!("no Map run of state '{}' in this execution", arg("name")),
                )
            })?;
        let matching = run
            .iterations
            .iter()
            .filter(|i| status.is_none_or(|s| i.status == s));
        let matched = matching.clone().count();
        let page: Vec<&runview::Iteration> = matching.skip(offset).take(limit).collect();
        let cursors: Vec<&str> = page.iter().map(|i| i.cursor.as_str()).collect();
        let mut groups = runview::by_iteration(&events, &run.parent, &cursors);
        let page: Vec<Value> = page
            .into_iter()
            .map(|i| {
                let steps = runview::steps(groups.remove(&i.cursor).unwrap_or_default());
                let (error, cause) = match runview::outcome(&steps) {
                    Some((e, c)) => (Some(e.to_string()), c.map(str::to_string)),
                    None => (None, None),
                };
                json!({
                    "error": error,
                    "cause": cause,
                    "lastState": steps.last().map(|s| s.name.clone()),
                    "index": i.index,
                    "cursor": i.cursor,
                    "status": i.status,
                    "start": epoch(&i.start),
                    "stop": i.stop.as_ref().map(epoch),
                    "durationMs": ms_between(&i.start, i.stop.as_ref()),
                })
            })
            .collect();
        let mut out = run_summary(run);
        out["executionStatus"] = described["status"].clone();
        out["matched"] = json!(matched);
        out["offset"] = json!(offset);
        out["limit"] = json!(limit);
        out["iterations"] = json!(page);
        Ok::<Value, ApiError>(out)
    }
    .await;
    match result {
        Ok(v) => json_response(StatusCode::OK, &v),
        Err(e) => error_response(&e),
    }
}

/// `GET /console/api/iteration?arn=&cursor=`: one iteration's path through its states, their
/// tallies, its input, output and events.
async fn iteration(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !allowed(&c, &headers) {
        return unauthorized();
    }
    let arn = q.get("arn").map(String::as_str).unwrap_or("");
    let cursor = q.get("cursor").map(String::as_str).unwrap_or("");
    let result = async {
        let (_, events) = run_of(&c, arn).await?;
        let found = runview::map_runs(&events)
            .into_iter()
            .flat_map(|r| {
                let name = r.name;
                r.iterations.into_iter().map(move |i| (name.clone(), i))
            })
            .find(|(_, i)| i.cursor == cursor);
        let Some((map_name, it)) = found else {
            return Err(ApiError::new(
                "ResourceNotFound",
                format!("no Map iteration '{cursor}' in this execution"),
            ));
        };
        let steps = runview::steps(runview::under(&events, cursor));
        let (input, output) = runview::io_of(&events, cursor);
        let mine: Vec<&Event> = runview::under(&events, cursor).collect();
        let truncated = mine.len() > MAX_ITERATION_EVENTS;
        let rendered: Vec<Value> = mine
            .iter()
            .take(MAX_ITERATION_EVENTS)
            .map(|e| {
                let mut v = e.to_aws_json();
                v["timestamp"] = epoch(&e.timestamp);
                v
            })
            .collect();
        let failed = steps
            .iter()
            .rev()
            .find(|s| s.status == runview::StepStatus::Failed);
        Ok::<Value, ApiError>(json!({
            "mapName": map_name,
            "index": it.index,
            "cursor": it.cursor,
            "status": it.status,
            "start": epoch(&it.start),
            "stop": it.stop.as_ref().map(epoch),
            "durationMs": ms_between(&it.start, it.stop.as_ref()),
            "input": input,
            "output": output,
            "error": failed.and_then(|s| s.error.clone()),
            "cause": failed.and_then(|s| s.cause.clone()),
            "path": steps,
            "states": runview::tally(&steps),
            "events": rendered,
            "eventsTruncated": truncated,
        }))
    }
    .await;
    match result {
        Ok(v) => json_response(StatusCode::OK, &v),
        Err(e) => error_response(&e),
    }
}
