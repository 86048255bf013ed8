//! The 18 intrinsic functions (`States.Format(...)`, ...): parser and evaluator.
//!
//! A call is parsed once, when the definition is loaded, into a tree of [`Call`]s whose
//! arguments are literals, paths or nested calls; evaluation walks that tree. The parser
//! lives in `parser.rs`, the functions in `functions.rs` (and `format.rs` for the Java-style
//! rendering `States.Format` uses).

mod format;
mod functions;
mod parser;

use serde_json::{Number, Value};

use super::error::StatesError;
use super::path::Path;
use super::scope::Scope;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct IntrinsicSyntaxError(pub String);

/// A pre-parsed intrinsic function call.
#[derive(Debug, Clone)]
pub struct Intrinsic {
    text: String,
    call: Call,
}

impl Intrinsic {
    /// Is this string an intrinsic call (starts with `States.` and a name followed by `(`)?
    pub fn looks_like(text: &str) -> bool {
        text.trim_start().starts_with("States.")
    }

    pub fn parse(text: &str) -> Result<Intrinsic, IntrinsicSyntaxError> {
        let call = parser::parse(text)?;
        Ok(Intrinsic {
            text: text.to_string(),
            call,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The outermost function's name, e.g. `States.Format`.
    pub fn name(&self) -> &'static str {
        self.call.func.name()
    }

    /// Runs the call. A failing function is `States.IntrinsicFailure`; an argument path with
    /// no match is `States.Runtime`, like any other path.
    pub fn eval(&self, scope: &Scope<'_>) -> Result<Value, StatesError> {
        self.call.eval(scope)
    }
}

impl std::fmt::Display for Intrinsic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// The functions of the States language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    Format,
    StringToJson,
    JsonToString,
    Array,
    ArrayPartition,
    ArrayContains,
    ArrayRange,
    ArrayGetItem,
    ArrayLength,
    ArrayUnique,
    Base64Encode,
    Base64Decode,
    Hash,
    JsonMerge,
    MathRandom,
    MathAdd,
    StringSplit,
    Uuid,
}

impl Func {
    const ALL: [Func; 18] = [
        Func::Format,
        Func::StringToJson,
        Func::JsonToString,
        Func::Array,
        Func::ArrayPartition,
        Func::ArrayContains,
        Func::ArrayRange,
        Func::ArrayGetItem,
        Func::ArrayLength,
        Func::ArrayUnique,
        Func::Base64Encode,
        Func::Base64Decode,
        Func::Hash,
        Func::JsonMerge,
        Func::MathRandom,
        Func::MathAdd,
        Func::StringSplit,
        Func::Uuid,
    ];

    fn name(self) -> &'static str {
        match self {
            Func::Format => "States.Format",
            Func::StringToJson => "States.StringToJson",
            Func::JsonToString => "States.JsonToString",
            Func::Array => "States.Array",
            Func::ArrayPartition => "States.ArrayPartition",
            Func::ArrayContains => "States.ArrayContains",
            Func::ArrayRange => "States.ArrayRange",
            Func::ArrayGetItem => "States.ArrayGetItem",
            Func::ArrayLength => "States.ArrayLength",
            Func::ArrayUnique => "States.ArrayUnique",
            Func::Base64Encode => "States.Base64Encode",
            Func::Base64Decode => "States.Base64Decode",
            Func::Hash => "States.Hash",
            Func::JsonMerge => "States.JsonMerge",
            Func::MathRandom => "States.MathRandom",
            Func::MathAdd => "States.MathAdd",
            Func::StringSplit => "States.StringSplit",
            Func::Uuid => "States.UUID",
        }
    }

    fn from_name(name: &str) -> Option<Func> {
        Func::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Allowed argument counts (inclusive), checked when the definition is loaded.
    fn arity(self) -> (usize, usize) {
        match self {
            Func::Format => (1, usize::MAX),
            Func::Array => (0, usize::MAX),
            Func::Uuid => (0, 0),
            Func::StringToJson
            | Func::JsonToString
            | Func::ArrayLength
            | Func::ArrayUnique
            | Func::Base64Encode
            | Func::Base64Decode => (1, 1),
            Func::ArrayPartition
            | Func::ArrayContains
            | Func::ArrayGetItem
            | Func::Hash
            | Func::MathAdd
            | Func::StringSplit => (2, 2),
            Func::ArrayRange | Func::JsonMerge => (3, 3),
            Func::MathRandom => (2, 3),
        }
    }
}

/// One argument of a call.
#[derive(Debug, Clone)]
enum Arg {
    /// `'...'`: the unescaped value, and the text between the quotes as written (Format needs
    /// it to tell an escaped `\{` from a placeholder).
    Str {
        value: String,
        raw: String,
    },
    Num(Number),
    Bool(bool),
    Null,
    Path(Path),
    Call(Box<Call>),
}

#[derive(Debug, Clone)]
struct Call {
    func: Func,
    args: Vec<Arg>,
}

impl Call {
    fn eval(&self, scope: &Scope<'_>) -> Result<Value, StatesError> {
        functions::eval(self, scope)
    }
}

#[cfg(test)]
mod tests;
