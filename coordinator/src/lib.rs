//! mapfleet coordinator: runs executions of Amazon States Language definitions, on the fleet
//! (RabbitMQ + Redis) or in one process (embedded mode).
//!
//! The language and the engine are the pure [`mapfleet_engine`] crate, re-exported here as
//! [`asl`], [`engine`] and [`driver`]. This crate adds what does IO. It never links the
//! worker's tasks (onnxruntime, the AWS SDKs): embedded mode reaches tasks through the
//! [`embedded::TaskExecutor`] seam, which the `mapfleet` CLI crate fills with the worker's
//! registry.
//!
//! # Layout
//! - [`embedded`]: the in-memory backend and loop used by `mapfleet run` without a fleet.
//! - [`fleet`]: the Redis backend, the coordinator service and the fleet client.

pub use mapfleet_engine::{asl, driver, engine, entropy, maprun, scripted};

pub mod embedded;
pub mod fleet;
