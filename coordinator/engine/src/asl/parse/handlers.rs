//! Building Retry and Catch: error names, retriers, catchers.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::{Builder, Loc};
use crate::asl::definition::{JsonataFields, StateId};
use crate::asl::error::names;
use crate::asl::retry::{Catcher, Jitter, Retrier};

impl Builder {
    fn error_equals(&mut self, obj: &Map<String, Value>, loc: &Loc) -> Option<Vec<String>> {
        let field_loc = loc.field("ErrorEquals");
        let Some(list) = obj
            .get("ErrorEquals")
            .and_then(Value::as_array)
            .filter(|l| !l.is_empty())
        else {
            self.err(
                &field_loc,
                "'ErrorEquals' must be a non-empty array of error names",
            );
            return None;
        };
        let mut names_out = Vec::with_capacity(list.len());
        for (i, v) in list.iter().enumerate() {
            match v.as_str() {
                Some(s) => {
                    if s.starts_with("States.") && !names::PREDEFINED.contains(&s) {
                        self.err(
                            &field_loc.index(i),
                            format!("'{s}' is not a predefined error name"),
                        );
                    }
                    names_out.push(s.to_string());
                }
                None => self.err(&field_loc.index(i), "Error names must be strings"),
            }
        }
        if names_out.iter().any(|n| n == names::ALL) && names_out.len() > 1 {
            self.err(
                &field_loc,
                "'States.ALL' must appear alone in 'ErrorEquals'",
            );
        }
        Some(names_out)
    }

    /// `States.ALL` may only appear in the last retrier/catcher.
    fn check_all_is_last(&mut self, lists: &[Vec<String>], loc: &Loc) {
        for (i, l) in lists.iter().enumerate() {
            if i + 1 < lists.len() && l.iter().any(|n| n == names::ALL) {
                self.err(
                    &loc.index(i),
                    "'States.ALL' must only appear in the last element",
                );
            }
        }
    }

    pub(super) fn retriers(&mut self, v: Option<&Value>, loc: &Loc) -> Vec<Retrier> {
        let Some(v) = v else { return Vec::new() };
        let rl = loc.field("Retry");
        let Some(list) = v.as_array() else {
            self.err(&rl, "'Retry' must be an array");
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in list.iter().enumerate() {
            let il = rl.index(i);
            let Some(obj) = item.as_object() else {
                self.err(&il, "A retrier must be a JSON object");
                continue;
            };
            for key in obj.keys() {
                if !matches!(
                    key.as_str(),
                    "ErrorEquals"
                        | "IntervalSeconds"
                        | "MaxAttempts"
                        | "BackoffRate"
                        | "MaxDelaySeconds"
                        | "JitterStrategy"
                        | "Comment"
                ) {
                    self.err(
                        &il.field(key),
                        format!("Field '{key}' is not supported in a retrier"),
                    );
                }
            }
            let Some(error_equals) = self.error_equals(obj, &il) else {
                continue;
            };
            let mut r = Retrier {
                error_equals,
                ..Default::default()
            };
            if let Some(x) = obj.get("IntervalSeconds") {
                match x.as_u64().filter(|n| (1..=99_999_999).contains(n)) {
                    Some(n) => r.interval_seconds = n,
                    None => self.err(
                        &il.field("IntervalSeconds"),
                        "'IntervalSeconds' must be a positive integer",
                    ),
                }
            }
            if let Some(x) = obj.get("MaxAttempts") {
                match x.as_u64().filter(|n| *n <= 99_999_999) {
                    Some(n) => r.max_attempts = n,
                    None => self.err(
                        &il.field("MaxAttempts"),
                        "'MaxAttempts' must be a non-negative integer",
                    ),
                }
            }
            if let Some(x) = obj.get("BackoffRate") {
                match x.as_f64().filter(|n| *n >= 1.0) {
                    Some(n) => r.backoff_rate = n,
                    None => self.err(
                        &il.field("BackoffRate"),
                        "'BackoffRate' must be a number greater than or equal to 1.0",
                    ),
                }
            }
            if let Some(x) = obj.get("MaxDelaySeconds") {
                match x.as_u64().filter(|n| (1..31_622_400).contains(n)) {
                    Some(n) => r.max_delay_seconds = Some(n),
                    None => self.err(
                        &il.field("MaxDelaySeconds"),
                        "'MaxDelaySeconds' must be a positive integer below 31622400",
                    ),
                }
            }
            if let Some(x) = obj.get("JitterStrategy") {
                match x.as_str() {
                    Some("FULL") => r.jitter = Jitter::Full,
                    Some("NONE") => r.jitter = Jitter::None,
                    _ => self.err(
                        &il.field("JitterStrategy"),
                        "'JitterStrategy' must be 'FULL' or 'NONE'",
                    ),
                }
            }
            out.push(r);
        }
        let lists: Vec<Vec<String>> = out.iter().map(|r| r.error_equals.clone()).collect();
        self.check_all_is_last(&lists, &rl);
        out
    }

    pub(super) fn catchers(
        &mut self,
        v: Option<&Value>,
        loc: &Loc,
        names_map: &HashMap<String, StateId>,
    ) -> Vec<Catcher> {
        let Some(v) = v else { return Vec::new() };
        let cl = loc.field("Catch");
        let Some(list) = v.as_array() else {
            self.err(&cl, "'Catch' must be an array");
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in list.iter().enumerate() {
            let il = cl.index(i);
            let Some(obj) = item.as_object() else {
                self.err(&il, "A catcher must be a JSON object");
                continue;
            };
            let jsonata = self.jsonata;
            for key in obj.keys() {
                let ok = match key.as_str() {
                    "ErrorEquals" | "Next" | "Assign" | "Comment" => true,
                    "ResultPath" => !jsonata,
                    "Output" => jsonata,
                    _ => false,
                };
                if !ok {
                    self.err(
                        &il.field(key),
                        format!("Field '{key}' is not supported in a catcher"),
                    );
                }
            }
            let error_equals = self.error_equals(obj, &il);
            let next = match obj.get("Next") {
                Some(n) => self.resolve(n, &il.field("Next"), names_map),
                None => {
                    self.err(&il, "These fields are required: [Next]");
                    None
                }
            };
            let result_path = self.reference_path_field(obj.get("ResultPath"), "ResultPath", &il);
            let (assign, jsonata_fields) = if jsonata {
                let fields = JsonataFields {
                    arguments: None,
                    output: self.jtemplate_field(obj.get("Output"), "Output", &il),
                    assign: self.jtemplate_field(obj.get("Assign"), "Assign", &il),
                };
                (None, Some(Box::new(fields)))
            } else {
                (self.template_field(obj.get("Assign"), "Assign", &il), None)
            };
            if let (Some(error_equals), Some(next)) = (error_equals, next) {
                out.push(Catcher {
                    error_equals,
                    next,
                    result_path,
                    assign,
                    jsonata: jsonata_fields,
                });
            }
        }
        let lists: Vec<Vec<String>> = out.iter().map(|c| c.error_equals.clone()).collect();
        self.check_all_is_last(&lists, &cl);
        out
    }
}
