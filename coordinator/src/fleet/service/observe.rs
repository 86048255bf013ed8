//! What a coordinator tells Prometheus beyond its plumbing (`shared::metrics::fleet`):
//! executions and Map items counted from the history each commit wrote, and a poller for
//! the fleet's surroundings (broker backlog per queue, live workers, Redis memory).
//!
//! Counts come from a batch's history and are recorded only once its commit succeeded, so a
//! batch that is dropped (lease lost) and redone is counted once.

use std::collections::HashMap;
use std::time::Duration;

use shared::lapin::options::QueueDeclareOptions;
use shared::lapin::types::FieldTable;

use super::*;
use crate::engine::history::{Event, EventType};

/// How often the poller reads the queues, the worker registry and Redis's memory.
const POLL_EVERY: Duration = Duration::from_secs(5);

/// What one batch's history adds to the execution and item counters.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Tally {
    state_machine: String,
    started: u64,
    ended: Vec<&'static str>,
    items: [u64; 4],
}

impl Tally {
    /// The counts of `history`, written by a batch of execution `arn`.
    pub(super) fn of(arn: &str, history: &[Event]) -> Tally {
        let mut t = Tally {
            state_machine: state_machine_of(arn).to_string(),
            ..Tally::default()
        };
        for e in history {
            match e.event_type {
                EventType::ExecutionStarted => t.started += 1,
                EventType::ExecutionSucceeded => t.ended.push("succeeded"),
                EventType::ExecutionFailed => t.ended.push("failed"),
                EventType::ExecutionTimedOut => t.ended.push("timed_out"),
                EventType::ExecutionAborted => t.ended.push("aborted"),
                EventType::MapIterationStarted => t.items[0] += 1,
                EventType::MapIterationSucceeded => t.items[1] += 1,
                EventType::MapIterationFailed => t.items[2] += 1,
                EventType::MapIterationAborted => t.items[3] += 1,
                _ => {}
            }
        }
        t
    }

    /// Adds the counts to the process's metrics (after the commit succeeded).
    pub(super) fn record(&self) {
        let m = &shared::metrics::get().fleet;
        if self.started > 0 || !self.ended.is_empty() {
            m.executions(&self.state_machine, self.started, &self.ended);
        }
        for (status, n) in shared::metrics::fleet::ITEM_STATUSES.iter().zip(self.items) {
            if n > 0 {
                m.map_items.with_label_values(&[status]).inc_by(n);
            }
        }
    }
}

/// The state machine's name in an execution ARN
/// (`arn:aws:states:REGION:ACCOUNT:execution:STATE_MACHINE:NAME`, or an express execution's
/// `…:express:STATE_MACHINE:NAME:UUID`); `unknown` for another
/// shape, so a label never carries an execution's name.
pub(super) fn state_machine_of(arn: &str) -> &str {
    let parts: Vec<&str> = arn.splitn(8, ':').collect();
    match parts.as_slice() {
        [_, _, _, _, _, "execution" | "express", sm, _] if !sm.is_empty() => sm,
        _ => "unknown",
    }
}

/// `used_memory` and `maxmemory` from Redis's `INFO memory` text.
pub fn redis_memory(info: &str) -> (Option<i64>, Option<i64>) {
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse().ok())
    };
    (field("used_memory"), field("maxmemory"))
}

impl Coordinator {
    /// Polls the fleet's surroundings every [`POLL_EVERY`] until the coordinator stops. A
    /// failed poll is counted and logged at debug level; it never stops the coordinator.
    pub(super) async fn observe_fleet(self: Arc<Self>) -> Result<(), Error> {
        let m = &shared::metrics::get().fleet;
        let mut queues: Vec<String> = self.topo.steps_queues();
        queues.push(self.topo.outcomes_queue());
        queues.push(self.topo.dead_letter_queue());
        // Resources seen served once: their gauge drops to 0 when their last worker goes.
        let mut resources: HashMap<String, i64> = HashMap::new();
        let mut channel = None;
        loop {
            if let Err(e) = self.poll_queues(&mut channel, &queues).await {
                m.queue_poll_errors.inc();
                tracing::debug!(error = %e, "cannot poll the queues' backlog");
                channel = None;
            }
            let mut conn = self.conn.clone();
            match shared::workers::live_counts(&mut conn, self.keys.shared.prefix()).await {
                Ok((workers, per_resource)) => {
                    m.workers_live.set(workers as i64);
                    for n in resources.values_mut() {
                        *n = 0;
                    }
                    resources.extend(per_resource.into_iter().map(|(r, n)| (r, n as i64)));
                    for (r, n) in &resources {
                        m.resource_workers_live.with_label_values(&[r]).set(*n);
                    }
                }
                Err(e) => tracing::debug!(error = %e, "cannot read the worker registry"),
            }
            match conn.info("memory").await {
                // On a cluster, the primary nearest its limit speaks for all.
                Ok(texts) => {
                    let nearest = texts.iter().map(|t| redis_memory(t)).max_by(|a, b| {
                        let share = |(used, max): &(Option<i64>, Option<i64>)| match (used, max) {
                            (Some(u), Some(m)) if *m > 0 => *u as f64 / *m as f64,
                            (Some(u), _) => *u as f64 / f64::MAX,
                            _ => -1.0,
                        };
                        share(a).total_cmp(&share(b))
                    });
                    if let Some((used, max)) = nearest {
                        if let Some(used) = used {
                            m.redis_used_memory.set(used);
                        }
                        if let Some(max) = max {
                            m.redis_maxmemory.set(max);
                        }
                    }
                }
                Err(e) => tracing::debug!(error = %e, "cannot read Redis's memory"),
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// Reads each queue's ready messages and consumers with a passive declare (which never
    /// creates a queue). A missing queue closes the channel, hence a new one after an error.
    async fn poll_queues(
        &self,
        channel: &mut Option<shared::lapin::Channel>,
        queues: &[String],
    ) -> Result<(), Error> {
        let ch = match channel {
            Some(c) if c.status().connected() => c,
            _ => channel.insert(
                shared::amqp::open_channel(&self.amqp)
                    .await
                    .doing(|| "open a channel to poll the queues".into())?,
            ),
        };
        let m = &shared::metrics::get().fleet;
        for q in queues {
            let declared = ch
                .queue_declare(
                    q.as_str().into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                .doing(|| format!("read the backlog of queue {q}"))?;
            m.queue_messages_ready
                .with_label_values(&[q])
                .set(i64::from(declared.message_count()));
            m.queue_consumers
                .with_label_values(&[q])
                .set(i64::from(declared.consumer_count()));
        }
        Ok(())
    }
}

/// A batch was dropped because the lease lapsed under it.
pub(super) fn lease_lost() {
    shared::metrics::get().fleet.leases_lost.inc();
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use serde_json::json;

    use super::*;

    fn event(t: EventType) -> Event {
        Event {
            id: 1,
            previous_event_id: 0,
            event_type: t,
            timestamp: Utc::now(),
            details: json!({}),
            cursor: String::new(),
        }
    }

    #[test]
    fn a_batch_history_is_tallied() {
        let arn = "arn:aws:states:local:000000000000:execution:Photos:run-17";
        let history: Vec<Event> = [
            EventType::ExecutionStarted,
            EventType::MapIterationStarted,
            EventType::MapIterationStarted,
            EventType::MapIterationSucceeded,
            EventType::MapIterationFailed,
            EventType::ExecutionFailed,
        ]
        .into_iter()
        .map(event)
        .collect();
        let t = Tally::of(arn, &history);
        assert_eq!(t.state_machine, "Photos");
        assert_eq!((t.started, t.ended.as_slice()), (1, &["failed"][..]));
        assert_eq!(t.items, [2, 1, 1, 0]);
    }

    #[test]
    fn only_the_state_machine_names_a_label() {
        assert_eq!(
            state_machine_of("arn:aws:states:local:000000000000:execution:sm:e:with:colons"),
            "sm"
        );
        assert_eq!(
            state_machine_of("arn:aws:states:local:000000000000:express:sm:e:5f0c"),
            "sm"
        );
        assert_eq!(state_machine_of("not an arn"), "unknown");
        assert_eq!(
            state_machine_of("arn:aws:states:local:0:stateMachine:sm"),
            "unknown"
        );
    }

    #[test]
    fn redis_memory_is_read_from_info() {
        let info = "# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\nmaxmemory:0\r\n";
        assert_eq!(redis_memory(info), (Some(1_048_576), Some(0)));
        assert_eq!(redis_memory(""), (None, None));
    }
}
