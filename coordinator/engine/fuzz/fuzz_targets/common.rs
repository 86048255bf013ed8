//! The fixed documents every target evaluates against: small, but with objects, arrays,
//! strings that parse as JSON or base64, numbers and a few variables.

use serde_json::{Map, Value, json};

pub fn input() -> Value {
    json!({
        "a": {"b": [1, 2, {"c": "x"}], "s": "a,b;c", "t": true, "n": null},
        "items": [{"id": 1, "price": 5.5}, {"id": 2, "price": 15}, {"id": 3}],
        "json": "{\"k\": [1, 2.5, \"v\"]}",
        "b64": "SGVsbG8gV29ybGQ=",
        "n": 3,
        "f": -1.5,
        "big": 9007199254740993u64,
        "str": "Hello World",
        "a b": "spaced",
        "arr": [3, 1, 3, "x", null, {"k": "v"}],
        "obj": {"k": "v", "nested": {"deep": [[]]}}
    })
}

pub fn context() -> Value {
    json!({
        "Execution": {"Id": "arn:aws:states:us-east-1:1:execution:sm:e", "Input": input(), "Name": "e"},
        "StateMachine": {"Id": "arn:aws:states:us-east-1:1:stateMachine:sm", "Name": "my-state-machine"},
        "State": {"Name": "S", "EnteredTime": "2024-01-01T00:00:00Z", "RetryCount": 0},
        "Map": {"Item": {"Index": 1, "Value": {"x": 1}}}
    })
}

pub fn vars() -> Map<String, Value> {
    let mut vars = Map::new();
    vars.insert("x".into(), json!({"y": [10, 20]}));
    vars.insert("s".into(), json!("v1,v2"));
    vars.insert("n".into(), json!(7));
    vars
}
