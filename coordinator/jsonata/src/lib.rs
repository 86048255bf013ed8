//! JSONata 2.0 — the query language AWS Step Functions implements — as a pure, bounded
//! library: no IO, no clock, no randomness of its own (the caller's [`Environment`]
//! supplies the current time, a random source and a UUID source), a nesting depth limit
//! and a step/deadline budget so hostile expressions end with an error instead of
//! overflowing the stack or running forever.
//!
//! ```
//! use mapfleet_jsonata::{Environment, Expression};
//! let expr = Expression::parse("$sum(items.price)").unwrap();
//! let input = serde_json::json!({"items": [{"price": 2}, {"price": 3}]});
//! let out = expr.evaluate(Some(&input), &mut Environment::new(0, 1)).unwrap();
//! assert_eq!(out, Some(serde_json::json!(5)));
//! ```

pub mod ast;
mod env;
pub mod errors;
mod evaluator;
pub mod functions;
mod lexer;
mod parser;
pub mod signature;
pub mod value;

use std::rc::Rc;
use std::time::Instant;

pub use errors::{Error, Result};
pub use value::Value;

use env::Frame;
use evaluator::{Evaluator, Limits};
use value::Flags;

/// Default nesting limit for evaluation: deep enough for real expressions, shallow enough
/// that a 2 MiB thread stack (tokio's default) never overflows, even in debug builds.
pub const DEFAULT_MAX_DEPTH: usize = 200;

/// Default evaluation step budget: far above what real expressions need, low enough that
/// a runaway loop ends within seconds.
pub const DEFAULT_MAX_STEPS: u64 = 20_000_000;

/// Deepest JSON input accepted (deeper input fails with U1001).
pub const MAX_INPUT_DEPTH: usize = 1000;

/// What an evaluation may use from the outside world, and its limits.
pub struct Environment<'a> {
    /// `$now()` and `$millis()` (milliseconds since the epoch).
    pub now_millis: i64,
    pub max_depth: usize,
    /// Evaluation steps allowed (each node evaluated counts one); `None`: unlimited.
    pub max_steps: Option<u64>,
    pub deadline: Option<Instant>,
    /// Whether AWS's extra functions (`$partition`, `$range`, `$hash`, `$random(seed)`,
    /// `$uuid`, `$parse`) are bound.
    pub aws_functions: bool,
    /// Variables bound before evaluation (`$name`).
    pub bindings: Vec<(String, serde_json::Value)>,
    /// Numbers in [0, 1) for `$random()` and `$shuffle()`.
    pub random: Box<dyn FnMut() -> f64 + 'a>,
    /// Strings for `$uuid()`.
    pub uuid: Box<dyn FnMut() -> String + 'a>,
}

impl<'a> Environment<'a> {
    /// An environment at time `now_millis` whose random numbers (and UUIDs) derive from
    /// `seed`.
    pub fn new(now_millis: i64, seed: u64) -> Self {
        let state = Rc::new(std::cell::Cell::new(seed));
        let s1 = state.clone();
        let random = Box::new(move || {
            let (next, r) = functions::aws::splitmix(s1.get());
            s1.set(next);
            r
        });
        let s2 = state;
        let uuid = Box::new(move || {
            let mut bytes = [0u8; 16];
            for b in bytes.iter_mut() {
                let (next, r) = functions::aws::splitmix(s2.get());
                s2.set(next);
                *b = (r * 256.0) as u8;
            }
            bytes[6] = (bytes[6] & 0x0f) | 0x40;
            bytes[8] = (bytes[8] & 0x3f) | 0x80;
            let h: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            format!(
                "{}-{}-{}-{}-{}",
                &h[0..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..]
            )
        });
        Environment {
            now_millis,
            max_depth: DEFAULT_MAX_DEPTH,
            max_steps: Some(DEFAULT_MAX_STEPS),
            deadline: None,
            aws_functions: false,
            bindings: vec![],
            random,
            uuid,
        }
    }
}

/// A parsed JSONata expression.
pub struct Expression {
    parsed: parser::Parsed,
}

fn check_depth(v: &serde_json::Value, depth: usize) -> Result<()> {
    if depth > MAX_INPUT_DEPTH {
        return Err(Error::Limit {
            code: "U1001",
            message: format!("Input nesting exceeds {MAX_INPUT_DEPTH} levels"),
        });
    }
    match v {
        serde_json::Value::Array(a) => a.iter().try_for_each(|v| check_depth(v, depth + 1)),
        serde_json::Value::Object(o) => o.values().try_for_each(|v| check_depth(v, depth + 1)),
        _ => Ok(()),
    }
}

impl Expression {
    /// Parses an expression; syntax errors carry JSONata's `S0xxx` codes and the character
    /// position.
    pub fn parse(src: &str) -> Result<Expression> {
        Ok(Expression {
            parsed: parser::parse(src)?,
        })
    }

    /// Evaluates against a JSON input (`None`: undefined). `Ok(None)` is an undefined
    /// result.
    pub fn evaluate(
        &self,
        input: Option<&serde_json::Value>,
        env: &mut Environment,
    ) -> Result<Option<serde_json::Value>> {
        let input = match input {
            Some(j) => {
                check_depth(j, 0)?;
                Value::from_json(j)
            }
            None => Value::Undefined,
        };
        self.evaluate_value(input, env)?.to_json_bounded()
    }

    /// Evaluates against an input already in JSONata's value model.
    pub fn evaluate_value(&self, input: Value, env: &mut Environment) -> Result<Value> {
        let root = Frame::root();
        for (k, v) in &env.bindings {
            check_depth(v, 0)?;
            root.bind(std::sync::Arc::from(k.as_str()), Value::from_json(v));
        }
        root.bind(std::sync::Arc::from("$"), input.clone());
        let input = match input {
            Value::Array(a, f) if !f.has(Flags::SEQUENCE) => Value::Array(
                value::List::rc(vec![Value::Array(a, f)]),
                Flags::SEQUENCE.with(Flags::OUTER_WRAPPER),
            ),
            v => v,
        };
        let limits = Limits {
            max_depth: env.max_depth,
            max_steps: env.max_steps,
            deadline: env.deadline,
        };
        let mut ev = Evaluator::new(
            &self.parsed.labels,
            limits,
            env.now_millis,
            &mut *env.random,
            &mut *env.uuid,
            env.aws_functions,
        );
        let r = ev.eval(&self.parsed.root, &input, &root);
        ev.finish();
        root.clear();
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval(src: &str, input: serde_json::Value) -> Result<Option<serde_json::Value>> {
        Expression::parse(src)?.evaluate(Some(&input), &mut Environment::new(0, 1))
    }

    #[test]
    fn deep_recursion_fails_cleanly_on_a_small_stack() {
        // Runs on a 2 MiB thread like tokio's workers.
        let h = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(|| {
                let r = eval(
                    "($f := function($n){ $n = 0 ? 0 : 1 + $f($n - 1) }; $f(100000))",
                    json!(null),
                );
                r.unwrap_err().code().to_string()
            })
            .unwrap();
        assert_eq!(h.join().unwrap(), "U1001");
    }

    #[test]
    fn nesting_up_to_the_limits_works_on_a_small_stack() {
        let h = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(|| {
                let n = parser::MAX_PARSE_DEPTH - 2;
                // `-(` is two nesting levels (the operand of `-`, then the block).
                for (open, close, n) in [
                    ("(", ")", n),
                    ("[", "]", n),
                    ("{'a':", "}", n),
                    ("-(", ")", n / 2),
                ] {
                    let src = format!("{}1{}", open.repeat(n), close.repeat(n));
                    let e = Expression::parse(&src).unwrap();
                    e.evaluate(None, &mut Environment::new(0, 1)).unwrap();
                    drop(e);
                    let src = format!("{}1{}", open.repeat(100_000), close.repeat(100_000));
                    assert_eq!(eval(&src, json!(null)).unwrap_err().code(), "U1001");
                }
                let mut v = json!(1);
                for _ in 0..MAX_INPUT_DEPTH - 1 {
                    v = serde_json::Value::Array(vec![v]);
                }
                let out = eval("**", v.clone()).unwrap();
                assert_eq!(out, Some(json!(1)));
                assert!(eval("$string($)", v).unwrap().is_some());
            })
            .unwrap();
        h.join().unwrap();
    }

    #[test]
    fn tail_recursion_runs_in_constant_stack() {
        let r = eval(
            "($f := function($n, $acc){ $n = 0 ? $acc : $f($n - 1, $acc + 1) }; $f(20000, 0))",
            json!(null),
        );
        assert_eq!(r.unwrap(), Some(json!(20000)));
    }

    #[test]
    fn infinite_loops_hit_the_step_limit() {
        let expr = Expression::parse("($f := function(){ $f() }; $f())").unwrap();
        let mut env = Environment::new(0, 1);
        env.max_steps = Some(100_000);
        assert_eq!(expr.evaluate(None, &mut env).unwrap_err().code(), "U1001");
    }

    #[test]
    fn deep_input_is_rejected_not_overflowed() {
        let mut v = json!(1);
        for _ in 0..5000 {
            v = serde_json::Value::Array(vec![v]);
        }
        let expr = Expression::parse("$").unwrap();
        let r = expr.evaluate(Some(&v), &mut Environment::new(0, 1));
        assert_eq!(r.unwrap_err().code(), "U1001");
        // serde_json's own drop recurses; not this crate's concern.
        std::mem::forget(v);
    }

    #[test]
    fn time_and_randomness_come_from_the_environment() {
        let expr = Expression::parse("[$millis(), $now(), $random()]").unwrap();
        let a = expr
            .evaluate(None, &mut Environment::new(1_000, 5))
            .unwrap();
        let b = expr
            .evaluate(None, &mut Environment::new(1_000, 5))
            .unwrap();
        assert_eq!(a, b);
        assert_eq!(a.unwrap()[1], json!("1970-01-01T00:00:01.000Z"));
    }

    #[test]
    fn aws_functions_are_optional() {
        assert!(eval("$partition([1,2,3], 2)", json!(null)).is_err());
        let expr = Expression::parse("$partition([1,2,3], 2)").unwrap();
        let mut env = Environment::new(0, 1);
        env.aws_functions = true;
        assert_eq!(
            expr.evaluate(None, &mut env).unwrap(),
            Some(json!([[1, 2], [3]]))
        );
    }

    #[test]
    fn deep_values_built_by_loops_neither_overflow_nor_escape() {
        let h = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(|| {
                let deep_obj = "$reduce([1..30000], function($a, $b){ {'x': $a} }, {})";
                let deep_arr = "$reduce([1..30000], function($a, $b){ $zip($a) }, [1])";
                let mut codes = vec![];
                for src in [
                    deep_obj.to_string(),
                    format!("$string({deep_obj})"),
                    format!("{deep_obj}.**"),
                    format!("{deep_obj} = {deep_obj}"),
                    deep_arr.to_string(),
                    format!("$count({deep_arr}.x)"),
                    format!("$count({deep_arr}.*)"),
                    format!("$boolean({deep_arr})"),
                    format!("$keys({deep_arr})"),
                    format!("$spread({deep_arr})"),
                    format!("$distinct([{deep_arr}, 1])"),
                ] {
                    codes.push(match eval(&src, json!(null)) {
                        Ok(v) => format!("ok {v:?}"),
                        Err(e) => e.code().to_string(),
                    });
                }
                codes
            })
            .unwrap();
        let codes = h.join().unwrap();
        assert_eq!(codes[..5], ["U1001"; 5]);
        assert_eq!(codes[5], "ok Some(Number(0))");
        assert_eq!(codes[6], "ok Some(Number(1))");
        // Arrays nested past any input's depth count as false.
        assert_eq!(codes[7], "ok Some(Bool(false))");
        assert_eq!(codes[8], "ok None");
        assert_eq!(codes[9..], ["U1001"; 2]);
    }

    #[test]
    fn memory_bombs_end_in_errors() {
        for src in [
            "$pad('x', 1e12)",
            "$reduce([1..40], function($a, $b){ $a & $a }, 'x')",
            "$reduce([1..40], function($a, $b){ [$a, $a] }, [1])",
            "$reduce([1..40], function($a, $b){ $append($a, $a) }, [1])",
            "$reduce([1..60], function($a, $b){ {'l': $a, 'r': $a} }, 1)",
            "$string($reduce([1..60], function($a, $b){ {'l': $a, 'r': $a} }, 1))",
            "$reduce([1..60], function($a, $b){ {'l': $a, 'r': $a} }, 1).**",
            "$fromMillis(0, '[Y,1000000000]')",
        ] {
            assert_eq!(eval(src, json!(null)).unwrap_err().code(), "U1001", "{src}");
        }
    }

    #[test]
    fn parsed_expressions_can_be_shared_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Expression>();
        let expr = std::sync::Arc::new(Expression::parse("a + 1").unwrap());
        let e2 = expr.clone();
        let r = std::thread::spawn(move || {
            e2.evaluate(Some(&json!({"a": 1})), &mut Environment::new(0, 1))
                .unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(r, Some(json!(2)));
    }

    #[test]
    fn undefined_and_null_differ() {
        assert_eq!(eval("nothing", json!({})).unwrap(), None);
        assert_eq!(eval("a", json!({"a": null})).unwrap(), Some(json!(null)));
    }
}
