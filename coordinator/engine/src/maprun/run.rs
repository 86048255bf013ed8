//! [`OpenRun`]: one map run in progress, as a backend keeps it: the reader positioned at
//! the next child, the inputs and start times of the running children (for their result
//! records), and the result files in the making.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{Buckets, ChildInputs, ChildRecord, MapRunPlan, ResultFiles};
use crate::asl::error::{StatesError, names};

/// One map run in progress.
#[derive(Debug)]
pub struct OpenRun {
    inputs: ChildInputs,
    /// Children handed out so far (the next one's index).
    next: usize,
    /// Running children: their input and start time.
    running: HashMap<usize, (Value, DateTime<Utc>)>,
    writer: Option<ResultFiles>,
    /// The first failure to write a result file: the run fails with it when it ends.
    write_failure: Option<StatesError>,
}

impl OpenRun {
    /// Opens a run: checks that the ResultWriter's bucket exists, then reads the items once
    /// to count the children (so bad input fails the run before any child starts, and the
    /// tolerated failure percentage has its total). Returns the run and its child count.
    pub async fn open(
        store: &dyn Buckets,
        plan: MapRunPlan,
    ) -> Result<(OpenRun, usize), StatesError> {
        let writer = match plan.writer.clone() {
            None => None,
            Some(req) => {
                let exists = store.bucket_exists(&req.bucket).await.map_err(|e| {
                    writer_failed(&format!("could not check bucket {}: {e}", req.bucket))
                })?;
                if !exists {
                    return Err(writer_failed(&format!(
                        "the bucket {} does not exist",
                        req.bucket
                    )));
                }
                Some(ResultFiles::new(&plan, req))
            }
        };
        let mut counting = ChildInputs::new(plan.clone());
        let mut total = 0;
        loop {
            let chunk = counting.next(store, 1024).await?;
            if chunk.is_empty() {
                break;
            }
            total += chunk.len();
        }
        let run = OpenRun {
            inputs: ChildInputs::new(plan),
            next: 0,
            running: HashMap::new(),
            writer,
            write_failure: None,
        };
        Ok((run, total))
    }

    pub fn plan(&self) -> &MapRunPlan {
        self.inputs.plan()
    }

    /// Whether a ResultWriter takes the results (then the backend keeps none).
    pub fn writes_results(&self) -> bool {
        self.writer.is_some()
    }

    /// The inputs of children `from..to`. Children start in order, so `from` is the next
    /// child the run has not handed out.
    pub async fn inputs(
        &mut self,
        store: &dyn Buckets,
        from: usize,
        to: usize,
        now: DateTime<Utc>,
    ) -> Result<Vec<Value>, StatesError> {
        if from != self.next {
            return Err(StatesError::runtime(format!(
                "map run {}: children {from}..{to} asked for, but the next one is {}",
                self.plan().map_run_arn,
                self.next
            )));
        }
        let inputs = self.inputs.next(store, to - from).await?;
        if inputs.len() != to - from {
            return Err(StatesError::new(
                names::ITEM_READER_FAILED,
                format!(
                    "{} changed during the map run: it now holds fewer items",
                    self.plan().reader.describe()
                ),
            ));
        }
        if self.writer.is_some() {
            for (i, input) in inputs.iter().enumerate() {
                self.running.insert(from + i, (input.clone(), now));
            }
        }
        self.next = to;
        Ok(inputs)
    }

    /// A child ended: its record goes to the result files. A failure to write is kept and
    /// fails the run when it ends ([`OpenRun::finish`]).
    pub async fn ended(
        &mut self,
        store: &dyn Buckets,
        index: usize,
        result: &Result<Value, StatesError>,
        now: DateTime<Utc>,
    ) {
        let Some(writer) = self.writer.as_mut() else {
            return;
        };
        let (input, start) = self.running.remove(&index).unwrap_or((Value::Null, now));
        let record = ChildRecord {
            index,
            input,
            result: result.clone(),
            start,
            stop: now,
        };
        if let Err(e) = writer.add(store, self.inputs.plan(), record).await
            && self.write_failure.is_none()
        {
            self.write_failure = Some(writer_failed(&e.to_string()));
        }
    }

    /// Ends the run: the remaining result files and the manifest are written. Returns the
    /// Map's result when a ResultWriter took the results (`None`: the backend's results are
    /// the Map's result, as for an inline Map).
    pub async fn finish(&mut self, store: &dyn Buckets) -> Result<Option<Value>, StatesError> {
        if let Some(e) = self.write_failure.take() {
            return Err(e);
        }
        match self.writer.as_mut() {
            None => Ok(None),
            Some(w) => w
                .finish(store)
                .await
                .map(Some)
                .map_err(|e| writer_failed(&e.to_string())),
        }
    }
}

fn writer_failed(why: &str) -> StatesError {
    StatesError::new(
        names::RESULT_WRITER_FAILED,
        format!("The ResultWriter could not write the results: {why}"),
    )
}
