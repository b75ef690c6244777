//! deploy/compose/compose.yaml run without Docker: its two collector services' command lines
//! and environment (the image's `ENV` from collector.Dockerfile, then the service's own, with
//! compose's `${…}` filled in from a test `.env`) start two real `vantage-collector` processes
//! against a real PostgreSQL ([`TempPostgres`]). Both must answer `/healthz`, and a measurement
//! posted to one must come back from the other: they share the database, not a file.
//!
//! What the test changes, and nothing else: the listen address (loopback, port 0), the data
//! and targets paths inside the image (temp files; the targets made as the Dockerfile makes
//! them), and the database URL's user, host, port and database name (those of the test
//! server, after checking that compose's URL names the `postgres` service's user and
//! database). The password stays the one interpolated from `.env`.

mod operators;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use chrono::Utc;
use operators::path;
use serde_norway::Value as Yaml;
use vantage_measurement::example;
use vantage_tests::postgres::TempPostgres;
use vantage_tests::procs::{Collector, bin};

/// The `.env` a test operator wrote (deploy/compose/env.example lists the names).
const DOT_ENV: &[(&str, &str)] = &[("POSTGRES_PASSWORD", "c0ffee-compose-test"), ("GRAFANA_ADMIN_PASSWORD", "unused")];

/// A country code no other test uses, to find the measurement again.
const COUNTRY: &str = "XQ";

/// compose.yaml with anchors and `<<` merge keys resolved, as compose reads it.
fn compose() -> Yaml {
    let text = std::fs::read_to_string(path("deploy/compose/compose.yaml")).expect("read compose.yaml");
    let mut doc: Yaml = serde_norway::from_str(&text).expect("compose.yaml is YAML");
    doc.apply_merge().expect("merge keys");
    doc
}

/// Compose's interpolation of `${NAME}`, `${NAME:?message}` and `${NAME:-default}`.
fn interpolate(text: &str, vars: &BTreeMap<&str, &str>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').map(|e| start + e).unwrap_or_else(|| panic!("unclosed ${{ in {text}"));
        let inner = &rest[start + 2..end];
        let name = inner.split([':', '-', '?']).next().unwrap_or_default();
        match (vars.get(name), inner[name.len()..].strip_prefix(":-")) {
            (Some(value), _) => out.push_str(value),
            (None, Some(default)) => out.push_str(default),
            (None, None) => panic!("{name} is required by compose.yaml and not in .env"),
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The `ENV` of collector.Dockerfile's final stage: what the container starts with.
fn image_env() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(path("deploy/compose/collector.Dockerfile")).expect("read Dockerfile");
    let last_stage = text.rsplit("\nFROM ").next().unwrap_or_default();
    let mut env = BTreeMap::new();
    for line in last_stage.lines().filter_map(|l| l.strip_prefix("ENV ")) {
        for pair in line.split_whitespace() {
            let (k, v) = pair.split_once('=').unwrap_or_else(|| panic!("ENV {pair}: not KEY=VALUE"));
            env.insert(k.to_string(), v.to_string());
        }
    }
    env
}

/// The services that run `vantage-collector serve`: (name, command, environment).
fn collector_services(doc: &Yaml) -> Vec<(String, Vec<String>, BTreeMap<String, String>)> {
    let vars: BTreeMap<&str, &str> = DOT_ENV.iter().copied().collect();
    let mut out = Vec::new();
    for (name, service) in doc["services"].as_mapping().expect("services") {
        let command: Vec<String> = service["command"]
            .as_sequence()
            .map(|c| c.iter().map(|a| a.as_str().expect("command words are strings").to_string()).collect())
            .unwrap_or_default();
        if command.first().map(String::as_str) != Some("serve") {
            continue;
        }
        assert_eq!(service["image"].as_str(), Some("vantage-collector:local"), "{name:?} runs the collector image");
        let mut env = image_env();
        for (k, v) in service["environment"].as_mapping().expect("environment as a mapping") {
            let value = v.as_str().map(str::to_string).unwrap_or_else(|| serde_norway::to_string(v).expect("scalar"));
            env.insert(k.as_str().expect("name").to_string(), interpolate(value.trim(), &vars));
        }
        let command = command.iter().map(|a| interpolate(a, &vars)).collect();
        out.push((name.as_str().expect("service name").to_string(), command, env));
    }
    out
}

#[test]
fn compose_wires_postgres_and_two_collectors_without_an_inline_password() {
    let doc = compose();
    let text = std::fs::read_to_string(path("deploy/compose/compose.yaml")).expect("read");
    let postgres = &doc["services"]["postgres"];
    let image = postgres["image"].as_str().expect("postgres image");
    assert!(image.starts_with("postgres:"), "the official image: {image}");
    let volumes = postgres["volumes"].as_sequence().expect("postgres volumes");
    assert!(
        volumes.iter().any(|v| v.as_str().is_some_and(|v| v.ends_with(":/var/lib/postgresql/data"))),
        "the database lives on a volume: {volumes:?}"
    );
    let check = serde_norway::to_string(&postgres["healthcheck"]["test"]).expect("healthcheck");
    assert!(check.contains("pg_isready"), "healthcheck: {check}");
    assert!(postgres["ports"].is_null(), "the database is not published on the host");
    let password = postgres["environment"]["POSTGRES_PASSWORD"].as_str().expect("POSTGRES_PASSWORD");
    assert!(password.starts_with("${POSTGRES_PASSWORD"), "the password comes from .env: {password}");

    let collectors = collector_services(&doc);
    assert_eq!(collectors.len(), 2, "two collector replicas: {collectors:?}");
    for (name, command, env) in &collectors {
        assert!(!command.iter().any(|a| a.contains("postgres://")), "{name}: the URL (and password) on the command line");
        let url = env.get("VANTAGE_DATABASE_URL").unwrap_or_else(|| panic!("{name}: no VANTAGE_DATABASE_URL"));
        assert!(url.contains(DOT_ENV[0].1), "{name}: the URL's password is not the one from .env: {url}");
        let wait = &doc["services"][name.as_str()]["depends_on"]["postgres"]["condition"];
        assert_eq!(wait.as_str(), Some("service_healthy"), "{name} waits for the database's healthcheck");
    }
    // The one password in the file is the interpolation; env.example names every variable used.
    assert!(!text.contains(DOT_ENV[0].1));
    let example = std::fs::read_to_string(path("deploy/compose/env.example")).expect("env.example");
    for (var, _) in DOT_ENV {
        assert!(example.contains(&format!("{var}=")), "env.example lacks {var}");
    }
    let ignore = std::fs::read_to_string(path("deploy/compose/.gitignore")).expect(".gitignore");
    assert!(ignore.lines().any(|l| l.trim() == ".env"), ".env must never be committed");
    // Prometheus scrapes both replicas.
    let prometheus = std::fs::read_to_string(path("deploy/compose/prometheus.yml")).expect("prometheus.yml");
    for (name, _, _) in &collectors {
        assert!(prometheus.contains(&format!("{name}:8080")), "compose's Prometheus does not scrape {name}");
    }
}

/// compose's database URL, pointed at `server`'s database `url` (checked against the
/// `postgres` service's user and database first); the password is kept.
fn retarget(compose_url: &str, doc: &Yaml, test_url: &str) -> String {
    let pg = &doc["services"]["postgres"]["environment"];
    let (user, db) = (pg["POSTGRES_USER"].as_str().expect("POSTGRES_USER"), pg["POSTGRES_DB"].as_str().expect("POSTGRES_DB"));
    let rest = compose_url.strip_prefix("postgres://").expect("a postgres:// URL");
    let (credentials, location) = rest.rsplit_once('@').expect("user:password@host");
    let (compose_user, password) = credentials.split_once(':').expect("user:password");
    assert_eq!(compose_user, user, "the collectors log in as the user the postgres service creates");
    assert_eq!(location, format!("postgres:5432/{db}"), "the collectors reach the postgres service's database");
    // The test server trusts loopback: it accepts the password without checking it.
    let test = test_url.strip_prefix("postgres://").expect("test URL");
    let (test_user, test_location) = test.split_once('@').expect("test URL user");
    format!("postgres://{test_user}:{password}@{test_location}")
}

#[tokio::test(flavor = "multi_thread")]
async fn compose_collectors_run_as_processes_on_one_postgres_and_share_data() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let doc = compose();
    let server = TempPostgres::shared().expect("PostgreSQL");
    let database = server.create_database("compose").expect("database");
    let scratch = tempfile::tempdir().expect("tempdir");
    // The published target list, made as the Dockerfile makes it.
    let targets = scratch.path().join("targets.toml");
    let listed = Command::new(bin("vantage-probe").expect("probe")).arg("targets").output().expect("vantage-probe targets");
    assert!(listed.status.success(), "vantage-probe targets failed");
    std::fs::write(&targets, listed.stdout).expect("write targets");

    let mut running = Vec::new();
    for (name, command, mut env) in collector_services(&doc) {
        let url = retarget(&env["VANTAGE_DATABASE_URL"], &doc, &database);
        let data_dir = tempfile::tempdir().expect("data dir");
        assert!(env.contains_key("VANTAGE_LISTEN") && env.contains_key("VANTAGE_DATA_DIR"), "{name}: {env:?}");
        env.insert("VANTAGE_DATABASE_URL".into(), url);
        env.insert("VANTAGE_LISTEN".into(), "127.0.0.1:0".into());
        env.insert("VANTAGE_DATA_DIR".into(), data_dir.path().display().to_string());
        if env.contains_key("VANTAGE_TARGETS") {
            env.insert("VANTAGE_TARGETS".into(), targets.display().to_string());
        }
        let mut cmd = Command::new(bin("vantage-collector").expect("collector"));
        // Only what compose gives the container: none of this shell's VANTAGE_* settings.
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("VANTAGE_")) {
            cmd.env_remove(key);
        }
        cmd.args(&command).envs(&env);
        let collector = Collector::start_command(cmd, data_dir).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        running.push((name, collector));
    }
    assert_eq!(running.len(), 2);

    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");
    for (name, collector) in &running {
        let health = http.get(format!("{}/healthz", collector.url)).send().await.expect("healthz");
        assert_eq!(health.status(), 200, "{name}: /healthz");
    }

    // Posted to the first replica, read from the second.
    let mut m = example::tls_reset(Utc::now() - chrono::Duration::seconds(5));
    m.probe.cc = COUNTRY.to_string();
    let line = m.to_json_line().expect("serialise") + "\n";
    let (first, second) = (&running[0], &running[1]);
    let posted = http
        .post(format!("{}/api/v1/measurements", first.1.url))
        .header("content-type", "application/x-ndjson")
        .body(line)
        .send()
        .await
        .expect("post");
    assert!(posted.status().is_success(), "{}: ingest answered {}", first.0, posted.status());
    let report: serde_json::Value = posted.json().await.expect("report");
    assert_eq!(report["accepted"].as_u64(), Some(1), "{report}");

    // The ingest answer came after the commit, so the row is there for every connection.
    let body = http
        .get(format!("{}/api/v1/measurements?country={COUNTRY}", second.1.url))
        .send()
        .await
        .expect("query")
        .error_for_status()
        .expect("200")
        .text()
        .await
        .expect("body");
    let found: Vec<String> = body
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(found, vec![m.id.to_string()], "{} does not return what {} stored", second.0, first.0);
}
