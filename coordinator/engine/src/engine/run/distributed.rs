//! A Distributed Map over an `ItemReader`: the engine resolves the reader, writer and
//! batcher (their `Parameters` and `...Path` fields) into a [`MapRunPlan`] and asks the
//! driver to open the run ([`Action::OpenMapRun`]); the driver reads the items (once to count
//! them, then a chunk at a time as children start) and, with a `ResultWriter`, writes the
//! results, answering [`CursorEvent::MapRunOpened`] and [`CursorEvent::MapRunClosed`].
//! Children, concurrency and tolerated failures are the Map's own (`children.rs`).

use serde_json::{Value, json};

use super::{Engine, Tx};
use crate::asl::definition::{AnyTemplate, Dynamic, MapSpec};
use crate::asl::distributed::{
    DISTRIBUTED_MAX_CONCURRENCY, ItemReaderSpec, ReaderSource, ResultWriterSpec,
};
use crate::asl::error::StatesError;
use crate::asl::jsonata::JScope;
use crate::asl::scope::Scope;
use crate::engine::cursor::*;
use crate::engine::dataflow;
use crate::engine::history::EventType;
use crate::maprun::{BatchPlan, MapRunPlan, ReadRequest, WriteRequest};

/// What a Map resolves before its run starts.
struct Settings {
    max_concurrency: u64,
    tolerated_count: Option<u64>,
    tolerated_percentage: Option<f64>,
    plan: MapRunPlan,
}

impl Engine {
    /// Enters a Distributed Map whose items come from its `ItemReader`.
    pub(super) fn start_map_run(
        &self,
        cursor: &mut Cursor,
        spec: &MapSpec,
        reader: &ItemReaderSpec,
        ctx: &Value,
        tx: &mut Tx<'_>,
    ) -> bool {
        let state = self.state(cursor);
        let effective = match dataflow::input_path(
            &state.common.input_path,
            &cursor.input,
            ctx,
            &cursor.vars,
            &tx.entropy,
        ) {
            Ok(v) => v,
            Err(e) => return self.handle_error(cursor, e, None, tx),
        };
        let started_event = tx.record(cursor, EventType::MapStateStarted, json!({ "length": 0 }));
        let settings = self.map_run_settings(cursor, spec, reader, &effective, ctx, tx);
        let s = match settings {
            Ok(s) => s,
            Err(e) => {
                let give_up = [(EventType::MapStateFailed, Value::Null)];
                return self.handle_error_then(cursor, e, None, &give_up, tx);
            }
        };
        super::children::map_run_event(cursor, s.plan.map_run_arn.clone(), tx);
        let ch = Children {
            kind: ChildKind::Map,
            effective_input: effective,
            effective_is_input: false,
            total: 0,
            next: 0,
            running: 0,
            succeeded: 0,
            failed: 0,
            max_concurrency: s.max_concurrency.min(usize::MAX as u64) as usize,
            tolerated_count: s.tolerated_count,
            tolerated_percentage: s.tolerated_percentage,
            failure: None,
            started_event,
            preselected: true,
            distributed: true,
            last_iteration_event: 0,
            run_seed: s.plan.batch.seed,
        };
        tx.actions.push(Action::OpenMapRun {
            cursor: cursor.id.clone(),
            plan: Box::new(s.plan),
        });
        cursor.phase = Phase::Children(Box::new(ch));
        false
    }

    /// The plan of the map run a waiting Distributed Map cursor opened, resolved again as
    /// it was when the Map started (same input, variables, entry time and randomness): a
    /// backend that keeps runs outside the process (the fleet) needs it to read on where a
    /// run left off after another coordinator opened it. `None`: the cursor waits on no
    /// map run over an `ItemReader`.
    pub fn map_run_plan(&self, cursor: &Cursor) -> Option<Result<MapRunPlan, StatesError>> {
        let Phase::Children(ch) = &cursor.phase else {
            return None;
        };
        if !ch.distributed || ch.kind != ChildKind::Map {
            return None;
        }
        let state = self.state(cursor);
        let crate::asl::definition::StateKind::Map(spec) = &state.kind else {
            return None;
        };
        let reader = spec.item_reader.as_ref()?;
        let ctx = self.context(cursor, state, None, None);
        let mut next_event = 0;
        let tx = Tx::new(
            cursor.entered_at,
            f64::from_bits(ch.run_seed),
            &mut next_event,
        );
        Some(
            self.map_run_settings(cursor, spec, reader, ch.effective(&cursor.input), &ctx, &tx)
                .map(|s| s.plan),
        )
    }

    fn map_run_settings(
        &self,
        cursor: &Cursor,
        spec: &MapSpec,
        reader: &ItemReaderSpec,
        effective: &Value,
        ctx: &Value,
        tx: &Tx<'_>,
    ) -> Result<Settings, StatesError> {
        let state = self.state(cursor);
        let scope = Scope {
            input: effective,
            context: ctx,
            vars: &cursor.vars,
            entropy: &tx.entropy,
        };
        let jscope = self.jscope(cursor, ctx, tx, None, None);
        let int = |d: &Dynamic<u64>, field: &str| -> Result<u64, StatesError> {
            match d {
                Dynamic::Literal(n) => Ok(*n),
                Dynamic::Path(p) => non_negative(p.eval(&scope)?, field, p.as_str()),
                Dynamic::Expr(_) => {
                    let field = field.trim_end_matches("Path");
                    super::query::expr_integer(d, field, &jscope, true).unwrap_or(Ok(0))
                }
            }
        };
        let max_concurrency = match int(&spec.max_concurrency, "MaxConcurrencyPath")? {
            0 => DISTRIBUTED_MAX_CONCURRENCY,
            n => n.min(DISTRIBUTED_MAX_CONCURRENCY),
        };
        let tolerated_count = spec
            .tolerated_failure_count
            .as_ref()
            .map(|d| int(d, "ToleratedFailureCountPath"))
            .transpose()?;
        let tolerated_percentage = match &spec.tolerated_failure_percentage {
            None => None,
            Some(Dynamic::Literal(p)) => Some(*p),
            Some(d @ Dynamic::Expr(_)) => super::query::expr_percentage(d, &jscope).transpose()?,
            Some(Dynamic::Path(p)) => match p.eval(&scope)?.as_f64() {
                Some(pct) if (0.0..=100.0).contains(&pct) => Some(pct),
                _ => {
                    return Err(StatesError::runtime(format!(
                        "The ToleratedFailurePercentagePath field refers to a value that is not a number from 0 to 100: {}",
                        p.as_str()
                    )));
                }
            },
        };
        let read = self.read_request(reader, &scope, &jscope, &state.name)?;
        let writer = match &spec.result_writer {
            Some(w) => self.write_request(w, &scope, &jscope, &state.name)?,
            None => None,
        };
        let batch = match &spec.item_batcher {
            None => (None, None, None),
            Some(b) => {
                let items = b
                    .max_items_per_batch
                    .as_ref()
                    .map(|d| int(d, "MaxItemsPerBatchPath"))
                    .transpose()?;
                let bytes = b
                    .max_input_bytes_per_batch
                    .as_ref()
                    .map(|d| int(d, "MaxInputBytesPerBatchPath"))
                    .transpose()?;
                let input = b
                    .batch_input
                    .as_ref()
                    .map(|t| any_template(t, "BatchInput", &scope, &jscope))
                    .transpose()?;
                (
                    Some(items.unwrap_or(u64::MAX).max(1) as usize),
                    bytes.map(|n| n as usize),
                    input,
                )
            }
        };
        let plan = MapRunPlan {
            map_run_arn: self.map_run_arn(cursor, spec),
            limits: crate::maprun::RunLimits {
                max_concurrency,
                tolerated_count,
                tolerated_percentage,
            },
            reader: read,
            writer,
            batch: BatchPlan {
                selector: spec.item_selector.clone(),
                effective_input: effective.clone(),
                vars: cursor.vars.clone(),
                info: self.info.clone(),
                state_name: state.name.clone(),
                entered_at: cursor.entered_at,
                with_execution_input: state.common.uses_execution_input,
                seed: tx.random.to_bits(),
                max_items_per_batch: batch.0,
                max_bytes_per_batch: batch.1,
                batch_input: batch.2,
            },
            redrive_count: cursor.redriven_entry().map_or(0, |m| m.count),
        };
        Ok(Settings {
            max_concurrency,
            tolerated_count,
            tolerated_percentage,
            plan,
        })
    }

    fn read_request(
        &self,
        reader: &ItemReaderSpec,
        scope: &Scope<'_>,
        jscope: &JScope<'_>,
        state: &str,
    ) -> Result<ReadRequest, StatesError> {
        let (params, at) = s3_fields(&reader.parameters, scope, jscope)?;
        let at = format!("{state}/ItemReader/{at}");
        let field = |name: &str, required: bool| s3_field(&params, name, required, &at);
        let bucket = field("Bucket", true)?;
        let (key, prefix) = match reader.source {
            ReaderSource::GetObject(_) => (field("Key", true)?, String::new()),
            ReaderSource::ListObjects => (String::new(), field("Prefix", false)?),
        };
        let max_items = match &reader.max_items {
            None => 0,
            Some(Dynamic::Literal(n)) => *n,
            Some(d @ Dynamic::Expr(_)) => {
                super::query::expr_integer(d, "MaxItems", jscope, true).unwrap_or(Ok(0))?
            }
            Some(Dynamic::Path(p)) => {
                let v = p.eval(scope)?;
                if v.as_i64().is_some_and(|n| n < 0) {
                    return Err(StatesError::runtime(format!(
                        "The MaxItemsPath field of state '{state}' refers to {v}, but MaxItems cannot be below 0: {}",
                        p.as_str()
                    )));
                }
                non_negative(v, "MaxItemsPath", p.as_str())?
            }
        };
        Ok(ReadRequest {
            source: reader.source.clone(),
            bucket,
            key,
            prefix,
            max_items,
        })
    }

    fn write_request(
        &self,
        writer: &ResultWriterSpec,
        scope: &Scope<'_>,
        jscope: &JScope<'_>,
        state: &str,
    ) -> Result<Option<WriteRequest>, StatesError> {
        let Some(dest) = &writer.destination else {
            return Ok(None);
        };
        let (params, at) = s3_fields(dest, scope, jscope)?;
        let at = format!("{state}/ResultWriter/{at}");
        Ok(Some(WriteRequest {
            bucket: s3_field(&params, "Bucket", true, &at)?,
            prefix: s3_field(&params, "Prefix", false, &at)?
                .trim_end_matches('/')
                .to_string(),
            output_type: writer.output_type,
            transformation: writer.transformation,
        }))
    }

    /// The driver opened the run: `Ok(n)` children to run.
    pub(super) fn map_run_opened(
        &self,
        cursor: &mut Cursor,
        mut ch: Children,
        result: Result<usize, StatesError>,
        tx: &mut Tx<'_>,
    ) -> bool {
        match result {
            Ok(total) => {
                ch.total = total;
                if total == 0 {
                    tx.actions.push(Action::CollectResults {
                        cursor: cursor.id.clone(),
                        count: 0,
                    });
                    cursor.phase = Phase::Collecting(Box::new(ch));
                    return false;
                }
                self.start_more(cursor, &mut ch, tx);
                cursor.phase = Phase::Children(Box::new(ch));
                false
            }
            Err(e) => self.map_run_failed(cursor, e, tx),
        }
    }

    /// The run's results were written: `summary` is the Map's result.
    pub(super) fn map_run_closed(
        &self,
        cursor: &mut Cursor,
        ch: Children,
        result: Result<Value, StatesError>,
        tx: &mut Tx<'_>,
    ) -> bool {
        match result {
            Ok(summary) => self.map_succeeded(cursor, &ch, summary, tx),
            Err(e) => self.map_run_failed(cursor, e, tx),
        }
    }

    /// MapRunSucceeded, MapStateSucceeded (hung off the last iteration, as in
    /// `children_collected`), then the Map's result through ResultSelector and ResultPath.
    fn map_succeeded(
        &self,
        cursor: &mut Cursor,
        ch: &Children,
        result: Value,
        tx: &mut Tx<'_>,
    ) -> bool {
        tx.record(cursor, EventType::MapRunSucceeded, Value::Null);
        let anchor = if ch.last_iteration_event > 0 {
            ch.last_iteration_event
        } else {
            cursor.last_event
        };
        cursor.last_event = anchor;
        tx.record(cursor, EventType::MapStateSucceeded, Value::Null);
        cursor.last_event = anchor;
        self.complete(cursor, result, tx)
    }

    fn map_run_failed(&self, cursor: &mut Cursor, e: StatesError, tx: &mut Tx<'_>) -> bool {
        let give_up = [
            (
                EventType::MapRunFailed,
                json!({ "error": e.error, "cause": e.cause }),
            ),
            (EventType::MapStateFailed, Value::Null),
        ];
        self.handle_error_then(cursor, e, None, &give_up, tx)
    }
}

/// A template field evaluated in its language (`field` names it in a JSONata error).
pub(super) fn any_template(
    t: &AnyTemplate,
    field: &str,
    scope: &Scope<'_>,
    jscope: &JScope<'_>,
) -> Result<Value, StatesError> {
    match t {
        AnyTemplate::Path(t) => t.eval(scope),
        AnyTemplate::Jsonata(t) => t.eval(field, jscope),
    }
}

/// A reader's or writer's S3 fields evaluated, and their field's name.
fn s3_fields(
    fields: &AnyTemplate,
    scope: &Scope<'_>,
    jscope: &JScope<'_>,
) -> Result<(Value, &'static str), StatesError> {
    let name = match fields {
        AnyTemplate::Path(_) => "Parameters",
        AnyTemplate::Jsonata(_) => "Arguments",
    };
    Ok((any_template(fields, name, scope, jscope)?, name))
}

/// A string field of evaluated S3 `Parameters` (`Arguments`).
fn s3_field(params: &Value, name: &str, required: bool, at: &str) -> Result<String, StatesError> {
    match params.get(name) {
        Some(Value::String(s)) if !s.is_empty() || !required => Ok(s.clone()),
        None if !required => Ok(String::new()),
        Some(other) => Err(StatesError::runtime(format!(
            "{at}/{name} must be a non-empty string, but it is {other}"
        ))),
        None => Err(StatesError::runtime(format!("{at}/{name} is missing"))),
    }
}

/// A non-negative integer from a `...Path` field; numeric strings count, as in AWS.
fn non_negative(v: Value, field: &str, path: &str) -> Result<u64, StatesError> {
    let parsed = match &v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    parsed.ok_or_else(|| {
        StatesError::runtime(format!(
            "The {field} field refers to value {v} which is not a valid non-negative integer: {path}"
        ))
    })
}
