//! Building a Distributed Map's `ItemReader` and `ResultWriter`. Every problem names the
//! state and the field (`/States/Fan/ItemReader/ReaderConfig/CSVHeaders`).

use serde_json::{Map, Value};

use super::{Builder, Loc};
use crate::asl::definition::{AnyTemplate, Dynamic};
use crate::asl::distributed::*;

/// The `Parameters` fields of a reader or writer: (name, required).
fn parameter_fields(resource: &str) -> &'static [(&'static str, bool)] {
    match resource {
        GET_OBJECT => &[("Bucket", true), ("Key", true), ("VersionId", false)],
        LIST_OBJECTS_V2 => &[("Bucket", true), ("Prefix", false)],
        PUT_OBJECT => &[("Bucket", true), ("Prefix", false)],
        _ => &[],
    }
}

impl Builder {
    pub(super) fn item_reader(&mut self, v: &Value, loc: &Loc) -> Option<ItemReaderSpec> {
        let Some(obj) = v.as_object() else {
            self.err(loc, "'ItemReader' must be a JSON object");
            return None;
        };
        let fields = self.s3_fields_name();
        for key in obj.keys() {
            if !matches!(key.as_str(), "Resource" | "ReaderConfig") && key != fields {
                self.err(
                    &loc.field(key),
                    format!("Field '{key}' is not supported in 'ItemReader'"),
                );
            }
        }
        let resource = match obj.get("Resource") {
            Some(Value::String(r)) if r == GET_OBJECT || r == LIST_OBJECTS_V2 => r.as_str(),
            Some(_) => {
                self.err(
                    &loc.field("Resource"),
                    format!("'Resource' must be '{GET_OBJECT}' or '{LIST_OBJECTS_V2}'"),
                );
                return None;
            }
            None => {
                self.err(loc, "These fields are required: [Resource]");
                return None;
            }
        };
        let empty = Map::new();
        let config = match obj.get("ReaderConfig") {
            None => &empty,
            Some(Value::Object(c)) => c,
            Some(_) => {
                self.err(
                    &loc.field("ReaderConfig"),
                    "'ReaderConfig' must be a JSON object",
                );
                return None;
            }
        };
        let source = self.reader_source(resource, config, &loc.field("ReaderConfig"))?;
        let max_items = self.max_items(config, &loc.field("ReaderConfig"))?;
        let parameters = self.s3_parameters(obj.get(fields), resource, loc)?;
        Some(ItemReaderSpec {
            source,
            parameters,
            max_items,
        })
    }

    fn reader_source(
        &mut self,
        resource: &str,
        config: &Map<String, Value>,
        loc: &Loc,
    ) -> Option<ReaderSource> {
        for key in config.keys() {
            let known = matches!(
                key.as_str(),
                "InputType"
                    | "CSVHeaderLocation"
                    | "CSVHeaders"
                    | "CSVDelimiter"
                    | "MaxItems"
                    | "MaxItemsPath"
            );
            if !known {
                self.err(
                    &loc.field(key),
                    format!("Field '{key}' is not supported in 'ReaderConfig'"),
                );
            }
        }
        let input_type = config.get("InputType");
        if resource == LIST_OBJECTS_V2 {
            for field in [
                "InputType",
                "CSVHeaderLocation",
                "CSVHeaders",
                "CSVDelimiter",
            ] {
                if config.contains_key(field) {
                    self.err(
                        &loc.field(field),
                        format!("'{field}' is not supported with '{LIST_OBJECTS_V2}'"),
                    );
                }
            }
            return Some(ReaderSource::ListObjects);
        }
        let format = match input_type.and_then(Value::as_str) {
            Some("JSON") => ItemFormat::Json,
            Some("JSONL") => ItemFormat::Jsonl,
            Some("CSV") => ItemFormat::Csv(self.csv_format(config, loc)?),
            Some("MANIFEST") => ItemFormat::Manifest,
            Some(_) | None if input_type.is_some() => {
                self.err(
                    &loc.field("InputType"),
                    "'InputType' must be 'CSV', 'JSON', 'JSONL' or 'MANIFEST'",
                );
                return None;
            }
            _ => {
                self.err(
                    loc,
                    format!("These fields are required with '{GET_OBJECT}': [InputType]"),
                );
                return None;
            }
        };
        if !matches!(format, ItemFormat::Csv(_)) {
            for field in ["CSVHeaderLocation", "CSVHeaders", "CSVDelimiter"] {
                if config.contains_key(field) {
                    self.err(
                        &loc.field(field),
                        format!("'{field}' is only supported with InputType 'CSV'"),
                    );
                }
            }
        }
        Some(ReaderSource::GetObject(format))
    }

    fn csv_format(&mut self, config: &Map<String, Value>, loc: &Loc) -> Option<CsvFormat> {
        let delimiter = match config.get("CSVDelimiter") {
            None => b',',
            Some(v) => match v.as_str() {
                Some("COMMA") => b',',
                Some("PIPE") => b'|',
                Some("SEMICOLON") => b';',
                Some("SPACE") => b' ',
                Some("TAB") => b'\t',
                _ => {
                    self.err(
                        &loc.field("CSVDelimiter"),
                        "'CSVDelimiter' must be 'COMMA', 'PIPE', 'SEMICOLON', 'SPACE' or 'TAB'",
                    );
                    return None;
                }
            },
        };
        let given = match config.get("CSVHeaders") {
            None => None,
            Some(Value::Array(names)) => {
                let mut out = Vec::with_capacity(names.len());
                for (i, n) in names.iter().enumerate() {
                    match n.as_str() {
                        Some(s) => out.push(s.to_string()),
                        None => {
                            self.err(
                                &loc.field("CSVHeaders").index(i),
                                "'CSVHeaders' must be an array of strings",
                            );
                            return None;
                        }
                    }
                }
                if out.is_empty() {
                    self.err(&loc.field("CSVHeaders"), "'CSVHeaders' cannot be empty");
                    return None;
                }
                Some(out)
            }
            Some(_) => {
                self.err(
                    &loc.field("CSVHeaders"),
                    "'CSVHeaders' must be an array of strings",
                );
                return None;
            }
        };
        let headers = match (config.get("CSVHeaderLocation").map(Value::as_str), given) {
            (None | Some(Some("FIRST_ROW")), None) => CsvHeaders::FirstRow,
            (Some(Some("GIVEN")), Some(names)) => CsvHeaders::Given(names),
            (Some(Some("GIVEN")), None) => {
                self.err(
                    loc,
                    "'CSVHeaderLocation' 'GIVEN' needs 'CSVHeaders' (the column names)",
                );
                return None;
            }
            (None | Some(Some("FIRST_ROW")), Some(_)) => {
                self.err(
                    &loc.field("CSVHeaders"),
                    "'CSVHeaders' is only supported with 'CSVHeaderLocation' 'GIVEN'",
                );
                return None;
            }
            _ => {
                self.err(
                    &loc.field("CSVHeaderLocation"),
                    "'CSVHeaderLocation' must be 'FIRST_ROW' or 'GIVEN'",
                );
                return None;
            }
        };
        Some(CsvFormat { headers, delimiter })
    }

    fn max_items(
        &mut self,
        config: &Map<String, Value>,
        loc: &Loc,
    ) -> Option<Option<Dynamic<u64>>> {
        let expression = |v: &Value| {
            v.as_str()
                .is_some_and(|s| crate::asl::jsonata::expression_text(s).is_some())
        };
        if let Some(v) = config.get("MaxItems")
            && !(self.jsonata && expression(v))
            && v.as_u64().is_none_or(|n| n > MAX_ITEMS_LIMIT)
        {
            self.err(
                &loc.field("MaxItems"),
                format!("'MaxItems' must be an integer from 0 to {MAX_ITEMS_LIMIT}"),
            );
            return None;
        }
        self.dynamic_u64(
            config.get("MaxItems"),
            config.get("MaxItemsPath"),
            "MaxItems",
            loc,
            true,
        )
    }

    /// The field an S3 reader or writer gives its bucket and key in: `Parameters`, or
    /// `Arguments` in a JSONata state.
    fn s3_fields_name(&self) -> &'static str {
        if self.jsonata {
            "Arguments"
        } else {
            "Parameters"
        }
    }

    /// `Parameters` (`Arguments`) of an S3 reader or writer: an object whose fields are those
    /// of the resource, each given literally (a string), through a path (`"Bucket.$"`) or,
    /// in JSONata, as an expression (`"{% $states.input.bucket %}"`); or, in JSONata, one
    /// expression for the whole object.
    fn s3_parameters(
        &mut self,
        v: Option<&Value>,
        resource: &str,
        loc: &Loc,
    ) -> Option<AnyTemplate> {
        let name = self.s3_fields_name();
        let pl = loc.field(name);
        let Some(v) = v else {
            self.err(loc, format!("These fields are required: [{name}]"));
            return None;
        };
        if self.jsonata
            && v.as_str()
                .is_some_and(|s| crate::asl::jsonata::expression_text(s).is_some())
        {
            return self
                .jtemplate_field(Some(v), name, loc)
                .map(AnyTemplate::Jsonata);
        }
        let Some(obj) = v.as_object() else {
            self.err(&pl, format!("'{name}' must be a JSON object"));
            return None;
        };
        let fields = parameter_fields(resource);
        let mut ok = true;
        for (key, value) in obj {
            let field = match key.strip_suffix(".$") {
                Some(_) if self.jsonata => {
                    self.err(
                        &pl.field(key),
                        format!("Field '{key}': a JSONata state's Arguments take no '.$' fields (give '{{% ... %}}' expressions)"),
                    );
                    ok = false;
                    continue;
                }
                Some(f) => f,
                None => key.as_str(),
            };
            if !fields.iter().any(|(f, _)| *f == field) {
                let allowed: Vec<&str> = fields.iter().map(|(f, _)| *f).collect();
                self.err(
                    &pl.field(key),
                    format!(
                        "Field '{key}' is not supported in the {name} of '{resource}' (allowed: {})",
                        allowed.join(", ")
                    ),
                );
                ok = false;
            } else if key == field && !value.is_string() {
                self.err(&pl.field(key), format!("'{key}' must be a string"));
                ok = false;
            }
        }
        for (field, required) in fields {
            let literal = obj.contains_key(*field);
            let path = obj.contains_key(&format!("{field}.$"));
            if literal && path {
                self.err(
                    &pl,
                    format!("Only one of '{field}' or '{field}.$' may be set"),
                );
                ok = false;
            } else if *required && !literal && !path {
                self.err(&pl, format!("These fields are required: [{field}]"));
                ok = false;
            }
        }
        if let Some(Value::String(bucket)) = obj.get("Bucket")
            && bucket.is_empty()
        {
            self.err(&pl.field("Bucket"), "'Bucket' cannot be empty");
            ok = false;
        }
        if self.jsonata {
            let template = self.jtemplate_field(Some(v), name, loc)?;
            return ok.then_some(AnyTemplate::Jsonata(template));
        }
        let template = self.template_field(Some(v), name, loc)?;
        ok.then_some(AnyTemplate::Path(template))
    }

    pub(super) fn result_writer(&mut self, v: &Value, loc: &Loc) -> Option<ResultWriterSpec> {
        let Some(obj) = v.as_object() else {
            self.err(loc, "'ResultWriter' must be a JSON object");
            return None;
        };
        let fields = self.s3_fields_name();
        for key in obj.keys() {
            if !matches!(key.as_str(), "Resource" | "WriterConfig") && key != fields {
                self.err(
                    &loc.field(key),
                    format!("Field '{key}' is not supported in 'ResultWriter'"),
                );
            }
        }
        let destination = match (obj.get("Resource"), obj.get(fields)) {
            (Some(Value::String(r)), params) if r == PUT_OBJECT => {
                Some(self.s3_parameters(params, PUT_OBJECT, loc)?)
            }
            (Some(_), _) => {
                self.err(
                    &loc.field("Resource"),
                    format!("'Resource' must be '{PUT_OBJECT}'"),
                );
                return None;
            }
            (None, Some(_)) => {
                self.err(loc, format!("'{fields}' needs 'Resource' ('{PUT_OBJECT}')"));
                return None;
            }
            (None, None) => {
                if !obj.contains_key("WriterConfig") {
                    self.err(
                        loc,
                        format!(
                            "'ResultWriter' needs 'Resource' and '{fields}', or 'WriterConfig'"
                        ),
                    );
                    return None;
                }
                None
            }
        };
        let wl = loc.field("WriterConfig");
        let (mut output_type, mut transformation) = (OutputType::Json, Transformation::None);
        match obj.get("WriterConfig") {
            None => {}
            Some(Value::Object(c)) => {
                for (k, v) in c {
                    match (k.as_str(), v.as_str()) {
                        ("OutputType", Some("JSON")) => output_type = OutputType::Json,
                        ("OutputType", Some("JSONL")) => output_type = OutputType::Jsonl,
                        ("OutputType", _) => self.err(
                            &wl.field("OutputType"),
                            "'OutputType' must be 'JSON' or 'JSONL'",
                        ),
                        ("Transformation", Some("NONE")) => transformation = Transformation::None,
                        ("Transformation", Some("COMPACT")) => {
                            transformation = Transformation::Compact
                        }
                        ("Transformation", Some("FLATTEN")) => {
                            transformation = Transformation::Flatten
                        }
                        ("Transformation", _) => self.err(
                            &wl.field("Transformation"),
                            "'Transformation' must be 'NONE', 'COMPACT' or 'FLATTEN'",
                        ),
                        _ => self.err(
                            &wl.field(k),
                            format!("Field '{k}' is not supported in 'WriterConfig'"),
                        ),
                    }
                }
                if output_type == OutputType::Jsonl && destination.is_none() {
                    self.err(
                        &wl.field("OutputType"),
                        format!("'OutputType' needs a destination ('Resource' and '{fields}')"),
                    );
                }
            }
            Some(_) => self.err(&wl, "'WriterConfig' must be a JSON object"),
        }
        Some(ResultWriterSpec {
            destination,
            output_type,
            transformation,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::asl::definition::{Dynamic, StateKind};
    use crate::asl::distributed::*;
    use crate::asl::parse::{InvalidDefinition, parse_definition};

    /// A Distributed Map named `Fan` with `extra` fields merged in.
    fn map_def(extra: Value) -> String {
        let mut state = json!({
            "Type": "Map",
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                "StartAt": "P",
                "States": {"P": {"Type": "Pass", "End": true}}
            },
            "End": true
        });
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                state.as_object_mut().unwrap().remove(k);
            } else {
                state[k] = v.clone();
            }
        }
        json!({"StartAt": "Fan", "States": {"Fan": state}}).to_string()
    }

    fn problems(extra: Value) -> Vec<String> {
        match parse_definition(&map_def(extra)) {
            Ok(_) => Vec::new(),
            Err(InvalidDefinition(d)) => d.iter().map(|d| d.to_string()).collect(),
        }
    }

    fn spec(extra: Value) -> crate::asl::definition::MapSpec {
        let def = parse_definition(&map_def(extra)).unwrap_or_else(|e| panic!("{:?}", e.0));
        match &def.root.states[0].kind {
            StateKind::Map(m) => (**m).clone(),
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_full_distributed_map_parses() {
        let m = spec(json!({
            "ItemReader": {
                "Resource": GET_OBJECT,
                "ReaderConfig": {
                    "InputType": "CSV",
                    "CSVHeaderLocation": "GIVEN",
                    "CSVHeaders": ["user", "photo"],
                    "CSVDelimiter": "SEMICOLON",
                    "MaxItemsPath": "$.limit"
                },
                "Parameters": {"Bucket": "in", "Key.$": "$.key"}
            },
            "ItemBatcher": {"MaxItemsPerBatch": 10, "BatchInput": {"run": "x"}},
            "ResultWriter": {
                "Resource": PUT_OBJECT,
                "Parameters": {"Bucket": "out", "Prefix": "runs"},
                "WriterConfig": {"OutputType": "JSONL", "Transformation": "COMPACT"}
            },
            "MaxConcurrency": 10000,
            "ToleratedFailurePercentage": 10,
            "Label": "Photos"
        }));
        let r = m.item_reader.unwrap();
        assert_eq!(
            r.source,
            ReaderSource::GetObject(ItemFormat::Csv(CsvFormat {
                headers: CsvHeaders::Given(vec!["user".into(), "photo".into()]),
                delimiter: b';',
            }))
        );
        assert!(matches!(r.max_items, Some(Dynamic::Path(_))));
        let w = m.result_writer.unwrap();
        assert!(w.destination.is_some());
        assert_eq!(w.output_type, OutputType::Jsonl);
        assert_eq!(w.transformation, Transformation::Compact);
        assert_eq!(m.label.as_deref(), Some("Photos"));

        let m = spec(json!({
            "ItemReader": {
                "Resource": LIST_OBJECTS_V2,
                "ReaderConfig": {"MaxItems": 0},
                "Parameters": {"Bucket": "in", "Prefix": "photos/"}
            },
            "ResultWriter": {"WriterConfig": {"Transformation": "FLATTEN"}}
        }));
        assert_eq!(m.item_reader.unwrap().source, ReaderSource::ListObjects);
        assert!(m.result_writer.unwrap().destination.is_none());
        for (input_type, format) in [
            ("JSON", ItemFormat::Json),
            ("JSONL", ItemFormat::Jsonl),
            ("MANIFEST", ItemFormat::Manifest),
        ] {
            let m = spec(json!({"ItemReader": {
                "Resource": GET_OBJECT,
                "ReaderConfig": {"InputType": input_type},
                "Parameters": {"Bucket": "b", "Key": "k"}
            }}));
            assert_eq!(
                m.item_reader.unwrap().source,
                ReaderSource::GetObject(format)
            );
        }
        let m = spec(json!({"ItemReader": {
            "Resource": GET_OBJECT,
            "ReaderConfig": {"InputType": "CSV"},
            "Parameters": {"Bucket": "b", "Key": "k"}
        }}));
        assert_eq!(
            m.item_reader.unwrap().source,
            ReaderSource::GetObject(ItemFormat::Csv(CsvFormat {
                headers: CsvHeaders::FirstRow,
                delimiter: b','
            }))
        );
    }

    /// Each bad field: the diagnostic names the state, the field and what is wrong.
    #[test]
    fn bad_distributed_fields_are_named() {
        let reader = |config: Value, params: Value| json!({"ItemReader": {"Resource": GET_OBJECT, "ReaderConfig": config, "Parameters": params}});
        let ok_params = json!({"Bucket": "b", "Key": "k"});
        let cases: Vec<(Value, &str, &str)> = vec![
            (
                reader(json!({"InputType": "XML"}), ok_params.clone()),
                "/States/Fan/ItemReader/ReaderConfig/InputType",
                "'CSV', 'JSON', 'JSONL' or 'MANIFEST'",
            ),
            (
                reader(json!({}), ok_params.clone()),
                "/States/Fan/ItemReader/ReaderConfig",
                "[InputType]",
            ),
            (
                reader(
                    json!({"InputType": "JSON", "MaxItems": -1}),
                    ok_params.clone(),
                ),
                "/States/Fan/ItemReader/ReaderConfig/MaxItems",
                "from 0 to 100000000",
            ),
            (
                reader(
                    json!({"InputType": "JSON", "MaxItems": 1, "MaxItemsPath": "$.n"}),
                    ok_params.clone(),
                ),
                "/States/Fan/ItemReader/ReaderConfig",
                "Only one of 'MaxItems' or 'MaxItemsPath'",
            ),
            (
                reader(
                    json!({"InputType": "CSV", "CSVHeaderLocation": "GIVEN"}),
                    ok_params.clone(),
                ),
                "/States/Fan/ItemReader/ReaderConfig",
                "needs 'CSVHeaders'",
            ),
            (
                reader(
                    json!({"InputType": "CSV", "CSVHeaders": ["a"]}),
                    ok_params.clone(),
                ),
                "/States/Fan/ItemReader/ReaderConfig/CSVHeaders",
                "only supported with 'CSVHeaderLocation' 'GIVEN'",
            ),
            (
                reader(
                    json!({"InputType": "CSV", "CSVHeaderLocation": "GIVEN", "CSVHeaders": ["a", 3]}),
                    ok_params.clone(),
                ),
                "/States/Fan/ItemReader/ReaderConfig/CSVHeaders/1",
                "array of strings",
            ),
            (
                reader(
                    json!({"InputType": "CSV", "CSVDelimiter": ","}),
                    ok_params.clone(),
                ),
                "/States/Fan/ItemReader/ReaderConfig/CSVDelimiter",
                "'COMMA', 'PIPE'",
            ),
            (
                reader(
                    json!({"InputType": "JSONL", "CSVDelimiter": "PIPE"}),
                    ok_params.clone(),
                ),
                "/States/Fan/ItemReader/ReaderConfig/CSVDelimiter",
                "only supported with InputType 'CSV'",
            ),
            (
                reader(json!({"InputType": "JSON"}), json!({"Bucket": "b"})),
                "/States/Fan/ItemReader/Parameters",
                "[Key]",
            ),
            (
                reader(
                    json!({"InputType": "JSON"}),
                    json!({"Bucket": "b", "Key": "k", "Key.$": "$.k"}),
                ),
                "/States/Fan/ItemReader/Parameters",
                "Only one of 'Key' or 'Key.$'",
            ),
            (
                reader(
                    json!({"InputType": "JSON"}),
                    json!({"Bucket": "b", "Key": "k", "Size": 3}),
                ),
                "/States/Fan/ItemReader/Parameters/Size",
                "allowed: Bucket, Key, VersionId",
            ),
            (
                reader(
                    json!({"InputType": "JSON"}),
                    json!({"Bucket": "", "Key": "k"}),
                ),
                "/States/Fan/ItemReader/Parameters/Bucket",
                "cannot be empty",
            ),
            (
                json!({"ItemReader": {"Resource": "arn:aws:states:::s3:getObjects", "ReaderConfig": {"InputType": "JSON"}, "Parameters": ok_params}}),
                "/States/Fan/ItemReader/Resource",
                "must be 'arn:aws:states:::s3:getObject' or",
            ),
            (
                json!({"ItemReader": {"Resource": LIST_OBJECTS_V2, "ReaderConfig": {"InputType": "JSON"}, "Parameters": {"Bucket": "b"}}}),
                "/States/Fan/ItemReader/ReaderConfig/InputType",
                "not supported with 'arn:aws:states:::s3:listObjectsV2'",
            ),
            (
                json!({"ItemReader": {"Resource": GET_OBJECT, "ReaderConfig": {"InputType": "JSON"}}}),
                "/States/Fan/ItemReader",
                "[Parameters]",
            ),
            (
                json!({"ResultWriter": {"Resource": "arn:aws:states:::s3:getObject", "Parameters": {"Bucket": "b"}}}),
                "/States/Fan/ResultWriter/Resource",
                "must be 'arn:aws:states:::s3:putObject'",
            ),
            (
                json!({"ResultWriter": {"Resource": PUT_OBJECT, "Parameters": {"Prefix": "p"}}}),
                "/States/Fan/ResultWriter/Parameters",
                "[Bucket]",
            ),
            (
                json!({"ResultWriter": {"Resource": PUT_OBJECT, "Parameters": {"Bucket": "b"}, "WriterConfig": {"OutputType": "CSV"}}}),
                "/States/Fan/ResultWriter/WriterConfig/OutputType",
                "'JSON' or 'JSONL'",
            ),
            (
                json!({"ResultWriter": {"WriterConfig": {"Transformation": "SQUASH"}}}),
                "/States/Fan/ResultWriter/WriterConfig/Transformation",
                "'NONE', 'COMPACT' or 'FLATTEN'",
            ),
            (
                json!({"ResultWriter": {}}),
                "/States/Fan/ResultWriter",
                "needs 'Resource' and 'Parameters', or 'WriterConfig'",
            ),
            (
                json!({"MaxConcurrency": 10001}),
                "/States/Fan/MaxConcurrency",
                "cannot exceed 10000",
            ),
        ];
        for (extra, location, fragment) in cases {
            let found = problems(extra.clone());
            assert!(
                found
                    .iter()
                    .any(|p| p.ends_with(&format!(" at {location}")) && p.contains(fragment)),
                "{extra}: expected '{fragment}' at {location}, got {found:?}"
            );
        }
    }

    #[test]
    fn reader_and_writer_need_a_distributed_map() {
        let inline = json!({
            "ProcessorConfig": {"Mode": "INLINE"},
            "StartAt": "P",
            "States": {"P": {"Type": "Pass", "End": true}}
        });
        let found = problems(json!({
            "ItemProcessor": inline,
            "ItemReader": {"Resource": GET_OBJECT, "ReaderConfig": {"InputType": "JSON"}, "Parameters": {"Bucket": "b", "Key": "k"}},
            "ResultWriter": {"Resource": PUT_OBJECT, "Parameters": {"Bucket": "b"}},
            "MaxConcurrency": 20000
        }));
        for field in ["ItemReader", "ResultWriter"] {
            assert!(
                found
                    .iter()
                    .any(|p| p.contains("only supported by a DISTRIBUTED Map")
                        && p.ends_with(&format!("at /States/Fan/{field}"))),
                "{found:?}"
            );
        }
        // An inline Map keeps no cap of its own on MaxConcurrency.
        assert!(
            !found.iter().any(|p| p.contains("cannot exceed")),
            "{found:?}"
        );
    }
}
