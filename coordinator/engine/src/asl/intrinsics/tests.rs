//! Table tests for the intrinsic functions; expectations from AWS's recorded behaviour.

use serde_json::{Map, Value, json};

use super::*;

fn eval_with(text: &str, input: &Value) -> Result<Value, StatesError> {
    let ctx =
        json!({"Execution": {"Input": input.clone()}, "StateMachine": {"Name": "machine-name-x"}});
    let mut vars = Map::new();
    vars.insert("rawString".into(), json!("Hello World"));
    vars.insert("nums".into(), json!([1, 2, 3]));
    let scope = Scope {
        input,
        context: &ctx,
        vars: &vars,
        entropy: &crate::entropy::Entropy::new(0),
    };
    Intrinsic::parse(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .eval(&scope)
}

fn eval(text: &str) -> Result<Value, StatesError> {
    eval_with(
        text,
        &json!({"a": "x", "n": 3, "arr": [1, 2, 3], "obj": {"k": "v"}, "s": "1,2,,3"}),
    )
}

#[test]
fn functions_match_aws() {
    let cases: &[(&str, Value)] = &[
        ("States.Array()", json!([])),
        (
            "States.Array($.a, 1, 'b', true, null, 1.5)",
            json!(["x", 1, "b", true, null, 1.5]),
        ),
        (
            "States.Format('Formatting argument {}.', $.n)",
            json!("Formatting argument 3."),
        ),
        (
            "States.Format('fst={} and snd={}.', $.obj, $.arr)",
            json!("fst={k=v} and snd=[1, 2, 3]."),
        ),
        ("States.Format('{}', null)", json!("null")),
        ("States.Format('Format:{}', 101)", json!("Format:101")),
        (
            "States.Format('esc \\{\\} \\' \\\\ {}', 'x')",
            json!("esc {} ' \\ x"),
        ),
        (
            "States.Format('Hello {}, welcome to {}!', $rawString, $nums)",
            json!("Hello Hello World, welcome to [1, 2, 3]!"),
        ),
        (
            "States.StringToJson('{\"a\": [1, 2.5]}')",
            json!({"a": [1, 2.5]}),
        ),
        ("States.StringToJson('')", Value::Null),
        ("States.StringToJson(' ')", Value::Null),
        ("States.JsonToString($.obj)", json!("{\"k\":\"v\"}")),
        ("States.JsonToString($.arr)", json!("[1,2,3]")),
        ("States.JsonToString(null)", json!("null")),
        ("States.ArrayPartition($.arr, 2)", json!([[1, 2], [3]])),
        ("States.ArrayPartition(States.Array(), 5)", json!([])),
        ("States.ArrayContains($.arr, 2)", json!(true)),
        (
            "States.ArrayContains(States.Array($.obj), $.obj)",
            json!(true),
        ),
        ("States.ArrayContains($.arr, '2')", json!(false)),
        ("States.ArrayRange(0, 9, 3)", json!([0, 3, 6, 9])),
        ("States.ArrayRange(0, 10, 3)", json!([0, 3, 6, 9])),
        ("States.ArrayRange(1, 9, 9)", json!([1])),
        ("States.ArrayRange(5, 1, -2)", json!([5, 3, 1])),
        ("States.ArrayRange(5, 1, 2)", json!([])),
        (
            "States.ArrayRange(1, 1000, 1)",
            Value::from((1..=1000).collect::<Vec<i64>>()),
        ),
        ("States.ArrayGetItem($.arr, 0)", json!(1)),
        (
            "States.ArrayGetItem(States.StringSplit($$.StateMachine.Name, '-'), 0)",
            json!("machine"),
        ),
        (
            "States.ArrayGetItem(States.StringSplit($$.StateMachine.Name, '-'), States.MathAdd(States.ArrayLength(States.StringSplit($$.StateMachine.Name, '-')), -1))",
            json!("x"),
        ),
        ("States.ArrayLength($.arr)", json!(3)),
        (
            "States.ArrayUnique(States.Array(1, 1, 'a', 'a', null, null, $.obj, $.obj, 1.5))",
            json!([1, "a", null, {"k": "v"}, 1.5]),
        ),
        (
            "States.Base64Encode('Data to encode')",
            json!("RGF0YSB0byBlbmNvZGU="),
        ),
        (
            "States.Base64Decode('RGF0YSB0byBlbmNvZGU=')",
            json!("Data to encode"),
        ),
        ("States.Base64Decode('')", json!("")),
        ("States.Base64Decode('SGVsbG8')", json!("Hello")),
        ("States.Base64Encode($rawString)", json!("SGVsbG8gV29ybGQ=")),
        (
            "States.Hash('input data', 'SHA-1')",
            json!("aaff4a450a104cd177d28d18d74485e8cae074b7"),
        ),
        (
            "States.Hash('input data', 'MD5')",
            json!("812f45842bc6d66ee14572ce20db8e86"),
        ),
        (
            "States.Hash('Hash this string', 'SHA-256')",
            json!("1cac63f39fd68d8c531f27b807610fb3d50f0fc3f186995767fb6316e7200a3e"),
        ),
        (
            "States.Hash('input data', 'SHA-384')",
            json!(
                "d28a7d5cf25a74f11a50a18452b75e04bb3d70c9dd0510d6123aa008c756511b87525bdc835ebb27e1fb9e9374a15562"
            ),
        ),
        (
            "States.JsonMerge(States.StringToJson('{\"a\": {\"a1\": 1}, \"b\": 2, \"d\": 3}'), States.StringToJson('{\"a\": {\"a3\": 1}, \"c\": 3, \"d\": 4}'), false)",
            json!({"a": {"a3": 1}, "b": 2, "d": 4, "c": 3}),
        ),
        ("States.MathAdd(1.5, 1.51)", json!(4)),
        ("States.MathAdd(1.49, -1.49)", json!(0)),
        ("States.MathAdd(-1.51, 0)", json!(-2)),
        ("States.MathAdd(-0.5, 0)", json!(0)),
        ("States.MathAdd(-2.5, 0)", json!(-2)),
        ("States.MathAdd($.n, -1)", json!(2)),
        ("States.StringSplit($.s, ',')", json!(["1", "2", "3"])),
        ("States.StringSplit(',,,,', ',')", json!([])),
        ("States.StringSplit(', , ,', ',')", json!([" ", " "])),
        (
            "States.StringSplit('This.is+a,test=string', '.+,=')",
            json!(["This", "is", "a", "test", "string"]),
        ),
        (
            "States.StringSplit('Hello\nWorld', '\n')",
            json!(["Hello", "World"]),
        ),
        ("States.MathRandom(5, 6)", json!(5)),
        ("  States.ArrayLength( $.arr )  ", json!(3)),
        ("States.Format('{}', $['a'])", json!("x")),
        ("States.ArrayLength($.arr[?(@ > 1)])", json!(2)),
    ];
    for (text, want) in cases {
        assert_eq!(
            &eval(text).unwrap_or_else(|e| panic!("{text}: {e}")),
            want,
            "{text}"
        );
    }
}

#[test]
fn random_and_uuid() {
    let seeded = eval("States.MathRandom(0, 999, 3)").unwrap();
    assert_eq!(
        seeded,
        eval("States.MathRandom(0, 999, 3)").unwrap(),
        "a seed is deterministic"
    );
    for _ in 0..50 {
        let n = eval("States.MathRandom(-3, 4)").unwrap().as_i64().unwrap();
        assert!((-3..4).contains(&n));
    }
    let id = eval("States.UUID()").unwrap();
    let id = id.as_str().unwrap();
    assert_eq!(id.len(), 36);
    assert_eq!(&id[14..15], "4");
}

#[test]
fn runtime_failures() {
    let cases: &[(&str, &str)] = &[
        ("States.ArrayPartition($.arr, 0)", "States.IntrinsicFailure"),
        ("States.ArrayPartition($.a, 1)", "States.IntrinsicFailure"),
        ("States.ArrayRange(0, 10, 0)", "States.IntrinsicFailure"),
        ("States.ArrayRange(0, 1000, 1)", "States.IntrinsicFailure"),
        ("States.ArrayGetItem($.arr, 3)", "States.IntrinsicFailure"),
        ("States.ArrayGetItem($.arr, -1)", "States.IntrinsicFailure"),
        ("States.ArrayGetItem($.arr, 1.5)", "States.IntrinsicFailure"),
        ("States.ArrayLength($.obj)", "States.IntrinsicFailure"),
        (
            "States.Base64Decode('not base64!')",
            "States.IntrinsicFailure",
        ),
        ("States.Hash('x', 'SHA-3')", "States.IntrinsicFailure"),
        (
            "States.JsonMerge($.obj, $.obj, true)",
            "States.IntrinsicFailure",
        ),
        (
            "States.JsonMerge($.obj, $.arr, false)",
            "States.IntrinsicFailure",
        ),
        ("States.MathRandom(5, 5)", "States.IntrinsicFailure"),
        ("States.MathAdd('1', 2)", "States.IntrinsicFailure"),
        ("States.StringToJson('{nope')", "States.IntrinsicFailure"),
        ("States.StringToJson($.n)", "States.IntrinsicFailure"),
        ("States.Format($.a, 1)", "States.IntrinsicFailure"),
        ("States.StringSplit($.arr, ',')", "States.IntrinsicFailure"),
        ("States.Format('{}', $.missing)", "States.Runtime"),
    ];
    for (text, error) in cases {
        let err = eval(text).expect_err(text);
        assert_eq!(err.error, *error, "{text}: {}", err.cause);
    }
    let long = "a".repeat(10_001);
    let input = json!({"long": long});
    for f in [
        "States.Base64Encode($.long)",
        "States.Base64Decode($.long)",
        "States.Hash($.long, 'MD5')",
    ] {
        assert_eq!(
            eval_with(f, &input).unwrap_err().error,
            "States.IntrinsicFailure",
            "{f}"
        );
    }
    assert!(
        eval_with(
            "States.Base64Encode($.long)",
            &json!({"long": "a".repeat(10_000)})
        )
        .is_ok()
    );
}

#[test]
fn syntax_errors() {
    let nested_ok = format!("{}1{}", "States.Array(".repeat(10), ")".repeat(10));
    assert!(Intrinsic::parse(&nested_ok).is_ok());
    let nested_bad = format!("{}1{}", "States.Array(".repeat(11), ")".repeat(11));
    for bad in [
        "States.Nope()",
        "States.Format",
        "States.Format(",
        "States.Format()",
        "States.Format('{} {}', 1)",
        "States.Format('x', 1)",
        "States.Format('He said, \\\"Hello, {}!\\\"', 'Test \\\"Name\\\" Here')",
        "States.UUID(1)",
        "States.ArrayLength()",
        "States.ArrayRange(1, 2)",
        "States.MathRandom(1)",
        "States.Array(1,)",
        "States.Array(1 2)",
        "States.Array('unterminated)",
        "States.Array(nul)",
        "States.Array(01)",
        "States.Array(--1)",
        "States.Array($.a[)",
        "States.Array(x)",
        "States.Array(1) trailing",
        "States.Array (1)",
        &nested_bad,
    ] {
        assert!(Intrinsic::parse(bad).is_err(), "{bad} should not parse");
    }
}
