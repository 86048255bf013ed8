//! How many steps of a resource go into one broker message: as many as `--step-batch`
//! allows while their tasks are cheap, fewer as they get dearer.
//!
//! A step batch saves the broker work per step (one message, one delivery, one ack for
//! many steps), but it also ties its steps to the one worker that takes it: a worker with
//! one task slot runs a batch of sixteen 40 ms photo steps one after the other for 640 ms
//! while another worker may sit idle. The broker's saving is worth about 0.1 ms per step, so
//! for a task that takes milliseconds it is lost in the noise, while the tie is not. Each
//! coordinator therefore keeps a moving average of every resource's task time (from the
//! workers' timings in the outcomes) and caps the resource's batches at the number of steps
//! that fit in `budget` of expected task time: quick tasks (`echo`: well under 1 ms) keep the
//! full batch, a 5 ms task gets 2 steps a message with the default 10 ms budget, and anything
//! slower travels alone. A resource not seen yet travels alone too, until its first outcome.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// Weight of the newest task time in the moving average.
const ALPHA: f64 = 0.2;

/// Resources whose costs are kept (the map is emptied when full: they are relearnt from the
/// next outcomes).
const MAX_RESOURCES: usize = 4096;

/// Per-resource batch sizes, learnt from task times.
#[derive(Debug)]
pub struct StepBatching {
    max: usize,
    /// Expected task time one message may carry; zero: always `max`.
    budget: Duration,
    /// Moving average of each resource's task time, in microseconds.
    costs: Mutex<HashMap<String, f64>>,
}

impl StepBatching {
    /// At most `max` steps a message; at most `budget` of expected task time a message
    /// (`Duration::ZERO`: no time budget, always `max`).
    pub fn new(max: usize, budget: Duration) -> Self {
        Self {
            max: max.max(1),
            budget,
            costs: Mutex::new(HashMap::new()),
        }
    }

    /// A task of `resource` ran from `started_ms` to `finished_ms` (a worker's clock, in
    /// milliseconds).
    pub fn observe(&self, resource: &str, started_ms: u64, finished_ms: u64) {
        if self.budget.is_zero() || self.max == 1 {
            return;
        }
        let us = finished_ms.saturating_sub(started_ms) as f64 * 1000.0;
        let mut costs = self.costs.lock().expect("batching costs poisoned");
        if let Some(avg) = costs.get_mut(resource) {
            *avg += ALPHA * (us - *avg);
            return;
        }
        if costs.len() >= MAX_RESOURCES {
            costs.clear();
        }
        costs.insert(resource.to_owned(), us);
    }

    /// The most steps of `resource` one message may carry now.
    pub fn cap(&self, resource: &str) -> usize {
        if self.budget.is_zero() || self.max == 1 {
            return self.max;
        }
        let costs = self.costs.lock().expect("batching costs poisoned");
        let Some(&avg) = costs.get(resource) else {
            return 1;
        };
        // Timings come in whole milliseconds: a task that reads 0 ms costs at most about 1 ms,
        // and the average of such tasks is taken as a tenth of that at least.
        let per_step = avg.max(100.0);
        let fits = (self.budget.as_micros() as f64 / per_step).floor() as usize;
        fits.clamp(1, self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cheap_tasks_keep_the_whole_batch_and_dear_ones_travel_alone() {
        let b = StepBatching::new(16, Duration::from_millis(10));
        // Nothing known yet: one step a message.
        assert_eq!(b.cap("echo"), 1);
        for _ in 0..10 {
            b.observe("echo", 1_000, 1_000);
            b.observe("photo", 1_000, 1_045);
            b.observe("five", 1_000, 1_005);
        }
        assert_eq!(b.cap("echo"), 16);
        assert_eq!(b.cap("photo"), 1);
        assert_eq!(b.cap("five"), 2);
        assert_eq!(b.cap("unseen"), 1);
    }

    #[test]
    fn the_average_follows_a_task_that_gets_dearer_or_cheaper() {
        let b = StepBatching::new(16, Duration::from_millis(10));
        b.observe("t", 0, 0);
        assert_eq!(b.cap("t"), 16);
        for _ in 0..30 {
            b.observe("t", 0, 50);
        }
        assert_eq!(b.cap("t"), 1);
        for _ in 0..40 {
            b.observe("t", 0, 0);
        }
        assert_eq!(b.cap("t"), 16);
        // A clock that went backwards reads as 0 ms, not as a huge time.
        b.observe("t", 10, 5);
        assert_eq!(b.cap("t"), 16);
    }

    #[test]
    fn no_budget_or_batches_of_one_ignore_costs() {
        let b = StepBatching::new(16, Duration::ZERO);
        b.observe("t", 0, 500);
        assert_eq!(b.cap("t"), 16);
        assert_eq!(b.cap("unseen"), 16);
        let one = StepBatching::new(1, Duration::from_millis(10));
        assert_eq!(one.cap("t"), 1);
    }
}
