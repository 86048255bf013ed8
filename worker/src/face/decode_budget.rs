//! The process-wide budget of bytes that decoded images may hold at once.
//!
//! A photo that passes the pixel cap still decodes to hundreds of megabytes (a 6300x6300 PNG
//! is 119 MB as RGB, more while the decoder converts it), and a Map runs many photo steps
//! side by side: without a bound, 32 such photos decoding at once took 4.3 GB. So every
//! full decode first takes its size from this budget ([`DecodeBudget::acquire`]) and holds it
//! ([`DecodePermit`]) while its pixels live; decodes that do not fit wait for earlier ones to
//! finish. An image larger than the whole budget still decodes, alone.
//!
//! Decodes run on blocking threads (`spawn_blocking`), so the wait blocks its thread, never a
//! runtime worker.
//!
//! The size: `MAPFLEET_DECODE_BUDGET_BYTES` if set, otherwise a quarter of the memory
//! available when the first decode happens, between 256 MiB and 4 GiB.

use std::sync::{Condvar, Mutex, OnceLock};

/// The least default budget: room for two 40-megapixel decodes' output.
const MIN_DEFAULT: u64 = 256 << 20;
/// The largest default budget.
const MAX_DEFAULT: u64 = 4 << 30;
/// The budget when the available memory cannot be read.
const FALLBACK: u64 = 1 << 30;

/// A budget of bytes, taken by decodes and given back when their permits drop.
#[derive(Debug)]
pub struct DecodeBudget {
    total: u64,
    in_use: Mutex<u64>,
    freed: Condvar,
}

/// A share of a [`DecodeBudget`], given back on drop.
#[derive(Debug)]
pub struct DecodePermit {
    bytes: u64,
    budget: &'static DecodeBudget,
}

impl DecodeBudget {
    /// A budget of `total` bytes (at least 1).
    pub fn new(total: u64) -> DecodeBudget {
        DecodeBudget {
            total: total.max(1),
            in_use: Mutex::new(0),
            freed: Condvar::new(),
        }
    }

    /// The process's budget (see the module docs for its size).
    pub fn global() -> &'static DecodeBudget {
        static BUDGET: OnceLock<DecodeBudget> = OnceLock::new();
        BUDGET.get_or_init(|| {
            let total = std::env::var("MAPFLEET_DECODE_BUDGET_BYTES")
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(default_total);
            tracing::debug!(bytes = total, "decode budget");
            DecodeBudget::new(total)
        })
    }

    /// The budget's size in bytes.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Bytes held by live permits.
    pub fn in_use(&self) -> u64 {
        *self.in_use.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes `bytes` (at most the whole budget), blocking until they are free.
    pub fn acquire(&'static self, bytes: u64) -> DecodePermit {
        let bytes = bytes.min(self.total);
        let mut in_use = self.in_use.lock().unwrap_or_else(|p| p.into_inner());
        while *in_use + bytes > self.total {
            in_use = self.freed.wait(in_use).unwrap_or_else(|p| p.into_inner());
        }
        *in_use += bytes;
        DecodePermit {
            bytes,
            budget: self,
        }
    }
}

impl DecodePermit {
    /// The bytes this permit holds.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for DecodePermit {
    fn drop(&mut self) {
        let mut in_use = self.budget.in_use.lock().unwrap_or_else(|p| p.into_inner());
        *in_use -= self.bytes;
        drop(in_use);
        self.budget.freed.notify_all();
    }
}

/// A quarter of `MemAvailable`, clamped; the fallback where `/proc/meminfo` is unreadable.
fn default_total() -> u64 {
    let available = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024);
    match available {
        Some(bytes) => (bytes / 4).clamp(MIN_DEFAULT, MAX_DEFAULT),
        None => FALLBACK,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaked(total: u64) -> &'static DecodeBudget {
        Box::leak(Box::new(DecodeBudget::new(total)))
    }

    #[test]
    fn a_decode_waits_until_its_bytes_are_free() {
        let budget = leaked(100);
        let first = budget.acquire(70);
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let p = budget.acquire(50);
            tx.send(budget.in_use()).unwrap();
            drop(p);
        });
        // The second decode cannot start while the first holds 70 of 100 bytes.
        assert!(
            rx.recv_timeout(std::time::Duration::from_millis(200))
                .is_err()
        );
        assert_eq!(budget.in_use(), 70);
        drop(first);
        assert_eq!(rx.recv().unwrap(), 50);
        waiter.join().unwrap();
        assert_eq!(budget.in_use(), 0);
    }

    #[test]
    fn an_image_larger_than_the_budget_decodes_alone() {
        let budget = leaked(100);
        let p = budget.acquire(1_000);
        assert_eq!((p.bytes(), budget.in_use()), (100, 100));
        drop(p);
        assert_eq!(budget.in_use(), 0);
    }
}
