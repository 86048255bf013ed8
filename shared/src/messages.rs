//! The wire format between coordinators and workers.
//!
//! Every message is a JSON object with a top-level `"v"` (the wire version). A reader first
//! looks at `v` alone, so a message from a newer deployment fails with
//! [`DecodeError::UnsupportedVersion`] instead of a confusing field error.
//!
//! A step is identified by [`StepId`]: (execution ARN, cursor, step sequence, attempt). The
//! coordinator bumps `seq` every time a cursor publishes a new step and `attempt` on every
//! Retry, so an outcome names exactly the step it answers and a duplicate or late outcome
//! can be recognised by the Redis script that applies it.
//!
//! Both directions have a single and a batch form on the same queues: a [`StepMessage`] or a
//! [`StepBatch`] (`"steps": [...]`) to workers, an [`OutcomeMessage`] or an [`OutcomeBatch`]
//! (`"outcomes": [...]`) back. Readers tell them apart by that field ([`decode_steps`],
//! [`decode_outcomes`]), so a sender that only writes singles stays readable. A batch is only
//! packaging: every step or outcome inside keeps its own [`StepId`] and is applied on its own.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The wire version this build writes and reads.
pub const WIRE_VERSION: u32 = 1;

/// Why bytes from the broker are not a message this build can act on.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("message is not JSON with a numeric \"v\" field: {0}")]
    NoVersion(serde_json::Error),
    #[error("unsupported wire version {found} (this build reads version {supported})")]
    UnsupportedVersion { found: u64, supported: u32 },
    #[error("malformed version {version} message: {source}")]
    Malformed {
        version: u32,
        source: serde_json::Error,
    },
}

/// Identity of one step: which cursor of which execution, which step of that cursor, and
/// which attempt of that step.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StepId {
    /// The execution ARN.
    pub execution: String,
    /// The cursor, by its path from the root: `""` (the root), `/3` (child 3: a Map
    /// iteration or a Parallel branch), `/3/1`; a re-run after a retry adds its generation
    /// (`/2:3`).
    pub cursor: String,
    /// The cursor's sequence number when the step was published: it grows with every wait of
    /// the cursor (a step, a timer), so an outcome carrying an older one is stale.
    pub seq: u64,
    /// The attempt (1-based) of this step: grows on every Retry of the same state.
    pub attempt: u32,
}

impl StepId {
    /// A stable text form, used as the AMQP `message_id` and in logs.
    pub fn message_id(&self) -> String {
        format!(
            "{}|{}|{}|{}",
            self.execution, self.cursor, self.seq, self.attempt
        )
    }
}

/// Trace propagation (W3C trace-context style ids), carried untouched from step to outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceIds {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span_id: Option<String>,
}

/// Coordinator → worker: run `resource` on `input`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepMessage {
    /// Wire version; always [`WIRE_VERSION`] when written by this build.
    pub v: u32,
    #[serde(flatten)]
    pub id: StepId,
    /// The task resource ARN, e.g. `arn:mapfleet:task:::echo`; also the routing key.
    pub resource: String,
    /// The task's effective input.
    pub input: Value,
    /// Unix ms after which the result is useless (the state's TimeoutSeconds); a worker
    /// reports `States.Timeout` instead of running or finishing past it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// The state's HeartbeatSeconds, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_seconds: Option<u32>,
    /// Unix ms the coordinator published the step (for the queue-wait and step-latency
    /// metrics); absent in steps of older builds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_ms: Option<u64>,
    #[serde(default)]
    pub trace: TraceIds,
}

impl StepMessage {
    /// A version-[`WIRE_VERSION`] step with no deadline, heartbeat or trace.
    pub fn new(id: StepId, resource: impl Into<String>, input: Value) -> Self {
        Self {
            v: WIRE_VERSION,
            id,
            resource: resource.into(),
            input,
            deadline_ms: None,
            heartbeat_seconds: None,
            published_ms: None,
            trace: TraceIds::default(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a StepMessage always serializes")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode_versioned(bytes)
    }
}

/// Several steps in one broker message, all for the same routing key (resource), so the
/// broker stores, delivers and acks one message instead of one per step. The coordinator
/// sends them when a batch of its work readies many steps at once (a Map's iterations).
/// A worker runs them all and acks the message once every outcome is confirmed; one that
/// receives a batch *again* (redelivered: a worker died holding it) splits it into single
/// steps instead of running it, so a step that kills its worker is dead-lettered alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepBatch {
    pub v: u32,
    pub steps: Vec<StepMessage>,
}

impl StepBatch {
    pub fn new(steps: Vec<StepMessage>) -> Self {
        Self {
            v: WIRE_VERSION,
            steps,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a StepBatch always serializes")
    }
}

/// Decodes a message from a steps queue (or the dead-letter queue): either one
/// [`StepMessage`] or a [`StepBatch`]. Consumers of those queues should always use this.
pub fn decode_steps(bytes: &[u8]) -> Result<Vec<StepMessage>, DecodeError> {
    #[derive(Deserialize)]
    struct Shape {
        #[serde(default)]
        steps: Option<serde::de::IgnoredAny>,
    }
    decode_single_or_batch(bytes, |s: &Shape| s.steps.is_some(), |b: StepBatch| b.steps)
}

/// What a step produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum StepResult {
    /// The task's output.
    Ok { output: Value },
    /// The task failed: `error` is the name Retry/Catch match on (`States.Timeout`,
    /// `States.TaskFailed`, a task's own name), `cause` a human-readable text.
    Err { error: String, cause: String },
}

/// Where the time went, all in Unix ms as seen by the worker.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timings {
    /// The worker took the delivery.
    pub received_ms: u64,
    /// The task started.
    pub started_ms: u64,
    /// The task returned (or was cut off at the deadline).
    pub finished_ms: u64,
    /// The step's [`StepMessage::published_ms`], carried back so the coordinator can
    /// measure the whole trip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_ms: Option<u64>,
}

/// Worker → coordinator: the result of one step delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutcomeMessage {
    pub v: u32,
    #[serde(flatten)]
    pub id: StepId,
    pub resource: String,
    pub result: StepResult,
    /// The worker that ran it (host and pid), for history and debugging.
    pub worker_id: String,
    /// How many times the broker had delivered the step before this run (0 = first).
    #[serde(default)]
    pub redeliveries: u32,
    pub timings: Timings,
    #[serde(default)]
    pub trace: TraceIds,
}

impl OutcomeMessage {
    /// The outcome of `step` with the given result, stamped with this build's version.
    pub fn for_step(
        step: &StepMessage,
        result: StepResult,
        worker_id: impl Into<String>,
        timings: Timings,
    ) -> Self {
        Self {
            v: WIRE_VERSION,
            id: step.id.clone(),
            resource: step.resource.clone(),
            result,
            worker_id: worker_id.into(),
            redeliveries: 0,
            timings: Timings {
                published_ms: step.published_ms,
                ..timings
            },
            trace: step.trace.clone(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an OutcomeMessage always serializes")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode_versioned(bytes)
    }
}

/// Several outcomes in one broker message. A busy worker batches the outcomes that are
/// ready at the same moment (group commit): one persistent, confirmed message and one
/// consumer ack instead of many, which halves the broker's work per step at load. Each
/// outcome inside is still applied on its own, exactly once, by its [`StepId`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutcomeBatch {
    pub v: u32,
    pub outcomes: Vec<OutcomeMessage>,
}

impl OutcomeBatch {
    pub fn new(outcomes: Vec<OutcomeMessage>) -> Self {
        Self {
            v: WIRE_VERSION,
            outcomes,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an OutcomeBatch always serializes")
    }
}

/// Decodes a message from the outcomes queue: either one [`OutcomeMessage`] or an
/// [`OutcomeBatch`]. Consumers of the outcomes queue should always use this.
pub fn decode_outcomes(bytes: &[u8]) -> Result<Vec<OutcomeMessage>, DecodeError> {
    #[derive(Deserialize)]
    struct Shape {
        #[serde(default)]
        outcomes: Option<serde::de::IgnoredAny>,
    }
    decode_single_or_batch(
        bytes,
        |s: &Shape| s.outcomes.is_some(),
        |b: OutcomeBatch| b.outcomes,
    )
}

/// Checks the version, then decodes `bytes` as a batch `B` when `is_batch` says its shape is
/// one, else as a single `T`.
fn decode_single_or_batch<S, B, T>(
    bytes: &[u8],
    is_batch: impl FnOnce(&S) -> bool,
    items: impl FnOnce(B) -> Vec<T>,
) -> Result<Vec<T>, DecodeError>
where
    S: serde::de::DeserializeOwned,
    B: serde::de::DeserializeOwned,
    T: serde::de::DeserializeOwned,
{
    let probe: VersionProbe = serde_json::from_slice(bytes).map_err(DecodeError::NoVersion)?;
    check_version(probe.v)?;
    let shape: S = serde_json::from_slice(bytes).map_err(DecodeError::NoVersion)?;
    let malformed = |source| DecodeError::Malformed {
        version: WIRE_VERSION,
        source,
    };
    if is_batch(&shape) {
        Ok(items(serde_json::from_slice(bytes).map_err(malformed)?))
    } else {
        Ok(vec![serde_json::from_slice(bytes).map_err(malformed)?])
    }
}

#[derive(Deserialize)]
struct VersionProbe {
    v: u64,
}

fn check_version(v: u64) -> Result<(), DecodeError> {
    if v != u64::from(WIRE_VERSION) {
        return Err(DecodeError::UnsupportedVersion {
            found: v,
            supported: WIRE_VERSION,
        });
    }
    Ok(())
}

fn decode_versioned<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    let probe: VersionProbe = serde_json::from_slice(bytes).map_err(DecodeError::NoVersion)?;
    check_version(probe.v)?;
    serde_json::from_slice(bytes).map_err(|source| DecodeError::Malformed {
        version: WIRE_VERSION,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn id() -> StepId {
        StepId {
            execution: "arn:aws:states:local:0:execution:sm:e1".into(),
            cursor: "Map/3".into(),
            seq: 7,
            attempt: 2,
        }
    }

    #[test]
    fn step_round_trips() {
        let mut step = StepMessage::new(id(), "arn:mapfleet:task:::echo", json!({"a": [1, 2]}));
        step.deadline_ms = Some(123);
        step.trace.trace_id = Some("t".into());
        let back = StepMessage::decode(&step.encode()).unwrap();
        assert_eq!(back, step);
        // flattened identity: the wire shape is flat and readable
        let raw: Value = serde_json::from_slice(&step.encode()).unwrap();
        assert_eq!(raw["seq"], 7);
        assert_eq!(raw["cursor"], "Map/3");
    }

    #[test]
    fn outcome_round_trips() {
        let step = StepMessage::new(id(), "arn:mapfleet:task:::fail", json!(null));
        let out = OutcomeMessage::for_step(
            &step,
            StepResult::Err {
                error: "Boom".into(),
                cause: "because".into(),
            },
            "w1",
            Timings::default(),
        );
        let back = OutcomeMessage::decode(&out.encode()).unwrap();
        assert_eq!(back, out);
        let raw: Value = serde_json::from_slice(&out.encode()).unwrap();
        assert_eq!(raw["result"]["status"], "err");
    }

    #[test]
    fn outcomes_queue_carries_singles_and_batches() {
        let step = StepMessage::new(id(), "arn:mapfleet:task:::echo", json!(1));
        let one = OutcomeMessage::for_step(
            &step,
            StepResult::Ok { output: json!(1) },
            "w",
            Timings::default(),
        );
        assert_eq!(decode_outcomes(&one.encode()).unwrap(), vec![one.clone()]);
        let batch = OutcomeBatch::new(vec![one.clone(), one.clone()]);
        assert_eq!(decode_outcomes(&batch.encode()).unwrap().len(), 2);
        assert!(matches!(
            decode_outcomes(br#"{"v": 2, "outcomes": []}"#).unwrap_err(),
            DecodeError::UnsupportedVersion { found: 2, .. }
        ));
    }

    #[test]
    fn steps_queues_carry_singles_and_batches() {
        let one = StepMessage::new(id(), "arn:mapfleet:task:::echo", json!({"i": 1}));
        // An old sender's single step still reads.
        assert_eq!(decode_steps(&one.encode()).unwrap(), vec![one.clone()]);
        let mut other = one.clone();
        other.id.cursor = "Map/4".into();
        let batch = StepBatch::new(vec![one.clone(), other.clone()]);
        assert_eq!(decode_steps(&batch.encode()).unwrap(), vec![one, other]);
        assert!(matches!(
            decode_steps(br#"{"v": 2, "steps": []}"#).unwrap_err(),
            DecodeError::UnsupportedVersion { found: 2, .. }
        ));
        assert!(matches!(
            decode_steps(br#"{"v": 1, "steps": [{"v": 1}]}"#).unwrap_err(),
            DecodeError::Malformed { .. }
        ));
    }

    #[test]
    fn unknown_version_is_a_clear_error() {
        let bytes = br#"{"v": 99, "whatever": true}"#;
        let err = StepMessage::decode(bytes).unwrap_err();
        assert!(matches!(
            err,
            DecodeError::UnsupportedVersion { found: 99, .. }
        ));
        assert!(err.to_string().contains("unsupported wire version 99"));
        assert!(matches!(
            OutcomeMessage::decode(b"not json").unwrap_err(),
            DecodeError::NoVersion(_)
        ));
        assert!(matches!(
            StepMessage::decode(br#"{"v": 1}"#).unwrap_err(),
            DecodeError::Malformed { .. }
        ));
    }
}
