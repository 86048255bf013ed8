//! [`OutboxStep`]: a step as kept in an execution's outbox, between the commit that decides
//! it and the publish that sends it. Built once from the engine's [`StepRequest`]; what the
//! outbox holds is the step message itself, so publishing changes nothing but its deadline.

use serde::{Deserialize, Serialize};
use shared::messages::{StepId, StepMessage};

use crate::driver::StepRequest;

/// One outbox entry: the step message to publish, and its timeout, kept as a duration
/// because a deadline counts from the publish (which may come much later, from another
/// coordinator), not from the commit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxStep {
    pub step: StepMessage,
    /// The state's TimeoutSeconds, in ms; the published step's deadline is publish time +
    /// this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// An outbox entry this coordinator (or another) wrote that does not decode: a bug or a
/// foreign writer, never something to guess a default for.
#[derive(Debug, thiserror::Error)]
#[error("outbox entry {index} of execution {execution} is unreadable: {source}")]
pub struct UnreadableOutboxEntry {
    pub execution: String,
    /// The entry's position in the outbox list (0 = its head).
    pub index: usize,
    #[source]
    pub source: serde_json::Error,
}

impl OutboxStep {
    /// The outbox entry of a step the engine of execution `arn` asked for.
    pub fn new(arn: &str, s: &StepRequest) -> OutboxStep {
        let id = StepId {
            execution: arn.to_string(),
            cursor: s.cursor.clone(),
            seq: s.seq,
            attempt: s.attempt,
        };
        let mut step = StepMessage::new(id, s.resource.clone(), s.input.clone());
        step.heartbeat_seconds = s
            .heartbeat
            .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
        OutboxStep {
            step,
            timeout_ms: s
                .timeout
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        }
    }

    /// The entry as stored in the outbox list.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("an outbox step always serializes")
    }

    /// Decodes the `index`-th entry of execution `arn`'s outbox.
    pub fn decode(
        arn: &str,
        index: usize,
        text: &str,
    ) -> Result<OutboxStep, UnreadableOutboxEntry> {
        serde_json::from_str(text).map_err(|source| UnreadableOutboxEntry {
            execution: arn.to_string(),
            index,
            source,
        })
    }

    /// The step message to publish at `now_ms` (its deadline set from the timeout, and
    /// stamped with its publish time for the latency metrics).
    pub fn publish_at(self, now_ms: u64) -> StepMessage {
        let mut step = self.step;
        step.deadline_ms = self.timeout_ms.map(|t| now_ms.saturating_add(t));
        step.published_ms = Some(now_ms);
        step
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;

    fn request() -> StepRequest {
        StepRequest {
            cursor: "root/Map/3".into(),
            seq: 7,
            attempt: 2,
            resource: "arn:mapfleet:task:::echo".into(),
            input: json!({"a": [1, "x"]}),
            timeout: Some(Duration::from_millis(1500)),
            heartbeat: Some(Duration::from_secs(4)),
            callback: None,
        }
    }

    #[test]
    fn a_step_survives_the_outbox_and_gets_its_deadline_at_publish() {
        let entry = OutboxStep::new("arn:exec", &request());
        let back = OutboxStep::decode("arn:exec", 0, &entry.encode()).unwrap();
        assert_eq!(back, entry);
        let step = back.publish_at(10_000);
        assert_eq!(step.id.execution, "arn:exec");
        assert_eq!(step.id.cursor, "root/Map/3");
        assert_eq!((step.id.seq, step.id.attempt), (7, 2));
        assert_eq!(step.resource, "arn:mapfleet:task:::echo");
        assert_eq!(step.input, json!({"a": [1, "x"]}));
        assert_eq!(step.deadline_ms, Some(11_500));
        assert_eq!(step.published_ms, Some(10_000));
        assert_eq!(step.heartbeat_seconds, Some(4));
    }

    #[test]
    fn no_timeout_means_no_deadline() {
        let mut r = request();
        r.timeout = None;
        r.heartbeat = None;
        let step = OutboxStep::new("arn:exec", &r).publish_at(10_000);
        assert_eq!((step.deadline_ms, step.heartbeat_seconds), (None, None));
    }

    #[test]
    fn an_unreadable_entry_names_the_execution_and_the_entry() {
        // The shape of the ad-hoc JSON this replaced: no step message in it.
        let old = r#"{"execution":"arn:exec","cursor":"c","seq":1,"attempt":1}"#;
        let e = OutboxStep::decode("arn:exec", 3, old).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("arn:exec") && text.contains("entry 3"),
            "{text}"
        );
    }
}
