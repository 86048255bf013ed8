use super::*;

const WORKSHOP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/workshop");

fn read(name: &str) -> String {
    std::fs::read_to_string(format!("{WORKSHOP}/{name}")).expect("fixture exists")
}

fn diags(text: &str) -> Vec<Diagnostic> {
    match parse_definition(text) {
        Ok(_) => Vec::new(),
        Err(InvalidDefinition(d)) => d,
    }
}

/// (definition, expected code, expected location, a fragment of the message)
const INVALID: &[(&str, &str, &str, &str)] = &[
    (
        "{}",
        "SCHEMA_VALIDATION_FAILED",
        "/",
        "These fields are required: [States, StartAt]",
    ),
    (
        r#"{"States": {"A": {"Type": "Succeed"}}}"#,
        "SCHEMA_VALIDATION_FAILED",
        "/",
        "[StartAt]",
    ),
    (
        r#"{"StartAt": "B", "States": {"A": {"Type": "Succeed"}}}"#,
        "MISSING_TRANSITION_TARGET",
        "/StartAt",
        "B",
    ),
    (
        r#"{"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "Nope"}}}"#,
        "MISSING_TRANSITION_TARGET",
        "/States/A/Next",
        "Nope",
    ),
    (
        r#"{"StartAt": "A", "States": {"A": {"Type": "Pass"}}}"#,
        "MISSING_TRANSITION",
        "/States/A",
        "'Next' or 'End'",
    ),
    (
        r#"{"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true}, "B": {"Type": "Succeed"}}}"#,
        "UNREACHABLE_STATE",
        "/States/B",
        "not reachable",
    ),
    (
        r#"{"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true, "Next": "A"}}}"#,
        "SCHEMA_VALIDATION_FAILED",
        "/States/A",
        "Only one of",
    ),
    (
        r#"{"StartAt": "A", "States": {"A": {"Type": "Bogus", "End": true}}}"#,
        "SCHEMA_VALIDATION_FAILED",
        "/States/A/Type",
        "Unknown state type",
    ),
    (
        r#"{"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true, "Resource": "x"}}}"#,
        "SCHEMA_VALIDATION_FAILED",
        "/States/A/Resource",
        "not supported by a Pass state",
    ),
    (
        r#"{"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true, "Foo": 1}}}"#,
        "SCHEMA_VALIDATION_FAILED",
        "/States/A",
        "Field 'Foo' is not supported",
    ),
    (
        r#"{"StartAt": "A", "States": {"A": {"Type": "Task", "End": true}}}"#,
        "SCHEMA_VALIDATION_FAILED",
        "/States/A",
        "[Resource]",
    ),
    (
        r#"{"StartAt": "A", "States": {"A": {"Type": "Wait", "Timestamp": "2016-13-05T21:29:29Z", "End": true}}}"#,
        "SCHEMA_VALIDATION_FAILED",
        "/States/A/Timestamp",
        "RFC3339",
    ),
    (
        r#"{"StartAt": "A", "States": {"A": {"Type": "Wait", "Seconds": 1, "SecondsPath": "$.s", "End": true}}}"#,
        "SCHEMA_VALIDATION_FAILED",
        "/States/A",
        "exactly one",
    ),
    (
        r#"{"StartAt": "A", "States": {"A": {"Type": "Choice", "Choices": [{"Variable": "$.x", "NumericEquals": "1", "Next": "A"}]}}}"#,
        "SCHEMA_VALIDATION_FAILED",
        "/States/A/Choices/0/NumericEquals",
        "a number",
    ),
    (
        r#"{"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "r", "End": true, "Retry": [{"ErrorEquals": ["States.ALL"]}, {"ErrorEquals": ["X"]}]}}}"#,
        "SCHEMA_VALIDATION_FAILED",
        "/States/A/Retry/0",
        "last element",
    ),
    (
        r#"{"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "r", "End": true, "Catch": [{"ErrorEquals": ["States.Bogus"], "Next": "A"}]}}}"#,
        "SCHEMA_VALIDATION_FAILED",
        "/States/A/Catch/0/ErrorEquals/0",
        "predefined",
    ),
    (
        r#"{"StartAt": "M", "States": {"M": {"Type": "Map", "End": true, "Parameters": {}, "ItemSelector": {}, "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}}}}"#,
        "SCHEMA_VALIDATION_FAILED",
        "/States/M",
        "Only one of 'ItemSelector' or 'Parameters'",
    ),
    (
        r#"{"StartAt": "M", "States": {"M": {"Type": "Map", "End": true, "Iterator": {"StartAt": "P", "States": {"P": {"Type": "Pass", "Next": "Q"}}}}}}"#,
        "MISSING_TRANSITION_TARGET",
        "/States/M/Iterator/States/P/Next",
        "Q",
    ),
    (
        r#"{"StartAt": "P", "States": {"P": {"Type": "Parallel", "End": true, "Branches": [{"StartAt": "X", "States": {"X": {"Type": "Pass", "End": true, "InputPath": "not a path"}}}]}}}"#,
        "INVALID_JSON_PATH",
        "/States/P/Branches/0/States/X/InputPath",
        "JSONPath",
    ),
    (
        r#"{"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true, "ResultPath": "$.a[*]"}}}"#,
        "INVALID_REFERENCE_PATH",
        "/States/A/ResultPath",
        "Reference Path",
    ),
    (
        r#"{"StartAt": "A", "QueryLanguage": "JSONata", "States": {"A": {"Type": "Pass", "End": true, "InputPath": "$.a"}}}"#,
        "SCHEMA_VALIDATION_FAILED",
        "/States/A/InputPath",
        "only supported with QueryLanguage JSONPath",
    ),
    (
        r#"{"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "r", "QueryLanguage": "JSONata", "End": true, "ResultSelector": {}}}}"#,
        "SCHEMA_VALIDATION_FAILED",
        "/States/A/ResultSelector",
        "only supported with QueryLanguage JSONPath",
    ),
    (
        r#"{"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true, "Output": {}}}}"#,
        "SCHEMA_VALIDATION_FAILED",
        "/States/A/Output",
        "only supported with QueryLanguage JSONata",
    ),
    (
        r#"{"StartAt": "A", "QueryLanguage": "JSONata", "States": {"A": {"Type": "Pass", "End": true, "Output": {"x": {"y": "{% $states.input. %}"}}}}}"#,
        "SCHEMA_VALIDATION_FAILED",
        "/States/A/Output/x/y",
        "position",
    ),
    (
        r#"{"StartAt": "A", "QueryLanguage": "JSONata", "States": {"A": {"Type": "Pass", "End": true, "Assign": {"states": 1}}}}"#,
        "SCHEMA_VALIDATION_FAILED",
        "/States/A/Assign/states",
        "reserved",
    ),
    (
        r#"{"StartAt": "A", "QueryLanguage": "JSONata", "States": {"A": {"Type": "Choice", "Choices": [{"Variable": "$.x", "IsPresent": true, "Next": "A"}], "Default": "A"}}}"#,
        "SCHEMA_VALIDATION_FAILED",
        "/States/A/Choices/0/Variable",
        "Condition",
    ),
    (
        r#"{"StartAt": "A", "QueryLanguage": "JSONata", "States": {"A": {"Type": "Task", "Resource": "r", "End": true, "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.e", "Next": "A"}]}}}"#,
        "SCHEMA_VALIDATION_FAILED",
        "/States/A/Catch/0/ResultPath",
        "not supported in a catcher",
    ),
    (
        r#"{"StartAt": "A", "QueryLanguage": "JSONata", "States": {"A": {"Type": "Wait", "Seconds": "{% ) %}", "End": true}}}"#,
        "SCHEMA_VALIDATION_FAILED",
        "/States/A/Seconds",
        "invalid",
    ),
    (
        r#"{"StartAt": "A", "States": {"A": {"Type": "Fail", "Error": "E", "ErrorPath": "$.e"}}}"#,
        "SCHEMA_VALIDATION_FAILED",
        "/States/A",
        "Only one of 'Error' or 'ErrorPath'",
    ),
];

#[test]
fn invalid_definitions_name_state_and_field() {
    for (def, code, location, fragment) in INVALID {
        let found = diags(def);
        assert!(
            found.iter().any(|d| d.code == *code
                && d.location.as_deref() == Some(*location)
                && d.message.contains(fragment)),
            "{def}\n expected {code} at {location} containing {fragment:?}\n got {found:#?}"
        );
    }
}

#[test]
fn workshop_definitions_are_valid() {
    for name in [
        "rider-photo-state-machine.json",
        "ImageProcessingStateMachine-SingleInput.json",
        "ImageProcessingStateMachine-DynamicInput.json",
    ] {
        let def = parse_definition(&read(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!def.graphs.is_empty());
    }
}

#[test]
fn workshop_dynamic_input_uses_legacy_map_fields() {
    let def = parse_definition(&read("ImageProcessingStateMachine-DynamicInput.json")).unwrap();
    let map = def.root.state(def.root.start_at);
    let StateKind::Map(spec) = &map.kind else {
        panic!("DynamicParallelProcessing is a Map")
    };
    assert!(
        spec.item_selector.is_some(),
        "legacy Parameters become the item selector"
    );
    assert_eq!(spec.mode, ProcessorMode::Inline);
    assert!(matches!(spec.max_concurrency, Dynamic::Literal(0)));
    let processor = &def.graphs[spec.processor];
    assert_eq!(processor.state(processor.start_at).name, "FaceDetection");
}

#[test]
fn commented_skeleton_is_rejected_with_line_and_column() {
    let found = diags(&read("dynamic-input-skeleton.json"));
    assert_eq!(found.len(), 1, "{found:#?}");
    let d = &found[0];
    assert_eq!(d.code, "INVALID_JSON_DESCRIPTION");
    assert!(d.message.contains("comments"), "{}", d.message);
    assert!(d.message.contains("line 19, column 6"), "{}", d.message);
    assert_eq!(d.location.as_deref(), Some("line 19, column 6"));
}

#[test]
fn blank_and_non_object_definitions() {
    assert_eq!(
        diags("  ")[0].message,
        "Definition must be a valid JSON object"
    );
    assert_eq!(
        diags("[1]")[0].message,
        "Definition must be a valid JSON object"
    );
    assert_eq!(
        diags("not a definition")[0].code,
        "INVALID_JSON_DESCRIPTION"
    );
}

#[test]
fn every_problem_is_reported() {
    let def = r#"{"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "X"}, "B": {"Type": "Task", "End": true}}}"#;
    let found = diags(def);
    assert!(found.len() >= 2, "{found:#?}");
}
