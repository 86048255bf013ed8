//! [`ResultFiles`]: what a `ResultWriter` writes, as AWS writes it.
//!
//! Under `<Prefix>/<map run id>/`: `SUCCEEDED_n.json` and `FAILED_n.json` (each a JSON array
//! of child records, or JSON Lines with `OutputType: JSONL`), then `manifest.json` naming
//! them with their sizes. A file is written once it passes [`FILE_BYTES`], so a run holds
//! at most one file in the making per status, whatever its size.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{BucketError, Buckets, MapRunPlan, WriteRequest};
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

#[derive(Debug, Default)]
struct OpenFile {
    bytes: Vec<u8>,
    records: usize,
    written: Vec<(String, usize)>,
}

/// The result files of one map run in the making.
#[derive(Debug)]
pub struct ResultFiles {
    req: WriteRequest,
    map_run_arn: String,
    /// `<prefix>/<map run id>/` (no leading `/` when the prefix is empty).
    folder: String,
    state_machine_arn: String,
    succeeded: OpenFile,
    failed: OpenFile,
}

impl ResultFiles {
    pub fn new(plan: &MapRunPlan, req: WriteRequest) -> ResultFiles {
        let folder = if req.prefix.is_empty() {
            format!("{}/", plan.run_id())
        } else {
            format!("{}/{}/", req.prefix, plan.run_id())
        };
        ResultFiles {
            req,
            map_run_arn: plan.map_run_arn.clone(),
            folder,
            state_machine_arn: plan.batch.info.state_machine_arn.clone(),
            succeeded: OpenFile::default(),
            failed: OpenFile::default(),
        }
    }

    /// The key of the manifest.
    pub fn manifest_key(&self) -> String {
        format!("{}manifest.json", self.folder)
    }

    /// Adds a child's record; writes the file it lands in once that is full.
    pub async fn add(
        &mut self,
        store: &dyn Buckets,
        plan: &MapRunPlan,
        record: ChildRecord,
    ) -> Result<(), BucketError> {
        let ok = record.result.is_ok();
        let entries = self.entries(plan, record);
        let jsonl = self.req.output_type == OutputType::Jsonl;
        let file = if ok {
            &mut self.succeeded
        } else {
            &mut self.failed
        };
        for entry in entries {
            if jsonl {
                if file.records > 0 {
                    file.bytes.push(b'\n');
                }
            } else {
                file.bytes.push(if file.records == 0 { b'[' } else { b',' });
            }
            file.bytes
                .extend_from_slice(&serde_json::to_vec(&entry).unwrap_or_default());
            file.records += 1;
        }
        if file.bytes.len() >= FILE_BYTES {
            let status = if ok { "SUCCEEDED" } else { "FAILED" };
            self.flush(store, status).await?;
        }
        Ok(())
    }

    /// What a record becomes in the files, by `Transformation`.
    fn entries(&self, plan: &MapRunPlan, r: ChildRecord) -> Vec<Value> {
        match (self.req.transformation, r.result) {
            (Transformation::None, result) => {
                let (arn, name) = plan.child_execution(r.index);
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

    async fn flush(&mut self, store: &dyn Buckets, status: &str) -> Result<(), BucketError> {
        let jsonl = self.req.output_type == OutputType::Jsonl;
        let folder = self.folder.clone();
        let file = if status == "SUCCEEDED" {
            &mut self.succeeded
        } else {
            &mut self.failed
        };
        if file.records == 0 {
            return Ok(());
        }
        let mut bytes = std::mem::take(&mut file.bytes);
        file.records = 0;
        if !jsonl {
            bytes.push(b']');
        }
        let ext = if jsonl { "jsonl" } else { "json" };
        let key = format!("{folder}{status}_{}.{ext}", file.written.len());
        let size = bytes.len();
        store.put(&self.req.bucket, &key, bytes).await?;
        file.written.push((key, size));
        Ok(())
    }

    /// Writes what is left and the manifest; returns what the Map state returns: the map
    /// run's ARN and where the manifest is.
    pub async fn finish(&mut self, store: &dyn Buckets) -> Result<Value, BucketError> {
        self.flush(store, "SUCCEEDED").await?;
        self.flush(store, "FAILED").await?;
        let files = |f: &OpenFile| -> Vec<Value> {
            f.written
                .iter()
                .map(|(key, size)| json!({"Key": key, "Size": size}))
                .collect()
        };
        let manifest = json!({
            "DestinationBucket": self.req.bucket,
            "MapRunArn": self.map_run_arn,
            "ResultFiles": {
                "FAILED": files(&self.failed),
                "PENDING": [],
                "SUCCEEDED": files(&self.succeeded),
            }
        });
        let key = self.manifest_key();
        store
            .put(
                &self.req.bucket,
                &key,
                serde_json::to_vec(&manifest).unwrap_or_default(),
            )
            .await?;
        Ok(json!({
            "MapRunArn": self.map_run_arn,
            "ResultWriterDetails": {"Bucket": self.req.bucket, "Key": key}
        }))
    }
}
