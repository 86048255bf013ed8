//! The `mapfleet` command line. The one crate that composes the coordinator and the worker:
//! embedded mode runs the worker's own tasks in-process ([`tasks`]), and the photo helpers
//! reach the worker's face engine and stores.
//!
//! # Layout
//! - [`cli`]: one enum of commands, one function per command.
//! - [`buckets`]: the worker's object store as Distributed Maps' [`coordinator::maprun::Buckets`].
//! - [`console`]: the web console `mapfleet serve` shows at `/`.
//! - [`pretty`]: an execution's output as `mapfleet run` prints it.
//! - [`tasks`]: the worker's task registry as embedded mode's [`coordinator::embedded::TaskExecutor`].

pub mod access;
pub mod api;
pub mod buckets;
pub mod cli;
pub mod console;
pub mod pretty;
pub mod tasks;

pub(crate) use coordinator::{asl, embedded, engine, fleet, maprun};
