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
fn compose_mounts_files_that_exist_and_wires_the_services() {
    let compose_dir = path("deploy/compose");
    let mut compose = yaml(&compose_dir.join("compose.yaml"));
    compose.apply_merge().expect("compose.yaml's merge keys");
    let services = compose["services"].as_mapping().expect("services");
    for name in ["postgres", "collector-1", "collector-2", "prometheus", "grafana"] {
        assert!(services.contains_key(name), "compose has no {name} service");
    }
    for name in ["collector-1", "collector-2"] {
        let dockerfile = compose["services"][name]["build"]["dockerfile"].as_str().expect("collector builds from a Dockerfile");
        assert!(repo().join(dockerfile).is_file(), "{dockerfile} is missing");
    }
    for (name, service) in services {
        for volume in service["volumes"].as_sequence().map(Vec::as_slice).unwrap_or_default() {
            let spec = volume.as_str().expect("short volume syntax");
            let host = spec.split(':').next().unwrap_or_default();
            if host.starts_with('.') {
                assert!(compose_dir.join(host).exists(), "{name:?} mounts {host}, which does not exist");
            }
        }
    }
    // Never the lab-only switch that turns the helper into a proxy into private networks.
    // (The collectors' command lines and environment run for real in deploy_compose.rs.)
    let text = std::fs::read_to_string(compose_dir.join("compose.yaml")).expect("compose");
    assert!(
        text.lines().filter(|l| !l.trim_start().starts_with('#')).all(|l| !l.contains("danger")),
        "compose passes a --danger flag"
    );
}

/// Every document of a kustomization's resources, directories (sub-kustomizations) included.
fn kustomize_documents(dir: &Path, out: &mut Vec<(PathBuf, serde_norway::Value)>) {
    let kustomization = yaml(&dir.join("kustomization.yaml"));
    for resource in kustomization["resources"].as_sequence().expect("resources") {
        let p = dir.join(resource.as_str().expect("resource name"));
        if p.is_dir() {
            kustomize_documents(&p, out);
        } else {
            out.extend(yaml_documents(&p).into_iter().map(|d| (p.clone(), d)));
        }
    }
}

/// The env var `name` of a container.
fn env_var<'a>(container: &'a serde_norway::Value, name: &str) -> &'a serde_norway::Value {
    let env = container["env"].as_sequence().map(Vec::as_slice).unwrap_or_default();
    env.iter().find(|e| e["name"].as_str() == Some(name)).unwrap_or_else(|| panic!("no env {name}"))
}

#[test]
fn kubernetes_manifests_agree_with_each_other() {
    let dir = path("deploy/kubernetes");
    let mut docs = Vec::new();
    kustomize_documents(&dir, &mut docs);
    let mut by_kind: std::collections::BTreeMap<String, Vec<serde_norway::Value>> = Default::default();
    for (file, doc) in docs {
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
        let text = std::fs::read_to_string(&file).expect("read");
        assert!(!text.contains("NOT READY") && !text.contains("has not landed"), "{}: a stale not-ready note", file.display());
        by_kind.entry(kind).or_default().push(doc);
    }
    let one = |kind: &str| -> serde_norway::Value {
        let all = by_kind.get(kind).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(all.len(), 1, "one {kind}");
        all[0].clone()
    };
    let deployment = one("Deployment");
    let statefulset = one("StatefulSet");
    let budget = one("PodDisruptionBudget");
    let replicas = deployment["spec"]["replicas"].as_u64().expect("replicas");
    assert!(replicas > 1, "several replicas");

    let pod = &deployment["spec"]["template"];
    let labels = &pod["metadata"]["labels"];
    let app = &labels["app.kubernetes.io/name"];
    let annotations = &pod["metadata"]["annotations"];
    let container = &pod["spec"]["containers"][0];
    let port = container["ports"][0]["containerPort"].as_u64().expect("containerPort");
    assert_eq!(annotations["prometheus.io/scrape"].as_str(), Some("true"));
    assert_eq!(annotations["prometheus.io/port"].as_str(), Some(port.to_string().as_str()));
    assert_eq!(annotations["prometheus.io/path"].as_str(), Some("/metrics"));
    // Ready while the store answers; alive without it (a database outage restarts nothing).
    assert_eq!(container["readinessProbe"]["httpGet"]["path"].as_str(), Some("/healthz"));
    assert!(container["livenessProbe"]["tcpSocket"]["port"].is_string(), "liveness must not depend on the database");
    let security = &container["securityContext"];
    assert_eq!(security["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(security["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(security["capabilities"]["drop"][0].as_str(), Some("ALL"));
    assert_eq!(pod["spec"]["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    assert_eq!(&deployment["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"], app);
    // Voluntary disruptions leave replicas serving.
    assert_eq!(&budget["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"], app);
    let unavailable = budget["spec"]["maxUnavailable"].as_u64().expect("maxUnavailable");
    assert!(unavailable >= 1 && unavailable < replicas, "maxUnavailable {unavailable} of {replicas}");

    // The database: the Secret kustomize generates from database.env (never committed) gives the
    // collectors their URL and PostgreSQL its password.
    let kustomization = yaml(&dir.join("kustomization.yaml"));
    let generator = &kustomization["secretGenerator"][0];
    let secret = generator["name"].as_str().expect("a generated Secret");
    assert_eq!(generator["envs"][0].as_str(), Some("database.env"));
    let ignore = std::fs::read_to_string(dir.join(".gitignore")).expect(".gitignore");
    assert!(ignore.lines().any(|l| l.trim() == "database.env"), "database.env must never be committed");
    let url = &env_var(container, "VANTAGE_DATABASE_URL")["valueFrom"]["secretKeyRef"];
    assert_eq!((url["name"].as_str(), url["key"].as_str()), (Some(secret), Some("url")));
    let pg_pod = &statefulset["spec"]["template"];
    let pg = &pg_pod["spec"]["containers"][0];
    assert!(pg["image"].as_str().is_some_and(|i| i.starts_with("postgres:")), "the official image");
    let password = &env_var(pg, "POSTGRES_PASSWORD")["valueFrom"]["secretKeyRef"];
    assert_eq!((password["name"].as_str(), password["key"].as_str()), (Some(secret), Some("password")));
    let claim = statefulset["spec"]["volumeClaimTemplates"][0]["metadata"]["name"].as_str().expect("a volume claim template");
    let mounts = pg["volumeMounts"].as_sequence().expect("mounts");
    assert!(mounts.iter().any(|m| m["name"].as_str() == Some(claim)), "the claim is mounted");
    assert!(serde_norway::to_string(&pg["readinessProbe"]).expect("probe").contains("pg_isready"));
    // The example URL names the StatefulSet's Service, user and database.
    let example = std::fs::read_to_string(dir.join("database.env.example")).expect("database.env.example");
    let example_url = example.lines().find_map(|l| l.strip_prefix("url=")).expect("url= in database.env.example");
    let (user, db) = (env_var(pg, "POSTGRES_USER")["value"].as_str(), env_var(pg, "POSTGRES_DB")["value"].as_str());
    let service = statefulset["spec"]["serviceName"].as_str().expect("serviceName");
    assert_eq!(example_url, format!("postgres://{}:PASSWORD@{service}:5432/{}", user.expect("user"), db.expect("db")));

    // Services: the StatefulSet's headless one, and the collectors' two, on the named ports.
    let services = by_kind.get("Service").expect("Services");
    let pg_service =
        services.iter().find(|s| s["metadata"]["name"].as_str() == Some(service)).expect("the StatefulSet's Service");
    assert_eq!(pg_service["spec"]["clusterIP"].as_str(), Some("None"));
    assert_eq!(
        &pg_service["spec"]["selector"]["app.kubernetes.io/name"],
        &pg_pod["metadata"]["labels"]["app.kubernetes.io/name"]
    );
    assert_eq!(pg_service["spec"]["ports"][0]["targetPort"].as_str(), pg["ports"][0]["name"].as_str());
    let port_name = container["ports"][0]["name"].as_str().expect("named port");
    let collector_services: Vec<_> =
        services.iter().filter(|s| &s["spec"]["selector"]["app.kubernetes.io/name"] == app).collect();
    assert!(collector_services.len() >= 2, "a Service for clients and a headless one for scraping");
    for service in &collector_services {
        assert_eq!(service["spec"]["ports"][0]["targetPort"].as_str(), Some(port_name));
    }
    // Prometheus discovers the collectors' headless Service by its cluster DNS name.
    let headless =
        collector_services.iter().find(|s| s["spec"]["clusterIP"].as_str() == Some("None")).expect("a headless Service");
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
