//! One Redis connection type for a single server and a Redis Cluster, so that every store in
//! the fleet is written once against [`RedisConn`] and runs on either.
//!
//! A cluster is named by its URL: `redis+cluster://HOST:PORT[,HOST:PORT...]` (or
//! `rediss+cluster://` for TLS), the seed nodes the client learns the slot map from; the
//! password, if any, is given once (`redis+cluster://:PASSWORD@HOST:PORT,HOST:PORT`) and used
//! for every node. Anything else is a single server (`redis://`, `rediss://`).
//!
//! On a cluster a command, a script or a pipeline must touch keys of **one slot**. Every
//! key of one execution carries the execution ARN as a hash tag (`P:{ARN}:...`, see
//! [`crate::redis_schema`]), and the fleet's few shared indexes (the ready set, the timers,
//! the execution list, the worker registry) are each written by commands of their own,
//! never inside a script or a pipeline with an execution's keys.

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

/// A connection to a single Redis or to a Redis Cluster; multiplexed, cheap to clone, and
/// reconnecting by itself (a command that met a dropped connection still fails: callers
/// retry, as every script here is idempotent).
#[derive(Clone)]
pub enum RedisConn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl RedisConn {
    pub fn is_cluster(&self) -> bool {
        matches!(self, RedisConn::Cluster(_))
    }

    /// `INFO section`, one text per server (per primary on a cluster, in no set order).
    pub async fn info(&mut self, section: &str) -> redis::RedisResult<Vec<String>> {
        let reply: Value = redis::cmd("INFO").arg(section).query_async(self).await?;
        let mut texts = Vec::new();
        collect_texts(reply, &mut texts)?;
        Ok(texts)
    }
}

/// The texts in an `INFO` reply: one (a single server) or a map of node → text (a cluster).
fn collect_texts(reply: Value, out: &mut Vec<String>) -> redis::RedisResult<()> {
    match reply {
        Value::Map(pairs) => {
            for (_, v) in pairs {
                collect_texts(v, out)?;
            }
        }
        Value::Array(items) => {
            for v in items {
                collect_texts(v, out)?;
            }
        }
        other => out.push(redis::from_redis_value(other)?),
    }
    Ok(())
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Single(c) => c.req_packed_command(cmd),
            RedisConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Single(c) => c.get_db(),
            RedisConn::Cluster(c) => c.get_db(),
        }
    }
}

/// The seed node URLs of a cluster URL (`redis+cluster://[AUTH@]H:P,H:P` →
/// `redis://[AUTH@]H:P/` each), or None for a single server's URL.
pub fn cluster_seeds(url: &str) -> Option<Vec<String>> {
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("redis+cluster://") {
        ("redis", rest)
    } else {
        ("rediss", url.strip_prefix("rediss+cluster://")?)
    };
    let rest = rest.trim_end_matches('/');
    let (auth, hosts) = match rest.rsplit_once('@') {
        Some((auth, hosts)) => (format!("{auth}@"), hosts),
        None => (String::new(), rest),
    };
    Some(
        hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(|h| format!("{scheme}://{auth}{h}/"))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_name_their_seed_nodes() {
        assert_eq!(
            cluster_seeds("redis+cluster://127.0.0.1:7000,127.0.0.1:7001/"),
            Some(vec![
                "redis://127.0.0.1:7000/".to_string(),
                "redis://127.0.0.1:7001/".to_string()
            ])
        );
        assert_eq!(
            cluster_seeds("rediss+cluster://:pw@a:1,b:2"),
            Some(vec![
                "rediss://:pw@a:1/".to_string(),
                "rediss://:pw@b:2/".to_string()
            ])
        );
        assert_eq!(cluster_seeds("redis://127.0.0.1:6379/"), None);
        assert_eq!(cluster_seeds("rediss://h:1/"), None);
    }
}
