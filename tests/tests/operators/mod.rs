//! What the operators' tests share: where the deploy files are, the external tools they run
//! (each missing tool fails loudly with the way to install it; nothing is skipped), and the
//! PromQL that the dashboards and rules contain.

#![allow(dead_code)] // each test file uses its own part of this module

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// The repository root (the workspace around `tests/`).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// `repo()/rel`, which must exist.
pub fn path(rel: &str) -> PathBuf {
    let p = repo().join(rel);
    assert!(p.exists(), "{} is missing", p.display());
    p
}

/// Files directly in `dir` (relative to the repo) whose names end with one of `suffixes`, sorted.
pub fn files(dir: &str, suffixes: &[&str]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(path(dir))
        .unwrap_or_else(|e| panic!("reading {dir}: {e}"))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_file() && suffixes.iter().any(|s| p.to_string_lossy().ends_with(s)))
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no {suffixes:?} files in {dir}");
    out
}

/// The absolute path of `tool`, or a panic that says how to get it. Never a skip: a test that
/// silently passes without its tool proves nothing.
pub fn require_tool(tool: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).map(|d| d.join(tool)).find(|p| p.is_file()))
        .unwrap_or_default();
    found.unwrap_or_else(|| {
        panic!("`{tool}` is not installed: run tests/install-deps.sh (as root) to install the test suite's Debian packages")
    })
}

/// Run a command to completion within `limit`, killing it otherwise.
pub fn run(cmd: &mut Command, limit: Duration) -> Output {
    let shown = format!("{cmd:?}");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {shown}: {e}"));
    let id = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap_or_else(|e| panic!("waiting for {shown}: {e}")),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &id.to_string()]).status();
            panic!("{shown} did not finish within {limit:?}")
        }
    }
}

/// Run and require exit status 0; returns stdout + stderr for further checks.
pub fn run_ok(cmd: &mut Command, limit: Duration) -> String {
    let shown = format!("{cmd:?}");
    let out = run(cmd, limit);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{shown} failed ({}):\n{text}", out.status);
    text
}

/// A parsed YAML file.
pub fn yaml(p: &Path) -> serde_norway::Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", p.display()))
}

/// Every document of a multi-document YAML file (split at `---` lines).
pub fn yaml_documents(p: &Path) -> Vec<serde_norway::Value> {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
    let mut docs = vec![String::new()];
    for line in text.lines() {
        if line.trim_end() == "---" {
            docs.push(String::new());
        } else if let Some(doc) = docs.last_mut() {
            doc.push_str(line);
            doc.push('\n');
        }
    }
    docs.iter()
        .filter(|d| d.lines().any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#')))
        .map(|d| serde_norway::from_str(d).unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", p.display())))
        .collect()
}

/// A dashboard file, parsed.
pub fn dashboard(p: &Path) -> Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", p.display()))
}

/// The Grafana dashboards in `dashboards/`.
pub fn dashboards() -> Vec<(PathBuf, Value)> {
    files("dashboards", &[".json"])
        .into_iter()
        .map(|p| {
            let d = dashboard(&p);
            (p, d)
        })
        .collect()
}

/// Every panel of a dashboard, rows' nested panels included (collapsed rows keep theirs inside).
pub fn panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().map(Vec::as_slice).unwrap_or_default() {
        out.push(p);
        for inner in p["panels"].as_array().map(Vec::as_slice).unwrap_or_default() {
            out.push(inner);
        }
    }
    out
}

/// One PromQL query with where it comes from, for messages.
#[derive(Clone, Debug)]
pub struct Query {
    /// e.g. `vantage-country.json / Blocked share by protocol / A` or `vantage-alerts.yml / VantageCollectorDown`.
    pub origin: String,
    pub expr: String,
}

/// Every panel query of every dashboard.
pub fn dashboard_queries() -> Vec<Query> {
    let mut out = Vec::new();
    for (p, d) in dashboards() {
        let file = p.file_name().expect("file name").to_string_lossy().into_owned();
        for panel in panels(&d).into_iter().filter(|p| p["type"] != "row") {
            for t in panel["targets"].as_array().map(Vec::as_slice).unwrap_or_default() {
                out.push(Query {
                    origin: format!(
                        "{file} / {} / {}",
                        panel["title"].as_str().unwrap_or("?"),
                        t["refId"].as_str().unwrap_or("?")
                    ),
                    expr: t["expr"].as_str().unwrap_or_default().to_string(),
                });
            }
        }
    }
    out
}

/// The `label_values(metric, label)` queries of dashboard variables.
pub fn variable_queries() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (p, d) in dashboards() {
        let file = p.file_name().expect("file name").to_string_lossy().into_owned();
        for v in d["templating"]["list"].as_array().map(Vec::as_slice).unwrap_or_default() {
            if v["type"] == "query" {
                let q = v["query"]["query"].as_str().or(v["query"].as_str()).unwrap_or_default();
                out.push((format!("{file} / ${}", v["name"].as_str().unwrap_or("?")), q.to_string()));
            }
        }
    }
    out
}

/// A rule of a rule file: recording (`record`) or alerting (`alert`).
#[derive(Clone, Debug)]
pub struct Rule {
    pub file: String,
    pub name: String,
    pub alert: bool,
    pub expr: String,
    pub raw: serde_norway::Value,
}

/// Every rule in deploy/prometheus/rules/.
pub fn rules() -> Vec<Rule> {
    let mut out = Vec::new();
    for p in files("deploy/prometheus/rules", &[".yml"]) {
        let file = p.file_name().expect("file name").to_string_lossy().into_owned();
        let doc = yaml(&p);
        for group in doc["groups"].as_sequence().unwrap_or_else(|| panic!("{file}: no groups")) {
            for r in group["rules"].as_sequence().unwrap_or_else(|| panic!("{file}: a group without rules")) {
                let (name, alert) = match (r["record"].as_str(), r["alert"].as_str()) {
                    (Some(n), None) => (n, false),
                    (None, Some(n)) => (n, true),
                    _ => panic!("{file}: a rule that is neither record nor alert: {r:?}"),
                };
                out.push(Rule {
                    file: file.clone(),
                    name: name.to_string(),
                    alert,
                    expr: r["expr"].as_str().unwrap_or_else(|| panic!("{file} / {name}: no expr")).to_string(),
                    raw: r.clone(),
                });
            }
        }
    }
    out
}

/// Gauges computed from the store, which every replica of a deployment reports identically
/// (docs/metrics.md): take them once (`max`, `min`, `avg`), never `sum` them.
pub const FLEET_GAUGES: &[&str] = &[
    "vantage_probes_active",
    "vantage_target_probes",
    "vantage_target_asns",
    "vantage_target_asns_measured",
    "vantage_fleet_window_seconds",
    "vantage_events_ongoing",
    "vantage_collector_stored_measurements",
    "vantage_collector_keys_active",
    "vantage_collector_fleet_refresh_timestamp_seconds",
];

/// The aggregation operator applied directly to what starts at `at` in `expr` (`sum` for
/// `sum by (a) (x…`, `max` for `max(x…`), or `None` when `x` is not an aggregation's argument.
fn aggregator_around(expr: &str, at: usize) -> Option<&str> {
    let before = expr[..at].trim_end().strip_suffix('(')?.trim_end();
    let before = match before.strip_suffix(')') {
        // `by (…)` / `without (…)`: step over the label list and the keyword.
        Some(inner) => {
            let open = inner.rfind('(')?;
            let rest = inner[..open].trim_end();
            rest.strip_suffix("by").or_else(|| rest.strip_suffix("without"))?.trim_end()
        }
        None => before,
    };
    let start = before.rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).map_or(0, |i| i + 1);
    Some(&before[start..])
}

/// What would go wrong in `expr` with several replicas scraped: a fleet gauge that is not
/// taken once (summed, or left per instance), or a counter's rate not summed across replicas.
pub fn replica_aggregation_faults(expr: &str) -> Vec<String> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut faults = Vec::new();
    for gauge in FLEET_GAUGES {
        for (i, _) in expr.match_indices(gauge) {
            let bare = !expr[..i].ends_with(word) && !expr[i + gauge.len()..].starts_with(word);
            if !bare {
                continue;
            }
            match aggregator_around(expr, i) {
                Some("max" | "min" | "avg") => {}
                other => faults.push(format!("{gauge} is taken by {other:?}, not once with max/min/avg")),
            }
        }
    }
    for (i, _) in expr.match_indices("rate(vantage_") {
        if expr[..i].ends_with(word) {
            continue; // irate( and the like are not used; this skips nothing else
        }
        if aggregator_around(expr, i) != Some("sum") {
            faults.push(format!("a rate at byte {i} is not summed across replicas"));
        }
    }
    faults
}
