//! Reading a process's Prometheus endpoint (`--metrics-addr`): one plain HTTP/1.0 GET of
//! `/metrics` and the text format's histograms, enough for the report's latency and task
//! duration figures. No client library: the endpoints are the fleet's own, on loopback.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, ensure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Most bytes read from one endpoint: a fleet process's page is a few tens of KiB.
const PAGE_LIMIT: u64 = 8 << 20;

/// The text of `http://ADDR/metrics`.
pub async fn get(addr: SocketAddr) -> anyhow::Result<String> {
    let fetch = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: loadtest\r\n\r\n")
            .await?;
        let mut body = Vec::new();
        s.take(PAGE_LIMIT).read_to_end(&mut body).await?;
        anyhow::Ok(body)
    };
    let raw = tokio::time::timeout(Duration::from_secs(5), fetch)
        .await
        .context("metrics endpoint timed out")??;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").context("no HTTP header end")?;
    ensure!(head.contains(" 200"), "metrics endpoint answered {head:?}");
    Ok(body.to_string())
}

/// One histogram series: cumulative bucket counts by upper bound, sum and count.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// (le, cumulative count), ascending; `+Inf` last.
    pub buckets: Vec<(f64, f64)>,
    pub sum: f64,
    pub count: f64,
}

impl Histogram {
    /// What was observed between `earlier` and this (same buckets).
    pub fn since(&self, earlier: &Histogram) -> Histogram {
        Histogram {
            buckets: self
                .buckets
                .iter()
                .map(|(le, n)| {
                    let before = earlier
                        .buckets
                        .iter()
                        .find(|(l, _)| l == le)
                        .map_or(0.0, |(_, m)| *m);
                    (*le, (n - before).max(0.0))
                })
                .collect(),
            sum: (self.sum - earlier.sum).max(0.0),
            count: (self.count - earlier.count).max(0.0),
        }
    }

    /// Adds another series of the same buckets (several processes, several label sets).
    pub fn add(&mut self, other: &Histogram) {
        if self.buckets.is_empty() {
            *self = other.clone();
            return;
        }
        for (le, n) in &mut self.buckets {
            if let Some((_, m)) = other.buckets.iter().find(|(l, _)| l == le) {
                *n += m;
            }
        }
        self.sum += other.sum;
        self.count += other.count;
    }

    /// The `q` quantile, interpolated linearly within its bucket as PromQL's
    /// `histogram_quantile` does; None without observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.buckets.last()?.1;
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let mut lower = (0.0, 0.0);
        for &(le, n) in &self.buckets {
            if n >= rank {
                if le.is_infinite() {
                    return Some(lower.0);
                }
                let width = n - lower.1;
                let frac = if width > 0.0 {
                    (rank - lower.1) / width
                } else {
                    1.0
                };
                return Some(lower.0 + (le - lower.0) * frac);
            }
            lower = (le, n);
        }
        Some(lower.0)
    }

    pub fn mean(&self) -> Option<f64> {
        (self.count > 0.0).then(|| self.sum / self.count)
    }
}

/// Every series of histogram `name` in `text`, by its labels other than `le` (rendered
/// `k="v",...` in the page's order).
pub fn histograms(text: &str, name: &str) -> BTreeMap<String, Histogram> {
    let mut out: BTreeMap<String, Histogram> = BTreeMap::new();
    let (bucket, sum, count) = (
        format!("{name}_bucket"),
        format!("{name}_sum"),
        format!("{name}_count"),
    );
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (metric, labels) = match series.split_once('{') {
            Some((m, rest)) => (m, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let mut le = None;
        let others: Vec<&str> = labels
            .split(',')
            .filter(|l| !l.is_empty())
            .filter(|l| match l.strip_prefix("le=") {
                Some(v) => {
                    le = Some(v.trim_matches('"').to_string());
                    false
                }
                None => true,
            })
            .collect();
        let h = || others.join(",");
        if metric == bucket {
            let Some(le) = le else { continue };
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                match le.parse() {
                    Ok(v) => v,
                    Err(_) => continue,
                }
            };
            out.entry(h()).or_default().buckets.push((le, value));
        } else if metric == sum {
            out.entry(h()).or_default().sum = value;
        } else if metric == count {
            out.entry(h()).or_default().count = value;
        }
    }
    for h in out.values_mut() {
        h.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out
}

/// The value of label `key` in a series' labels as [`histograms`] renders them.
pub fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    labels.split(',').find_map(|kv| {
        kv.strip_prefix(key)?
            .strip_prefix('=')
            .map(|v| v.trim_matches('"'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"# HELP mapfleet_task_duration_seconds x
# TYPE mapfleet_task_duration_seconds histogram
mapfleet_task_duration_seconds_bucket{outcome="ok",task="sleep",le="0.01"} 0
mapfleet_task_duration_seconds_bucket{outcome="ok",task="sleep",le="0.1"} 10
mapfleet_task_duration_seconds_bucket{outcome="ok",task="sleep",le="1"} 20
mapfleet_task_duration_seconds_bucket{outcome="ok",task="sleep",le="+Inf"} 20
mapfleet_task_duration_seconds_sum{outcome="ok",task="sleep"} 5
mapfleet_task_duration_seconds_count{outcome="ok",task="sleep"} 20
"#;

    #[test]
    fn histograms_are_read_and_quantiles_interpolated() {
        let hs = histograms(PAGE, "mapfleet_task_duration_seconds");
        let (labels, h) = hs.iter().next().unwrap();
        assert_eq!(label(labels, "task"), Some("sleep"));
        assert_eq!(h.count, 20.0);
        assert_eq!(h.mean(), Some(0.25));
        // Half the observations are at or below 0.1 s: the median is the bucket's top.
        assert!((h.quantile(0.5).unwrap() - 0.1).abs() < 1e-9);
        // The 75th percentile is halfway through the (0.1, 1] bucket.
        assert!((h.quantile(0.75).unwrap() - 0.55).abs() < 1e-9);
        let none = h.since(h);
        assert_eq!(none.quantile(0.5), None);
    }
}
