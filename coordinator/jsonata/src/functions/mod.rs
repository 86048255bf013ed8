//! The function library, one file per family. Each builtin has JSONata's signature, which
//! the evaluator checks (and uses for context substitution) before the call.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use crate::env::Env;
use crate::errors::Result;
use crate::evaluator::Evaluator;
use crate::signature::Signature;
use crate::value::Value;

pub mod array;
pub mod aws;
pub mod datetime;
pub mod hof;
pub mod numeric;
pub mod object;
pub mod string;

/// What a builtin sees besides its arguments: the context value and the calling frame.
pub struct Ctx<'a> {
    pub input: &'a Value,
    pub env: &'a Env,
}

pub type Imp = fn(&mut Evaluator, &[Value], &Ctx) -> Result<Value>;

pub struct Builtin {
    pub name: &'static str,
    pub signature: Signature,
    /// The number of arguments higher-order functions pass it (the reference
    /// implementation's JavaScript arity, which can be less than the signature's).
    pub arity: usize,
    pub imp: Imp,
}

type Table = HashMap<&'static str, Arc<Builtin>>;

fn table(defs: &[(&'static str, &str, Imp)]) -> Table {
    defs.iter()
        .map(|(name, sig, imp)| {
            let signature = Signature::parse(sig).expect("builtin signatures parse");
            let arity = if *name == "string" {
                1
            } else {
                signature.params.len()
            };
            (
                *name,
                Arc::new(Builtin {
                    name,
                    signature,
                    arity,
                    imp: *imp,
                }),
            )
        })
        .collect()
}

fn standard() -> &'static Table {
    static T: OnceLock<Table> = OnceLock::new();
    T.get_or_init(|| {
        let mut defs: Vec<(&'static str, &str, Imp)> = vec![];
        defs.extend_from_slice(string::DEFS);
        defs.extend_from_slice(numeric::DEFS);
        defs.extend_from_slice(array::DEFS);
        defs.extend_from_slice(object::DEFS);
        defs.extend_from_slice(hof::DEFS);
        defs.extend_from_slice(datetime::DEFS);
        table(&defs)
    })
}

fn aws_table() -> &'static Table {
    static T: OnceLock<Table> = OnceLock::new();
    T.get_or_init(|| table(aws::DEFS))
}

/// The builtin bound to `$name`, if any (AWS's extra functions only when enabled).
pub fn builtin(name: &str, aws: bool) -> Option<Arc<Builtin>> {
    if aws && let Some(b) = aws_table().get(name) {
        return Some(b.clone());
    }
    standard().get(name).cloned()
}

/// Argument `i`, or undefined.
pub(crate) fn arg(args: &[Value], i: usize) -> Value {
    args.get(i).cloned().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_signature_parses_and_eval_is_absent() {
        assert!(builtin("sum", false).is_some());
        assert!(builtin("eval", false).is_none());
        assert!(builtin("partition", false).is_none());
        assert!(builtin("partition", true).is_some());
        assert_eq!(builtin("string", false).map(|b| b.arity), Some(1));
    }
}

/// What the function families' unit tests share: evaluate an expression on no input, or get
/// the error code it fails with.
#[cfg(test)]
pub(crate) mod test_support {
    use serde_json::Value as Json;

    pub fn eval(src: &str) -> Option<Json> {
        crate::Expression::parse(src)
            .unwrap()
            .evaluate(None, &mut crate::Environment::new(0, 1))
            .unwrap()
    }

    pub fn code(src: &str) -> String {
        crate::Expression::parse(src)
            .and_then(|e| e.evaluate(None, &mut crate::Environment::new(0, 1)))
            .unwrap_err()
            .code()
            .to_string()
    }
}
