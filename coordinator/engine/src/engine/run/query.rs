//! A JSONata state's data flow: `Arguments` → (the state's work) → `Output` and `Assign`,
//! all evaluated against `$states` and the variables from before the state. JSONPath states
//! go through `dataflow` instead; `Engine` picks by the state's query language.

use serde_json::{Map, Value};

use chrono::Utc;

use super::{Engine, Tx};
use crate::asl::choice::{ChoiceRule, RuleCondition, parse_timestamp};
use crate::asl::definition::{Dynamic, JsonataFields, State, StateId, WaitSpec};
use crate::asl::error::{StatesError, names};
use crate::asl::jsonata::{JScope, JTemplate, query_error, unexpected_type};
use crate::engine::cursor::{Action, Cursor, Phase};
use crate::engine::dataflow;
use crate::engine::history::{EventType, StateType};

/// What a JSONata state produced: its output and the variables it assigns.
pub(super) struct Produced {
    pub output: Value,
    pub assigned: Option<Map<String, Value>>,
}

impl Engine {
    /// The scope of the cursor's current state: `$states.input` is the state input.
    pub(super) fn jscope<'a>(
        &self,
        cursor: &'a Cursor,
        ctx: &'a Value,
        tx: &'a Tx<'_>,
        result: Option<&'a Value>,
        error_output: Option<&'a Value>,
    ) -> JScope<'a> {
        JScope {
            input: &cursor.input,
            context: ctx,
            result,
            error_output,
            vars: &cursor.vars,
            now_millis: tx.now.timestamp_millis(),
            entropy: &tx.entropy,
        }
    }

    /// A JSONata state's `Arguments` (the state input when absent).
    pub(super) fn arguments(
        &self,
        fields: &JsonataFields,
        scope: &JScope<'_>,
    ) -> Result<Value, StatesError> {
        match &fields.arguments {
            Some(t) => t.eval("Arguments", scope),
            None => Ok(scope.input.clone()),
        }
    }

    /// `Assign` and `Output` of a JSONata state, rule or catcher: both see the variables as
    /// they were before the state (AWS evaluates every Assign expression, then assigns).
    /// `default` is the output when there is no `Output` field.
    pub(super) fn produce(
        &self,
        assign: Option<&JTemplate>,
        output: Option<&JTemplate>,
        scope: &JScope<'_>,
        default: Value,
    ) -> Result<Produced, StatesError> {
        let assigned = match assign {
            None => None,
            Some(t) => match t.eval("Assign", scope)? {
                Value::Object(m) => Some(m),
                _ => None,
            },
        };
        if let Some(vars) = &assigned {
            self.check_assigned(vars)?;
        }
        let output = match output {
            Some(t) => t.eval("Output", scope)?,
            None => default,
        };
        Ok(Produced { output, assigned })
    }

    /// AWS's limits on what one `Assign` stores (both query languages): each variable and
    /// all of them together at most the payload limit (256 KiB), else
    /// `States.DataLimitExceeded`.
    pub(super) fn check_assigned(&self, vars: &Map<String, Value>) -> Result<(), StatesError> {
        let limit = self.options.payload_limit;
        if limit == 0 {
            return Ok(());
        }
        let mut total = 0usize;
        for (name, v) in vars {
            let size = dataflow::json_size(v, limit + 1);
            if size > limit {
                return Err(StatesError::data_limit(format!(
                    "The variable '{name}' of {size}+ bytes exceeds the maximum number of bytes service limit ({limit})."
                )));
            }
            total += size + name.len();
        }
        if total > limit {
            return Err(StatesError::data_limit(format!(
                "The variables assigned by one Assign ({total}+ bytes) exceed the maximum number of bytes service limit ({limit})."
            )));
        }
        Ok(())
    }

    /// A JSONata state's output for states without a result of their own (Succeed, Wait,
    /// Choice): `Output`, or the input.
    pub(super) fn output_only(
        &self,
        output: &Option<JTemplate>,
        scope: &JScope<'_>,
    ) -> Result<Value, StatesError> {
        match output {
            Some(t) => t.eval("Output", scope),
            None => Ok(scope.input.clone()),
        }
    }

    /// AWS's `EvaluationFailed` event for a JSONata state's query error that fails the
    /// state: the error, the cause, the field (`location`) and the state.
    pub(super) fn evaluation_failed(
        &self,
        cursor: &mut Cursor,
        state_name: &str,
        error: &StatesError,
        tx: &mut Tx<'_>,
    ) {
        if error.error != names::QUERY_EVALUATION_ERROR {
            return;
        }
        let mut details = serde_json::json!({
            "error": error.error,
            "cause": error.cause,
            "state": state_name,
        });
        let marker = "specified for the field '";
        if let Some(i) = error.cause.find(marker) {
            let rest = &error.cause[i + marker.len()..];
            let field = rest.split(['\'', '/']).next().unwrap_or_default();
            details["location"] = Value::String(field.to_string());
        }
        tx.record(cursor, EventType::EvaluationFailed, details);
    }

    /// Whether the current state is a JSONata state, with its fields.
    pub(super) fn jsonata_of<'s>(&self, state: &'s State) -> Option<&'s JsonataFields> {
        state.common.jsonata.as_deref()
    }
}

impl Engine {
    /// A JSONata Choice: the first rule whose `Condition` is true, with that rule's `Assign`
    /// (and its `Output`, else the state's); the Default with the state's.
    pub(super) fn choose_jsonata(
        &self,
        cursor: &mut Cursor,
        choices: &[ChoiceRule],
        default: Option<StateId>,
        fields: &JsonataFields,
        ctx: &Value,
        tx: &mut Tx<'_>,
    ) -> bool {
        let state = self.state(cursor);
        let decided = (|| {
            let scope = self.jscope(cursor, ctx, tx, None, None);
            for rule in choices {
                let RuleCondition::Jsonata(condition) = &rule.condition else {
                    continue;
                };
                let v = match condition.as_expr() {
                    Some(e) => e.eval_typed("Condition", "boolean", &scope, Value::is_boolean)?,
                    None => condition.eval("Condition", &scope)?,
                };
                if v == Value::Bool(true) {
                    let rf = rule.jsonata.as_deref();
                    let p = self.produce(
                        rf.and_then(|r| r.assign.as_ref()),
                        rf.and_then(|r| r.output.as_ref())
                            .or(fields.output.as_ref()),
                        &scope,
                        cursor.input.clone(),
                    )?;
                    return Ok((rule.next, p));
                }
            }
            match default {
                Some(d) => Ok((
                    d,
                    self.produce(
                        fields.assign.as_ref(),
                        fields.output.as_ref(),
                        &scope,
                        cursor.input.clone(),
                    )?,
                )),
                None => Err(StatesError::new(
                    names::NO_CHOICE_MATCHED,
                    format!(
                        "No Matches! (no Choice rule of state '{}' matched and it has no Default)",
                        state.name
                    ),
                )),
            }
        })();
        match decided {
            Ok((next, p)) => {
                let name = state.name.clone();
                tx.record(
                    cursor,
                    EventType::StateExited(StateType::Choice),
                    super::exit_details(&name, &p.output, p.assigned.as_ref()),
                );
                if let Some(vars) = p.assigned {
                    cursor.vars.extend(vars);
                }
                cursor.state = next;
                cursor.input = p.output;
                cursor.phase = Phase::Ready;
                true
            }
            Err(e) => {
                let e = self.runtime_cause(cursor, state, e);
                self.evaluation_failed(cursor, &state.name, &e, tx);
                self.finish(cursor, Err(e), tx);
                false
            }
        }
    }

    /// A JSONata Wait: `Seconds` or `Timestamp`, each a literal or an expression; `Output`
    /// and `Assign` are evaluated on entry.
    pub(super) fn wait_jsonata(
        &self,
        cursor: &mut Cursor,
        spec: &WaitSpec,
        fields: &JsonataFields,
        ctx: &Value,
        tx: &mut Tx<'_>,
    ) -> bool {
        let state = self.state(cursor);
        let result = (|| {
            let scope = self.jscope(cursor, ctx, tx, None, None);
            let due = match spec {
                WaitSpec::Seconds(s) => tx.now + chrono::Duration::seconds(*s as i64),
                WaitSpec::Timestamp(ts) => ts.with_timezone(&Utc),
                WaitSpec::SecondsExpr(e) => {
                    let v = e.eval("Seconds", &scope)?;
                    let Some(secs) = v.as_u64() else {
                        return Err(unexpected_type(e.source(), "Seconds", "integer", &v));
                    };
                    tx.now + chrono::Duration::seconds(secs.min(31_622_400) as i64)
                }
                WaitSpec::TimestampExpr(e) => {
                    let v = e.eval("Timestamp", &scope)?;
                    match v.as_str().and_then(parse_timestamp) {
                        Some(ts) => ts.with_timezone(&Utc),
                        None => {
                            return Err(query_error(format!(
                                "The Timestamp field cannot be parsed as an ISO-8601 extended offset date-time format string: {}",
                                v.as_str()
                                    .map(str::to_string)
                                    .unwrap_or_else(|| v.to_string())
                            )));
                        }
                    }
                }
                WaitSpec::SecondsPath(_) | WaitSpec::TimestampPath(_) => {
                    return Err(StatesError::runtime(
                        "A JSONPath field in a JSONata Wait state",
                    ));
                }
            };
            let p = self.produce(
                fields.assign.as_ref(),
                fields.output.as_ref(),
                &scope,
                cursor.input.clone(),
            )?;
            Ok((due, p))
        })();
        match result {
            Ok((due, p)) => {
                if let Some(vars) = p.assigned {
                    cursor.vars.extend(vars);
                }
                cursor.seq += 1;
                tx.actions.push(Action::ScheduleTimer {
                    cursor: cursor.id.clone(),
                    seq: cursor.seq,
                    at: due,
                });
                cursor.phase = Phase::Wait { output: p.output };
            }
            Err(e) => {
                let e = self.runtime_cause(cursor, state, e);
                self.evaluation_failed(cursor, &state.name, &e, tx);
                self.finish(cursor, Err(e), tx);
            }
        }
        false
    }
}

/// A `Dynamic` integer field (`TimeoutSeconds`, `MaxConcurrency`, ...) given as a JSONata
/// expression: a non-negative integer (positive unless `allow_zero`).
pub(super) fn expr_integer(
    d: &Dynamic<u64>,
    field: &str,
    scope: &JScope<'_>,
    allow_zero: bool,
) -> Option<Result<u64, StatesError>> {
    let Dynamic::Expr(e) = d else { return None };
    Some(
        e.eval(field, scope)
            .and_then(|v| match v.as_u64().filter(|n| allow_zero || *n > 0) {
                Some(n) => Ok(n),
                None => Err(unexpected_type(
                    e.source(),
                    field,
                    if allow_zero {
                        "non-negative integer"
                    } else {
                        "positive integer"
                    },
                    &v,
                )),
            }),
    )
}

/// `ToleratedFailurePercentage` as an expression: a number from 0 to 100.
pub(super) fn expr_percentage(
    d: &Dynamic<f64>,
    scope: &JScope<'_>,
) -> Option<Result<f64, StatesError>> {
    let Dynamic::Expr(e) = d else { return None };
    Some(
        e.eval("ToleratedFailurePercentage", scope)
            .and_then(|v| match v.as_f64() {
                Some(p) if (0.0..=100.0).contains(&p) => Ok(p),
                Some(_) => Err(query_error(
                    "ToleratedFailurePercentage must be between 0 and 100.",
                )),
                None => Err(unexpected_type(
                    e.source(),
                    "ToleratedFailurePercentage",
                    "number",
                    &v,
                )),
            }),
    )
}
