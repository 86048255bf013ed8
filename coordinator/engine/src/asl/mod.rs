//! Amazon States Language: definitions, paths, templates, intrinsics, rules. Pure.

pub mod choice;
pub mod definition;
pub mod distributed;
pub mod error;
pub mod intrinsics;
pub mod jsonata;
pub mod parse;
pub mod path;
pub mod retry;
pub mod scope;
pub mod template;
