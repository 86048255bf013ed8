//! Table tests for paths and reference paths; expectations from AWS's recorded behaviour.

use serde_json::{Map, Value, json};

use super::*;
use crate::asl::error::StatesError;
use crate::asl::scope::Scope;

fn scope_eval(path: &str, input: &Value) -> Result<Value, StatesError> {
    let ctx = json!({"Execution": {"Id": "exec-1", "Input": {"k": 1}}, "State": {"Name": "S"}});
    let mut vars = Map::new();
    vars.insert("x".into(), json!({"y": [10, 20, 30]}));
    vars.insert("n".into(), json!(42));
    let scope = Scope {
        input,
        context: &ctx,
        vars: &vars,
        entropy: &crate::entropy::Entropy::new(0),
    };
    Path::parse(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .eval(&scope)
}

#[test]
fn evaluates_like_aws() {
    let input = json!({
        "a": {"b": "c", "arr": [1, 2, 3]},
        "a b": 5,
        "items": [{"itemValue": 1, "price": 5}, {"itemValue": 2, "price": 15}, {"price": 7}],
        "Test\\\"\"Name\"": "v",
        "delivery-partner": "dp"
    });
    let cases: &[(&str, Value)] = &[
        ("$", input.clone()),
        ("$.a.b", json!("c")),
        ("$['a']['b']", json!("c")),
        ("$[\"a\"].b", json!("c")),
        ("$['a b']", json!(5)),
        ("$.a.arr[0]", json!(1)),
        ("$.a.arr[-1]", json!(3)),
        ("$.a.arr[*]", json!([1, 2, 3])),
        ("$.a.arr[1:]", json!([2, 3])),
        ("$.a.arr[0:2]", json!([1, 2])),
        ("$.a.arr[0,2]", json!([1, 3])),
        ("$.items[*].itemValue", json!([1, 2])),
        ("$.items[1:].itemValue", json!([2])),
        ("$.items[?(@.price < 10)].price", json!([5, 7])),
        ("$.items[?(@.itemValue)].price", json!([5, 15])),
        ("$.items[?@.price > 10].itemValue", json!([2])),
        (
            "$.items[?(@.price == 7 || @.itemValue == 1)].price",
            json!([5, 7]),
        ),
        ("$..itemValue", json!([1, 2])),
        ("$.nothing[*]", json!([])),
        ("$.nothing[1:5].x", json!([])),
        ("$['Test\\\"\"Name\"']", json!("v")),
        ("$.delivery-partner", json!("dp")),
        ("$$.Execution.Id", json!("exec-1")),
        (
            "$$",
            json!({"Execution": {"Id": "exec-1", "Input": {"k": 1}}, "State": {"Name": "S"}}),
        ),
        ("$x", json!({"y": [10, 20, 30]})),
        ("$x.y[1]", json!(20)),
        ("$x.y[*]", json!([10, 20, 30])),
        ("$n", json!(42)),
    ];
    for (path, want) in cases {
        assert_eq!(
            &scope_eval(path, &input).unwrap_or_else(|e| panic!("{path}: {e}")),
            want,
            "{path}"
        );
    }
}

#[test]
fn regex_filter_is_rewritten() {
    let input = json!({"xs": [{"n": "apple"}, {"n": "Banana"}, {"n": "cherry"}]});
    assert_eq!(
        scope_eval("$.xs[?(@.n =~ /b.*/i)].n", &input).unwrap(),
        json!(["Banana"])
    );
    assert_eq!(
        scope_eval("$.xs[?(@.n =~ /a.*/)].n", &input).unwrap(),
        json!(["apple"])
    );
}

#[test]
fn missing_definite_path_is_runtime_error() {
    let input = json!({"int-literal": 0});
    for (path, norm) in [
        ("$.NoSuchOutputPath", "$['NoSuchOutputPath']"),
        ("$.a.b[0]", "$['a']['b'][0]"),
        ("$['int-literal'].x", "$['int-literal']['x']"),
        ("$noSuchVar.y", "$['noSuchVar']['y']"),
    ] {
        let err = scope_eval(path, &input).unwrap_err();
        assert_eq!(err.error, "States.Runtime");
        assert_eq!(
            err.cause,
            format!("Invalid path '{path}' : No results for path: {norm}")
        );
    }
}

#[test]
fn flags() {
    let p = Path::parse("$$.Map.Item.Value").unwrap();
    assert!(p.is_context() && p.is_definite());
    assert!(!Path::parse("$.a[*]").unwrap().is_definite());
    assert!(!Path::parse("$..a").unwrap().is_definite());
    assert_eq!(Path::parse("$v.a").unwrap().variable(), Some("v"));
    assert!(Path::parse("$").unwrap().is_root());
}

#[test]
fn rejects_invalid_paths() {
    for bad in [
        "",
        "a",
        "$.",
        "$..",
        "$a b",
        "$.a.",
        "$[",
        "$['a'",
        "$[x]",
        "$.a[?()]",
        "$.a.length()",
        "$.a[?(@.x <)]",
        "$ .a",
        "$.a[0",
    ] {
        assert!(Path::parse(bad).is_err(), "{bad:?} should not parse");
    }
}

#[test]
fn reference_path_set() {
    let rp = |s: &str| ReferencePath::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
    let cases: &[(&str, Value, Value)] = &[
        ("$", json!({"a": 1}), json!("v")),
        ("$.a", json!({"a": 1}), json!({"a": "v"})),
        ("$.b.c", json!({"a": 1}), json!({"a": 1, "b": {"c": "v"}})),
        ("$['b']['c d']", json!({}), json!({"b": {"c d": "v"}})),
        ("$.arr[1]", json!({"arr": [0, 0]}), json!({"arr": [0, "v"]})),
        (
            "$.arr[0].x",
            json!({"arr": [{}]}),
            json!({"arr": [{"x": "v"}]}),
        ),
    ];
    for (path, target, want) in cases {
        assert_eq!(
            &rp(path).set(target.clone(), json!("v")).unwrap(),
            want,
            "{path}"
        );
    }
    for (path, target) in [
        ("$.a.b", json!({"a": "str"})),
        ("$.a", json!("str")),
        ("$.a", json!([1])),
        ("$.arr[5]", json!({"arr": [0]})),
    ] {
        let err = rp(path).set(target, json!(1)).unwrap_err();
        assert_eq!(err.error, "States.Runtime", "{path}");
        assert!(
            err.cause.starts_with(&format!("Invalid path '{path}'")),
            "{}",
            err.cause
        );
    }
    assert_eq!(rp("$.a.b").get(&json!({"a": {"b": 3}})), Some(&json!(3)));
    assert_eq!(rp("$.a.b").get(&json!({"a": 3})), None);
    for bad in [
        "$.a[*]",
        "$..a",
        "$$.a",
        "$x",
        "$.a[?(@.b)]",
        "$.a[1:2]",
        "$.a[-1]",
        "a",
    ] {
        assert!(ReferencePath::parse(bad).is_err(), "{bad} should not parse");
    }
}

#[test]
fn undoable_writes_are_taken_back() {
    let input = json!({"a": 1, "b": {"c": 2}, "z": 3});
    for (path, undoable) in [
        ("$.new", true),
        ("$.b", true),
        ("$.b.c", false),
        ("$", false),
    ] {
        let p = ReferencePath::parse(path).unwrap();
        let want = p.set(input.clone(), json!("v")).unwrap();
        let mut target = input.clone();
        match p.set_undoable(&mut target, json!("v")) {
            Ok(undo) => {
                assert!(undoable, "{path}");
                assert_eq!(target.to_string(), want.to_string(), "{path}");
                p.unset(&mut target, undo);
                assert_eq!(target.to_string(), input.to_string(), "{path}");
            }
            Err(value) => {
                assert!(!undoable, "{path}");
                assert_eq!((target, value), (input.clone(), json!("v")));
            }
        }
    }
    // Not an object: handed back.
    let p = ReferencePath::parse("$.x").unwrap();
    assert_eq!(p.set_undoable(&mut json!([1]), json!(2)), Err(json!(2)));
}
