//! Map and Parallel states: start children, count them as they finish, collect results.

use serde_json::{Map, Value, json};

use super::query::{expr_integer, expr_percentage};
use super::{Engine, Tx};
use crate::asl::definition::ContextParts;
use crate::asl::definition::{Dynamic, ItemBatcher, MapSpec, ProcessorMode, StateKind};
use crate::asl::error::{StatesError, names};
use crate::asl::jsonata::{JScope, query_error};
use crate::asl::path::json_kind;
use crate::asl::scope::Scope;
use crate::asl::template::MapItemEval;
use crate::engine::context::{StateFacts, context_members, context_object, map_member};
use crate::engine::cursor::*;
use crate::engine::dataflow;
use crate::engine::history::EventType;
use crate::entropy::Entropy;

impl Engine {
    pub(super) fn start_parallel(
        &self,
        cursor: &mut Cursor,
        branches: usize,
        ctx: &Value,
        tx: &mut Tx<'_>,
    ) -> bool {
        let state = self.state(cursor);
        let effective = match self.jsonata_of(state) {
            Some(j) => self.arguments(j, &self.jscope(cursor, ctx, tx, None, None)),
            None => dataflow::effective_input(
                &state.common,
                &cursor.input,
                ctx,
                &cursor.vars,
                &tx.entropy,
            ),
        };
        let effective = match effective {
            Ok(v) => v,
            Err(e) => return self.handle_error(cursor, e, None, tx),
        };
        let started_event = tx.record(cursor, EventType::ParallelStateStarted, Value::Null);
        let ch = Children {
            kind: ChildKind::Parallel,
            effective_input: effective,
            effective_is_input: false,
            total: branches,
            next: branches,
            running: branches,
            succeeded: 0,
            failed: 0,
            max_concurrency: 0,
            tolerated_count: None,
            tolerated_percentage: None,
            failure: None,
            started_event,
            preselected: false,
            distributed: false,
            last_iteration_event: 0,
            run_seed: 0,
        };
        tx.actions.push(Action::StartChildren {
            cursor: cursor.id.clone(),
            from: 0,
            to: branches,
        });
        cursor.phase = Phase::Children(Box::new(ch));
        false
    }

    pub(super) fn start_map(
        &self,
        cursor: &mut Cursor,
        spec: &MapSpec,
        ctx: &Value,
        tx: &mut Tx<'_>,
    ) -> bool {
        if let Some(reader) = &spec.item_reader {
            return self.start_map_run(cursor, spec, reader, ctx, tx);
        }
        let state = self.state(cursor);
        let jsonata = spec.jsonata.as_deref();
        let selected = (|| {
            if let Some(mj) = jsonata {
                let scope = self.jscope(cursor, ctx, tx, None, None);
                let items = match &mj.items {
                    Some(t) => match t.as_expr() {
                        Some(e) => e.eval_typed("Items", "array", &scope, Value::is_array)?,
                        None => t.eval("Items", &scope)?,
                    },
                    None => cursor.input.clone(),
                };
                // The effective input is the state's input: not copied (`None`).
                return match items {
                    Value::Array(items) => Ok((None, items)),
                    other => Err(query_error(format!(
                        "Map state input must be an array but was: {other}"
                    ))),
                };
            }
            // `None`: the effective input is the state's input (InputPath `$`), which the
            // Map keeps once rather than twice (it can hold every item).
            let own = match &state.common.input_path {
                Some(p) if p.is_root() => None,
                _ => Some(dataflow::input_path(
                    &state.common.input_path,
                    &cursor.input,
                    ctx,
                    &cursor.vars,
                    &tx.entropy,
                )?),
            };
            let effective = own.as_ref().unwrap_or(&cursor.input);
            let scope = Scope {
                input: effective,
                context: ctx,
                vars: &cursor.vars,
                entropy: &tx.entropy,
            };
            let items = match &spec.items_path {
                Some(p) => p.eval(&scope)?,
                None => effective.clone(),
            };
            match items {
                Value::Array(items) => Ok((own, items)),
                other => Err(StatesError::runtime(format!(
                    "Invalid path '{}' : The Map state's ItemsPath must reference a JSON array, but it references {}",
                    spec.items_path.as_ref().map(|p| p.as_str()).unwrap_or("$"),
                    json_kind(&other)
                ))),
            }
        })();
        let (own, items) = match selected {
            Ok(v) => v,
            // AWS writes MapStateFailed after a JSONata state's EvaluationFailed.
            Err(e) if jsonata.is_some() => {
                let give_up = [(EventType::MapStateFailed, Value::Null)];
                return self.handle_error_then(cursor, e, None, &give_up, tx);
            }
            Err(e) => return self.handle_error(cursor, e, None, tx),
        };
        // AWS checks MaxConcurrency before it writes MapStateStarted, the tolerated failure
        // settings after it, and starts the Map Run once both are valid.
        let max_concurrency = match &spec.max_concurrency {
            Dynamic::Literal(n) => Ok(*n),
            d @ Dynamic::Expr(_) => {
                let scope = self.jscope(cursor, ctx, tx, None, None);
                expr_integer(d, "MaxConcurrency", &scope, true).unwrap_or(Ok(0))
            }
            Dynamic::Path(p) => p
                .eval(&Scope {
                    input: own.as_ref().unwrap_or(&cursor.input),
                    context: ctx,
                    vars: &cursor.vars,
                    entropy: &tx.entropy,
                })
                .and_then(|v| integer_at(v, "MaxConcurrencyPath", p.as_str())),
        };
        let max_concurrency = match max_concurrency {
            Ok(n) => n,
            Err(e) => {
                let e = self.runtime_cause(cursor, state, e);
                self.finish(cursor, Err(e), tx);
                return false;
            }
        };
        let started_event = tx.record(
            cursor,
            EventType::MapStateStarted,
            json!({ "length": items.len() }),
        );
        let distributed = spec.mode == ProcessorMode::Distributed;
        let mut give_up = Vec::new();
        let settings = (|| {
            let scope = Scope {
                input: own.as_ref().unwrap_or(&cursor.input),
                context: ctx,
                vars: &cursor.vars,
                entropy: &tx.entropy,
            };
            let jscope = self.jscope(cursor, ctx, tx, None, None);
            let tolerated_count = match &spec.tolerated_failure_count {
                None => None,
                Some(Dynamic::Literal(n)) => Some(*n),
                Some(d @ Dynamic::Expr(_)) => {
                    expr_integer(d, "ToleratedFailureCount", &jscope, true).transpose()?
                }
                Some(Dynamic::Path(p)) => {
                    let v = p.eval(&scope)?;
                    if v.as_i64().is_some_and(|n| n < 0) {
                        return Err(StatesError::runtime(
                            "ToleratedFailureCount cannot be negative.",
                        ));
                    }
                    Some(integer_at(v, "ToleratedFailureCountPath", p.as_str())?)
                }
            };
            let tolerated_percentage = match &spec.tolerated_failure_percentage {
                None => None,
                Some(Dynamic::Literal(p)) => Some(*p),
                Some(d @ Dynamic::Expr(_)) => expr_percentage(d, &jscope).transpose()?,
                Some(Dynamic::Path(p)) => {
                    let v = p.eval(&scope)?;
                    let pct = v.as_f64().ok_or_else(|| {
                        StatesError::runtime(format!(
                            "The ToleratedFailurePercentagePath field refers to value \"{v}\" which is not a valid float: {}",
                            p.as_str()
                        ))
                    })?;
                    if !(0.0..=100.0).contains(&pct) {
                        return Err(StatesError::runtime(
                            "ToleratedFailurePercentage must be between 0 and 100.",
                        ));
                    }
                    Some(pct)
                }
            };
            Ok((tolerated_count, tolerated_percentage))
        })();
        let (tolerated_count, tolerated_percentage) = match settings {
            Ok(s) => s,
            Err(e) => {
                // A runtime error: no Catch applies, the state just fails.
                let e = self.runtime_cause(cursor, state, e);
                self.finish(cursor, Err(e), tx);
                return false;
            }
        };
        if distributed {
            let arn = self.map_run_arn(cursor, spec);
            map_run_event(cursor, arn, tx);
        }
        let batched = match &spec.item_batcher {
            None => Ok((items, false)),
            Some(batcher) => {
                let effective = own.as_ref().unwrap_or(&cursor.input);
                let scope = Scope {
                    input: effective,
                    context: ctx,
                    vars: &cursor.vars,
                    entropy: &tx.entropy,
                };
                self.batch(spec, batcher, items, effective, cursor, &scope)
                    .map(|b| (b, true))
            }
        };
        let (items, preselected) = match batched {
            Ok(b) => b,
            Err(e) => {
                if distributed {
                    give_up.push((
                        EventType::MapRunFailed,
                        json!({ "error": e.error, "cause": e.cause }),
                    ));
                }
                give_up.push((EventType::MapStateFailed, Value::Null));
                return self.handle_error_then(cursor, e, None, &give_up, tx);
            }
        };
        let total = items.len();
        if total == 0 {
            if distributed {
                tx.record(cursor, EventType::MapRunSucceeded, Value::Null);
            }
            tx.record(cursor, EventType::MapStateSucceeded, Value::Null);
            return self.complete(cursor, Value::Array(Vec::new()), tx);
        }
        let mut ch = Children {
            kind: ChildKind::Map,
            effective_is_input: own.is_none(),
            effective_input: own.unwrap_or_default(),
            total,
            next: 0,
            running: 0,
            succeeded: 0,
            failed: 0,
            max_concurrency: max_concurrency.min(usize::MAX as u64) as usize,
            tolerated_count,
            tolerated_percentage,
            failure: None,
            started_event,
            preselected,
            distributed,
            last_iteration_event: 0,
            run_seed: 0,
        };
        tx.actions.push(Action::StoreItems {
            cursor: cursor.id.clone(),
            items,
        });
        self.start_more(cursor, &mut ch, tx);
        cursor.phase = Phase::Children(Box::new(ch));
        false
    }

    /// `arn:aws:states:REGION:ACCOUNT:mapRun:MACHINE/LABEL:UUID`, stable for one run.
    pub(super) fn map_run_arn(&self, cursor: &Cursor, spec: &MapSpec) -> String {
        let state = self.state(cursor);
        let label = spec.label.clone().unwrap_or_else(|| state.name.clone());
        // A redrive runs the failed run again under its ARN.
        let entered = cursor
            .redriven_entry()
            .map_or(cursor.entered_event, |m| m.entered_event);
        let seed = format!("{}#{}#{}", self.info.execution_arn, cursor.id, entered);
        let id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, seed.as_bytes());
        let (region, account) = (
            crate::engine::context::LOCAL_REGION,
            crate::engine::context::LOCAL_ACCOUNT,
        );
        format!(
            "arn:aws:states:{region}:{account}:mapRun:{}/{label}:{id}",
            self.info.state_machine_name
        )
    }

    /// Applies ItemSelector to every item and groups them as ItemBatcher says.
    fn batch(
        &self,
        spec: &MapSpec,
        batcher: &ItemBatcher,
        items: Vec<Value>,
        effective: &Value,
        cursor: &Cursor,
        scope: &Scope<'_>,
    ) -> Result<Vec<Value>, StatesError> {
        let jscope = JScope {
            input: effective,
            context: scope.context,
            result: None,
            error_output: None,
            vars: &cursor.vars,
            now_millis: cursor.entered_at.timestamp_millis(),
            entropy: scope.entropy,
        };
        let resolve = |d: &Option<Dynamic<u64>>| -> Result<Option<u64>, StatesError> {
            match d {
                None => Ok(None),
                Some(Dynamic::Literal(n)) => Ok(Some(*n)),
                Some(Dynamic::Path(p)) => {
                    Ok(Some(integer_at(p.eval(scope)?, "ItemBatcher", p.as_str())?))
                }
                Some(d @ Dynamic::Expr(_)) => {
                    expr_integer(d, "ItemBatcher", &jscope, false).transpose()
                }
            }
        };
        let max_items = resolve(&batcher.max_items_per_batch)?
            .unwrap_or(u64::MAX)
            .max(1) as usize;
        let max_bytes = resolve(&batcher.max_input_bytes_per_batch)?.unwrap_or(u64::MAX) as usize;
        let batch_input = match &batcher.batch_input {
            Some(t) => Some(super::distributed::any_template(
                t,
                "BatchInput",
                scope,
                &jscope,
            )?),
            None => None,
        };
        let mut batches = Vec::new();
        let mut current: Vec<Value> = Vec::new();
        let mut current_bytes = 0usize;
        for (index, item) in items.into_iter().enumerate() {
            let selected = self.select_item(spec, effective, cursor, index, item, scope.entropy)?;
            let size = serde_json::to_vec(&selected).map(|b| b.len()).unwrap_or(0);
            if !current.is_empty()
                && (current.len() >= max_items || current_bytes + size > max_bytes)
            {
                batches.push(std::mem::take(&mut current));
                current_bytes = 0;
            }
            current_bytes += size;
            current.push(selected);
        }
        if !current.is_empty() {
            batches.push(current);
        }
        Ok(batches
            .into_iter()
            .map(|items| {
                let mut obj = Map::new();
                if let Some(Value::Object(extra)) = &batch_input {
                    obj.insert("BatchInput".into(), Value::Object(extra.clone()));
                }
                obj.insert("Items".into(), Value::Array(items));
                Value::Object(obj)
            })
            .collect())
    }

    /// A Map item's iteration input: ItemSelector (or legacy Parameters) with
    /// `$$.Map.Item`, or the item itself.
    fn select_item(
        &self,
        spec: &MapSpec,
        effective: &Value,
        cursor: &Cursor,
        index: usize,
        item: Value,
        entropy: &Entropy,
    ) -> Result<Value, StatesError> {
        let jsonata_selector = spec
            .jsonata
            .as_deref()
            .and_then(|j| j.item_selector.as_ref());
        if spec.item_selector.is_none() && jsonata_selector.is_none() {
            return Ok(item);
        }
        // The common selector reads `$$.Map.Item.Index` and `.Value` only: no context object
        // is built for it, and the item is moved in where it is taken whole.
        // A failure is evaluated again against the whole context object, as below.
        let (item, failed) = match (jsonata_selector, &spec.item_selector) {
            (None, Some(selector)) => {
                let scope = Scope {
                    input: effective,
                    context: &Value::Null,
                    vars: &cursor.vars,
                    entropy,
                };
                match selector.eval_map_item(&scope, index, item) {
                    MapItemEval::Selected(selected) => return Ok(selected),
                    MapItemEval::NeedsContext(item) => (item, false),
                    MapItemEval::Failed(item) => (item, true),
                }
            }
            _ => (item, false),
        };
        let state = self.state(cursor);
        let facts = StateFacts {
            name: &state.name,
            entered_time: &cursor.entered_at,
            retry_count: cursor.retries.iter().sum(),
            map_item: None,
            task_token: None,
        };
        let with_input = state.common.uses_execution_input;
        let parts = state.common.context_parts;
        if let (None, Some(selector)) = (jsonata_selector, &spec.item_selector)
            && !parts.has(ContextParts::ALL)
            && !failed
        {
            // Only the members of `$$` the selector reads, the item moved in rather than
            // copied. A failure is evaluated again against the whole context object, which
            // its message quotes.
            let eval = |ctx: &Value| {
                selector.eval(&Scope {
                    input: effective,
                    context: ctx,
                    vars: &cursor.vars,
                    entropy,
                })
            };
            let mut members = context_members(&self.info, &facts, with_input, parts);
            members.insert("Map".into(), map_member(index, item));
            let mut ctx = Value::Object(members);
            let selected = eval(&ctx);
            if selected.is_ok() {
                return selected;
            }
            let item = ctx["Map"]["Item"]["Value"].take();
            let mut whole = context_members(&self.info, &facts, with_input, ContextParts::ALL);
            whole.insert("Map".into(), map_member(index, item));
            return eval(&Value::Object(whole));
        }
        let ctx = context_object(
            &self.info,
            &StateFacts {
                map_item: Some((index, &item)),
                ..facts
            },
            with_input,
        );
        if let Some(selector) = jsonata_selector {
            return selector.eval(
                "ItemSelector",
                &JScope {
                    input: effective,
                    context: &ctx,
                    result: None,
                    error_output: None,
                    vars: &cursor.vars,
                    now_millis: cursor.entered_at.timestamp_millis(),
                    entropy,
                },
            );
        }
        match &spec.item_selector {
            Some(selector) => selector.eval(&Scope {
                input: effective,
                context: &ctx,
                vars: &cursor.vars,
                entropy,
            }),
            None => Ok(item),
        }
    }

    /// Starts as many children as the concurrency limits allow.
    pub(super) fn start_more(&self, cursor: &Cursor, ch: &mut Children, tx: &mut Tx<'_>) {
        let cap = self.options.max_children_in_flight.max(1);
        let limit = if ch.max_concurrency == 0 {
            cap
        } else {
            ch.max_concurrency.min(cap)
        };
        let room = limit.saturating_sub(ch.running);
        let count = room.min(ch.total - ch.next);
        if count > 0 {
            tx.actions.push(Action::StartChildren {
                cursor: cursor.id.clone(),
                from: ch.next,
                to: ch.next + count,
            });
            ch.next += count;
            ch.running += count;
        }
    }

    /// Creates child `index` of `parent` (a Map iteration over `item`, or a Parallel branch),
    /// ready for `Enter`. An ItemSelector that fails finishes the child at once with its error.
    pub fn spawn_child(
        &self,
        parent: &Cursor,
        index: usize,
        item: Option<Value>,
        tx: &mut Tx<'_>,
    ) -> Cursor {
        let Phase::Children(ch) = &parent.phase else {
            panic!("spawn_child on a cursor that is not running children");
        };
        let state = self.state(parent);
        let generation = parent.seq;
        let id = if generation == 0 {
            child_id(&parent.id, index)
        } else {
            format!("{}/{generation}:{index}", parent.id)
        };
        let (graph, input) = match &state.kind {
            StateKind::Parallel { branches } => {
                (branches[index], Ok(ch.effective(&parent.input).clone()))
            }
            StateKind::Map(spec) => {
                let item = item.unwrap_or(Value::Null);
                let input = if ch.preselected {
                    Ok(item)
                } else {
                    let effective = ch.effective(&parent.input);
                    self.select_item(spec, effective, parent, index, item, &tx.entropy)
                };
                (spec.processor, input)
            }
            _ => unreachable!("only Map and Parallel states have children"),
        };
        let mut child = Cursor {
            id,
            parent: Some(ParentLink {
                id: parent.id.clone(),
                index,
                kind: ch.kind,
                // Only history events carry it: not copied for each child when none is written.
                state_name: if tx.history {
                    state.name.clone()
                } else {
                    String::new()
                },
            }),
            graph,
            state: self.def.graphs[graph].start_at,
            input: Value::Null,
            vars: parent.vars.clone(),
            seq: 0,
            retries: Vec::new(),
            entered_at: tx.now,
            phase: Phase::Ready,
            last_event: parent.last_event,
            entered_event: 0,
            quiet: parent.quiet || ch.distributed,
            events: 0,
            redrive: None,
        };
        if ch.kind == ChildKind::Map {
            child.last_event = ch.started_event.max(parent.last_event);
            tx.record_with(&mut child, EventType::MapIterationStarted, || {
                super::iteration_details(index, &state.name)
            });
        }
        match input {
            Ok(v) => child.input = v,
            Err(e) => {
                let e = self.runtime_cause(parent, state, e);
                self.finish(&mut child, Err(e), tx);
            }
        }
        child
    }

    pub(super) fn child_finished(
        &self,
        cursor: &mut Cursor,
        mut ch: Box<Children>,
        index: usize,
        result: Result<(), StatesError>,
        tx: &mut Tx<'_>,
    ) -> bool {
        let _ = index;
        ch.running = ch.running.saturating_sub(1);
        match result {
            Ok(()) => ch.succeeded += 1,
            Err(e) => {
                ch.failed += 1;
                let tolerant = ch.tolerated_count.is_some() || ch.tolerated_percentage.is_some();
                if !tolerant {
                    ch.failure = Some(e);
                } else {
                    check_tolerance(&mut ch);
                }
            }
        }
        let Some(mut ch) = self.abort_if_failed(cursor, ch, tx) else {
            return false;
        };
        self.start_more(cursor, &mut ch, tx);
        if ch.succeeded + ch.failed == ch.total {
            tx.actions.push(Action::CollectResults {
                cursor: cursor.id.clone(),
                count: ch.total,
            });
            cursor.phase = Phase::Collecting(ch);
        } else {
            cursor.phase = Phase::Children(ch);
        }
        false
    }

    /// UpdateMapRun changed the running Map's limits: the new tolerance is checked against
    /// the failures so far, and the new concurrency limit starts children at once.
    pub(super) fn limits_updated(
        &self,
        cursor: &mut Cursor,
        mut ch: Box<Children>,
        update: LimitsUpdate,
        tx: &mut Tx<'_>,
    ) {
        if let Some(n) = update.max_concurrency {
            ch.max_concurrency = n.min(usize::MAX as u64) as usize;
        }
        if let Some(c) = update.tolerated_count {
            ch.tolerated_count = Some(c);
        }
        if let Some(p) = update.tolerated_percentage {
            ch.tolerated_percentage = Some(p);
        }
        if ch.failed > 0
            && (update.tolerated_count.is_some() || update.tolerated_percentage.is_some())
        {
            check_tolerance(&mut ch);
        }
        let Some(mut ch) = self.abort_if_failed(cursor, ch, tx) else {
            return;
        };
        self.start_more(cursor, &mut ch, tx);
        cursor.phase = Phase::Children(ch);
    }

    /// When the state failed: asks the driver to stop the other children first (the state
    /// fails once it confirms with `ChildrenAborted`, so their abort events come before the
    /// failure's). The children come back when it has not failed.
    fn abort_if_failed(
        &self,
        cursor: &mut Cursor,
        ch: Box<Children>,
        tx: &mut Tx<'_>,
    ) -> Option<Box<Children>> {
        if ch.failure.is_none() {
            return Some(ch);
        }
        tx.actions.push(Action::AbortChildren {
            cursor: cursor.id.clone(),
        });
        cursor.phase = Phase::Aborting(ch);
        None
    }

    /// The children of a failed Map or Parallel were stopped: the state fails now (through
    /// its Retry and Catch).
    pub(super) fn children_aborted(
        &self,
        cursor: &mut Cursor,
        mut ch: Children,
        tx: &mut Tx<'_>,
    ) -> bool {
        let Some(failure) = ch.failure.take() else {
            return false;
        };
        let mut give_up = Vec::new();
        if ch.distributed {
            give_up.push((
                EventType::MapRunFailed,
                json!({ "error": failure.error, "cause": failure.cause }),
            ));
        }
        let t = if ch.kind == ChildKind::Map {
            EventType::MapStateFailed
        } else {
            EventType::ParallelStateFailed
        };
        give_up.push((t, Value::Null));
        self.handle_error_then(cursor, failure, None, &give_up, tx)
    }

    pub(super) fn children_collected(
        &self,
        cursor: &mut Cursor,
        ch: Children,
        results: Vec<Value>,
        tx: &mut Tx<'_>,
    ) -> bool {
        // AWS writes no ParallelStateSucceeded: a Parallel goes straight to its exit.
        if ch.kind == ChildKind::Map {
            if ch.distributed {
                tx.record(cursor, EventType::MapRunSucceeded, Value::Null);
            }
            // AWS hangs MapStateSucceeded and MapStateExited side by side off the last
            // MapIterationSucceeded.
            let anchor = if ch.last_iteration_event > 0 {
                ch.last_iteration_event
            } else {
                cursor.last_event
            };
            cursor.last_event = anchor;
            tx.record(cursor, EventType::MapStateSucceeded, Value::Null);
            cursor.last_event = anchor;
        }
        self.complete(cursor, Value::Array(results), tx)
    }
}

/// `MapRunStarted`, or `MapRunRedriven` when a redrive runs the failed run again.
pub(super) fn map_run_event(cursor: &mut Cursor, arn: String, tx: &mut Tx<'_>) {
    match cursor.redriven_entry().map(|m| m.count) {
        Some(count) => tx.record(
            cursor,
            EventType::MapRunRedriven,
            json!({ "mapRunArn": arn, "redriveCount": count }),
        ),
        None => tx.record(
            cursor,
            EventType::MapRunStarted,
            json!({ "mapRunArn": arn }),
        ),
    };
}

/// A non-negative integer from a `...Path` field; numeric strings count, as in AWS.
/// Fails the state (`States.ExceedToleratedFailureThreshold`) when its failures passed what
/// it tolerates.
fn check_tolerance(ch: &mut Children) {
    let over_count = ch.tolerated_count.is_some_and(|c| ch.failed as u64 > c);
    let over_pct = ch
        .tolerated_percentage
        .is_some_and(|p| (ch.failed as f64) * 100.0 / (ch.total as f64) > p);
    if over_count || over_pct {
        ch.failure = Some(StatesError::new(
            names::EXCEED_TOLERATED_FAILURE_THRESHOLD,
            "The specified tolerated failure threshold was exceeded",
        ));
    }
}

fn integer_at(v: Value, field: &str, path: &str) -> Result<u64, StatesError> {
    let parsed = match &v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    parsed.ok_or_else(|| {
        let shown = match &v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        StatesError::runtime(format!(
            "The {field} field refers to value \"{shown}\" which is not a valid integer: {path}"
        ))
    })
}
