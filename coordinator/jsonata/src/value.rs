//! JSONata's value model: JSON plus `undefined`, sequences (arrays with flags, as the
//! reference implementation marks its arrays) and functions.

use std::rc::Rc;
use std::sync::Arc;

use indexmap::IndexMap;

use crate::ast::{LambdaDef, TransformDef};
use crate::env::Env;
use crate::functions::Builtin;
use crate::signature::Signature;

pub type Map = IndexMap<String, Value>;

/// The flags jsonata.js sets as hidden properties on its arrays.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct Flags(u8);

impl Flags {
    pub const SEQUENCE: Flags = Flags(1);
    pub const KEEP_SINGLETON: Flags = Flags(2);
    pub const TUPLE_STREAM: Flags = Flags(4);
    pub const CONS: Flags = Flags(8);
    pub const OUTER_WRAPPER: Flags = Flags(16);

    pub fn has(self, f: Flags) -> bool {
        self.0 & f.0 != 0
    }
    pub fn with(self, f: Flags) -> Flags {
        Flags(self.0 | f.0)
    }
    pub fn without(self, f: Flags) -> Flags {
        Flags(self.0 & !f.0)
    }
}

/// An array's members. Dropping one drops nested containers iteratively, so deep values
/// built during an evaluation cannot overflow the stack when they are freed.
#[derive(Clone, Default)]
pub struct List(pub Vec<Value>);

/// An object's members (see `List`).
#[derive(Clone, Default)]
pub struct Obj(pub Map);

impl std::ops::Deref for List {
    type Target = Vec<Value>;
    fn deref(&self) -> &Vec<Value> {
        &self.0
    }
}

impl std::ops::DerefMut for List {
    fn deref_mut(&mut self) -> &mut Vec<Value> {
        &mut self.0
    }
}

impl std::ops::Deref for Obj {
    type Target = Map;
    fn deref(&self) -> &Map {
        &self.0
    }
}

impl std::ops::DerefMut for Obj {
    fn deref_mut(&mut self) -> &mut Map {
        &mut self.0
    }
}

impl List {
    pub fn rc(v: Vec<Value>) -> Rc<List> {
        Rc::new(List(v))
    }
}

impl FromIterator<Value> for List {
    fn from_iter<I: IntoIterator<Item = Value>>(iter: I) -> Self {
        List(iter.into_iter().collect())
    }
}

fn is_container(v: &Value) -> bool {
    matches!(v, Value::Array(..) | Value::Object(_))
}

/// Frees nested containers with an explicit stack instead of recursion.
fn drop_iteratively(mut stack: Vec<Value>) {
    while let Some(v) = stack.pop() {
        match v {
            Value::Array(rc, _) => {
                if let Ok(mut l) = Rc::try_unwrap(rc) {
                    stack.append(&mut l.0);
                }
            }
            Value::Object(rc) => {
                if let Ok(mut o) = Rc::try_unwrap(rc) {
                    stack.extend(o.0.drain(..).map(|(_, v)| v));
                }
            }
            _ => {}
        }
    }
}

impl Drop for List {
    fn drop(&mut self) {
        if self.0.iter().any(is_container) {
            drop_iteratively(std::mem::take(&mut self.0));
        }
    }
}

impl Drop for Obj {
    fn drop(&mut self) {
        if self.0.values().any(is_container) {
            drop_iteratively(self.0.drain(..).map(|(_, v)| v).collect());
        }
    }
}

#[derive(Clone, Default)]
pub enum Value {
    #[default]
    Undefined,
    Null,
    Bool(bool),
    Number(f64),
    String(Rc<str>),
    Array(Rc<List>, Flags),
    Object(Rc<Obj>),
    Function(Rc<Function>),
}

/// A lambda's closure: its definition, the frame it was defined in and its input.
pub struct Lambda {
    pub def: Arc<LambdaDef>,
    pub env: Env,
    pub input: Value,
}

pub enum Function {
    Lambda(Lambda),
    Builtin(Arc<Builtin>),
    /// Partial application: `None` marks a `?` placeholder.
    Partial {
        func: Value,
        args: Vec<Option<Value>>,
    },
    /// `$f ~> $g` where both are functions: `λ($x){ $g($f($x)) }`.
    Chain(Value, Value),
    Regex(Arc<RegexLit>),
    /// The `next` function of a regex match object.
    RegexNext {
        re: Arc<RegexLit>,
        text: Rc<str>,
        from: usize,
    },
    /// A transform expression `| pattern | update, delete |` as a function of its input.
    Transform {
        def: Arc<TransformDef>,
        env: Env,
    },
}

pub struct RegexLit {
    pub source: String,
    pub regex: regex::Regex,
}

impl Function {
    pub fn signature(&self) -> Option<&Signature> {
        match self {
            Function::Lambda(l) => l.def.signature.as_deref(),
            Function::Builtin(b) => Some(&b.signature),
            _ => None,
        }
    }

    /// The number of parameters, as `$map` and friends use to decide what to pass.
    pub fn arity(&self) -> usize {
        match self {
            Function::Lambda(l) => l.def.params.len(),
            Function::Builtin(b) => b.arity,
            Function::Partial { args, .. } => args.iter().filter(|a| a.is_none()).count(),
            Function::Chain(..) => 1,
            Function::Regex(_) => 1,
            Function::RegexNext { .. } => 0,
            Function::Transform { .. } => 1,
        }
    }
}

impl Value {
    pub fn string(s: &str) -> Value {
        Value::String(Rc::from(s))
    }
    pub fn array(v: Vec<Value>) -> Value {
        Value::Array(Rc::new(List(v)), Flags::default())
    }
    pub fn sequence(v: Vec<Value>) -> Value {
        Value::Array(Rc::new(List(v)), Flags::SEQUENCE)
    }
    pub fn object(m: Map) -> Value {
        Value::Object(Rc::new(Obj(m)))
    }
    pub fn func(f: Function) -> Value {
        Value::Function(Rc::new(f))
    }

    pub fn is_undefined(&self) -> bool {
        matches!(self, Value::Undefined)
    }
    pub fn is_array(&self) -> bool {
        matches!(self, Value::Array(..))
    }
    pub fn is_function(&self) -> bool {
        matches!(self, Value::Function(_))
    }
    pub fn is_sequence(&self) -> bool {
        matches!(self, Value::Array(_, f) if f.has(Flags::SEQUENCE))
    }
    pub fn flags(&self) -> Flags {
        match self {
            Value::Array(_, f) => *f,
            _ => Flags::default(),
        }
    }
    pub fn with_flags(self, add: Flags) -> Value {
        match self {
            Value::Array(a, f) => Value::Array(a, f.with(add)),
            v => v,
        }
    }
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(*n),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_slice(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a, _) => Some(a),
            _ => None,
        }
    }
    /// The members of an array, or the value itself as a one-member list (undefined: none).
    pub fn members(&self) -> Vec<Value> {
        match self {
            Value::Array(a, _) => a.to_vec(),
            Value::Undefined => vec![],
            v => vec![v.clone()],
        }
    }

    /// `typeof`-style type name used in messages and `$type`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Undefined => "undefined",
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(..) => "array",
            Value::Object(_) => "object",
            Value::Function(_) => "function",
        }
    }

    /// A JSON value (undefined and functions have none).
    pub fn from_json(v: &serde_json::Value) -> Value {
        match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => Value::Number(n.as_f64().unwrap_or(f64::NAN)),
            serde_json::Value::String(s) => Value::string(s),
            serde_json::Value::Array(a) => Value::array(a.iter().map(Value::from_json).collect()),
            serde_json::Value::Object(o) => Value::object(
                o.iter()
                    .map(|(k, v)| (k.clone(), Value::from_json(v)))
                    .collect(),
            ),
        }
    }

    /// `to_json` for results: fails (U1001) rather than expand beyond `MAX_NODES` values
    /// (shared sub-values can make a small value expand exponentially).
    pub fn to_json_bounded(&self) -> crate::errors::Result<Option<serde_json::Value>> {
        self.check_size("Result")?;
        Ok(self.to_json())
    }

    /// Fails (U1001) if walking the whole value would visit more than `MAX_NODES` values
    /// or go deeper than `MAX_INPUT_DEPTH` levels (the recursive walks need both bounds).
    pub fn check_size(&self, what: &str) -> crate::errors::Result<()> {
        fn count(v: &Value, budget: &mut usize, depth: usize) -> bool {
            if *budget == 0 || depth > crate::MAX_INPUT_DEPTH {
                return false;
            }
            *budget -= 1;
            match v {
                Value::Array(a, _) => a.iter().all(|v| count(v, budget, depth + 1)),
                Value::Object(o) => o.values().all(|v| count(v, budget, depth + 1)),
                _ => true,
            }
        }
        let mut budget = crate::errors::MAX_NODES;
        if count(self, &mut budget, 0) {
            Ok(())
        } else {
            Err(crate::errors::too_large(what))
        }
    }

    /// The JSON of a value; `None` for undefined. Functions become `""` in arrays and are
    /// left out of objects (as `JSON.stringify` treats them after the reference
    /// implementation's replacer).
    pub fn to_json(&self) -> Option<serde_json::Value> {
        Some(match self {
            Value::Undefined => return None,
            Value::Function(_) => serde_json::Value::String(String::new()),
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Number(n) => number_to_json(*n),
            Value::String(s) => serde_json::Value::String(s.to_string()),
            Value::Array(a, _) => {
                serde_json::Value::Array(a.iter().filter_map(|v| v.to_json()).collect())
            }
            Value::Object(o) => serde_json::Value::Object(
                o.iter()
                    .filter(|(_, v)| !v.is_function())
                    .filter_map(|(k, v)| v.to_json().map(|j| (k.clone(), j)))
                    .collect(),
            ),
        })
    }
}

impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Undefined => f.write_str("undefined"),
            Value::Function(_) => f.write_str("<function>"),
            v => f.write_str(&crate::functions::string::to_json_string(v, false)),
        }
    }
}

pub fn number_to_json(n: f64) -> serde_json::Value {
    if n.fract() == 0.0 && n.abs() < 9.007_199_254_740_992e15 {
        serde_json::Value::Number((n as i64).into())
    } else {
        serde_json::Number::from_f64(n)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null)
    }
}

/// JavaScript's `Number.prototype.toString()` for finite numbers.
pub fn js_number_string(n: f64) -> String {
    if n == 0.0 {
        return "0".into();
    }
    if n.is_nan() {
        return "NaN".into();
    }
    if n.is_infinite() {
        return if n > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let sci = format!("{:e}", n.abs());
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    let k = digits.len() as i32;
    let nexp = exp + 1;
    let mut out = String::new();
    if n < 0.0 {
        out.push('-');
    }
    if k <= nexp && nexp <= 21 {
        out.push_str(&digits);
        for _ in 0..(nexp - k) {
            out.push('0');
        }
    } else if 0 < nexp && nexp <= 21 {
        out.push_str(&digits[..nexp as usize]);
        out.push('.');
        out.push_str(&digits[nexp as usize..]);
    } else if -6 < nexp && nexp <= 0 {
        out.push_str("0.");
        for _ in 0..(-nexp) {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        out.push_str(&digits[..1]);
        if k > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if nexp > 0 { '+' } else { '-' });
        out.push_str(&(nexp - 1).abs().to_string());
    }
    out
}

/// `Number(n.toPrecision(15))`: how `$string` rounds numbers.
pub fn round15(n: f64) -> f64 {
    if !n.is_finite() || n == 0.0 {
        return n;
    }
    format!("{:.14e}", n).parse().unwrap_or(n)
}

/// JSONata's deep equality (`isDeepEqual`).
pub fn deep_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Undefined, Value::Undefined) | (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Number(x), Value::Number(y)) => x == y,
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Array(x, _), Value::Array(y, _)) => {
            x.len() == y.len() && x.iter().zip(y.iter()).all(|(a, b)| deep_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| deep_equal(v, w)))
        }
        (Value::Function(x), Value::Function(y)) => Rc::ptr_eq(x, y),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn js_number_formatting() {
        assert_eq!(js_number_string(1.0), "1");
        assert_eq!(js_number_string(-1.5), "-1.5");
        assert_eq!(js_number_string(1e21), "1e+21");
        assert_eq!(js_number_string(1e20), "100000000000000000000");
        assert_eq!(js_number_string(1e-7), "1e-7");
        assert_eq!(js_number_string(0.000001), "0.000001");
        assert_eq!(js_number_string(123.456), "123.456");
        assert_eq!(js_number_string(1.2345e-10), "1.2345e-10");
    }

    #[test]
    fn precision_15() {
        assert_eq!(round15(0.1 + 0.2), 0.3);
        assert_eq!(js_number_string(round15(1.0 / 3.0)), "0.333333333333333");
    }
}
