//! [`MapRunPlan`]: what the engine resolved when a Distributed Map with an `ItemReader`
//! started (its `Parameters` and `...Path` fields evaluated), handed to the driver, and
//! [`ChildInputs`], which turns the reader's items into the children's inputs (ItemSelector,
//! then ItemBatcher) a chunk at a time.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::decode::NOT_ITERABLE;
use super::{Buckets, ItemReadError, ItemStream};
use crate::asl::distributed::{OutputType, ReaderSource, Transformation};
use crate::asl::error::{StatesError, names};
use crate::asl::scope::Scope;
use crate::asl::template::Template;
use crate::engine::ExecutionInfo;
use crate::engine::context::{StateFacts, context_object};
use crate::engine::dataflow::json_size;
use crate::entropy::Entropy;

/// Where an `ItemReader` reads, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRequest {
    pub source: ReaderSource,
    pub bucket: String,
    /// The object (`s3:getObject`); empty for a listing.
    pub key: String,
    /// The listing's prefix (`s3:listObjectsV2`); empty for an object.
    pub prefix: String,
    /// `MaxItems`: 0 reads every item.
    pub max_items: u64,
}

impl ReadRequest {
    /// `bucket/key` or `bucket/prefix*`, for messages.
    pub fn describe(&self) -> String {
        match self.source {
            ReaderSource::ListObjects => format!("s3://{}/{}*", self.bucket, self.prefix),
            ReaderSource::GetObject(_) => format!("s3://{}/{}", self.bucket, self.key),
        }
    }
}

/// Where a `ResultWriter` writes, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteRequest {
    pub bucket: String,
    /// `Prefix`, without a trailing `/` (the files go under `<prefix>/<map run id>/`).
    pub prefix: String,
    pub output_type: OutputType,
    pub transformation: Transformation,
}

/// How items become children's inputs: ItemSelector (with `$$.Map.Item`), then ItemBatcher.
#[derive(Debug, Clone)]
pub struct BatchPlan {
    pub selector: Option<Template>,
    /// The Map's effective input: `$` of the ItemSelector and BatchInput.
    pub effective_input: Value,
    pub vars: Map<String, Value>,
    pub info: Arc<ExecutionInfo>,
    pub state_name: String,
    pub entered_at: DateTime<Utc>,
    pub with_execution_input: bool,
    pub seed: u64,
    /// `MaxItemsPerBatch` (`None`: no ItemBatcher).
    pub max_items_per_batch: Option<usize>,
    pub max_bytes_per_batch: Option<usize>,
    /// `BatchInput`, evaluated.
    pub batch_input: Option<Value>,
}

impl BatchPlan {
    fn batched(&self) -> bool {
        self.max_items_per_batch.is_some() || self.max_bytes_per_batch.is_some()
    }

    /// Item `index`'s selected form.
    fn select(&self, index: usize, item: Value) -> Result<Value, StatesError> {
        let Some(selector) = &self.selector else {
            return Ok(item);
        };
        let ctx = context_object(
            &self.info,
            &StateFacts {
                name: &self.state_name,
                entered_time: &self.entered_at,
                retry_count: 0,
                map_item: Some((index, &item)),
                task_token: None,
            },
            self.with_execution_input,
        );
        selector.eval(&Scope {
            input: &self.effective_input,
            context: &ctx,
            vars: &self.vars,
            entropy: &Entropy::new(self.seed ^ index as u64),
        })
    }

    fn wrap(&self, items: Vec<Value>) -> Value {
        let mut obj = Map::new();
        if let Some(b) = &self.batch_input {
            obj.insert("BatchInput".into(), b.clone());
        }
        obj.insert("Items".into(), Value::Array(items));
        Value::Object(obj)
    }
}

/// A map run's limits as its Map resolved them (DescribeMapRun reports them).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunLimits {
    pub max_concurrency: u64,
    pub tolerated_count: Option<u64>,
    pub tolerated_percentage: Option<f64>,
}

/// Everything the driver needs to run a Distributed Map over an `ItemReader`.
#[derive(Debug, Clone)]
pub struct MapRunPlan {
    pub map_run_arn: String,
    pub limits: RunLimits,
    pub reader: ReadRequest,
    pub writer: Option<WriteRequest>,
    pub batch: BatchPlan,
    /// The execution's redrive count when a redrive runs this (failed) run again, else 0.
    pub redrive_count: u32,
}

impl MapRunPlan {
    /// The map run's id: the last part of its ARN (the result files' folder).
    pub fn run_id(&self) -> &str {
        self.map_run_arn.rsplit(':').next().unwrap_or_default()
    }

    /// Child `index`'s execution ARN and name.
    pub fn child_execution(&self, index: usize) -> (String, String) {
        child_execution(&self.map_run_arn, index)
    }
}

/// Child `index`'s execution ARN and name in the map run `map_run_arn`.
pub fn child_execution(map_run_arn: &str, index: usize) -> (String, String) {
    let id = uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_URL,
        format!("{map_run_arn}#{index}").as_bytes(),
    )
    .to_string();
    let base = map_run_arn
        .replacen(":mapRun:", ":execution:", 1)
        .rsplit_once(':')
        .map(|(b, _)| b.to_string())
        .unwrap_or_default();
    (format!("{base}:{id}"), id)
}

/// The children's inputs of one map run, in order, produced a chunk at a time from its
/// reader. Read twice per run: once to count the children (and find bad input before any
/// child runs), once to start them.
#[derive(Debug)]
pub struct ChildInputs {
    plan: MapRunPlan,
    stream: ItemStream,
    /// Index of the next raw item (`$$.Map.Item.Index`).
    next_item: usize,
    /// The batch being filled and its size in bytes.
    batch: Vec<Value>,
    batch_bytes: usize,
    done: bool,
}

impl ChildInputs {
    pub fn new(plan: MapRunPlan) -> ChildInputs {
        ChildInputs {
            stream: ItemStream::new(plan.reader.clone()),
            plan,
            next_item: 0,
            batch: Vec::new(),
            batch_bytes: 0,
            done: false,
        }
    }

    pub fn plan(&self) -> &MapRunPlan {
        &self.plan
    }

    /// Up to `max` next children's inputs; none once every item is out.
    pub async fn next(
        &mut self,
        store: &dyn Buckets,
        max: usize,
    ) -> Result<Vec<Value>, StatesError> {
        let mut out = Vec::new();
        while out.len() < max && !self.done {
            let want = if self.plan.batch.batched() {
                256
            } else {
                max - out.len()
            };
            let items = self
                .stream
                .next_chunk(store, want)
                .await
                .map_err(|e| self.reader_failed(e))?;
            if items.is_empty() {
                self.done = true;
                if !self.batch.is_empty() {
                    let items = std::mem::take(&mut self.batch);
                    out.push(self.plan.batch.wrap(items));
                }
                break;
            }
            for item in items {
                let index = self.next_item;
                self.next_item += 1;
                let selected = self.plan.batch.select(index, item)?;
                if !self.plan.batch.batched() {
                    out.push(selected);
                    continue;
                }
                if let Some(full) = self.add_to_batch(index, selected)? {
                    out.push(full);
                }
            }
        }
        Ok(out)
    }

    /// Adds an item to the batch in the making; returns the previous batch when it is full.
    fn add_to_batch(
        &mut self,
        index: usize,
        selected: Value,
    ) -> Result<Option<Value>, StatesError> {
        let b = &self.plan.batch;
        let size = json_size(&selected, usize::MAX);
        if let Some(max) = b.max_bytes_per_batch
            && size > max
        {
            return Err(StatesError::new(
                names::ITEM_READER_FAILED,
                format!(
                    "Item {index} of {} is {size} bytes, over the ItemBatcher's MaxInputBytesPerBatch ({max})",
                    self.plan.reader.describe()
                ),
            ));
        }
        let full = !self.batch.is_empty()
            && (b.max_items_per_batch.is_some_and(|m| self.batch.len() >= m)
                || b.max_bytes_per_batch
                    .is_some_and(|m| self.batch_bytes + size > m));
        let done = if full {
            self.batch_bytes = 0;
            Some(b.wrap(std::mem::take(&mut self.batch)))
        } else {
            None
        };
        self.batch_bytes += size;
        self.batch.push(selected);
        Ok(done)
    }

    fn reader_failed(&self, e: ItemReadError) -> StatesError {
        let cause = match &e {
            // AWS's own cause, word for word.
            ItemReadError::Decode { error, .. } if error.0 == NOT_ITERABLE => error.0.clone(),
            // It names the object (a manifest's data file, maybe) and the line.
            ItemReadError::Decode { .. } => format!("The ItemReader could not read {e}"),
            _ => format!(
                "The ItemReader could not read {}: {e}",
                self.plan.reader.describe()
            ),
        };
        StatesError::new(names::ITEM_READER_FAILED, cause)
    }
}
