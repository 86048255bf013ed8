//! Where `mapfleet serve` keeps what the fleet itself does not: the state machines, and which
//! executions each one started. Both live in the fleet's Redis under its key prefix:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:sfn:machines` | hash | state machine name → [`MachineRecord`] (JSON) |
//! | `P:sfn:executions:NAME` | sorted set | execution ARN → start time (ms), the ones started through the API |
//!
//! The executions themselves are the fleet's (`coordinator::fleet`: execution hash, history),
//! read and written through [`FleetClient`].

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use coordinator::engine::context::{LOCAL_ACCOUNT, LOCAL_REGION};
use coordinator::fleet::client::FleetClient;

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
pub struct Store {
    pub fleet: FleetClient,
    machines: String,
    executions_prefix: String,
}

impl Store {
    pub fn new(fleet: FleetClient) -> Store {
        let p = fleet.keys.shared.prefix().to_string();
        Store {
            machines: format!("{p}:sfn:machines"),
            executions_prefix: format!("{p}:sfn:executions:"),
            fleet,
        }
    }

    fn executions_key(&self, machine: &str) -> String {
        format!("{}{machine}", self.executions_prefix)
    }

    pub async fn machine(&self, name: &str) -> Result<Option<MachineRecord>, ApiError> {
        let mut c = self.fleet.conn.clone();
        let raw: Option<String> = c.hget(&self.machines, name).await?;
        raw.map(|r| {
            serde_json::from_str(&r)
                .map_err(|e| ApiError::internal(format!("unreadable state machine {name}: {e}")))
        })
        .transpose()
    }

    /// Stores `record` unless a machine of that name exists; returns the one stored.
    pub async fn create_machine(&self, record: &MachineRecord) -> Result<MachineRecord, ApiError> {
        let mut c = self.fleet.conn.clone();
        let text = serde_json::to_string(record).map_err(|e| ApiError::internal(e.to_string()))?;
        let created: bool = c.hset_nx(&self.machines, &record.name, text).await?;
        if created {
            return Ok(record.clone());
        }
        self.machine(&record.name)
            .await?
            .ok_or_else(|| ApiError::internal("the state machine vanished while being created"))
    }

    pub async fn delete_machine(&self, name: &str) -> Result<(), ApiError> {
        let mut c = self.fleet.conn.clone();
        let _: () = redis::pipe()
            .atomic()
            .hdel(&self.machines, name)
            .ignore()
            .del(self.executions_key(name))
            .ignore()
            .query_async(&mut c)
            .await?;
        Ok(())
    }

    pub async fn machines(&self) -> Result<Vec<MachineRecord>, ApiError> {
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

    /// Notes that `machine` started `arn` at `start_ms`.
    pub async fn add_execution(
        &self,
        machine: &str,
        arn: &str,
        start_ms: i64,
    ) -> Result<(), ApiError> {
        let mut c = self.fleet.conn.clone();
        let _: () = c.zadd(self.executions_key(machine), arn, start_ms).await?;
        Ok(())
    }

    /// Every execution `machine` started through the API: (start ms, ARN), newest first
    /// (ties by ARN).
    pub async fn executions(&self, machine: &str) -> Result<Vec<(i64, String)>, ApiError> {
        let mut c = self.fleet.conn.clone();
        let all: Vec<(String, f64)> = c
            .zrange_withscores(self.executions_key(machine), 0, -1)
            .await?;
        let mut out: Vec<(i64, String)> = all.into_iter().map(|(a, s)| (s as i64, a)).collect();
        out.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        Ok(out)
    }

    /// The `status` and `stop_date` fields of executions, in one round trip.
    pub async fn statuses(
        &self,
        arns: &[&str],
    ) -> Result<Vec<(Option<String>, Option<String>)>, ApiError> {
        use coordinator::fleet::record::field;
        let mut c = self.fleet.conn.clone();
        let mut pipe = redis::pipe();
        for arn in arns {
            pipe.cmd("HMGET")
                .arg(self.fleet.keys.exec(arn))
                .arg(field::STATUS)
                .arg(field::STOP_DATE);
        }
        let rows: Vec<(Option<String>, Option<String>)> = pipe.query_async(&mut c).await?;
        Ok(rows)
    }

    /// Whether the fleet holds an execution of that ARN.
    pub async fn execution_exists(&self, arn: &str) -> Result<bool, ApiError> {
        let mut c = self.fleet.conn.clone();
        Ok(c.exists(self.fleet.keys.exec(arn)).await?)
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
