//! [`ResultFiles`]: what a `ResultWriter` writes, as AWS writes it.
//!
//! Under `<Prefix>/<map run id>/`: `SUCCEEDED_n.json` and `FAILED_n.json` (each a JSON array
//! of child records, or JSON Lines with `OutputType: JSONL`), then `manifest.json` naming
//! them with their sizes. A file is written once it passes [`FILE_BYTES`], so a run holds
//! at most one file in the making per status, whatever its size. [`ResultFormat`] is how
//! records, files and the manifest are spelled, apart from where they are kept: embedded
//! mode keeps a file in the making in memory ([`ResultFiles`]), the fleet in Redis.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{BucketError, Buckets, MapRunPlan, WriteRequest, child_execution};
use crate::asl::distributed::{OutputType, Transformation};
use crate::asl::error::StatesError;
use crate::engine::context::iso;

/// A result file is written once it holds this many bytes.
pub const FILE_BYTES: usize = 4 << 20;

/// How one child execution ended.
#[derive(Debug, Clone)]
pub struct ChildRecord {
    pub index: usize,
    pub input: Value,
    pub result: Result<Value, StatesError>,
    pub start: DateTime<Utc>,
    pub stop: DateTime<Utc>,
}

/// How a map run's results are spelled: what every record, file name and the manifest
/// need. Small, so a backend that keeps runs outside its process stores it with the run
/// ([`ResultFormat::to_json`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultFormat {
    pub req: WriteRequest,
    pub map_run_arn: String,
    pub state_machine_arn: String,
}

impl ResultFormat {
    pub fn new(plan: &MapRunPlan, req: WriteRequest) -> ResultFormat {
        ResultFormat {
            req,
            map_run_arn: plan.map_run_arn.clone(),
            state_machine_arn: plan.batch.info.state_machine_arn.clone(),
        }
    }

    fn jsonl(&self) -> bool {
        self.req.output_type == OutputType::Jsonl
    }

    /// `<prefix>/<map run id>/` (no leading `/` when the prefix is empty).
    pub fn folder(&self) -> String {
        let id = self.map_run_arn.rsplit(':').next().unwrap_or_default();
        if self.req.prefix.is_empty() {
            format!("{id}/")
        } else {
            format!("{}/{id}/", self.req.prefix)
        }
    }

    /// The key of the manifest.
    pub fn manifest_key(&self) -> String {
        format!("{}manifest.json", self.folder())
    }

    /// The key of result file `n` of a status (`SUCCEEDED`, `FAILED`).
    pub fn file_key(&self, status: &str, n: usize) -> String {
        let ext = if self.jsonl() { "jsonl" } else { "json" };
        format!("{}{status}_{n}.{ext}", self.folder())
    }

    /// A child's record as it stands in a file: its entries (none, one, or a flattened
    /// batch's items), separated as the file separates them.
    pub fn record_text(&self, r: ChildRecord) -> String {
        let sep = if self.jsonl() { "\n" } else { "," };
        self.entries(r)
            .iter()
            .map(|e| serde_json::to_string(e).unwrap_or_default())
            .collect::<Vec<_>>()
            .join(sep)
    }

    /// A result file holding these record texts (empty ones contribute nothing).
    pub fn file_bytes<'a>(&self, records: impl IntoIterator<Item = &'a str>) -> Vec<u8> {
        let jsonl = self.jsonl();
        let mut bytes = Vec::new();
        let mut any = false;
        for text in records.into_iter().filter(|t| !t.is_empty()) {
            if jsonl {
                if any {
                    bytes.push(b'\n');
                }
            } else {
                bytes.push(if any { b',' } else { b'[' });
            }
            bytes.extend_from_slice(text.as_bytes());
            any = true;
        }
        if !jsonl {
            if !any {
                bytes.push(b'[');
            }
            bytes.push(b']');
        }
        bytes
    }

    /// `manifest.json` naming the written files (key, size) by status.
    pub fn manifest(&self, succeeded: &[(String, usize)], failed: &[(String, usize)]) -> Vec<u8> {
        let files = |f: &[(String, usize)]| -> Vec<Value> {
            f.iter()
                .map(|(key, size)| json!({"Key": key, "Size": size}))
                .collect()
        };
        let manifest = json!({
            "DestinationBucket": self.req.bucket,
            "MapRunArn": self.map_run_arn,
            "ResultFiles": {
                "FAILED": files(failed),
                "PENDING": [],
                "SUCCEEDED": files(succeeded),
            }
        });
        serde_json::to_vec(&manifest).unwrap_or_default()
    }

    /// What a Map with a ResultWriter returns: the map run's ARN and where the manifest is.
    pub fn summary(&self) -> Value {
        json!({
            "MapRunArn": self.map_run_arn,
            "ResultWriterDetails": {"Bucket": self.req.bucket, "Key": self.manifest_key()}
        })
    }

    /// What a record becomes in the files, by `Transformation`.
    fn entries(&self, r: ChildRecord) -> Vec<Value> {
        match (self.req.transformation, r.result) {
            (Transformation::None, result) => {
                let (arn, name) = child_execution(&self.map_run_arn, r.index);
                let mut e = json!({
                    "ExecutionArn": arn,
                    "Input": r.input.to_string(),
                    "InputDetails": {"Included": true},
                    "Name": name,
                    "MapRunArn": self.map_run_arn,
                    "RedriveCount": 0,
                    "RedriveStatus": "NOT_REDRIVABLE",
                    "StartDate": iso(&r.start),
                    "StateMachineArn": self.state_machine_arn,
                    "Status": if result.is_ok() { "SUCCEEDED" } else { "FAILED" },
                    "StopDate": iso(&r.stop),
                });
                match result {
                    Ok(output) => {
                        e["Output"] = json!(output.to_string());
                        e["OutputDetails"] = json!({"Included": true});
                    }
                    Err(err) => {
                        e["Error"] = json!(err.error);
                        e["Cause"] = json!(err.cause);
                    }
                }
                vec![e]
            }
            (_, Err(err)) => vec![json!({"Error": err.error, "Cause": err.cause})],
            (Transformation::Compact, Ok(output)) => vec![output],
            (Transformation::Flatten, Ok(Value::Array(items))) => items,
            (Transformation::Flatten, Ok(output)) => vec![output],
        }
    }

    /// The format as JSON, to keep with a run.
    pub fn to_json(&self) -> Value {
        json!({
            "bucket": self.req.bucket,
            "prefix": self.req.prefix,
            "jsonl": self.jsonl(),
            "transformation": match self.req.transformation {
                Transformation::None => "NONE",
                Transformation::Compact => "COMPACT",
                Transformation::Flatten => "FLATTEN",
            },
            "map_run_arn": self.map_run_arn,
            "state_machine_arn": self.state_machine_arn,
        })
    }

    /// Reads [`ResultFormat::to_json`] back (`None`: not such a value).
    pub fn from_json(v: &Value) -> Option<ResultFormat> {
        let s = |k: &str| v.get(k)?.as_str().map(str::to_string);
        Some(ResultFormat {
            req: WriteRequest {
                bucket: s("bucket")?,
                prefix: s("prefix")?,
                output_type: if v.get("jsonl")?.as_bool()? {
                    OutputType::Jsonl
                } else {
                    OutputType::Json
                },
                transformation: match v.get("transformation")?.as_str()? {
                    "NONE" => Transformation::None,
                    "COMPACT" => Transformation::Compact,
                    "FLATTEN" => Transformation::Flatten,
                    _ => return None,
                },
            },
            map_run_arn: s("map_run_arn")?,
            state_machine_arn: s("state_machine_arn")?,
        })
    }
}

#[derive(Debug, Default)]
struct OpenFile {
    /// Record texts (each possibly empty: a flattened empty batch).
    records: Vec<String>,
    bytes: usize,
    written: Vec<(String, usize)>,
}

/// The result files of one map run in the making, kept in memory (embedded mode).
#[derive(Debug)]
pub struct ResultFiles {
    format: ResultFormat,
    succeeded: OpenFile,
    failed: OpenFile,
}

impl ResultFiles {
    pub fn new(plan: &MapRunPlan, req: WriteRequest) -> ResultFiles {
        ResultFiles {
            format: ResultFormat::new(plan, req),
            succeeded: OpenFile::default(),
            failed: OpenFile::default(),
        }
    }

    /// The key of the manifest.
    pub fn manifest_key(&self) -> String {
        self.format.manifest_key()
    }

    /// Adds a child's record; writes the file it lands in once that is full.
    pub async fn add(
        &mut self,
        store: &dyn Buckets,
        _plan: &MapRunPlan,
        record: ChildRecord,
    ) -> Result<(), BucketError> {
        let ok = record.result.is_ok();
        let text = self.format.record_text(record);
        let file = if ok {
            &mut self.succeeded
        } else {
            &mut self.failed
        };
        file.bytes += text.len() + 1;
        file.records.push(text);
        if file.bytes >= FILE_BYTES {
            let status = if ok { "SUCCEEDED" } else { "FAILED" };
            self.flush(store, status).await?;
        }
        Ok(())
    }

    async fn flush(&mut self, store: &dyn Buckets, status: &str) -> Result<(), BucketError> {
        let file = if status == "SUCCEEDED" {
            &mut self.succeeded
        } else {
            &mut self.failed
        };
        if file.records.is_empty() {
            return Ok(());
        }
        let records = std::mem::take(&mut file.records);
        file.bytes = 0;
        let bytes = self.format.file_bytes(records.iter().map(String::as_str));
        let key = self.format.file_key(status, file.written.len());
        let size = bytes.len();
        store.put(&self.format.req.bucket, &key, bytes).await?;
        file.written.push((key, size));
        Ok(())
    }

    /// Writes what is left and the manifest; returns what the Map state returns: the map
    /// run's ARN and where the manifest is.
    pub async fn finish(&mut self, store: &dyn Buckets) -> Result<Value, BucketError> {
        self.flush(store, "SUCCEEDED").await?;
        self.flush(store, "FAILED").await?;
        let manifest = self
            .format
            .manifest(&self.succeeded.written, &self.failed.written);
        store
            .put(&self.format.req.bucket, &self.manifest_key(), manifest)
            .await?;
        Ok(self.format.summary())
    }
}
