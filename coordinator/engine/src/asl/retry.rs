//! Retry and Catch: AWS's error matching and backoff.

use std::time::Duration;

use super::error::names;
use super::path::ReferencePath;
use super::template::Template;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    None,
    Full,
}

/// One entry of a state's `Retry` array.
#[derive(Debug, Clone)]
pub struct Retrier {
    pub error_equals: Vec<String>,
    pub interval_seconds: u64,
    pub max_attempts: u64,
    pub backoff_rate: f64,
    pub max_delay_seconds: Option<u64>,
    pub jitter: Jitter,
}

impl Default for Retrier {
    fn default() -> Self {
        Retrier {
            error_equals: Vec::new(),
            interval_seconds: 1,
            max_attempts: 3,
            backoff_rate: 2.0,
            max_delay_seconds: None,
            jitter: Jitter::None,
        }
    }
}

impl Retrier {
    /// The wait before retry number `attempt` (0 for the first retry). `unit_random` is a
    /// number in [0, 1) supplied by the caller, which keeps this function pure.
    pub fn delay(&self, attempt: u32, unit_random: f64) -> Duration {
        let base = self.interval_seconds as f64 * self.backoff_rate.powi(attempt as i32);
        let capped = match self.max_delay_seconds {
            Some(max) => base.min(max as f64),
            None => base,
        };
        // AWS caps a single retry interval at one year anyway; keep the arithmetic finite.
        let capped = capped.clamp(0.0, 31_622_400.0);
        let secs = match self.jitter {
            Jitter::None => capped,
            Jitter::Full => capped * unit_random.clamp(0.0, 1.0),
        };
        Duration::from_secs_f64(secs)
    }
}

/// One entry of a state's `Catch` array. `next` is resolved to a state index by the parser.
#[derive(Debug, Clone)]
pub struct Catcher {
    pub error_equals: Vec<String>,
    pub next: usize,
    /// `None` is an explicit `null` (the state input passes through unchanged).
    pub result_path: Option<ReferencePath>,
    pub assign: Option<Template>,
    /// A JSONata catcher's `Output` and `Assign` (then `result_path` is unused).
    pub jsonata: Option<Box<crate::asl::definition::JsonataFields>>,
}

/// Whether an `ErrorEquals` list matches an error name, with AWS's wildcards:
/// `States.ALL` matches every error but the terminal `States.Runtime` and
/// `States.DataLimitExceeded`; `States.TaskFailed` matches every error but those and
/// `States.Timeout`.
pub fn error_matches(error_equals: &[String], error: &str) -> bool {
    let terminal = error == names::RUNTIME || error == names::DATA_LIMIT_EXCEEDED;
    error_equals.iter().any(|name| {
        if name == error {
            return true;
        }
        match name.as_str() {
            names::ALL => !terminal,
            names::TASK_FAILED => {
                !terminal && error != names::TIMEOUT && error != names::HEARTBEAT_TIMEOUT
            }
            names::TIMEOUT => error == names::HEARTBEAT_TIMEOUT,
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn matching_follows_aws_wildcards() {
        let all = list(&["States.ALL"]);
        assert!(error_matches(&all, "MyError"));
        assert!(error_matches(&all, "States.Timeout"));
        assert!(!error_matches(&all, "States.Runtime"));
        assert!(!error_matches(&all, "States.DataLimitExceeded"));
        let task = list(&["States.TaskFailed"]);
        assert!(error_matches(&task, "Lambda.Unknown"));
        assert!(!error_matches(&task, "States.Timeout"));
        assert!(error_matches(
            &list(&["States.Timeout"]),
            "States.HeartbeatTimeout"
        ));
        assert!(error_matches(&list(&["A", "B"]), "B"));
        assert!(!error_matches(&list(&["A"]), "a"));
    }

    #[test]
    fn backoff_grows_and_caps() {
        let r = Retrier {
            interval_seconds: 2,
            backoff_rate: 2.0,
            max_delay_seconds: Some(5),
            ..Default::default()
        };
        assert_eq!(r.delay(0, 0.5), Duration::from_secs(2));
        assert_eq!(r.delay(1, 0.5), Duration::from_secs(4));
        assert_eq!(r.delay(2, 0.5), Duration::from_secs(5));
        let j = Retrier {
            jitter: Jitter::Full,
            ..r
        };
        assert_eq!(j.delay(1, 0.5), Duration::from_secs(2));
    }
}
