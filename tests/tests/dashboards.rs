//! The Grafana dashboards, validated as Grafana and dashboard-linter would (Grafana itself can't
//! be installed here): required fields, stable unique uids, the datasource variable on every
//! panel and query, no panel without a query, units everywhere, `$__rate_interval` in every
//! range, and a link from every panel about countries to the collector's raw measurements.
//! That each query parses and returns data is proven against a real Prometheus in
//! prometheus_e2e.rs.

mod operators;

use std::collections::{BTreeMap, BTreeSet};

use operators::{dashboard_queries, dashboards, panels, path, replica_aggregation_faults, yaml};
use serde_json::Value;

const DATASOURCE: &str = "${datasource}";
const RAW_MEASUREMENTS: &str = "${collector_url}/api/v1/measurements?";
/// Panel types this project uses; anything else is a typo or an Angular-era leftover.
const PANEL_TYPES: &[&str] = &["timeseries", "stat", "table", "geomap", "heatmap", "piechart", "bargauge", "row"];

fn text<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str().filter(|s| !s.trim().is_empty()).unwrap_or_else(|| panic!("{what} is missing or empty"))
}

/// The range selectors (`[...]`) of a PromQL expression.
fn ranges(expr: &str) -> Vec<&str> {
    expr.split('[').skip(1).filter_map(|rest| rest.split(']').next()).collect()
}

/// The labels a data link reads from the series it was clicked on.
fn link_labels(url: &str) -> Vec<String> {
    let mut out = Vec::new();
    for prefix in ["${__field.labels.", "${__data.fields."] {
        for rest in url.split(prefix).skip(1) {
            out.push(rest.split('}').next().unwrap_or_default().to_string());
        }
    }
    out
}

#[test]
fn the_four_dashboards_exist_with_stable_unique_uids() {
    let all = dashboards();
    let mut uids = BTreeSet::new();
    let mut titles = BTreeSet::new();
    for (p, d) in &all {
        let name = p.file_name().expect("name").to_string_lossy().into_owned();
        let uid = text(&d["uid"], &format!("{name}: uid"));
        // Stable and readable: the uid is the file name, so links between dashboards and
        // bookmarks survive re-provisioning, and Grafana's 40-character limit holds.
        assert_eq!(format!("{uid}.json"), name, "{name}: uid must match the file name");
        assert!(uid.len() <= 40 && uid.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'), "{name}: uid {uid}");
        assert!(uids.insert(uid.to_string()), "{name}: uid {uid} used twice");
        assert!(titles.insert(text(&d["title"], "title").to_string()), "{name}: title used twice");
        text(&d["description"], &format!("{name}: description"));
        assert!(d["tags"].as_array().is_some_and(|t| t.iter().any(|t| t == "vantage")), "{name}: tag vantage");
        assert!(d["schemaVersion"].as_u64().is_some_and(|v| v >= 36), "{name}: schemaVersion");
        assert!(d["time"]["from"].is_string() && d["time"]["to"].is_string(), "{name}: time range");
        assert!(d["refresh"].is_string(), "{name}: refresh");
        assert_eq!(d["editable"], true, "{name}: editable");
        assert!(d.get("__inputs").is_none(), "{name}: exported with __inputs; use the datasource variable instead");
    }
    let expected: BTreeSet<String> =
        ["vantage-overview", "vantage-country", "vantage-vpn", "vantage-fleet"].iter().map(|s| s.to_string()).collect();
    assert_eq!(uids, expected);
}

#[test]
fn the_datasource_is_a_variable_used_by_every_panel_and_query() {
    for (p, d) in dashboards() {
        let name = p.file_name().expect("name").to_string_lossy().into_owned();
        let vars = d["templating"]["list"].as_array().unwrap_or_else(|| panic!("{name}: no templating.list"));
        let ds = vars.iter().find(|v| v["name"] == "datasource").unwrap_or_else(|| panic!("{name}: no datasource variable"));
        assert_eq!(ds["type"], "datasource", "{name}");
        assert_eq!(ds["query"], "prometheus", "{name}");
        let collector =
            vars.iter().find(|v| v["name"] == "collector_url").unwrap_or_else(|| panic!("{name}: no collector_url variable"));
        // Query variables reload with the time range (dashboard-linter's template-on-time-change-reload).
        for v in vars.iter().filter(|v| v["type"] == "query") {
            assert_eq!(v["datasource"]["uid"], DATASOURCE, "{name}: variable {}", v["name"]);
            assert_eq!(v["refresh"], 2, "{name}: variable {} must refresh on time range change", v["name"]);
        }
        assert_eq!(collector["type"], "query", "{name}: collector_url comes from the scrape config's label");
        for panel in panels(&d) {
            if panel["type"] == "row" {
                continue;
            }
            let title = text(&panel["title"], &format!("{name}: panel title"));
            assert_eq!(panel["datasource"]["uid"], DATASOURCE, "{name} / {title}: panel datasource");
            assert_eq!(panel["datasource"]["type"], "prometheus", "{name} / {title}");
            let targets = panel["targets"].as_array().filter(|t| !t.is_empty());
            let targets = targets.unwrap_or_else(|| panic!("{name} / {title}: a panel without a query"));
            let mut refs = BTreeSet::new();
            for t in targets {
                assert_eq!(t["datasource"]["uid"], DATASOURCE, "{name} / {title}: query datasource");
                text(&t["expr"], &format!("{name} / {title}: expr"));
                assert!(refs.insert(text(&t["refId"], "refId").to_string()), "{name} / {title}: refId twice");
            }
        }
    }
}

#[test]
fn panels_have_units_descriptions_unique_ids_and_fit_the_grid() {
    for (p, d) in dashboards() {
        let name = p.file_name().expect("name").to_string_lossy().into_owned();
        let mut ids = BTreeSet::new();
        let mut placed: Vec<(u64, u64, u64, u64, String)> = Vec::new();
        for panel in panels(&d) {
            let title = panel["title"].as_str().unwrap_or("?");
            let kind = text(&panel["type"], &format!("{name} / {title}: type"));
            assert!(PANEL_TYPES.contains(&kind), "{name} / {title}: panel type {kind}");
            assert!(
                ids.insert(panel["id"].as_u64().unwrap_or_else(|| panic!("{name} / {title}: id"))),
                "{name} / {title}: id twice"
            );
            let pos = &panel["gridPos"];
            let (x, w, h) = (pos["x"].as_u64(), pos["w"].as_u64(), pos["h"].as_u64());
            assert!(pos["y"].is_u64() && h.is_some_and(|h| h > 0), "{name} / {title}: gridPos");
            assert!(matches!((x, w), (Some(x), Some(w)) if w > 0 && x + w <= 24), "{name} / {title}: gridPos beyond 24 columns");
            // No two panels on the same cells (Grafana would push one down, silently).
            let (x, y, w, h) = (x.unwrap_or(0), pos["y"].as_u64().unwrap_or(0), w.unwrap_or(0), h.unwrap_or(0));
            for (ox, oy, ow, oh, other) in &placed {
                let apart = x + w <= *ox || *ox + *ow <= x || y + h <= *oy || *oy + *oh <= y;
                assert!(apart, "{name}: panels {title:?} and {other:?} overlap");
            }
            placed.push((x, y, w, h, title.to_string()));
            if kind == "row" {
                continue;
            }
            text(&panel["description"], &format!("{name} / {title}: description"));
            text(&panel["fieldConfig"]["defaults"]["unit"], &format!("{name} / {title}: unit"));
        }
    }
}

#[test]
fn every_range_is_the_rate_interval_and_counters_are_always_rated() {
    for q in dashboard_queries() {
        // Fixed windows belong in recording rules (deploy/prometheus/rules); a panel's own
        // range follows its resolution so it never misses samples.
        for range in ranges(&q.expr) {
            assert_eq!(range, "$__rate_interval", "{}: range [{range}] in {}", q.origin, q.expr);
        }
        // A raw counter or bucket is meaningless on a graph: it must sit inside a rate().
        for (i, _) in q.expr.match_indices("vantage_") {
            let name: String = q.expr[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if name.ends_with("_total") || name.ends_with("_bucket") {
                let after = &q.expr[i + name.len()..];
                let after = if after.starts_with('{') { after.split_once('}').map_or("", |(_, a)| a) } else { after };
                assert!(after.starts_with("[$__rate_interval]"), "{}: {name} not inside rate(): {}", q.origin, q.expr);
                assert!(q.expr[..i].contains("rate("), "{}: {name} not inside rate(): {}", q.origin, q.expr);
            }
        }
    }
}

#[test]
fn queries_take_fleet_gauges_once_and_sum_counters_across_replicas() {
    // Every replica of a deployment is scraped: a panel that summed the store-derived gauges
    // would show three times the probes with three replicas, and a rate left per instance
    // would draw one line per replica where one figure is meant.
    for q in dashboard_queries() {
        let faults = replica_aggregation_faults(&q.expr);
        assert!(faults.is_empty(), "{}: {faults:?}\n{}", q.origin, q.expr);
    }
}

#[test]
fn panels_about_countries_link_to_the_raw_measurements() {
    let mut linked = 0;
    for (p, d) in dashboards() {
        let name = p.file_name().expect("name").to_string_lossy().into_owned();
        let censorship = d["tags"].as_array().is_some_and(|t| t.iter().any(|t| t == "censorship"));
        for panel in panels(&d).into_iter().filter(|p| p["type"] != "row") {
            let title = panel["title"].as_str().unwrap_or("?");
            let exprs: Vec<&str> = panel["targets"].as_array().into_iter().flatten().filter_map(|t| t["expr"].as_str()).collect();
            // A panel that shows series per country (as opposed to a fleet-wide total).
            let about_countries = exprs.iter().any(|e| e.contains("by (country"));
            let links = panel["fieldConfig"]["defaults"]["links"].as_array();
            let raw: Vec<&str> = links
                .into_iter()
                .flatten()
                .filter_map(|l| l["url"].as_str())
                .filter(|u| u.starts_with(RAW_MEASUREMENTS))
                .collect();
            if censorship || about_countries {
                assert!(!raw.is_empty(), "{name} / {title}: no data link to the raw measurements");
            }
            for url in raw {
                linked += 1;
                // The time range of the view, in the collector's RFC 3339 form.
                assert!(url.contains("since=${__from:date:iso}&until=${__to:date:iso}"), "{name} / {title}: {url}");
                // A link may only read labels the series actually has, or the collector gets an
                // empty filter and answers 400.
                for label in link_labels(url) {
                    assert!(
                        exprs.iter().all(|e| e.contains(&label)),
                        "{name} / {title}: link reads `{label}` the query drops: {url}"
                    );
                }
                // Tables and maps hold rows of fields; graphs hold series with labels.
                let table = panel["type"] == "table" || panel["type"] == "geomap";
                let wrong = if table { "${__field.labels." } else { "${__data.fields." };
                assert!(!url.contains(wrong), "{name} / {title}: {wrong}…}} does not work in a {} panel: {url}", panel["type"]);
                for param in url.split_once('?').map_or("", |(_, q)| q).split('&') {
                    let key = param.split('=').next().unwrap_or_default();
                    assert!(
                        ["country", "asn", "test", "target", "verdict", "mechanism", "since", "until", "limit"].contains(&key),
                        "{name} / {title}: the collector has no filter `{key}` ({url})"
                    );
                }
            }
        }
    }
    assert!(linked >= 15, "only {linked} links to raw measurements");
}

#[test]
fn each_dashboard_shows_what_the_issue_asks_of_it() {
    let by_uid: BTreeMap<String, Value> =
        dashboards().into_iter().map(|(_, d)| (d["uid"].as_str().unwrap_or_default().to_string(), d)).collect();
    let exprs = |uid: &str| -> String {
        panels(&by_uid[uid])
            .iter()
            .flat_map(|p| p["targets"].as_array().into_iter().flatten())
            .filter_map(|t| t["expr"].as_str())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let kinds = |uid: &str| -> BTreeSet<String> {
        panels(&by_uid[uid]).iter().filter_map(|p| p["type"].as_str()).map(str::to_string).collect()
    };

    // Overview: a world map of blocked share, top blocked targets, mechanisms.
    assert!(kinds("vantage-overview").contains("geomap"));
    let overview = exprs("vantage-overview");
    for needle in
        ["country:vantage_measurements_blocked_per_measurements:ratio_rate1h", "topk(", "mechanism", "vantage_target_probes"]
    {
        assert!(overview.contains(needle), "overview lacks {needle}");
    }
    // Country: one variable country, by ASN and protocol, targets × time heatmap.
    assert!(by_uid["vantage-country"]["templating"]["list"].as_array().is_some_and(|l| l.iter().any(|v| v["name"] == "country")));
    assert!(kinds("vantage-country").contains("heatmap"));
    let country = exprs("vantage-country");
    for q in country.lines() {
        assert!(q.contains("country=\"$country\""), "country dashboard query not filtered by $country: {q}");
    }
    for needle in ["by (asn, test)", "by (test)", "by (target)"] {
        assert!(country.contains(needle), "country dashboard lacks {needle}");
    }
    // VPN: every query selects exactly the VPN tests, so it lights up when they land.
    for q in exprs("vantage-vpn").lines() {
        assert!(q.contains(r#"test=~"openvpn|wireguard|ikev2|tor""#), "VPN query without the VPN tests: {q}");
    }
    // Fleet & collector: every health metric the collector exports.
    let fleet = exprs("vantage-fleet");
    for metric in [
        "vantage_probes_active",
        "vantage_collector_ingested_total",
        "vantage_collector_duplicates_total",
        "vantage_collector_rejected_total",
        "vantage_collector_store_duration_seconds_bucket",
        "vantage_collector_last_ingest_timestamp_seconds",
        "vantage_collector_stored_measurements",
        "vantage_collector_ingest_in_flight",
        "vantage_helper_requests_total",
        "vantage_probe_spool_pending_bucket",
        "vantage_metric_labels_folded_total",
        "vantage_collector_rate_limited_total",
        "vantage_collector_rate_limit_entries",
        "vantage_collector_measurements_uncounted_total",
        "vantage_collector_keys_active",
        "vantage_collector_key_registrations_total",
        "up{job=\"vantage-collector\"}",
        // Database and replica health, one line per replica.
        "max by (instance) (up{job=\"vantage-collector\"})",
        "max by (instance) (vantage_collector_store_up)",
        "sum by (instance, op, le) (rate(vantage_collector_store_duration_seconds_bucket",
        "max by (instance, duty) (vantage_collector_duty_held)",
        "sum by (instance) (rate(vantage_collector_ingested_total",
    ] {
        assert!(fleet.contains(metric), "fleet dashboard lacks {metric}");
    }
}

#[test]
fn grafana_provisioning_points_at_the_dashboards_and_a_fixed_datasource() {
    let ds = yaml(&path("deploy/grafana/provisioning/datasources/vantage.yaml"));
    let source = &ds["datasources"][0];
    assert_eq!(source["type"].as_str(), Some("prometheus"));
    assert!(source["uid"].as_str().is_some_and(|u| !u.is_empty()), "a fixed uid");
    let providers = yaml(&path("deploy/grafana/provisioning/dashboards/vantage.yaml"));
    let provider = &providers["providers"][0];
    assert_eq!(provider["type"].as_str(), Some("file"));
    let dir = provider["options"]["path"].as_str().expect("options.path");
    // compose.yaml mounts the repository's dashboards/ exactly there.
    let compose = std::fs::read_to_string(path("deploy/compose/compose.yaml")).expect("compose");
    assert!(compose.contains(&format!("../../dashboards:{dir}:ro")), "compose does not mount dashboards/ at {dir}");
    assert!(compose.contains("../grafana/provisioning:/etc/grafana/provisioning:ro"));
}

#[test]
fn every_dashboard_query_parses_as_promql() {
    // promtool has no "parse this expression" command, but it parses every rule of a rule
    // file: wrap each query, with the dashboard variables filled in, as a recording rule.
    // (That each one also returns data is prometheus_e2e.rs's job.)
    let promtool = operators::require_tool("promtool");
    let queries = dashboard_queries();
    let rules: Vec<serde_norway::Value> = queries
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let expr = q.expr.replace("$__rate_interval", "1m").replace("${country}", "XA").replace("$country", "XA");
            let mut rule = serde_norway::Mapping::new();
            rule.insert("record".into(), format!("dashboard:query_{i}:check").into());
            rule.insert("expr".into(), expr.into());
            serde_norway::Value::Mapping(rule)
        })
        .collect();
    let mut group = serde_norway::Mapping::new();
    group.insert("name".into(), "dashboard-queries".into());
    group.insert("rules".into(), serde_norway::Value::Sequence(rules));
    let mut doc = serde_norway::Mapping::new();
    doc.insert("groups".into(), serde_norway::Value::Sequence(vec![serde_norway::Value::Mapping(group)]));
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("dashboard-queries.yml");
    std::fs::write(&file, serde_norway::to_string(&doc).expect("yaml")).expect("write");
    let out = operators::run(
        std::process::Command::new(promtool).args(["check", "rules"]).arg(&file),
        std::time::Duration::from_secs(60),
    );
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // On failure, name the panel behind each rule promtool complains about.
    let named: String = queries.iter().enumerate().map(|(i, q)| format!("dashboard:query_{i}:check = {}\n", q.origin)).collect();
    assert!(out.status.success(), "a dashboard query does not parse:\n{text}\n{named}");
    assert!(text.contains(&format!("SUCCESS: {} rules found", queries.len())), "{text}");
}
