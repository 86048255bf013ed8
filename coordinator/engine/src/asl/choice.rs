//! Choice rules: every comparison operator, their `...Path` variants, the `Is...` type tests,
//! `StringMatches` wildcards and the And/Or/Not combinators.

use chrono::{DateTime, FixedOffset};
use serde_json::Value;

use super::error::StatesError;
use super::parse::{Diagnostic, Loc};
use super::path::Path;
use super::scope::Scope;
use super::template::Template;

/// A top-level rule of a Choice state: a condition, where to go, and what to assign.
#[derive(Debug, Clone)]
pub struct ChoiceRule {
    pub condition: RuleCondition,
    /// Resolved by the definition parser once every state name is known.
    pub next: usize,
    pub assign: Option<Template>,
    /// A JSONata rule's `Assign` and `Output`.
    pub jsonata: Option<Box<crate::asl::definition::JsonataFields>>,
}

/// A top-level rule's test: JSONPath's comparison operators, or a JSONata `Condition`.
#[derive(Debug, Clone)]
pub enum RuleCondition {
    Path(Condition),
    /// `Condition: "{% ... %}"` (or a literal boolean).
    Jsonata(crate::asl::jsonata::JTemplate),
}

/// A boolean expression over the state input.
#[derive(Debug, Clone)]
pub enum Condition {
    And(Vec<Condition>),
    Or(Vec<Condition>),
    Not(Box<Condition>),
    Compare {
        variable: Path,
        op: Operator,
        operand: Operand,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    StringEquals,
    StringLessThan,
    StringGreaterThan,
    StringLessThanEquals,
    StringGreaterThanEquals,
    StringMatches,
    NumericEquals,
    NumericLessThan,
    NumericGreaterThan,
    NumericLessThanEquals,
    NumericGreaterThanEquals,
    BooleanEquals,
    TimestampEquals,
    TimestampLessThan,
    TimestampGreaterThan,
    TimestampLessThanEquals,
    TimestampGreaterThanEquals,
    IsNull,
    IsPresent,
    IsNumeric,
    IsString,
    IsBoolean,
    IsTimestamp,
}

/// The right-hand side of a comparison: a literal of the operator's type, or a path.
#[derive(Debug, Clone)]
pub enum Operand {
    Literal(Value),
    Path(Path),
}

const OPERATORS: &[(&str, Operator)] = &[
    ("StringEquals", Operator::StringEquals),
    ("StringLessThan", Operator::StringLessThan),
    ("StringGreaterThan", Operator::StringGreaterThan),
    ("StringLessThanEquals", Operator::StringLessThanEquals),
    ("StringGreaterThanEquals", Operator::StringGreaterThanEquals),
    ("StringMatches", Operator::StringMatches),
    ("NumericEquals", Operator::NumericEquals),
    ("NumericLessThan", Operator::NumericLessThan),
    ("NumericGreaterThan", Operator::NumericGreaterThan),
    ("NumericLessThanEquals", Operator::NumericLessThanEquals),
    (
        "NumericGreaterThanEquals",
        Operator::NumericGreaterThanEquals,
    ),
    ("BooleanEquals", Operator::BooleanEquals),
    ("TimestampEquals", Operator::TimestampEquals),
    ("TimestampLessThan", Operator::TimestampLessThan),
    ("TimestampGreaterThan", Operator::TimestampGreaterThan),
    ("TimestampLessThanEquals", Operator::TimestampLessThanEquals),
    (
        "TimestampGreaterThanEquals",
        Operator::TimestampGreaterThanEquals,
    ),
    ("IsNull", Operator::IsNull),
    ("IsPresent", Operator::IsPresent),
    ("IsNumeric", Operator::IsNumeric),
    ("IsString", Operator::IsString),
    ("IsBoolean", Operator::IsBoolean),
    ("IsTimestamp", Operator::IsTimestamp),
];

impl Operator {
    fn kind(self) -> OperandKind {
        use Operator::*;
        match self {
            StringEquals
            | StringLessThan
            | StringGreaterThan
            | StringLessThanEquals
            | StringGreaterThanEquals
            | StringMatches => OperandKind::String,
            NumericEquals
            | NumericLessThan
            | NumericGreaterThan
            | NumericLessThanEquals
            | NumericGreaterThanEquals => OperandKind::Number,
            BooleanEquals | IsNull | IsPresent | IsNumeric | IsString | IsBoolean | IsTimestamp => {
                OperandKind::Boolean
            }
            TimestampEquals
            | TimestampLessThan
            | TimestampGreaterThan
            | TimestampLessThanEquals
            | TimestampGreaterThanEquals => OperandKind::Timestamp,
        }
    }

    fn is_type_test(self) -> bool {
        use Operator::*;
        matches!(
            self,
            IsNull | IsPresent | IsNumeric | IsString | IsBoolean | IsTimestamp
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OperandKind {
    String,
    Number,
    Boolean,
    Timestamp,
}

/// Fields a rule may carry besides its comparison.
const RULE_META: &[&str] = &["Next", "Comment", "Assign"];

/// Parses one rule object. `top_level` rules carry `Next` (and may carry `Assign`); nested
/// rules inside And/Or/Not must not.
pub(crate) fn parse_condition(
    v: &Value,
    loc: &Loc,
    top_level: bool,
    diags: &mut Vec<Diagnostic>,
) -> Option<Condition> {
    let Some(obj) = v.as_object() else {
        diags.push(Diagnostic::schema(
            loc,
            "A Choice rule must be a JSON object",
        ));
        return None;
    };
    for key in ["Next", "Assign"] {
        if !top_level && obj.contains_key(key) {
            diags.push(Diagnostic::schema(
                &loc.field(key),
                format!("The field '{key}' is only allowed in a top-level Choice rule"),
            ));
        }
    }
    let combinators: Vec<&str> = ["And", "Or", "Not"]
        .into_iter()
        .filter(|k| obj.contains_key(*k))
        .collect();
    let comparisons: Vec<(&str, Operator)> = OPERATORS
        .iter()
        .filter(|(name, _)| obj.contains_key(*name))
        .map(|(name, op)| (*name, *op))
        .collect();
    let path_comparisons: Vec<(String, Operator)> = OPERATORS
        .iter()
        .filter(|(_, op)| !op.is_type_test())
        .map(|(name, op)| (format!("{name}Path"), *op))
        .filter(|(name, _)| obj.contains_key(name.as_str()))
        .collect();
    for key in obj.keys() {
        let known = RULE_META.contains(&key.as_str())
            || key == "Variable"
            || combinators.contains(&key.as_str())
            || comparisons.iter().any(|(n, _)| n == key)
            || path_comparisons.iter().any(|(n, _)| n == key);
        if !known {
            diags.push(Diagnostic::schema(
                &loc.field(key),
                format!("Field '{key}' is not supported in a Choice rule"),
            ));
        }
    }
    let operator_count = combinators.len() + comparisons.len() + path_comparisons.len();
    if operator_count != 1 {
        let message = if operator_count == 0 {
            "A Choice rule must have exactly one comparison operator or one of And, Or, Not"
                .to_string()
        } else {
            "A Choice rule must not have more than one comparison operator".to_string()
        };
        diags.push(Diagnostic::schema(loc, message));
        return None;
    }
    if let Some(comb) = combinators.first() {
        if obj.contains_key("Variable") {
            diags.push(Diagnostic::schema(
                &loc.field("Variable"),
                format!("'Variable' is not allowed with '{comb}'"),
            ));
        }
        let inner = &obj[*comb];
        let inner_loc = loc.field(comb);
        return match *comb {
            "Not" => parse_condition(inner, &inner_loc, false, diags)
                .map(|c| Condition::Not(Box::new(c))),
            _ => {
                let Some(list) = inner.as_array().filter(|a| !a.is_empty()) else {
                    diags.push(Diagnostic::schema(
                        &inner_loc,
                        format!("'{comb}' must be a non-empty array of Choice rules"),
                    ));
                    return None;
                };
                let mut parsed = Vec::with_capacity(list.len());
                for (i, rule) in list.iter().enumerate() {
                    parsed.push(parse_condition(rule, &inner_loc.index(i), false, diags)?);
                }
                Some(if *comb == "And" {
                    Condition::And(parsed)
                } else {
                    Condition::Or(parsed)
                })
            }
        };
    }
    let variable = match obj.get("Variable") {
        Some(Value::String(s)) => match Path::parse(s) {
            Ok(p) => p,
            Err(e) => {
                diags.push(Diagnostic::new(
                    "INVALID_JSON_PATH",
                    &loc.field("Variable"),
                    format!("The value for the field 'Variable' must be a valid JSONPath: {e}"),
                ));
                return None;
            }
        },
        Some(_) => {
            diags.push(Diagnostic::schema(
                &loc.field("Variable"),
                "'Variable' must be a string",
            ));
            return None;
        }
        None => {
            diags.push(Diagnostic::schema(
                loc,
                "These fields are required: [Variable]",
            ));
            return None;
        }
    };
    if let Some((name, op)) = comparisons.first() {
        let field_loc = loc.field(name);
        let raw = &obj[*name];
        let ok = match op.kind() {
            OperandKind::String => raw.is_string(),
            OperandKind::Number => raw.is_number(),
            OperandKind::Boolean => raw.is_boolean(),
            OperandKind::Timestamp => raw.as_str().is_some_and(|s| parse_timestamp(s).is_some()),
        };
        if !ok {
            let expected = match op.kind() {
                OperandKind::String => "a string",
                OperandKind::Number => "a number",
                OperandKind::Boolean => "a boolean",
                OperandKind::Timestamp => "an RFC3339 timestamp string",
            };
            diags.push(Diagnostic::schema(
                &field_loc,
                format!("The value of '{name}' must be {expected}"),
            ));
            return None;
        }
        return Some(Condition::Compare {
            variable,
            op: *op,
            operand: Operand::Literal(raw.clone()),
        });
    }
    let (name, op) = &path_comparisons[0];
    let field_loc = loc.field(name);
    match obj[name.as_str()].as_str().map(Path::parse) {
        Some(Ok(p)) => Some(Condition::Compare {
            variable,
            op: *op,
            operand: Operand::Path(p),
        }),
        _ => {
            diags.push(Diagnostic::new(
                "INVALID_JSON_PATH",
                &field_loc,
                format!("The value for the field '{name}' must be a valid JSONPath"),
            ));
            None
        }
    }
}

impl Condition {
    /// Evaluates the rule against the Choice state's effective input.
    pub fn eval(&self, scope: &Scope<'_>) -> Result<bool, StatesError> {
        match self {
            Condition::And(all) => {
                for c in all {
                    if !c.eval(scope)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Condition::Or(any) => {
                for c in any {
                    if c.eval(scope)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Condition::Not(inner) => Ok(!inner.eval(scope)?),
            Condition::Compare {
                variable,
                op,
                operand,
            } => compare(variable, *op, operand, scope),
        }
    }
}

fn compare(
    variable: &Path,
    op: Operator,
    operand: &Operand,
    scope: &Scope<'_>,
) -> Result<bool, StatesError> {
    let value = match variable.eval(scope) {
        Ok(v) => Some(v),
        Err(e) if op == Operator::IsPresent => {
            let _ = e;
            None
        }
        Err(_) => {
            return Err(StatesError::runtime(format!(
                "Invalid path '{}': The choice state's condition path references an invalid value.",
                variable.as_str()
            )));
        }
    };
    let rhs = match operand {
        Operand::Literal(v) => v.clone(),
        Operand::Path(p) => p.eval(scope).map_err(|_| {
            StatesError::runtime(format!(
                "Invalid path '{}': The choice state's condition path references an invalid value.",
                p.as_str()
            ))
        })?,
    };
    use Operator::*;
    let Some(value) = value else {
        // IsPresent on a missing value.
        return Ok(rhs == Value::Bool(false));
    };
    let result = match op {
        IsPresent => rhs == Value::Bool(true),
        IsNull => value.is_null() == (rhs == Value::Bool(true)),
        IsNumeric => value.is_number() == (rhs == Value::Bool(true)),
        IsString => value.is_string() == (rhs == Value::Bool(true)),
        IsBoolean => value.is_boolean() == (rhs == Value::Bool(true)),
        IsTimestamp => {
            let is_ts = value.as_str().is_some_and(|s| parse_timestamp(s).is_some());
            is_ts == (rhs == Value::Bool(true))
        }
        BooleanEquals => match (value.as_bool(), rhs.as_bool()) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        },
        StringMatches => match (value.as_str(), rhs.as_str()) {
            (Some(s), Some(pattern)) => string_matches(s, pattern),
            _ => false,
        },
        StringEquals
        | StringLessThan
        | StringGreaterThan
        | StringLessThanEquals
        | StringGreaterThanEquals => match (value.as_str(), rhs.as_str()) {
            (Some(a), Some(b)) => ordering_holds(op, a.cmp(b)),
            _ => false,
        },
        NumericEquals
        | NumericLessThan
        | NumericGreaterThan
        | NumericLessThanEquals
        | NumericGreaterThanEquals => match (value.as_number(), rhs.as_number()) {
            (Some(a), Some(b)) => match compare_numbers(a, b) {
                Some(ord) => ordering_holds(op, ord),
                None => false,
            },
            _ => false,
        },
        TimestampEquals
        | TimestampLessThan
        | TimestampGreaterThan
        | TimestampLessThanEquals
        | TimestampGreaterThanEquals => {
            match (
                value.as_str().and_then(parse_timestamp),
                rhs.as_str().and_then(parse_timestamp),
            ) {
                (Some(a), Some(b)) => ordering_holds(op, a.cmp(&b)),
                _ => false,
            }
        }
    };
    Ok(result)
}

fn ordering_holds(op: Operator, ord: std::cmp::Ordering) -> bool {
    use Operator::*;
    use std::cmp::Ordering::*;
    match op {
        StringEquals | NumericEquals | TimestampEquals => ord == Equal,
        StringLessThan | NumericLessThan | TimestampLessThan => ord == Less,
        StringGreaterThan | NumericGreaterThan | TimestampGreaterThan => ord == Greater,
        StringLessThanEquals | NumericLessThanEquals | TimestampLessThanEquals => ord != Greater,
        StringGreaterThanEquals | NumericGreaterThanEquals | TimestampGreaterThanEquals => {
            ord != Less
        }
        _ => false,
    }
}

/// Compares two JSON numbers exactly when both are integers, else as doubles.
fn compare_numbers(a: &serde_json::Number, b: &serde_json::Number) -> Option<std::cmp::Ordering> {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return Some(x.cmp(&y));
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return Some(x.cmp(&y));
    }
    a.as_f64()?.partial_cmp(&b.as_f64()?)
}

/// Parses an RFC3339 timestamp as Step Functions accepts it (the `T` and an offset or `Z`
/// are required).
pub fn parse_timestamp(s: &str) -> Option<DateTime<FixedOffset>> {
    if !s.contains('T') {
        return None;
    }
    DateTime::parse_from_rfc3339(s).ok()
}

/// `StringMatches`: `*` matches any run of characters; `\*` is a literal star and `\\` a
/// literal backslash.
pub fn string_matches(s: &str, pattern: &str) -> bool {
    #[derive(Debug, PartialEq)]
    enum Tok {
        Star,
        Char(char),
    }
    let mut toks = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(n) => toks.push(Tok::Char(n)),
                None => toks.push(Tok::Char('\\')),
            },
            '*' => toks.push(Tok::Star),
            c => toks.push(Tok::Char(c)),
        }
    }
    let text: Vec<char> = s.chars().collect();
    // Iterative wildcard matching with backtracking to the last star: linear in practice
    // and never recursive, so hostile patterns cannot blow the stack.
    let (mut ti, mut pi) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < text.len() {
        if pi < toks.len() {
            match toks[pi] {
                Tok::Star => {
                    star = Some((pi, ti));
                    pi += 1;
                    continue;
                }
                Tok::Char(c) if c == text[ti] => {
                    ti += 1;
                    pi += 1;
                    continue;
                }
                Tok::Char(_) => {}
            }
        }
        match star {
            Some((sp, st)) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    toks[pi..].iter().all(|t| *t == Tok::Star)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        let cases = [
            ("log-2024.txt", "log-*.txt", true),
            ("log.txt", "log-*.txt", false),
            ("a*b", "a\\*b", true),
            ("axb", "a\\*b", false),
            ("anything", "*", true),
            ("", "*", true),
            ("abc", "a*c*", true),
            ("a\\b", "a\\\\b", true),
            ("mississippi", "*sip*", true),
        ];
        for (s, p, want) in cases {
            assert_eq!(string_matches(s, p), want, "{s} ~ {p}");
        }
    }

    #[test]
    fn timestamps_need_t_and_offset() {
        assert!(parse_timestamp("2016-03-14T01:59:00Z").is_some());
        assert!(parse_timestamp("2016-03-14T01:59:00.123+02:00").is_some());
        assert!(parse_timestamp("2016-03-14 01:59:00Z").is_none());
        assert!(parse_timestamp("2016-03-14T01:59:00").is_none());
    }
}
