//! mapfleet worker: consumes task steps, runs the task, publishes the outcome, then acks.
//!
//! # Layout
//! - [`task`]: the `Task` trait, `TaskFailure`, and the `Registry` that maps a resource ARN
//!   (`arn:mapfleet:task:::NAME`) to the task that serves it.
//! - [`aws`]: the SDK configuration (region, credentials, HTTPS client) of the S3 store and
//!   the Rekognition engine.
//! - [`providers`]: the `--face-engine` / `--object-store` choice of the photo tasks (local,
//!   or AWS and compatible endpoints).
//! - [`endpoint`]: mapfleet's Rekognition-compatible endpoint, serving a face engine.
//! - [`builtin`]: utility tasks for tests and load (`echo`, `sleep`, `fail`).
//! - [`policy`]: how a task is run and its end named (deadline, panic, retryable or fatal,
//!   unknown resource), the same for the fleet's consumer and embedded mode.
//! - [`consumer`]: the RabbitMQ consumer loop (prefetch, manual acks, graceful shutdown).
//! - [`registry`]: [`registry::default_registry`], every task this build serves.
//! - [`face`]: the face engine (local ONNX models or Rekognition) behind one interface.
//! - [`store`]: the object store (local directory per bucket, or S3) and the metadata table.
//! - [`photo`]: the rider-photo tasks, one file per task; [`photo::stores`] picks where the
//!   face collection and the metadata table live (data dir, or the fleet's Redis).
//! - [`redis_keys`]: the Redis keys of those stores on a fleet.

pub mod aws;
pub mod builtin;
pub mod consumer;
pub mod endpoint;
pub mod face;
pub mod photo;
pub mod policy;
pub mod providers;
pub mod redis_keys;
pub mod registry;
pub mod store;
pub mod task;

pub use registry::{RegistryOptions, default_registry};
