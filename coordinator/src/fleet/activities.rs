//! Activities: workers in any language take a Task state's steps through the Step Functions
//! API (`mapfleet serve`) and complete them with task tokens.
//!
//! ```text
//! Task state, Resource = arn:aws:states:R:A:activity:NAME
//!   engine: ActivityScheduled ─▶ PublishStep ─▶ outbox ─▶ steps exchange, routing key = ARN
//!   ─▶ P.activity.NAME (quorum queue, bound by CreateActivity)
//! GetActivityTask ─▶ basic.get ─▶ claim (one script: the cursor awaits that step, no token
//!   was handed out for it yet; the token's secret kept; StepStarted into the inbox) ─▶ ack
//!   ─▶ {taskToken, input}               engine: ActivityStarted, the heartbeat clock starts
//! SendTaskHeartbeat ─▶ token checked ─▶ StepHeartbeat into the inbox (the deadline moves)
//! SendTaskSuccess / SendTaskFailure ─▶ token checked ─▶ shared::inbox::apply_to_inbox, the
//!   workers' own exactly-once path ─▶ ActivitySucceeded / ActivityFailed
//! ```
//!
//! A `.waitForTaskToken` Task's token (`$$.Task.Token`, minted by the engine before its
//! integration runs, see `mapfleet_engine::engine::token`) is kept the same way, by the
//! commit that publishes its step ([`callback_record`]). Its answers cannot take the step's
//! own exactly-once path, which its integration's outcome takes; [`ANSWER`] admits one answer
//! per token instead (`a:...`), and the engine drops an answer for a step it no longer waits for.
//!
//! A task token names the step (execution, cursor, seq, attempt) and carries a 128-bit secret
//! drawn from the OS when the step was handed out; the server keeps the secret and compares it
//! in constant time, so a token cannot be guessed or forged from a step's name. The token's
//! step can be answered once: a second answer, or one after the step's deadline (its
//! `TimeoutSeconds`, or `HeartbeatSeconds` since the start or the last heartbeat), is
//! TaskTimedOut. The server judges deadlines from the times it recorded, which are never later
//! than the coordinator's, so an answer it accepts reaches the inbox before the timeout.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:sfn:activities` | hash | activity name → [`ActivityRecord`] (JSON) |
//! | `P:sfn:activity-tags:NAME` | hash | tag key → value |
//! | `P:{ARN}:tokens` | hash | `t:CURSOR\|SEQ\|ATTEMPT` → `SECRET\|DEADLINE_MS\|HEARTBEAT_MS` of the token handed out for that step (`...\|c` for a `.waitForTaskToken` step's); `b:...` → when it started or last beat (ms); `a:...` → a callback token was answered; expires with the execution |

use std::sync::Arc;
use std::time::Duration;

use rand::RngCore;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shared::amqp::{ConnectError, Outgoing, PublishError, Publisher, PublisherOptions};
use shared::inbox::{Delivery, apply_to_inbox};
use shared::lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicNackOptions, BasicRejectOptions,
};
use shared::lapin::{Channel, Connection};
use shared::messages::{StepId, StepMessage, decode_steps};
use shared::redis_conn::RedisConn;
use shared::redis_schema::{Applied, StoreError};
use shared::tls::TlsFiles;
use shared::topology::{Topology, activity_name};
use tokio::sync::Mutex;

use super::InboxEvent;
use super::keys::FleetKeys;
use crate::asl::error::StatesError;
use crate::driver::StepRequest;
use crate::engine::context::{LOCAL_ACCOUNT, LOCAL_REGION};
use crate::engine::token::{self, hex, same_secret};

/// The delivery limit of the activity queues (a step a server took and never settled comes
/// back; past this many deliveries it is dead-lettered and fails as any step would).
pub const DELIVERY_LIMIT: u32 = 5;

/// How long an execution's keys live when its hash has no expiry to copy.
const FALLBACK_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Why an activity call could not be done.
#[derive(Debug, thiserror::Error)]
pub enum ActivityError {
    #[error("Activity Does Not Exist: '{0}'")]
    NoActivity(String),
    #[error("Invalid Token: '{0}'")]
    InvalidToken(&'static str),
    #[error("Task Timed Out: 'Provided task does not exist anymore'")]
    TimedOut,
    #[error(
        "activities need the fleet's RabbitMQ: start `mapfleet serve` with --amqp (or \
         MAPFLEET_AMQP_URL)"
    )]
    NoBroker,
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("Redis: {0}")]
    Store(#[from] StoreError),
    #[error("the queue of activity {activity}: {source}")]
    Broker {
        activity: String,
        #[source]
        source: shared::lapin::Error,
    },
    #[error("the fleet's RabbitMQ: {0}")]
    Connect(#[from] ConnectError),
    #[error("the fleet's RabbitMQ: {0}")]
    Publish(#[from] PublishError),
    #[error("the stored activity {name} does not parse: {source}")]
    Record {
        name: String,
        #[source]
        source: serde_json::Error,
    },
}

/// One activity as CreateActivity made it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivityRecord {
    pub name: String,
    pub arn: String,
    pub creation_ms: i64,
}

/// Why tags were not set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagRefused {
    NoActivity,
    TooMany,
}

/// An activity's ARN in mapfleet's region and account.
pub fn activity_arn(name: &str) -> String {
    format!("arn:aws:states:{LOCAL_REGION}:{LOCAL_ACCOUNT}:activity:{name}")
}

/// `P:sfn:activities`.
fn registry_key(keys: &FleetKeys) -> String {
    keys.shared.activities()
}

/// `P:sfn:activity-tags:NAME`.
fn tags_key(keys: &FleetKeys, name: &str) -> String {
    format!("{}:sfn:activity-tags:{name}", keys.shared.prefix())
}

/// `P:{ARN}:tokens`.
pub(super) fn tokens_key(keys: &FleetKeys, execution: &str) -> String {
    format!("{}:{{{execution}}}:tokens", keys.shared.prefix())
}

/// Whether the activity of `arn` exists (the coordinator's check before it fails a step
/// for a missing activity).
pub async fn exists(conn: &mut RedisConn, keys: &FleetKeys, arn: &str) -> redis::RedisResult<bool> {
    let Some(name) = activity_name(arn) else {
        return Ok(false);
    };
    conn.hexists(registry_key(keys), name).await
}

/// The failure of an activity step whose activity does not exist.
pub fn missing(arn: &str) -> StatesError {
    // AWS's words, then what to do about it.
    StatesError::runtime(format!(
        "The activity {arn} does not exist. Create it with CreateActivity before a Task \
         state uses it."
    ))
}

/// The outcome text a cursor's step hash keeps and the inbox entry of an outcome: what
/// `shared::inbox::apply_to_inbox` takes, for a worker's outcome and a SendTask call alike.
pub(crate) fn outcome_texts(id: &StepId, result: &Result<Value, StatesError>) -> (String, String) {
    let event = InboxEvent::Outcome {
        cursor: id.cursor.clone(),
        seq: id.seq,
        result: result.clone(),
    };
    (
        serde_json::to_string(result).expect("outcomes serialize"),
        serde_json::to_string(&event).expect("inbox events serialize"),
    )
}

/// A task token: the step it answers and the secret that proves it was handed out.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskToken {
    pub step: StepId,
    secret: String,
}

impl TaskToken {
    fn new(step: StepId) -> TaskToken {
        let mut bytes = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        TaskToken {
            step,
            secret: hex(&bytes),
        }
    }

    /// The opaque text a worker holds: hex of the step's name, a dot, the secret.
    pub fn encode(&self) -> String {
        let s = &self.step;
        let step = token::TokenStep {
            execution: s.execution.clone(),
            cursor: s.cursor.clone(),
            seq: s.seq,
            attempt: s.attempt,
        };
        token::encode(&step, &self.secret)
    }

    /// Reads a token (an activity's or a `.waitForTaskToken` step's: one format).
    pub fn decode(text: &str) -> Result<TaskToken, ActivityError> {
        let t = token::decode(text).ok_or(ActivityError::InvalidToken("Invalid token"))?;
        Ok(TaskToken {
            step: StepId {
                execution: t.step.execution,
                cursor: t.step.cursor,
                seq: t.step.seq,
                attempt: t.step.attempt,
            },
            secret: t.secret,
        })
    }

    /// The step's field in the execution's tokens hash.
    fn field(&self) -> String {
        step_field(&self.step)
    }
}

fn step_field(s: &StepId) -> String {
    format!("{}|{}|{}", s.cursor, s.seq, s.attempt)
}

/// The tokens-hash fields that make a `.waitForTaskToken` step's token answerable (none for
/// any other step): its secret and deadlines, and its start, the engine's time of publishing.
pub(super) fn callback_record(
    execution: &str,
    step: &StepRequest,
) -> Option<[(String, String); 2]> {
    let callback = step.callback.as_ref()?;
    let secret = token::decode(&callback.token)?.secret;
    let issued = callback.issued.timestamp_millis().max(0) as u64;
    let deadline = step.timeout.map_or(0, |t| issued + t.as_millis() as u64);
    let heartbeat = step.heartbeat.map_or(0, |h| h.as_millis() as u64);
    let field = step_field(&StepId {
        execution: execution.to_string(),
        cursor: step.cursor.clone(),
        seq: step.seq,
        attempt: step.attempt,
    });
    Some([
        (
            format!("t:{field}"),
            format!("{secret}|{deadline}|{heartbeat}|c"),
        ),
        (format!("b:{field}"), issued.to_string()),
    ])
}

/// Hands out the step if its cursor still awaits it and no token was handed out for it yet:
/// keeps the token's secret and deadlines and queues the start for the coordinator.
const CLAIM: &str = r"
-- KEYS[1] the step's cursor hash, KEYS[2] tokens, KEYS[3] inbox, KEYS[4] execution hash
-- ARGV[1] seq, ARGV[2] attempt, ARGV[3] step field, ARGV[4] record, ARGV[5] now ms,
-- ARGV[6] inbox entry
local cur = redis.call('HMGET', KEYS[1], 'seq', 'attempt', 'phase')
if cur[1] ~= ARGV[1] or cur[2] ~= ARGV[2] or cur[3] ~= 'awaiting' then return 0 end
if redis.call('HSETNX', KEYS[2], 't:' .. ARGV[3], ARGV[4]) == 0 then return 0 end
redis.call('HSET', KEYS[2], 'b:' .. ARGV[3], ARGV[5])
redis.call('RPUSH', KEYS[3], ARGV[6])
local ttl = redis.call('PTTL', KEYS[4])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[2], ttl)
  redis.call('PEXPIRE', KEYS[3], ttl)
end
return 1
";

/// A heartbeat of a step its cursor still awaits: the time is kept, the coordinator told.
const BEAT: &str = r"
-- KEYS[1] the step's cursor hash, KEYS[2] tokens, KEYS[3] inbox
-- ARGV[1] seq, ARGV[2] attempt, ARGV[3] step field, ARGV[4] now ms, ARGV[5] inbox entry
local cur = redis.call('HMGET', KEYS[1], 'seq', 'attempt', 'phase')
if cur[1] ~= ARGV[1] or cur[2] ~= ARGV[2] or cur[3] ~= 'awaiting' then return 0 end
redis.call('HSET', KEYS[2], 'b:' .. ARGV[3], ARGV[4])
redis.call('RPUSH', KEYS[3], ARGV[5])
return 1
";

/// The one answer of a `.waitForTaskToken` token, while its execution runs.
const ANSWER: &str = r"
-- KEYS[1] tokens, KEYS[2] inbox, KEYS[3] execution hash
-- ARGV[1] step field, ARGV[2] inbox entry
if redis.call('HGET', KEYS[3], 'status') ~= 'RUNNING' then return 0 end
if redis.call('HSETNX', KEYS[1], 'a:' .. ARGV[1], '1') == 0 then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[2])
local ttl = redis.call('PTTL', KEYS[3])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
return 1
";

/// A heartbeat of a `.waitForTaskToken` token not answered yet.
const BEAT_CALLBACK: &str = r"
-- KEYS[1] tokens, KEYS[2] inbox, KEYS[3] execution hash
-- ARGV[1] step field, ARGV[2] now ms, ARGV[3] inbox entry
if redis.call('HGET', KEYS[3], 'status') ~= 'RUNNING' then return 0 end
if redis.call('HEXISTS', KEYS[1], 'a:' .. ARGV[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'b:' .. ARGV[1], ARGV[2])
redis.call('RPUSH', KEYS[2], ARGV[3])
return 1
";

/// A token's fields in the tokens hash: its record (`t:`), its start or last beat (`b:`),
/// whether a callback token was answered (`a:`).
type TokenFields = (Option<String>, Option<u64>, Option<String>);

/// A task handed to a worker.
#[derive(Debug, Clone)]
pub struct ActivityTask {
    pub token: String,
    /// The step's effective input.
    pub input: Value,
}

/// What one look into an activity's queue found.
#[derive(Debug)]
pub enum Taken {
    /// The queue was empty.
    Empty,
    /// A step that is no longer wanted (timed out, answered, handed out already), dropped.
    Stale,
    Task(ActivityTask),
}

/// The broker side: one connection of the server's, opened when first needed and again after
/// it was lost.
struct Broker {
    url: String,
    tls: TlsFiles,
    live: Mutex<Option<(Arc<Connection>, Channel, Publisher)>>,
}

impl Broker {
    async fn channel(&self) -> Result<(Channel, Publisher), ActivityError> {
        let mut live = self.live.lock().await;
        if let Some((conn, channel, publisher)) = live.as_ref()
            && conn.status().connected()
            && channel.status().connected()
        {
            return Ok((channel.clone(), publisher.clone()));
        }
        let conn = match live.take() {
            Some((conn, _, _)) if conn.status().connected() => conn,
            _ => Arc::new(
                shared::amqp::connect_with(
                    &self.url,
                    &self.tls,
                    "mapfleet-serve",
                    Duration::from_secs(10),
                    std::future::pending(),
                )
                .await?,
            ),
        };
        let channel =
            shared::amqp::open_channel(&conn)
                .await
                .map_err(|source| ActivityError::Broker {
                    activity: "(any)".into(),
                    source,
                })?;
        let publisher = Publisher::new(conn.clone(), PublisherOptions::default())
            .await
            .map_err(|source| ActivityError::Broker {
                activity: "(any)".into(),
                source,
            })?;
        *live = Some((conn, channel.clone(), publisher.clone()));
        Ok((channel, publisher))
    }
}

/// Activities of one fleet: the registry and tokens in its Redis, the queues on its broker.
#[derive(Clone)]
pub struct Activities {
    conn: RedisConn,
    keys: FleetKeys,
    topo: Topology,
    broker: Option<Arc<Broker>>,
}

impl Activities {
    /// `amqp`: the fleet's RabbitMQ (with its password merged in), without which only the
    /// registry calls work.
    pub fn new(conn: RedisConn, keys: FleetKeys, amqp: Option<(String, TlsFiles)>) -> Activities {
        let topo = Topology::new(keys.shared.prefix(), DELIVERY_LIMIT);
        Activities {
            conn,
            keys,
            topo,
            broker: amqp.map(|(url, tls)| {
                Arc::new(Broker {
                    url,
                    tls,
                    live: Mutex::new(None),
                })
            }),
        }
    }

    fn broker(&self) -> Result<&Broker, ActivityError> {
        self.broker.as_deref().ok_or(ActivityError::NoBroker)
    }

    fn broker_error(activity: &str) -> impl FnOnce(shared::lapin::Error) -> ActivityError + '_ {
        move |source| ActivityError::Broker {
            activity: activity.to_string(),
            source,
        }
    }

    /// Declares the activity's queue (idempotent): its steps route there from now on.
    async fn declare_queue(&self, arn: &str) -> Result<Channel, ActivityError> {
        let (channel, _) = self.broker()?.channel().await?;
        shared::topology::declare_activity(&channel, &self.topo, arn)
            .await
            .map_err(Self::broker_error(arn))?;
        Ok(channel)
    }

    /// CreateActivity: the activity named `name`, made now or found (idempotent by name: the
    /// first call's record and tags stay, at most `max_tags` of them). Its queue is declared
    /// every time, so a repeated call also heals a queue the broker lost.
    pub async fn create(
        &self,
        name: &str,
        tags: &[(String, String)],
        max_tags: usize,
    ) -> Result<ActivityRecord, ActivityError> {
        let record = ActivityRecord {
            name: name.to_string(),
            arn: activity_arn(name),
            creation_ms: chrono::Utc::now().timestamp_millis(),
        };
        self.declare_queue(&record.arn).await?;
        let text = serde_json::to_string(&record).expect("an activity record serializes");
        let mut conn = self.conn.clone();
        let created: bool = conn.hset_nx(registry_key(&self.keys), name, text).await?;
        if created && !tags.is_empty() {
            // Counted by the caller already: refused only if deleted meanwhile.
            let _ = self.tag(name, tags, max_tags).await?;
        }
        self.describe(name)
            .await?
            .ok_or_else(|| ActivityError::NoActivity(record.arn.clone()))
    }

    /// The activity's tags, by key.
    pub async fn tags(&self, name: &str) -> Result<Vec<(String, String)>, ActivityError> {
        let mut conn = self.conn.clone();
        let mut tags: Vec<(String, String)> = conn.hgetall(tags_key(&self.keys, name)).await?;
        tags.sort();
        Ok(tags)
    }

    /// TagResource: adds or replaces tags while the activity exists, up to `max` in all.
    pub async fn tag(
        &self,
        name: &str,
        tags: &[(String, String)],
        max: usize,
    ) -> Result<Result<(), TagRefused>, ActivityError> {
        let mut conn = self.conn.clone();
        let tag = redis::Script::new(shared::redis_schema::TAG_IF_OWNER_EXISTS);
        let mut script = tag.prepare_invoke();
        script
            .key(registry_key(&self.keys))
            .key(tags_key(&self.keys, name))
            .arg(name)
            .arg(max);
        for (k, v) in tags {
            script.arg(k).arg(v);
        }
        let n: i64 = script.invoke_async(&mut conn).await?;
        Ok(match n {
            -1 => Err(TagRefused::NoActivity),
            -2 => Err(TagRefused::TooMany),
            _ => Ok(()),
        })
    }

    /// UntagResource.
    pub async fn untag(&self, name: &str, keys: &[String]) -> Result<(), ActivityError> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        let _: i64 = conn.hdel(tags_key(&self.keys, name), keys).await?;
        Ok(())
    }

    pub async fn describe(&self, name: &str) -> Result<Option<ActivityRecord>, ActivityError> {
        let mut conn = self.conn.clone();
        let text: Option<String> = conn.hget(registry_key(&self.keys), name).await?;
        text.map(|t| {
            serde_json::from_str(&t).map_err(|source| ActivityError::Record {
                name: name.to_string(),
                source,
            })
        })
        .transpose()
    }

    /// Every activity, by name.
    pub async fn list(&self) -> Result<Vec<ActivityRecord>, ActivityError> {
        let mut conn = self.conn.clone();
        let all: Vec<(String, String)> = conn.hgetall(registry_key(&self.keys)).await?;
        let mut out = all
            .into_iter()
            .map(|(name, t)| {
                serde_json::from_str(&t).map_err(|source| ActivityError::Record { name, source })
            })
            .collect::<Result<Vec<ActivityRecord>, _>>()?;
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// DeleteActivity: the record and the queue (steps still queued go with it; their
    /// executions time them out, or wait, as AWS's do).
    pub async fn delete(&self, name: &str) -> Result<(), ActivityError> {
        let mut conn = self.conn.clone();
        let _: i64 = conn.hdel(registry_key(&self.keys), name).await?;
        let _: i64 = conn.del(tags_key(&self.keys, name)).await?;
        if let Ok(broker) = self.broker() {
            let (channel, _) = broker.channel().await?;
            shared::topology::delete_activity(&channel, &self.topo, name)
                .await
                .map_err(Self::broker_error(name))?;
        }
        Ok(())
    }

    /// One look into the activity's queue for `worker`: a task, or nothing. Cancelling it
    /// midway can lose the step it took to the step's deadline (as with AWS, whose docs ask
    /// workers to keep the poll's connection open): callers run it to its end.
    pub async fn take(&self, arn: &str, worker: &str) -> Result<Taken, ActivityError> {
        let name = activity_name(arn).ok_or_else(|| ActivityError::NoActivity(arn.into()))?;
        let (channel, publisher) = self.broker()?.channel().await?;
        let queue = self.topo.activity_queue(name);
        let got = channel
            .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false })
            .await
            .map_err(Self::broker_error(arn))?;
        let Some(got) = got else {
            return Ok(Taken::Empty);
        };
        let delivery = got.delivery;
        let steps = match decode_steps(&delivery.data) {
            Ok(steps) => steps,
            Err(e) => {
                tracing::error!(activity = %arn, error = %e, "dead-lettering an unreadable activity step");
                delivery
                    .reject(BasicRejectOptions { requeue: false })
                    .await
                    .map_err(Self::broker_error(arn))?;
                return Ok(Taken::Stale);
            }
        };
        match self.hand_out(steps, worker, &publisher).await {
            Ok(taken) => {
                delivery
                    .ack(BasicAckOptions::default())
                    .await
                    .map_err(Self::broker_error(arn))?;
                Ok(taken)
            }
            Err(e) => {
                // Back to the queue for the next poll (the channel lives on: unsettled, the
                // message would be stuck with it).
                let requeue = BasicNackOptions {
                    requeue: true,
                    multiple: false,
                };
                if let Err(nack) = delivery.nack(requeue).await {
                    tracing::warn!(activity = %arn, error = %nack, "cannot return an activity step to its queue");
                }
                Err(e)
            }
        }
    }

    /// The first step of a message still wanted, claimed for `worker`; the message's other
    /// steps (a batch, from a coordinator of an older build) go back one by one.
    async fn hand_out(
        &self,
        steps: Vec<StepMessage>,
        worker: &str,
        publisher: &Publisher,
    ) -> Result<Taken, ActivityError> {
        let mut taken = Taken::Stale;
        let mut rest = Vec::new();
        for step in steps {
            if matches!(taken, Taken::Task(_)) {
                rest.push(step);
            } else if let Some(token) = self.claim(&step, worker).await? {
                taken = Taken::Task(ActivityTask {
                    token,
                    input: step.input,
                });
            }
        }
        for step in &rest {
            publisher.publish(&Outgoing::step(&self.topo, step)).await?;
        }
        Ok(taken)
    }

    /// Hands `step` out to `worker` if it is still wanted; returns its token.
    async fn claim(
        &self,
        step: &StepMessage,
        worker: &str,
    ) -> Result<Option<String>, ActivityError> {
        let now = shared::now_ms();
        if step.deadline_ms.is_some_and(|d| d <= now) {
            return Ok(None);
        }
        let token = TaskToken::new(step.id.clone());
        let heartbeat_ms = step.heartbeat_seconds.map_or(0, |h| u64::from(h) * 1000);
        let record = format!(
            "{}|{}|{heartbeat_ms}",
            token.secret,
            step.deadline_ms.unwrap_or(0)
        );
        let arn = &step.id.execution;
        let entry = serde_json::to_string(&InboxEvent::TaskStarted {
            cursor: step.id.cursor.clone(),
            seq: step.id.seq,
            worker: worker.to_string(),
        })
        .expect("inbox events serialize");
        let mut conn = self.conn.clone();
        let claimed: i64 = redis::Script::new(CLAIM)
            .key(self.keys.shared.cursor(arn, &step.id.cursor))
            .key(tokens_key(&self.keys, arn))
            .key(self.keys.inbox(arn))
            .key(self.keys.exec(arn))
            .arg(step.id.seq)
            .arg(step.id.attempt)
            .arg(token.field())
            .arg(record)
            .arg(now)
            .arg(entry)
            .invoke_async(&mut conn)
            .await?;
        if claimed == 0 {
            return Ok(None);
        }
        super::service::flag_ready(&mut conn, &self.keys, arn).await?;
        Ok(Some(token.encode()))
    }

    /// The step of a token handed out by this fleet whose deadlines have not passed, how
    /// long its execution's keys live, and whether it is a `.waitForTaskToken` step's.
    async fn check(&self, text: &str) -> Result<(TaskToken, u64, bool), ActivityError> {
        let token = TaskToken::decode(text)?;
        let field = token.field();
        let arn = &token.step.execution;
        let mut conn = self.conn.clone();
        let (fields, ttl): (TokenFields, i64) = redis::pipe()
            .cmd("HMGET")
            .arg(tokens_key(&self.keys, arn))
            .arg(format!("t:{field}"))
            .arg(format!("b:{field}"))
            .arg(format!("a:{field}"))
            .ttl(self.keys.exec(arn))
            .query_async(&mut conn)
            .await?;
        let (record, beat, answered) = fields;
        let unknown = ActivityError::InvalidToken("Invalid token");
        let record = record.ok_or(unknown)?;
        let mut parts = record.split('|');
        let (Some(secret), Some(deadline), Some(heartbeat)) = (
            parts.next(),
            parts.next().and_then(|d| d.parse::<u64>().ok()),
            parts.next().and_then(|h| h.parse::<u64>().ok()),
        ) else {
            return Err(ActivityError::InvalidToken("Invalid token"));
        };
        let callback = parts.next() == Some("c");
        if !same_secret(secret, &token.secret) {
            return Err(ActivityError::InvalidToken("Invalid token"));
        }
        if answered.is_some() {
            return Err(ActivityError::TimedOut);
        }
        let now = shared::now_ms();
        let beat = beat.unwrap_or(now);
        if (deadline > 0 && now >= deadline) || (heartbeat > 0 && now >= beat + heartbeat) {
            return Err(ActivityError::TimedOut);
        }
        let ttl = u64::try_from(ttl)
            .ok()
            .filter(|t| *t > 0)
            .unwrap_or(FALLBACK_TTL.as_secs());
        Ok((token, ttl, callback))
    }

    /// SendTaskSuccess (`Ok(output)`) or SendTaskFailure (`Err`): the outcome goes through
    /// `shared::inbox::apply_to_inbox`, as a worker's does; a step already answered (or timed
    /// out and run again) is TaskTimedOut.
    pub async fn complete(
        &self,
        token: &str,
        result: Result<Value, StatesError>,
    ) -> Result<(), ActivityError> {
        let (token, ttl, callback) = self.check(token).await?;
        let id = &token.step;
        if callback {
            return self.answer(&token, result).await;
        }
        let (outcome, entry) = outcome_texts(id, &result);
        let mut conn = self.conn.clone();
        let applied = apply_to_inbox(
            &mut conn,
            &self.keys.shared,
            ttl,
            &self.keys.inbox(&id.execution),
            &self.keys.ready(),
            &[Delivery {
                id,
                outcome: &outcome,
                inbox_entry: &entry,
            }],
        )
        .await?;
        match applied.first() {
            Some(Applied::Applied) => Ok(()),
            _ => Err(ActivityError::TimedOut),
        }
    }

    /// SendTaskHeartbeat: the step's heartbeat deadline moves on.
    pub async fn heartbeat(&self, token: &str) -> Result<(), ActivityError> {
        let (token, _, callback) = self.check(token).await?;
        let id = &token.step;
        let entry = serde_json::to_string(&InboxEvent::TaskHeartbeat {
            cursor: id.cursor.clone(),
            seq: id.seq,
        })
        .expect("inbox events serialize");
        let mut conn = self.conn.clone();
        let beat: i64 = if callback {
            redis::Script::new(BEAT_CALLBACK)
                .key(tokens_key(&self.keys, &id.execution))
                .key(self.keys.inbox(&id.execution))
                .key(self.keys.exec(&id.execution))
                .arg(token.field())
                .arg(shared::now_ms())
                .arg(entry)
                .invoke_async(&mut conn)
                .await?
        } else {
            redis::Script::new(BEAT)
                .key(self.keys.shared.cursor(&id.execution, &id.cursor))
                .key(tokens_key(&self.keys, &id.execution))
                .key(self.keys.inbox(&id.execution))
                .arg(id.seq)
                .arg(id.attempt)
                .arg(token.field())
                .arg(shared::now_ms())
                .arg(entry)
                .invoke_async(&mut conn)
                .await?
        };
        if beat == 0 {
            return Err(ActivityError::TimedOut);
        }
        super::service::flag_ready(&mut conn, &self.keys, &id.execution).await?;
        Ok(())
    }
}

impl Activities {
    /// The one answer of a `.waitForTaskToken` token ([`ANSWER`]); a second one, or one
    /// after its execution ended, is TaskTimedOut.
    async fn answer(
        &self,
        token: &TaskToken,
        result: Result<Value, StatesError>,
    ) -> Result<(), ActivityError> {
        let id = &token.step;
        let entry = serde_json::to_string(&InboxEvent::TaskAnswered {
            cursor: id.cursor.clone(),
            seq: id.seq,
            result,
        })
        .expect("inbox events serialize");
        let mut conn = self.conn.clone();
        let answered: i64 = redis::Script::new(ANSWER)
            .key(tokens_key(&self.keys, &id.execution))
            .key(self.keys.inbox(&id.execution))
            .key(self.keys.exec(&id.execution))
            .arg(token.field())
            .arg(entry)
            .invoke_async(&mut conn)
            .await?;
        if answered == 0 {
            return Err(ActivityError::TimedOut);
        }
        super::service::flag_ready(&mut conn, &self.keys, &id.execution).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step() -> StepId {
        StepId {
            execution: "arn:aws:states:local:000000000000:execution:m:e".into(),
            cursor: "/3:1".into(),
            seq: 7,
            attempt: 2,
        }
    }

    #[test]
    fn tokens_round_trip_and_carry_a_random_secret() {
        let a = TaskToken::new(step());
        let b = TaskToken::new(step());
        assert_ne!(a.secret, b.secret, "each hand-out draws its own secret");
        assert_eq!(a.secret.len(), 32);
        let text = a.encode();
        assert!(!text.contains("execution:m:e"), "opaque: {text}");
        assert_eq!(TaskToken::decode(&text).unwrap(), a);
        assert_eq!(a.field(), "/3:1|7|2");
    }

    #[test]
    fn malformed_tokens_are_invalid() {
        let good = TaskToken::new(step()).encode();
        let (name, _) = good.split_once('.').unwrap();
        for bad in [
            "",
            "abc",
            "zz.00",
            &format!("{name}.short"),
            &format!("{name}.{}", "g".repeat(32)),
            &format!("{}.{}", hex(b"[1,2]"), "0".repeat(32)),
        ] {
            assert!(
                matches!(TaskToken::decode(bad), Err(ActivityError::InvalidToken(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_callback_steps_token_is_kept_with_its_deadlines() {
        use crate::engine::cursor::Callback;
        use crate::engine::token::{TokenKey, TokenStep, mint};
        let exec = "arn:aws:states:local:000000000000:execution:m:e";
        let token = mint(
            &TokenKey::new([3; 32]),
            &TokenStep {
                execution: exec.into(),
                cursor: "/3".into(),
                seq: 7,
                attempt: 2,
            },
        );
        let issued = chrono::DateTime::from_timestamp_millis(1_000_000).unwrap();
        let mut step = StepRequest {
            cursor: "/3".into(),
            seq: 7,
            attempt: 2,
            resource: "arn:mapfleet:task:::echo".into(),
            input: serde_json::json!({}),
            timeout: Some(Duration::from_secs(60)),
            heartbeat: Some(Duration::from_secs(5)),
            callback: Some(Callback {
                token: token.clone(),
                issued,
            }),
        };
        let [(t, record), (b, start)] = callback_record(exec, &step).expect("a record");
        let decoded = TaskToken::decode(&token).unwrap();
        assert_eq!(t, format!("t:{}", decoded.field()));
        assert_eq!(b, format!("b:{}", decoded.field()));
        assert_eq!(record, format!("{}|1060000|5000|c", decoded.secret));
        assert_eq!(start, "1000000");
        step.callback = None;
        assert!(
            callback_record(exec, &step).is_none(),
            "no token, no record"
        );
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("00ff", "00ff"));
        assert!(!same_secret("00ff", "00fe"));
        assert!(!same_secret("00ff", "00ff0"));
    }

    #[test]
    fn activity_arns_are_local() {
        assert_eq!(
            activity_arn("resize"),
            "arn:aws:states:local:000000000000:activity:resize"
        );
        assert_eq!(activity_name(&activity_arn("resize")), Some("resize"));
    }
}
