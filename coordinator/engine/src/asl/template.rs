//! Payload templates: JSON values whose `"key.$"` fields hold a path or an intrinsic.
//!
//! A template is compiled once, when the definition is loaded: every `"key.$"` value is
//! parsed into a [`Path`] or an [`Intrinsic`], and subtrees without any `.$` key are kept as
//! literal values so evaluation is a plain clone for them.

use serde_json::{Map, Value};

use super::error::StatesError;
use super::intrinsics::Intrinsic;
use super::path::Path;
use super::scope::Scope;

/// Why a template is invalid, with the JSON pointer of the offending field inside the template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{pointer}: {message}")]
pub struct TemplateError {
    /// e.g. `/Payload/name.$` relative to the template's root.
    pub pointer: String,
    pub message: String,
}

/// Deepest nesting we compile. serde_json's parser already stops at 128 levels; this also
/// bounds templates built in code, since compiling and evaluating recurse.
const MAX_DEPTH: usize = 200;

/// A compiled piece of a template.
#[derive(Debug, Clone)]
enum Node {
    /// A subtree with no `.$` key anywhere: copied as is.
    Literal(Value),
    /// An object with at least one dynamic field somewhere below. Keys are output keys.
    Object(Vec<(String, Node)>),
    Array(Vec<Node>),
    /// `"key.$": "$..."`; `field` is the template key with its `.$` for error messages.
    Path {
        path: Path,
        field: String,
    },
    /// `"key.$": "States.Xxx(...)"`.
    Intrinsic(Box<Intrinsic>),
}

/// A pre-parsed payload template (Parameters, ItemSelector, ResultSelector, Assign values ...).
#[derive(Debug, Clone)]
pub struct Template {
    root: Node,
    /// How the template reads `$$.Map.Item`, for a Map's ItemSelector
    /// ([`Template::eval_map_item`]).
    map_item: MapItemUse,
}

/// What [`Template::eval_map_item`] did.
#[derive(Debug)]
pub enum MapItemEval {
    /// The template's output.
    Selected(Value),
    /// The template reads more of `$$`: evaluate it against a context object (the item
    /// comes back for it).
    NeedsContext(Value),
    /// The evaluation failed: evaluate it again against the whole context object, which the
    /// error message quotes (the item comes back for it).
    Failed(Value),
}

/// Whether a template can be evaluated for a Map item without the context object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MapItemUse {
    /// It reads `$$` other than through definite `$$.Map.Item.Index`/`.Value...` paths (an
    /// intrinsic that mentions `$$` counts as reading all of it).
    Context,
    /// Only such paths (or none).
    ItemOnly,
    /// Only such paths, and the whole item exactly once, as the top-level object's field
    /// number `.0` (whose output key no other field has): the item can be moved there.
    MovesItem(usize),
}

impl Template {
    pub fn parse(raw: &Value) -> Result<Template, TemplateError> {
        let mut pointer = String::new();
        let root = compile(raw, &mut pointer, 0)?;
        let map_item = map_item_use(&root);
        Ok(Template { root, map_item })
    }

    /// Evaluates a Map's ItemSelector for item `index` (its value `item`) without building
    /// the context object, when the template reads nothing of `$$` but `$$.Map.Item.Index`
    /// and `$$.Map.Item.Value...` (`scope.context` is not read). The item is moved into the
    /// output where the template takes it whole.
    pub fn eval_map_item(&self, scope: &Scope<'_>, index: usize, item: Value) -> MapItemEval {
        let failed = |item| MapItemEval::Failed(item);
        match self.map_item {
            MapItemUse::Context => MapItemEval::NeedsContext(item),
            MapItemUse::ItemOnly => match eval_node_with(&self.root, scope, Some((index, &item))) {
                Ok(v) => MapItemEval::Selected(v),
                Err(_) => failed(item),
            },
            MapItemUse::MovesItem(field) => {
                let Node::Object(fields) = &self.root else {
                    return MapItemEval::NeedsContext(item);
                };
                let mut out = Map::with_capacity(fields.len());
                for (i, (key, node)) in fields.iter().enumerate() {
                    let value = if i == field {
                        Value::Null // the item, once every other field is built
                    } else {
                        match eval_node_with(node, scope, Some((index, &item))) {
                            Ok(v) => v,
                            Err(_) => return failed(item),
                        }
                    };
                    out.insert(key.clone(), value);
                }
                // Output keys are distinct (see `MapItemUse::MovesItem`): field `field` is
                // entry `field`.
                if let Some(slot) = out.values_mut().nth(field) {
                    *slot = item;
                }
                MapItemEval::Selected(Value::Object(out))
            }
        }
    }

    /// Does the template contain no `.$` field at all (its value is fixed)?
    pub fn is_constant(&self) -> bool {
        matches!(self.root, Node::Literal(_))
    }

    /// Builds the payload. A path with no match is `States.Runtime` with AWS's cause text;
    /// a failing intrinsic is `States.IntrinsicFailure`.
    pub fn eval(&self, scope: &Scope<'_>) -> Result<Value, StatesError> {
        eval_node(&self.root, scope)
    }
}

/// Compiles one `"key.$"` value: a path or an intrinsic call. `field` is the key with `.$`.
/// Also used for fields such as a Fail state's `ErrorPath`, which take the same two forms.
pub fn compile_dynamic(field: &str, value: &Value) -> Result<DynamicValue, DynamicValueError> {
    let Value::String(text) = value else {
        return Err(DynamicValueError::NotAString {
            field: field.to_string(),
            kind: super::path::json_kind(value),
        });
    };
    let invalid = || DynamicValueError::Invalid {
        field: field.to_string(),
    };
    if text.starts_with('$') {
        Path::parse(text)
            .map(DynamicValue::Path)
            .map_err(|_| invalid())
    } else if Intrinsic::looks_like(text) {
        Intrinsic::parse(text)
            .map(|i| DynamicValue::Intrinsic(Box::new(i)))
            .map_err(|_| invalid())
    } else {
        Err(invalid())
    }
}

/// Why a `"key.$"` value does not compile (the message is AWS's diagnostic text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DynamicValueError {
    #[error(
        "The value for the field '{field}' must be a STRING that contains a JSONPath or an intrinsic function call, but was {kind}"
    )]
    NotAString { field: String, kind: &'static str },
    #[error(
        "The value for the field '{field}' must be a valid JSONPath or a valid intrinsic function call"
    )]
    Invalid { field: String },
}

/// A compiled `"key.$"` value.
#[derive(Debug, Clone)]
pub enum DynamicValue {
    Path(Path),
    Intrinsic(Box<Intrinsic>),
}

impl DynamicValue {
    /// Evaluates with the same error texts as a template field named `field`.
    pub fn eval(&self, field: &str, scope: &Scope<'_>) -> Result<Value, StatesError> {
        match self {
            DynamicValue::Path(path) => eval_path(path, field, scope),
            DynamicValue::Intrinsic(call) => call.eval(scope),
        }
    }
}

fn compile(raw: &Value, pointer: &mut String, depth: usize) -> Result<Node, TemplateError> {
    if depth > MAX_DEPTH {
        return Err(TemplateError {
            pointer: pointer.clone(),
            message: format!("The template is nested more than {MAX_DEPTH} levels deep"),
        });
    }
    match raw {
        Value::Object(map) => {
            let mut fields = Vec::with_capacity(map.len());
            let mut dynamic = false;
            for (key, value) in map {
                let len = pointer.len();
                pointer.push('/');
                push_pointer_token(pointer, key);
                let node = match key.strip_suffix(".$") {
                    Some(out_key) => {
                        dynamic = true;
                        let node = match compile_dynamic(key, value) {
                            Ok(DynamicValue::Path(path)) => Node::Path {
                                path,
                                field: key.clone(),
                            },
                            Ok(DynamicValue::Intrinsic(call)) => Node::Intrinsic(call),
                            Err(e) => {
                                return Err(TemplateError {
                                    pointer: pointer.clone(),
                                    message: e.to_string(),
                                });
                            }
                        };
                        (out_key.to_string(), node)
                    }
                    None => {
                        let node = compile(value, pointer, depth + 1)?;
                        dynamic |= !matches!(node, Node::Literal(_));
                        (key.clone(), node)
                    }
                };
                pointer.truncate(len);
                fields.push(node);
            }
            if dynamic {
                Ok(Node::Object(fields))
            } else {
                Ok(Node::Literal(raw.clone()))
            }
        }
        Value::Array(items) => {
            let mut nodes = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&i.to_string());
                nodes.push(compile(item, pointer, depth + 1)?);
                pointer.truncate(len);
            }
            if nodes.iter().all(|n| matches!(n, Node::Literal(_))) {
                Ok(Node::Literal(raw.clone()))
            } else {
                Ok(Node::Array(nodes))
            }
        }
        _ => Ok(Node::Literal(raw.clone())),
    }
}

/// RFC 6901 escaping of one pointer token.
fn push_pointer_token(out: &mut String, token: &str) {
    for c in token.chars() {
        match c {
            '~' => out.push_str("~0"),
            '/' => out.push_str("~1"),
            c => out.push(c),
        }
    }
}

fn eval_node(node: &Node, scope: &Scope<'_>) -> Result<Value, StatesError> {
    eval_node_with(node, scope, None)
}

/// [`eval_node`]; with `map_item`, context paths read `$$.Map.Item` from it (the template
/// reads no other part of `$$`: see [`MapItemUse`]).
fn eval_node_with(
    node: &Node,
    scope: &Scope<'_>,
    map_item: Option<(usize, &Value)>,
) -> Result<Value, StatesError> {
    match node {
        Node::Literal(v) => Ok(v.clone()),
        Node::Object(fields) => {
            let mut out = Map::with_capacity(fields.len());
            for (key, node) in fields {
                out.insert(key.clone(), eval_node_with(node, scope, map_item)?);
            }
            Ok(Value::Object(out))
        }
        Node::Array(items) => items
            .iter()
            .map(|n| eval_node_with(n, scope, map_item))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Node::Path { path, field } => match map_item {
            Some((index, item)) if path.is_context() => match path.find_map_item(index, item) {
                Some(Some(v)) => Ok(v.into_owned()),
                // The caller evaluates again against the whole context for the message.
                _ => Err(StatesError::runtime(path.no_results_cause())),
            },
            _ => eval_path(path, field, scope),
        },
        Node::Intrinsic(call) => call.eval(scope),
    }
}

/// How `root` reads `$$.Map.Item` ([`MapItemUse`]).
fn map_item_use(root: &Node) -> MapItemUse {
    /// Counts the paths that read the whole item; false when something reads other `$$`.
    fn walk(node: &Node, whole_item: &mut usize) -> bool {
        match node {
            Node::Literal(_) => true,
            Node::Object(fields) => fields.iter().all(|(_, n)| walk(n, whole_item)),
            Node::Array(items) => items.iter().all(|n| walk(n, whole_item)),
            Node::Path { path, .. } => {
                if !path.is_context() {
                    return true;
                }
                let item = Value::Null;
                if path.find_map_item(0, &item).is_none() {
                    return false;
                }
                if path.is_map_item_value() {
                    *whole_item += 1;
                }
                true
            }
            Node::Intrinsic(call) => !call.as_str().contains("$$"),
        }
    }
    let mut whole_item = 0;
    if !walk(root, &mut whole_item) {
        return MapItemUse::Context;
    }
    if whole_item != 1 {
        return MapItemUse::ItemOnly;
    }
    let Node::Object(fields) = root else {
        return MapItemUse::ItemOnly;
    };
    let Some(field) = fields
        .iter()
        .position(|(_, n)| matches!(n, Node::Path { path, .. } if path.is_map_item_value()))
    else {
        return MapItemUse::ItemOnly;
    };
    let key = &fields[field].0;
    if fields.iter().filter(|(k, _)| k == key).count() > 1 {
        return MapItemUse::ItemOnly;
    }
    MapItemUse::MovesItem(field)
}

fn eval_path(path: &Path, field: &str, scope: &Scope<'_>) -> Result<Value, StatesError> {
    match path.find(scope) {
        Some(v) => Ok(v.into_owned()),
        None => {
            // AWS quotes the document the path was applied to: the input, or the context
            // object for `$$` paths.
            let doc = if path.is_context() {
                scope.context
            } else {
                scope.input
            };
            Err(StatesError::runtime(format!(
                "The JSONPath '{}' specified for the field '{}' could not be found in the input '{}'",
                path.as_str(),
                field,
                serde_json::to_string(doc).unwrap_or_default()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn run(template: Value, input: Value) -> Result<Value, StatesError> {
        let ctx = json!({"Execution": {"Id": "e-1", "Input": input.clone()}, "Map": {"Item": {"Index": 2}}});
        let mut vars = Map::new();
        vars.insert("v".into(), json!({"w": [1, 2]}));
        let t = Template::parse(&template).unwrap_or_else(|e| panic!("{template}: {e}"));
        t.eval(&Scope {
            input: &input,
            context: &ctx,
            vars: &vars,
            entropy: &crate::entropy::Entropy::new(0),
        })
    }

    #[test]
    fn builds_payloads() {
        let input = json!({"a": {"b": "c"}, "items": [{"x": 1}, {"x": 2}]});
        let cases: Vec<(Value, Value)> = vec![
            (json!({"k": "$.a"}), json!({"k": "$.a"})),
            (json!({"k.$": "$.a.b"}), json!({"k": "c"})),
            (json!({"k.$": "$"}), json!({"k": input.clone()})),
            (
                json!({"k.$": "$.items[*].x", "lit": [1, {"z": null}]}),
                json!({"k": [1, 2], "lit": [1, {"z": null}]}),
            ),
            (
                json!({"Payload": {"deep": [{"i.$": "$$.Map.Item.Index"}, "s"]}, "id.$": "$$.Execution.Id"}),
                json!({"Payload": {"deep": [{"i": 2}, "s"]}, "id": "e-1"}),
            ),
            (json!({"var.$": "$v.w[1]"}), json!({"var": 2})),
            (json!({"missing.$": "$.nope[*]"}), json!({"missing": []})),
            (
                json!(["lit", {"a.$": "$.a"}]),
                json!(["lit", {"a": {"b": "c"}}]),
            ),
            (json!("plain"), json!("plain")),
            (json!({".$": "$.a.b"}), json!({"": "c"})),
        ];
        for (template, want) in cases {
            assert_eq!(
                run(template.clone(), input.clone()).unwrap(),
                want,
                "{template}"
            );
        }
        assert!(
            Template::parse(&json!({"a": [1, {"b": 2}]}))
                .unwrap()
                .is_constant()
        );
        assert!(
            !Template::parse(&json!({"a": [1, {"b.$": "$"}]}))
                .unwrap()
                .is_constant()
        );
    }

    #[test]
    fn map_item_selectors_need_no_context_object() {
        let item = json!({"k": "item-7", "n": [1, 2]});
        let ctx = json!({"Execution": {"Id": "e-1"}, "Map": {"Item": {"Index": 7, "Value": item.clone()}}});
        let input = json!({"a": 1});
        let vars = Map::new();
        let entropy = crate::entropy::Entropy::new(0);
        let with_ctx = Scope {
            input: &input,
            context: &ctx,
            vars: &vars,
            entropy: &entropy,
        };
        let without = Scope {
            context: &Value::Null,
            ..with_ctx
        };
        // (template, evaluated without the context, moves the item)
        let cases = [
            (
                json!({"v.$": "$$.Map.Item.Value", "i.$": "$$.Map.Item.Index"}),
                true,
                true,
            ),
            (
                json!({"i.$": "$$.Map.Item.Index", "v.$": "$$.Map.Item.Value", "a.$": "$.a"}),
                true,
                true,
            ),
            (
                json!({"k.$": "$$.Map.Item.Value.k", "n.$": "$$.Map.Item.Value.n[1]"}),
                true,
                false,
            ),
            (
                json!({"v.$": "$$.Map.Item.Value", "w.$": "$$.Map.Item.Value"}),
                true,
                false,
            ),
            (
                json!({"v.$": "$$.Map.Item.Value", "v": "literal"}),
                true,
                false,
            ),
            (json!({"deep": {"v.$": "$$.Map.Item.Value"}}), true, false),
            (json!(["x", {"i.$": "$$.Map.Item.Index"}]), true, false),
            (json!({"a.$": "$.a", "lit": [1]}), true, false),
            (
                json!({"v.$": "$$.Map.Item.Value", "id.$": "$$.Execution.Id"}),
                false,
                false,
            ),
            (json!({"m.$": "$$.Map.Item"}), false, false),
            (json!({"n.$": "$$.Map.Item.Value.n[*]"}), false, false),
            (
                json!({"f.$": "States.Format('{}', $$.Map.Item.Index)"}),
                false,
                false,
            ),
            (
                json!({"f.$": "States.Format('{}', $.a)", "v.$": "$$.Map.Item.Value"}),
                true,
                true,
            ),
        ];
        for (template, direct, moves) in cases {
            let t = Template::parse(&template).unwrap();
            let want = t.eval(&with_ctx).unwrap();
            match t.eval_map_item(&without, 7, item.clone()) {
                MapItemEval::Selected(v) => {
                    assert!(direct, "{template}");
                    assert_eq!(v, want, "{template}");
                    // Key order too.
                    assert_eq!(v.to_string(), want.to_string(), "{template}");
                }
                MapItemEval::NeedsContext(v) => {
                    assert!(!direct, "{template}");
                    assert_eq!(v, item, "{template}");
                }
                MapItemEval::Failed(_) => panic!("{template}"),
            }
            assert_eq!(
                matches!(t.map_item, MapItemUse::MovesItem(_)),
                moves,
                "{template}"
            );
        }
        // A path that finds nothing hands the item back for the whole context's message.
        for template in [
            json!({"v.$": "$$.Map.Item.Value", "x.$": "$$.Map.Item.Value.missing"}),
            json!({"x.$": "$$.Map.Item.Index.deeper"}),
            json!({"v.$": "$$.Map.Item.Value", "x.$": "$.missing"}),
        ] {
            let t = Template::parse(&template).unwrap();
            assert!(t.eval(&with_ctx).is_err(), "{template}");
            match t.eval_map_item(&without, 7, item.clone()) {
                MapItemEval::Failed(v) => assert_eq!(v, item, "{template}"),
                other => panic!("{template}: {other:?}"),
            }
        }
    }

    #[test]
    fn missing_path_is_runtime_error() {
        let err = run(json!({"name.$": "$.x"}), json!({"a": 1})).unwrap_err();
        assert_eq!(err.error, "States.Runtime");
        assert_eq!(
            err.cause,
            "The JSONPath '$.x' specified for the field 'name.$' could not be found in the input '{\"a\":1}'"
        );
    }

    #[test]
    fn parse_errors_point_at_the_field() {
        let cases = [
            (
                json!({"Payload": {"name.$": "nope"}}),
                "/Payload/name.$",
                "must be a valid JSONPath",
            ),
            (
                json!({"a": [0, {"b/c.$": "$.["}]}),
                "/a/1/b~1c.$",
                "must be a valid JSONPath",
            ),
            (json!({"n.$": 3}), "/n.$", "must be a STRING"),
            (json!({"n.$": {"x": 1}}), "/n.$", "must be a STRING"),
            (json!({"n.$": "States.Nope("}), "/n.$", "valid intrinsic"),
        ];
        for (template, pointer, msg) in cases {
            let err = Template::parse(&template).unwrap_err();
            assert_eq!(err.pointer, pointer, "{template}");
            assert!(err.message.contains(msg), "{template}: {}", err.message);
        }
    }
}
