//! Amazon States Language: definitions, paths, templates, intrinsics, rules. Pure.

pub mod error;
pub mod intrinsics;
pub mod path;
pub mod scope;
pub mod template;
