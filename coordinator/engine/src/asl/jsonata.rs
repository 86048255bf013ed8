//! JSONata in a definition: the `{% ... %}` strings of a JSONata state's fields, parsed once
//! when the definition is validated and evaluated against `$states` and the workflow
//! variables. The language itself is the `mapfleet-jsonata` crate; this module is how the
//! States language uses it (which fields, what an expression sees, AWS's errors).

use std::fmt;
use std::sync::Arc;

use mapfleet_jsonata::{Environment, Expression};
use serde_json::{Map, Value};

use super::error::{StatesError, names};
use crate::entropy::Entropy;

/// Evaluation steps one expression may take: far more than real expressions need (a `$map`
/// over 10,000 items takes about 100,000), few enough that a runaway recursion ends in well
/// under a second instead of holding a coordinator's batch. The engine reads no clock, so
/// this, not a deadline, is what bounds an evaluation's time.
pub const MAX_STEPS: u64 = 1_000_000;

/// One `{% ... %}` expression: its text (quoted in errors) and its parsed form.
#[derive(Clone)]
pub struct JExpr {
    source: String,
    expr: Arc<Expression>,
    /// The variables the text mentions (`$name`), so only those are bound per evaluation.
    mentions: Vec<String>,
    /// Whether the text mentions `$states`.
    uses_states: bool,
}

impl fmt::Debug for JExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{% {} %}}", self.source)
    }
}

/// What an expression sees: `$states` (`input`, `context`, `result`, `errorOutput`), the
/// variables, the time and the caller's entropy.
pub struct JScope<'a> {
    pub input: &'a Value,
    pub context: &'a Value,
    pub result: Option<&'a Value>,
    pub error_output: Option<&'a Value>,
    pub vars: &'a Map<String, Value>,
    pub now_millis: i64,
    pub entropy: &'a Entropy,
}

/// The text of a `{% ... %}` string, or `None` for a plain string.
pub fn expression_text(s: &str) -> Option<&str> {
    s.strip_prefix("{%")?.strip_suffix("%}").map(str::trim)
}

impl JExpr {
    /// Parses the inside of a `{% ... %}` string. The error is JSONata's, with its code and
    /// character position.
    pub fn parse(source: &str) -> Result<JExpr, mapfleet_jsonata::Error> {
        let expr = Expression::parse(source)?;
        let mut mentions = Vec::new();
        let mut uses_states = false;
        let bytes = source.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'$' {
                let start = i + 1;
                let mut end = start;
                while end < bytes.len()
                    && (bytes[end].is_ascii_alphanumeric()
                        || bytes[end] == b'_'
                        || bytes[end] >= 0x80)
                {
                    end += 1;
                }
                // Stop at a char boundary: names are matched as whole UTF-8 sequences.
                while !source.is_char_boundary(end) {
                    end += 1;
                }
                let name = &source[start..end];
                if name == "states" {
                    uses_states = true;
                } else if !name.is_empty() && !mentions.iter().any(|m| m == name) {
                    mentions.push(name.to_string());
                }
                i = end.max(start);
            } else {
                i += 1;
            }
        }
        Ok(JExpr {
            source: source.to_string(),
            expr: Arc::new(expr),
            mentions,
            uses_states,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates the expression; `field` names where it stands (`Assign/result`) for the
    /// error messages. An undefined result is an error, as in Step Functions.
    pub fn eval(&self, field: &str, scope: &JScope<'_>) -> Result<Value, StatesError> {
        let mut env = Environment::new(scope.now_millis, scope.entropy.next_u64());
        env.aws_functions = true;
        env.max_steps = Some(MAX_STEPS);
        for name in &self.mentions {
            if let Some(v) = scope.vars.get(name) {
                env.bindings.push((name.clone(), v.clone()));
            }
        }
        if self.uses_states {
            let mut states = Map::new();
            states.insert("input".into(), scope.input.clone());
            states.insert("context".into(), scope.context.clone());
            if let Some(r) = scope.result {
                states.insert("result".into(), r.clone());
            }
            if let Some(e) = scope.error_output {
                states.insert("errorOutput".into(), e.clone());
            }
            env.bindings.push(("states".into(), Value::Object(states)));
        }
        match self.expr.evaluate(None, &mut env) {
            Ok(Some(v)) => Ok(v),
            Ok(None) => Err(query_error(format!(
                "The JSONata expression '{}' specified for the field '{field}' returned nothing (undefined).",
                self.source
            ))),
            Err(e) => Err(query_error(format!(
                "An error occurred while evaluating the JSONata expression '{}' specified for the field '{field}': {} ({})",
                self.source,
                e.message(),
                e.code()
            ))),
        }
    }

    /// Evaluates and checks the result's type (`Items` must be an array, `Condition` a
    /// boolean, ...), with AWS's message when it is not.
    pub fn eval_typed(
        &self,
        field: &str,
        expected: &str,
        scope: &JScope<'_>,
        ok: impl Fn(&Value) -> bool,
    ) -> Result<Value, StatesError> {
        let v = self.eval(field, scope)?;
        if ok(&v) {
            Ok(v)
        } else {
            Err(unexpected_type(&self.source, field, expected, &v))
        }
    }
}

/// `States.QueryEvaluationError` with `cause`.
pub fn query_error(cause: impl Into<String>) -> StatesError {
    StatesError::new(names::QUERY_EVALUATION_ERROR, cause)
}

/// AWS's message for an expression whose result has the wrong JSON type.
pub fn unexpected_type(source: &str, field: &str, expected: &str, v: &Value) -> StatesError {
    query_error(format!(
        "The JSONata expression '{source}' specified for the field '{field}' returned an unexpected result type. Expected '{expected}', but was '{}' for value: {v}",
        type_name(v)
    ))
}

/// JSON type names as Step Functions writes them in query errors.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A JSON value whose strings may be `{% ... %}` expressions: `Arguments`, `Output`,
/// `Assign`, `Items`, `ItemSelector`, and the values of the fields that take one expression.
#[derive(Debug, Clone)]
pub enum JTemplate {
    /// No expression anywhere inside: used as is.
    Literal(Value),
    Expr(JExpr),
    Object(Vec<(String, JTemplate)>),
    Array(Vec<JTemplate>),
}

/// A JSONata syntax error in a definition: where (a `/`-joined path below the field) and
/// JSONata's message with its code and character position.
#[derive(Debug)]
pub struct JTemplateError {
    pub pointer: String,
    pub message: String,
}

/// Deepest template nesting accepted (AWS bounds definitions; this bounds our recursion).
const MAX_TEMPLATE_DEPTH: usize = 200;

impl JTemplate {
    pub fn parse(raw: &Value) -> Result<JTemplate, JTemplateError> {
        Self::compile(raw, &mut String::new(), 0)
    }

    fn compile(
        raw: &Value,
        pointer: &mut String,
        depth: usize,
    ) -> Result<JTemplate, JTemplateError> {
        if depth > MAX_TEMPLATE_DEPTH {
            return Err(JTemplateError {
                pointer: pointer.clone(),
                message: format!("The value nests deeper than {MAX_TEMPLATE_DEPTH} levels"),
            });
        }
        match raw {
            Value::String(s) => match expression_text(s) {
                Some(text) => JExpr::parse(text)
                    .map(JTemplate::Expr)
                    .map_err(|e| JTemplateError {
                        pointer: pointer.clone(),
                        message: format!(
                            "The JSONata expression '{text}' is invalid: {} ({}{})",
                            e.message(),
                            e.code(),
                            e.position()
                                .map(|p| format!(", position {p}"))
                                .unwrap_or_default()
                        ),
                    }),
                None => Ok(JTemplate::Literal(raw.clone())),
            },
            Value::Object(m) => {
                let mut fields = Vec::with_capacity(m.len());
                for (k, v) in m {
                    let len = pointer.len();
                    pointer.push('/');
                    pointer.push_str(k);
                    let node = Self::compile(v, pointer, depth + 1);
                    pointer.truncate(len);
                    fields.push((k.clone(), node?));
                }
                if fields
                    .iter()
                    .all(|(_, n)| matches!(n, JTemplate::Literal(_)))
                {
                    return Ok(JTemplate::Literal(raw.clone()));
                }
                Ok(JTemplate::Object(fields))
            }
            Value::Array(a) => {
                let mut items = Vec::with_capacity(a.len());
                for (i, v) in a.iter().enumerate() {
                    let len = pointer.len();
                    pointer.push('/');
                    pointer.push_str(&i.to_string());
                    let node = Self::compile(v, pointer, depth + 1);
                    pointer.truncate(len);
                    items.push(node?);
                }
                if items.iter().all(|n| matches!(n, JTemplate::Literal(_))) {
                    return Ok(JTemplate::Literal(raw.clone()));
                }
                Ok(JTemplate::Array(items))
            }
            other => Ok(JTemplate::Literal(other.clone())),
        }
    }

    /// The single expression of a field that takes one (`Items: "{% ... %}"`), if it is one.
    pub fn as_expr(&self) -> Option<&JExpr> {
        match self {
            JTemplate::Expr(e) => Some(e),
            _ => None,
        }
    }

    /// Evaluates every expression inside; `field` is the field's name (`Arguments`), and
    /// errors name the path below it (`Assign/result`).
    pub fn eval(&self, field: &str, scope: &JScope<'_>) -> Result<Value, StatesError> {
        match self {
            JTemplate::Literal(v) => Ok(v.clone()),
            JTemplate::Expr(e) => e.eval(field, scope),
            JTemplate::Object(fields) => {
                let mut out = Map::new();
                for (k, node) in fields {
                    let v = node.eval(&format!("{field}/{k}"), scope)?;
                    out.insert(k.clone(), v);
                }
                Ok(Value::Object(out))
            }
            JTemplate::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, n)| n.eval(&format!("{field}/{i}"), scope))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scope<'a>(
        input: &'a Value,
        vars: &'a Map<String, Value>,
        entropy: &'a Entropy,
    ) -> JScope<'a> {
        JScope {
            input,
            context: &Value::Null,
            result: None,
            error_output: None,
            vars,
            now_millis: 0,
            entropy,
        }
    }

    #[test]
    fn templates_evaluate_expressions_anywhere_and_keep_literals() {
        let t = JTemplate::parse(&json!({
            "a": "{% $states.input.x + 1 %}",
            "b": ["{% $v %}", "plain {% not an expression"],
            "c": {"d": 3}
        }))
        .unwrap();
        let input = json!({"x": 41});
        let mut vars = Map::new();
        vars.insert("v".into(), json!("var"));
        let e = Entropy::new(1);
        let out = t.eval("Arguments", &scope(&input, &vars, &e)).unwrap();
        assert_eq!(
            out,
            json!({"a": 42, "b": ["var", "plain {% not an expression"], "c": {"d": 3}})
        );
    }

    #[test]
    fn undefined_and_failing_expressions_are_query_errors_naming_the_field() {
        let t = JTemplate::parse(&json!({"result": "{% $doesNotExist %}"})).unwrap();
        let (input, vars, e) = (json!({}), Map::new(), Entropy::new(1));
        let err = t.eval("Assign", &scope(&input, &vars, &e)).unwrap_err();
        assert_eq!(err.error, names::QUERY_EVALUATION_ERROR);
        assert_eq!(
            err.cause,
            "The JSONata expression '$doesNotExist' specified for the field 'Assign/result' returned nothing (undefined)."
        );
        let t = JTemplate::parse(&json!("{% 1 + 'a' %}")).unwrap();
        let err = t.eval("Output", &scope(&input, &vars, &e)).unwrap_err();
        assert_eq!(err.error, names::QUERY_EVALUATION_ERROR);
        assert!(err.cause.contains("T2002"), "{}", err.cause);
    }

    #[test]
    fn syntax_errors_carry_the_path_and_position() {
        let err = JTemplate::parse(&json!({"a": {"b": "{% 1 + %}"}})).unwrap_err();
        assert_eq!(err.pointer, "/a/b");
        assert!(err.message.contains("position"), "{}", err.message);
    }

    #[test]
    fn runaway_recursion_ends_with_a_query_error() {
        // Found by the fuzz target: unbounded tail recursion took over 10 s at JSONata's
        // default step budget.
        let e = JExpr::parse("($f := function($n) { $f($n@$v2) }; $f(z5))").unwrap();
        let (input, vars, entropy) = (json!({"z5": 1}), Map::new(), Entropy::new(1));
        let err = e
            .eval("Output", &scope(&input, &vars, &entropy))
            .unwrap_err();
        assert_eq!(err.error, names::QUERY_EVALUATION_ERROR);
        assert!(err.cause.contains("U1001"), "{}", err.cause);
        let e = JExpr::parse("$reduce([1..100000], function($a, $b) { $a + $b })").unwrap();
        assert_eq!(
            e.eval("Output", &scope(&input, &vars, &entropy)).unwrap(),
            json!(5000050000u64)
        );
    }

    #[test]
    fn aws_functions_and_caller_entropy_are_bound() {
        let t = JTemplate::parse(&json!("{% $partition([1,2,3], 2) %}")).unwrap();
        let (input, vars, e) = (json!({}), Map::new(), Entropy::new(1));
        assert_eq!(
            t.eval("Output", &scope(&input, &vars, &e)).unwrap(),
            json!([[1, 2], [3]])
        );
        let t = JTemplate::parse(&json!("{% $uuid() %}")).unwrap();
        let a = t
            .eval("Output", &scope(&input, &vars, &Entropy::new(5)))
            .unwrap();
        let b = t
            .eval("Output", &scope(&input, &vars, &Entropy::new(5)))
            .unwrap();
        assert_eq!(a, b);
    }
}
