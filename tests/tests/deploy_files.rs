//! The deploy files parse and hang together: every YAML file under deploy/ is valid YAML, the
//! compose file mounts files that exist, the Kubernetes manifests agree with each other, and the
//! systemd units pass `systemd-analyze verify` and a hardening score.

mod operators;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use operators::{path, repo, require_tool, run, run_ok, yaml, yaml_documents};
use vantage_tests::procs::bin;

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let p = entry.expect("entry").path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "yml" || e == "yaml") {
            out.push(p);
        }
    }
}

#[test]
fn every_yaml_file_under_deploy_parses() {
    let mut all = Vec::new();
    yaml_files(&path("deploy"), &mut all);
    assert!(all.len() >= 15, "expected the Prometheus, Grafana, compose and Kubernetes files: {all:?}");
    for p in &all {
        let docs = yaml_documents(p);
        assert!(!docs.is_empty(), "{}: no YAML document", p.display());
        assert!(docs.iter().all(|d| d.is_mapping()), "{}: every document is a mapping", p.display());
    }
}

#[test]
fn compose_mounts_files_that_exist_and_wires_the_three_services() {
    let compose_dir = path("deploy/compose");
    let compose = yaml(&compose_dir.join("compose.yaml"));
    let services = compose["services"].as_mapping().expect("services");
    for name in ["collector", "prometheus", "grafana"] {
        assert!(services.contains_key(name), "compose has no {name} service");
    }
    let dockerfile =
        compose["services"]["collector"]["build"]["dockerfile"].as_str().expect("collector builds from a Dockerfile");
    assert!(repo().join(dockerfile).is_file(), "{dockerfile} is missing");
    for (name, service) in services {
        for volume in service["volumes"].as_sequence().map(Vec::as_slice).unwrap_or_default() {
            let spec = volume.as_str().expect("short volume syntax");
            let host = spec.split(':').next().unwrap_or_default();
            if host.starts_with('.') {
                assert!(compose_dir.join(host).exists(), "{name:?} mounts {host}, which does not exist");
            }
        }
    }
    // The Prometheus inside compose scrapes the collector service by name.
    let prometheus = std::fs::read_to_string(compose_dir.join("prometheus.yml")).expect("compose prometheus.yml");
    assert!(prometheus.contains("collector:8080"));
    // Never the lab-only switch that turns the helper into a proxy into private networks.
    let text = std::fs::read_to_string(compose_dir.join("compose.yaml")).expect("compose");
    assert!(
        text.lines().filter(|l| !l.trim_start().starts_with('#')).all(|l| !l.contains("danger")),
        "compose passes a --danger flag"
    );
}

#[test]
fn kubernetes_manifests_agree_with_each_other() {
    let dir = path("deploy/kubernetes");
    let kustomization = yaml(&dir.join("kustomization.yaml"));
    let mut deployment = None;
    let mut services = Vec::new();
    for resource in kustomization["resources"].as_sequence().expect("resources") {
        let file = dir.join(resource.as_str().expect("resource name"));
        for doc in yaml_documents(&file) {
            let kind = doc["kind"].as_str().unwrap_or_else(|| panic!("{}: a document without kind", file.display())).to_string();
            assert!(doc["apiVersion"].is_string(), "{}: {kind} without apiVersion", file.display());
            assert!(doc["metadata"]["name"].is_string(), "{}: {kind} without a name", file.display());
            if kind != "Namespace" {
                assert_eq!(
                    doc["metadata"]["namespace"].as_str(),
                    Some("vantage"),
                    "{}: {kind} outside the namespace",
                    file.display()
                );
            }
            match kind.as_str() {
                "Deployment" => deployment = Some(doc),
                "Service" => services.push(doc),
                _ => {}
            }
        }
    }
    let deployment = deployment.expect("a collector Deployment");
    assert!(deployment["spec"]["replicas"].as_u64().is_some_and(|r| r > 1), "several replicas");
    let text = std::fs::read_to_string(dir.join("collector-deployment.yaml")).expect("read");
    assert!(text.contains("PostgreSQL"), "the Deployment must say it needs the PostgreSQL store");

    let pod = &deployment["spec"]["template"];
    let labels = &pod["metadata"]["labels"];
    let annotations = &pod["metadata"]["annotations"];
    let container = &pod["spec"]["containers"][0];
    let port = container["ports"][0]["containerPort"].as_u64().expect("containerPort");
    assert_eq!(annotations["prometheus.io/scrape"].as_str(), Some("true"));
    assert_eq!(annotations["prometheus.io/port"].as_str(), Some(port.to_string().as_str()));
    assert_eq!(annotations["prometheus.io/path"].as_str(), Some("/metrics"));
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(container[probe]["httpGet"]["path"].as_str(), Some("/healthz"), "{probe}");
    }
    let security = &container["securityContext"];
    assert_eq!(security["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(security["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(security["capabilities"]["drop"][0].as_str(), Some("ALL"));
    assert_eq!(pod["spec"]["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    // The selector selects the pods, and every Service reaches them on the named port.
    assert_eq!(&deployment["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"], &labels["app.kubernetes.io/name"]);
    let port_name = container["ports"][0]["name"].as_str().expect("named port");
    assert!(services.len() >= 2, "a Service for clients and a headless one for scraping");
    for service in &services {
        assert_eq!(&service["spec"]["selector"]["app.kubernetes.io/name"], &labels["app.kubernetes.io/name"]);
        assert_eq!(service["spec"]["ports"][0]["targetPort"].as_str(), Some(port_name));
    }
    // Prometheus discovers the headless Service by its cluster DNS name.
    let headless = services.iter().find(|s| s["spec"]["clusterIP"].as_str() == Some("None")).expect("a headless Service");
    let name = headless["metadata"]["name"].as_str().expect("name");
    let config = std::fs::read_to_string(dir.join("prometheus-config.yaml")).expect("read");
    assert!(config.contains(&format!("{name}.vantage.svc.cluster.local")), "prometheus-config.yaml does not discover {name}");
}

/// The units with ExecStart pointed at the binaries this build made, so `verify` can check
/// that the command exists and is executable (it would fail on /usr/bin and /usr/local/bin here;
/// tests/tests/package.rs verifies the probe's units as the .deb installs them).
fn units_with_built_binaries() -> (tempfile::TempDir, Vec<PathBuf>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut units = Vec::new();
    for name in ["vantage-probe.service", "vantage-probe.timer", "vantage-probe-daemon.service", "vantage-collector.service"] {
        let text = std::fs::read_to_string(path(&format!("deploy/systemd/{name}"))).expect("read unit");
        let mut rewritten = text.clone();
        for binary in ["vantage-probe", "vantage-collector"] {
            let built = bin(binary).expect("built binary").display().to_string();
            for dir in ["/usr/local/bin", "/usr/bin"] {
                rewritten = rewritten.replace(&format!("{dir}/{binary}"), &built);
            }
        }
        let p = dir.path().join(name);
        std::fs::write(&p, rewritten).expect("write unit");
        units.push(p);
    }
    (dir, units)
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    let analyze = require_tool("systemd-analyze");
    let (_dir, units) = units_with_built_binaries();
    let out = run(Command::new(&analyze).arg("verify").args(&units), Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify failed:\n{stderr}");
    // verify exits 0 on some warnings (unknown directives, bad values); none may mention our units.
    for unit in ["vantage-probe", "vantage-collector"] {
        assert!(!stderr.contains(unit), "systemd-analyze verify warns about {unit}:\n{stderr}");
    }
}

#[test]
fn systemd_services_are_hardened() {
    let analyze = require_tool("systemd-analyze");
    let (_dir, units) = units_with_built_binaries();
    for unit in units.iter().filter(|u| u.extension().is_some_and(|e| e == "service")) {
        let text = std::fs::read_to_string(unit).expect("read");
        for directive in [
            "DynamicUser=yes",
            "StateDirectory=",
            "ProtectSystem=strict",
            "ProtectHome=yes",
            "NoNewPrivileges=yes",
            "PrivateTmp=yes",
            "RestrictAddressFamilies=AF_INET AF_INET6",
            "SystemCallFilter=@system-service",
        ] {
            assert!(text.contains(directive), "{}: no {directive}", unit.display());
        }
        // An empty bounding set: no capabilities at all.
        assert!(text.lines().any(|l| l.trim() == "CapabilityBoundingSet="), "{}: capabilities not emptied", unit.display());
        // systemd's own scoring, offline: 0 is a locked box, 10 fully exposed; "OK" ends at 4.9.
        let out =
            run_ok(Command::new(&analyze).args(["security", "--offline=yes", "--no-pager"]).arg(unit), Duration::from_secs(60));
        let score: f64 = out
            .lines()
            .find_map(|l| l.split("Overall exposure level for ").nth(1))
            .and_then(|rest| rest.split(": ").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no exposure level in:\n{out}"));
        assert!(score <= 2.0, "{}: exposure {score}, expected ≤ 2.0:\n{out}", unit.display());
    }
    let probe = std::fs::read_to_string(path("deploy/systemd/vantage-probe.service")).expect("read");
    assert!(probe.contains("Type=oneshot"), "the probe runs once per timer tick");
    let timer = std::fs::read_to_string(path("deploy/systemd/vantage-probe.timer")).expect("read");
    for directive in ["OnCalendar=", "RandomizedDelaySec=", "Persistent=true", "WantedBy=timers.target"] {
        assert!(timer.contains(directive), "vantage-probe.timer: no {directive}");
    }
}
