//! Where `mapfleet serve` keeps what the fleet itself does not: the state machines, and which
//! executions each one started. Both live in the fleet's Redis under its key prefix:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:sfn:machines` | hash | state machine name → [`MachineRecord`] (JSON) |
//! | `P:sfn:executions:NAME` | sorted set | execution ARN → start time (ms), the ones started through the API |
//! | `P:sfn:tags:NAME` | hash | tag key → value |
//! | `P:sfn:revisions:NAME` | hash | `DEFINITION_ID ROLE_ARN` → [`Revision`] (JSON): when the machine got that definition and role, for DescribeStateMachineForExecution |
//!
//! The executions themselves are the fleet's (`coordinator::fleet`: execution hash, history),
//! read and written through [`FleetClient`]. [`FleetStore`] is the fleet's
//! [`ApiStore`](super::backend::ApiStore); the record types and ARN helpers here serve the
//! embedded store too.

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use coordinator::asl::definition::StateMachine;
use coordinator::embedded::ExecutionResult;
use coordinator::engine::ExecutionInfo;
use coordinator::engine::context::{LOCAL_ACCOUNT, LOCAL_REGION};
use coordinator::engine::cursor::LimitsUpdate;
use coordinator::engine::history::Event;
use coordinator::fleet::client::FleetClient;
use coordinator::fleet::redrive::Redriven;

use super::backend::{ApiStore, ListRow};
use super::wire::ApiError;

/// One state machine as CreateStateMachine made it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineRecord {
    pub name: String,
    pub arn: String,
    /// The definition byte for byte as sent (DescribeStateMachine echoes it).
    pub definition: String,
    pub role_arn: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub creation_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<Value>,
    /// The last UpdateStateMachine (none yet: the creation date).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_ms: Option<i64>,
    /// The last UpdateStateMachine's revision (none before the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_id: Option<String>,
}

/// When a machine got a definition and role, and the revision that made it so.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Revision {
    pub update_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_id: Option<String>,
}

/// Replaces a machine's record only while it exists (a deleted machine stays deleted).
const UPDATE_MACHINE: &str = r"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
return 1
";

/// Why tags could not be set.
pub enum TagRefused {
    NoMachine,
    TooMany,
}

/// The key of a [`Revision`] in `P:sfn:revisions:NAME`.
pub fn revision_key(definition_id: &str, role_arn: &str) -> String {
    format!("{definition_id} {role_arn}")
}

impl MachineRecord {
    /// Whether a repeated CreateStateMachine asks for the same machine (AWS ignores the role
    /// and the tags in this comparison).
    pub fn same_request(&self, other: &MachineRecord) -> bool {
        self.definition == other.definition
            && self.kind == other.kind
            && self.logging == other.logging
            && self.tracing == other.tracing
    }
}

/// A state machine's ARN in mapfleet's region and account (the ones the engine reports).
pub fn machine_arn(name: &str) -> String {
    format!("arn:aws:states:{LOCAL_REGION}:{LOCAL_ACCOUNT}:stateMachine:{name}")
}

/// The state machine name in a state machine ARN (any region and account).
pub fn machine_name(arn: &str) -> Result<&str, ApiError> {
    if !arn.starts_with("arn:") {
        return Err(ApiError::invalid_arn(arn));
    }
    match arn.split_once(":stateMachine:") {
        Some((head, name)) if head.starts_with("arn:aws:states:") && !name.is_empty() => {
            if name.contains(':') || name.contains('/') {
                // Versions, aliases and Distributed Map labels: not here yet.
                return Err(ApiError::new(
                    "InvalidArn",
                    format!("Invalid Arn: 'Resource type not valid in this context: {arn}'"),
                ));
            }
            Ok(name)
        }
        _ => Err(ApiError::new(
            "InvalidArn",
            format!("Invalid Arn: 'Resource type not valid in this context: {arn}'"),
        )),
    }
}

/// Checks an execution ARN's form (the fleet knows whether it exists).
pub fn check_execution_arn(arn: &str) -> Result<(), ApiError> {
    if !arn.starts_with("arn:") {
        return Err(ApiError::invalid_arn(arn));
    }
    if arn.contains(":express:") {
        return Err(ApiError::new(
            "InvalidArn",
            "Invalid Arn: 'Resource type not valid in this context: express'",
        ));
    }
    if !arn.contains(":execution:") {
        return Err(ApiError::new(
            "InvalidArn",
            format!("Invalid Arn: 'Resource type not valid in this context: {arn}'"),
        ));
    }
    Ok(())
}

/// The API's records in one fleet's Redis.
#[derive(Clone)]
pub struct FleetStore {
    pub fleet: FleetClient,
    machines: String,
    executions_prefix: String,
    tags_prefix: String,
    revisions_prefix: String,
    /// Where the map runs' buckets are (`--data-dir`): ListExecutions with `mapRunArn`
    /// reads a run's children from its result files there.
    pub data_dir: std::path::PathBuf,
}

impl FleetStore {
    pub fn new(fleet: FleetClient, data_dir: std::path::PathBuf) -> FleetStore {
        let p = fleet.keys.shared.prefix().to_string();
        FleetStore {
            machines: format!("{p}:sfn:machines"),
            executions_prefix: format!("{p}:sfn:executions:"),
            tags_prefix: format!("{p}:sfn:tags:"),
            revisions_prefix: format!("{p}:sfn:revisions:"),
            data_dir,
            fleet,
        }
    }

    fn tags_key(&self, machine: &str) -> String {
        format!("{}{machine}", self.tags_prefix)
    }

    fn revisions_key(&self, machine: &str) -> String {
        format!("{}{machine}", self.revisions_prefix)
    }

    fn executions_key(&self, machine: &str) -> String {
        format!("{}{machine}", self.executions_prefix)
    }

    /// Notes that `machine` started `arn` at `start_ms`.
    async fn add_execution(&self, machine: &str, arn: &str, start_ms: i64) -> Result<(), ApiError> {
        let mut c = self.fleet.conn.clone();
        let _: () = c.zadd(self.executions_key(machine), arn, start_ms).await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl ApiStore for FleetStore {
    fn fleet(&self) -> Option<&FleetStore> {
        Some(self)
    }

    async fn update_machine(&self, record: &MachineRecord) -> Result<bool, ApiError> {
        let mut c = self.fleet.conn.clone();
        let text = serde_json::to_string(record).map_err(|e| ApiError::internal(e.to_string()))?;
        let revision = Revision {
            update_ms: record.update_ms.unwrap_or(record.creation_ms),
            revision_id: record.revision_id.clone(),
        };
        let revision =
            serde_json::to_string(&revision).map_err(|e| ApiError::internal(e.to_string()))?;
        let id = coordinator::fleet::client::definition_id(&record.definition);
        let done: i64 = redis::Script::new(UPDATE_MACHINE)
            .key(&self.machines)
            .key(self.revisions_key(&record.name))
            .arg(&record.name)
            .arg(text)
            .arg(revision_key(&id, &record.role_arn))
            .arg(revision)
            .invoke_async(&mut c)
            .await?;
        Ok(done == 1)
    }

    /// The revision of `machine` that had this definition and role, if it is known.
    async fn revision(
        &self,
        machine: &str,
        definition_id: &str,
        role_arn: &str,
    ) -> Result<Option<Revision>, ApiError> {
        let mut c = self.fleet.conn.clone();
        let raw: Option<String> = c
            .hget(
                self.revisions_key(machine),
                revision_key(definition_id, role_arn),
            )
            .await?;
        Ok(raw.and_then(|r| serde_json::from_str(&r).ok()))
    }

    /// A machine's tags, by key.
    async fn tags(&self, machine: &str) -> Result<Vec<(String, String)>, ApiError> {
        let mut c = self.fleet.conn.clone();
        let mut all: Vec<(String, String)> = c.hgetall(self.tags_key(machine)).await?;
        all.sort();
        Ok(all)
    }

    /// Adds or replaces tags of an existing machine, keeping at most `max` in all.
    async fn tag(
        &self,
        machine: &str,
        tags: &[(String, String)],
        max: usize,
    ) -> Result<Result<(), TagRefused>, ApiError> {
        let mut c = self.fleet.conn.clone();
        let script = redis::Script::new(shared::redis_schema::TAG_IF_OWNER_EXISTS);
        let mut script = script.prepare_invoke();
        script
            .key(&self.machines)
            .key(self.tags_key(machine))
            .arg(machine)
            .arg(max);
        for (k, v) in tags {
            script.arg(k).arg(v);
        }
        let n: i64 = script.invoke_async(&mut c).await?;
        Ok(match n {
            -1 => Err(TagRefused::NoMachine),
            -2 => Err(TagRefused::TooMany),
            _ => Ok(()),
        })
    }

    async fn untag(&self, machine: &str, keys: &[String]) -> Result<(), ApiError> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut c = self.fleet.conn.clone();
        let _: i64 = c.hdel(self.tags_key(machine), keys).await?;
        Ok(())
    }

    async fn machine(&self, name: &str) -> Result<Option<MachineRecord>, ApiError> {
        let mut c = self.fleet.conn.clone();
        let raw: Option<String> = c.hget(&self.machines, name).await?;
        raw.map(|r| {
            serde_json::from_str(&r)
                .map_err(|e| ApiError::internal(format!("unreadable state machine {name}: {e}")))
        })
        .transpose()
    }

    /// Stores `record` unless a machine of that name exists; returns the one stored.
    async fn create_machine(&self, record: &MachineRecord) -> Result<MachineRecord, ApiError> {
        let mut c = self.fleet.conn.clone();
        let text = serde_json::to_string(record).map_err(|e| ApiError::internal(e.to_string()))?;
        let created: bool = c.hset_nx(&self.machines, &record.name, text).await?;
        if created {
            let revision = Revision {
                update_ms: record.creation_ms,
                revision_id: None,
            };
            let id = coordinator::fleet::client::definition_id(&record.definition);
            let _: () = c
                .hset(
                    self.revisions_key(&record.name),
                    revision_key(&id, &record.role_arn),
                    serde_json::to_string(&revision)
                        .map_err(|e| ApiError::internal(e.to_string()))?,
                )
                .await?;
            return Ok(record.clone());
        }
        self.machine(&record.name)
            .await?
            .ok_or_else(|| ApiError::internal("the state machine vanished while being created"))
    }

    async fn delete_machine(&self, name: &str) -> Result<(), ApiError> {
        let mut c = self.fleet.conn.clone();
        let _: () = redis::pipe()
            .atomic()
            .hdel(&self.machines, name)
            .ignore()
            .del(self.executions_key(name))
            .ignore()
            .del(self.tags_key(name))
            .ignore()
            .del(self.revisions_key(name))
            .ignore()
            .query_async(&mut c)
            .await?;
        Ok(())
    }

    async fn machines(&self) -> Result<Vec<MachineRecord>, ApiError> {
        let mut c = self.fleet.conn.clone();
        let all: Vec<(String, String)> = c.hgetall(&self.machines).await?;
        let mut out = Vec::with_capacity(all.len());
        for (name, raw) in all {
            out.push(serde_json::from_str(&raw).map_err(|e| {
                ApiError::internal(format!("unreadable state machine {name}: {e}"))
            })?);
        }
        out.sort_by(|a: &MachineRecord, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Every execution `machine` started through the API: (start ms, ARN), newest first
    /// (ties by ARN).
    async fn executions(&self, machine: &str) -> Result<Vec<(i64, String)>, ApiError> {
        let mut c = self.fleet.conn.clone();
        let all: Vec<(String, f64)> = c
            .zrange_withscores(self.executions_key(machine), 0, -1)
            .await?;
        let mut out: Vec<(i64, String)> = all.into_iter().map(|(a, s)| (s as i64, a)).collect();
        out.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        Ok(out)
    }

    /// The `status` and `stop_date` fields of executions, in one round trip.
    async fn statuses(&self, arns: &[&str]) -> Result<Vec<Option<ListRow>>, ApiError> {
        use coordinator::fleet::record::field;
        let mut c = self.fleet.conn.clone();
        let mut pipe = redis::pipe();
        for arn in arns {
            pipe.cmd("HMGET")
                .arg(self.fleet.keys.exec(arn))
                .arg(field::STATUS)
                .arg(field::STOP_DATE)
                .arg(field::REDRIVE_COUNT)
                .arg(field::REDRIVE_DATE);
        }
        type Fields = (Option<String>, Option<String>, Option<u32>, Option<String>);
        let rows: Vec<Fields> = pipe.query_async(&mut c).await?;
        let date = |s: Option<String>| {
            s.and_then(|s| chrono::DateTime::parse_from_rfc3339(&s).ok())
                .map(|d| d.with_timezone(&chrono::Utc))
        };
        Ok(rows
            .into_iter()
            .map(|(status, stop, count, redriven)| {
                status.map(|status| ListRow {
                    status,
                    stop_date: date(stop),
                    redrive_count: count.unwrap_or(0),
                    redrive_date: date(redriven),
                })
            })
            .collect())
    }

    /// Whether the fleet holds an execution of that ARN.
    async fn execution_exists(&self, arn: &str) -> Result<bool, ApiError> {
        let mut c = self.fleet.conn.clone();
        Ok(c.exists(self.fleet.keys.exec(arn)).await?)
    }

    async fn start_execution(
        &self,
        machine: &MachineRecord,
        def: std::sync::Arc<StateMachine>,
        info: &ExecutionInfo,
    ) -> Result<(), ApiError> {
        self.fleet.submit(&machine.definition, &def, info).await?;
        self.add_execution(
            &machine.name,
            &info.execution_arn,
            info.start_time.timestamp_millis(),
        )
        .await
    }

    async fn describe(&self, arn: &str) -> Result<ExecutionResult, ApiError> {
        Ok(self.fleet.describe(arn, false).await?)
    }

    async fn history(&self, arn: &str) -> Result<Vec<Event>, ApiError> {
        Ok(self.fleet.history(arn).await?)
    }

    async fn execution_definition(&self, arn: &str) -> Result<(String, String), ApiError> {
        Ok(self.fleet.execution_definition(arn).await?)
    }

    async fn stop(&self, arn: &str, error: &str, cause: &str) -> Result<(), ApiError> {
        Ok(self.fleet.stop(arn, error, cause).await?)
    }

    async fn redrive(&self, arn: &str, client_token: Option<&str>) -> Result<Redriven, ApiError> {
        Ok(self.fleet.redrive(arn, client_token).await?)
    }

    async fn list_map_runs(&self, execution: &str) -> Result<Vec<Value>, ApiError> {
        Ok(self.fleet.list_map_runs(execution).await?)
    }

    async fn describe_map_run(&self, map_run: &str) -> Result<Value, ApiError> {
        Ok(self.fleet.describe_map_run(map_run).await?)
    }

    async fn update_map_run(&self, map_run: &str, limits: LimitsUpdate) -> Result<(), ApiError> {
        Ok(self.fleet.update_map_run(map_run, limits).await?)
    }

    async fn newest_map_run_children(
        &self,
        map_run: &str,
        status: Option<&str>,
        take: usize,
    ) -> Result<(Vec<Value>, bool), ApiError> {
        let reader = crate::cli::map_runs::bucket_reader(&self.data_dir);
        Ok(self
            .fleet
            .newest_map_run_children(map_run, status, take, reader)
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_arns_parse_and_refuse_what_is_not_one() {
        let arn = machine_arn("Photos");
        assert_eq!(machine_name(&arn).unwrap(), "Photos");
        assert_eq!(
            machine_name("arn:aws:states:eu-west-1:123456789012:stateMachine:X").unwrap(),
            "X"
        );
        let e = machine_name("not-an-arn").unwrap_err();
        assert_eq!(e.message, "Invalid Arn: 'Invalid ARN prefix: not-an-arn'");
        assert_eq!(
            machine_name("arn:aws:states:local:000000000000:activity:A")
                .unwrap_err()
                .code,
            "InvalidArn"
        );
        assert!(check_execution_arn("arn:aws:states:r:1:express:a:b:c").is_err());
        assert!(check_execution_arn("arn:aws:states:r:1:execution:a:b").is_ok());
    }
}
