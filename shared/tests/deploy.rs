//! The deployment files under `deploy/` checked against the real tools and the metric
//! catalogue: `promtool check config`, `promtool check rules` and `promtool test rules` (the
//! alerts' unit tests) on `deploy/prometheus/`, and every metric the rules and the Grafana
//! dashboard read must be in `shared::metrics::CATALOGUE` (or be a recording rule).
//!
//! promtool comes with Debian's `prometheus` package (`.ci/services.sh` installs it); a
//! machine without it fails these tests, saying so.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

fn read(rel: &str) -> String {
    let path = repo().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Runs promtool with `args` in `deploy/prometheus`; panics with its output on failure.
fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(repo().join("deploy/prometheus"))
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run promtool ({e}): install Debian's `prometheus` package \
                 (`apt-get install prometheus`; `bash .ci/services.sh` does it)"
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

const RULE_FILES: [&str; 2] = ["rules/mapfleet.rules.yml", "rules/mapfleet.alerts.yml"];

#[test]
fn prometheus_config_and_rules_are_valid() {
    let text = promtool(&["check", "config", "prometheus.yml"]);
    assert!(text.contains("SUCCESS"), "{text}");
    let mut args = vec!["check", "rules"];
    args.extend(RULE_FILES);
    promtool(&args);
}

#[test]
fn alert_rules_pass_their_unit_tests() {
    let text = promtool(&["test", "rules", "tests/mapfleet.test.yml"]);
    assert!(text.contains("SUCCESS"), "{text}");
}

/// Names a query or rule file reads that belong to mapfleet: `mapfleet_*` series and
/// `mapfleet:*` recording rules. Quoted strings (label values, annotations) and comments
/// are skipped.
fn mapfleet_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let line = line.split(" #").next().unwrap_or("");
        if line.trim_start().starts_with('#') {
            continue;
        }
        let mut unquoted = String::new();
        let mut quote = None;
        for c in line.chars() {
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None if c == '"' || c == '\'' || c == '`' => quote = Some(c),
                None => unquoted.push(c),
            }
        }
        let mut word = String::new();
        for c in unquoted.chars().chain(std::iter::once(' ')) {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                word.push(c);
            } else {
                let w = std::mem::take(&mut word);
                if w.starts_with("mapfleet_") || w.starts_with("mapfleet:") {
                    names.insert(w);
                }
            }
        }
    }
    names
}

/// The recording rules' names.
fn recorded() -> BTreeSet<String> {
    read("deploy/prometheus/rules/mapfleet.rules.yml")
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- record:"))
        .map(|n| n.trim().to_string())
        .collect()
}

fn assert_known(names: &BTreeSet<String>, recorded: &BTreeSet<String>, what: &str) {
    let unknown: Vec<&String> = names
        .iter()
        .filter(|n| !shared::metrics::is_catalogued(n) && !recorded.contains(*n))
        .collect();
    assert!(
        unknown.is_empty(),
        "{what} reads metrics that are neither in the catalogue (docs/METRICS.md) nor recorded: {unknown:?}"
    );
}

#[test]
fn rules_read_only_catalogued_metrics() {
    let recorded = recorded();
    assert!(recorded.len() >= 10, "{recorded:?}");
    for file in RULE_FILES {
        let names = mapfleet_names(&read(&format!("deploy/prometheus/{file}")));
        assert!(!names.is_empty(), "{file}");
        assert_known(&names, &recorded, file);
    }
    // The unit tests feed series by the catalogue's names too.
    let names = mapfleet_names(&read("deploy/prometheus/tests/mapfleet.test.yml"));
    let fed: BTreeSet<String> = read("deploy/prometheus/tests/mapfleet.test.yml")
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- series: '"))
        .filter_map(|l| l.split('{').next())
        .filter(|n| n.starts_with("mapfleet"))
        .map(str::to_string)
        .collect();
    assert!(!fed.is_empty());
    assert_known(&fed, &recorded, "the rules' unit tests");
    assert_known(&names, &recorded, "the rules' unit tests");
}

#[test]
fn the_dashboard_has_valid_panels_reading_catalogued_metrics() {
    let text = read("deploy/grafana/dashboards/mapfleet.json");
    let dash: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    assert_eq!(dash["uid"], "mapfleet-fleet");
    let panels = dash["panels"].as_array().expect("panels");
    let recorded = recorded();
    let mut ids = BTreeSet::new();
    let mut rows = Vec::new();
    let mut queries = 0;
    for p in panels {
        let title = p["title"].as_str().unwrap_or("?");
        let id = p["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("panel {title}: no id"));
        assert!(ids.insert(id), "panel id {id} twice");
        let grid = &p["gridPos"];
        for k in ["h", "w", "x", "y"] {
            assert!(grid[k].is_u64(), "panel {title}: gridPos.{k}");
        }
        assert!(
            grid["x"].as_u64().unwrap() + grid["w"].as_u64().unwrap() <= 24,
            "panel {title} is wider than the grid"
        );
        if p["type"] == "row" {
            rows.push(title.to_string());
            continue;
        }
        assert!(
            ["timeseries", "stat", "table", "gauge", "bargauge"]
                .contains(&p["type"].as_str().unwrap_or("")),
            "panel {title}: type {}",
            p["type"]
        );
        assert_eq!(p["datasource"]["uid"], "prometheus", "panel {title}");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {title} has no query");
        for t in targets {
            let expr = t["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("panel {title}: no expr"));
            let names = mapfleet_names(expr);
            assert!(
                !names.is_empty(),
                "panel {title} reads no mapfleet metric: {expr}"
            );
            assert_known(&names, &recorded, &format!("panel {title:?}"));
            queries += 1;
        }
    }
    assert_eq!(rows, ["Fleet overview", "Map run", "Workers"]);
    assert!(queries >= 20, "{queries}");
}

#[test]
fn name_scanning_sees_metrics_and_skips_strings() {
    let names = mapfleet_names(
        r#"sum by (le) (rate(mapfleet_step_latency_seconds_bucket{queue="mapfleet_not_this"}[5m])) / mapfleet:x # mapfleet_comment"#,
    );
    let want: BTreeSet<String> = ["mapfleet_step_latency_seconds_bucket", "mapfleet:x"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(names, want);
    // An unknown name is caught.
    let bad: BTreeSet<String> = ["mapfleet_made_up_total".to_string()].into();
    let caught = std::panic::catch_unwind(|| assert_known(&bad, &BTreeSet::new(), "x"));
    assert!(caught.is_err());
}

/// `deploy/validate.sh`: the Kubernetes overlays built with `kubectl kustomize` against the
/// Kubernetes schemas (`kubernetes-validate`, strict) and KEDA's vendored CRD schemas, and
/// the fleet's own rules on the manifests, `deploy/compose.yaml` and `deploy/Containerfile`.
#[test]
fn deployment_manifests_validate_offline() {
    let out = Command::new("bash")
        .arg(repo().join("deploy/validate.sh"))
        .output()
        .expect("bash runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "deploy/validate.sh failed:\n{text}");
    assert!(text.contains("validate: OK: 2 overlays"), "{text}");
}
