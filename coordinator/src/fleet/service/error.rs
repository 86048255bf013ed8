//! What stops a coordinator's task, or a batch of one execution: each error names what was
//! being done (the execution, queue or timer) and keeps its cause as its source.
//!
//! A connection failure to the broker stays in the source chain as a
//! [`shared::amqp::ConnectError`] of its own, which [`shared::supervise`] reads to tell a
//! misconfiguration (fail at once) from an outage (try again).

use shared::amqp::{ConnectError, PublishError};
use shared::redis_schema::StoreError;

use super::super::outbox::UnreadableOutboxEntry;
use super::super::record::RecordError;
use super::LeaseLost;
use crate::asl::parse::InvalidDefinition;
use crate::driver::BackendError;

/// A coordinator's failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot connect to Redis at {url}")]
    RedisConnect {
        /// Without its password.
        url: String,
        #[source]
        source: redis::RedisError,
    },
    #[error("cannot connect to the broker")]
    BrokerConnect(#[from] ConnectError),
    #[error("cannot {doing}")]
    Broker {
        doing: String,
        #[source]
        source: shared::lapin::Error,
    },
    #[error("the consumer of queue {queue} was cancelled by the broker (queue deleted?)")]
    ConsumerCancelled { queue: String },
    #[error("cannot {doing}")]
    Redis {
        doing: String,
        #[source]
        source: redis::RedisError,
    },
    #[error("cannot {doing}")]
    Store {
        doing: String,
        #[source]
        source: StoreError,
    },
    /// The engine's reads and writes of an execution's state (through
    /// [`super::super::backend::RedisBackend`]).
    #[error("cannot {doing}")]
    Backend {
        doing: String,
        #[source]
        source: BackendError,
    },
    #[error("cannot publish the steps of execution {execution}")]
    Publish {
        execution: String,
        #[source]
        source: PublishError,
    },
    #[error("execution {execution}: its definition {definition} is gone from Redis")]
    DefinitionGone {
        execution: String,
        definition: String,
    },
    #[error("execution {execution}: its stored definition {definition} does not parse")]
    Definition {
        execution: String,
        definition: String,
        #[source]
        source: InvalidDefinition,
    },
    #[error("execution {execution}: its info is unreadable")]
    Info {
        execution: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error(transparent)]
    Outbox(#[from] UnreadableOutboxEntry),
    /// Not a failure of the execution: its next holder carries on.
    #[error(transparent)]
    LeaseLost(#[from] LeaseLost),
    #[error("{task} stopped")]
    TaskStopped {
        task: String,
        #[source]
        source: tokio::task::JoinError,
    },
}

/// Names what was being done when a Redis, broker or store call failed:
/// `conn.get(key).await.doing(|| format!("read the definition of execution {arn}"))`.
pub(super) trait Doing<T> {
    fn doing(self, doing: impl FnOnce() -> String) -> Result<T, Error>;
}

impl<T> Doing<T> for Result<T, redis::RedisError> {
    fn doing(self, doing: impl FnOnce() -> String) -> Result<T, Error> {
        self.map_err(|source| Error::Redis {
            doing: doing(),
            source,
        })
    }
}

impl<T> Doing<T> for Result<T, shared::lapin::Error> {
    fn doing(self, doing: impl FnOnce() -> String) -> Result<T, Error> {
        self.map_err(|source| Error::Broker {
            doing: doing(),
            source,
        })
    }
}

impl<T> Doing<T> for Result<T, StoreError> {
    fn doing(self, doing: impl FnOnce() -> String) -> Result<T, Error> {
        self.map_err(|source| Error::Store {
            doing: doing(),
            source,
        })
    }
}

impl<T> Doing<T> for Result<T, BackendError> {
    fn doing(self, doing: impl FnOnce() -> String) -> Result<T, Error> {
        self.map_err(|source| Error::Backend {
            doing: doing(),
            source,
        })
    }
}
