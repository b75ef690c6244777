//! The probe as a volunteer installs it: the statically linked release build
//! (deploy/build-static.sh) resolves names with glibc's NSS out of reach, and its .deb installs a
//! system user, its directories and units that `systemd-analyze verify` accepts, runs the
//! installed unit's command line as that user against a collector, and purges clean.
//!
//! Needs root (dpkg, mount namespaces, runuser), cargo-deb and strace (tests/install-deps.sh).
//! The release build is made once for both tests and takes minutes the first time.

// The collector's own tests' MaxMind DB writer: the joined network's collector locates the probe.
#[path = "../../collector/tests/api/mmdb.rs"]
mod mmdb;
mod operators;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use operators::{path, repo, require_tool, run, run_ok};
use serde_json::Value;
use vantage_tests::procs::Collector;

const TRIPLE: &str = "x86_64-unknown-linux-gnu";
const USER: &str = "vantage-probe";
const STATE_DIR: &str = "/var/lib/vantage-probe";
const CONFIG_DIR: &str = "/etc/vantage";
const UNIT_DIR: &str = "/usr/lib/systemd/system";
const UNITS: [&str; 3] = ["vantage-probe.service", "vantage-probe.timer", "vantage-probe-daemon.service"];

/// The static release build, made once per test binary.
fn static_probe() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let started = Instant::now();
        let out = run(&mut Command::new(path("deploy/build-static.sh")), Duration::from_secs(3600));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "deploy/build-static.sh failed:\n{stderr}");
        eprintln!("static release build and check: {:.0?}", started.elapsed());
        let stdout = String::from_utf8_lossy(&out.stdout);
        let binary = PathBuf::from(stdout.lines().last().unwrap_or_default());
        assert!(binary.is_file(), "deploy/build-static.sh printed no binary path:\n{stdout}\n{stderr}");
        binary
    })
}

fn require_root() {
    let uid = run_ok(Command::new("id").arg("-u"), Duration::from_secs(10));
    assert_eq!(uid.trim(), "0", "this test installs a package and mounts in a namespace: run it as root (CI does)");
}

/// The collector's port, from its base URL (`http://127.0.0.1:PORT`).
fn port_of(collector: &Collector) -> u16 {
    collector.url.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("no port in {}", collector.url))
}

/// What the collector stored, one JSON measurement per line.
fn stored(collector: &Collector) -> Vec<Value> {
    let body = run_ok(
        Command::new(require_tool("curl")).args(["-fsS", &format!("{}/api/v1/measurements", collector.url)]),
        Duration::from_secs(30),
    );
    body.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("stored line {l:?}: {e}"))).collect()
}

/// The addresses the system resolver's DNS step of a measurement answered.
fn system_answers(m: &Value) -> Vec<String> {
    let observations = m["observations"].as_array().map(Vec::as_slice).unwrap_or_default();
    observations
        .iter()
        .filter(|o| o["detail"]["kind"] == "dns" && o["detail"]["engine"] == "system")
        .flat_map(|o| o["detail"]["replies"].as_array().into_iter().flatten())
        .flat_map(|r| r["answers"].as_array().into_iter().flatten())
        .filter_map(|a| a["ip"].as_str().map(str::to_string))
        .collect()
}

/// A mount namespace in which this machine's name service is replaced: /etc/hosts knows only
/// `collector.vantage.test`, /etc/nsswitch.conf is empty and /etc/resolv.conf names a loopback
/// server that does not exist (nothing leaves the machine). With `hide_libraries`, the system's
/// shared libraries are hidden too (libc, the dynamic loader and every libnss_* module): only a
/// static binary that loads nothing can run. Returns the command, ready for the program to run.
fn without_nss(dir: &Path, hide_libraries: bool) -> Command {
    std::fs::write(dir.join("hosts"), "127.0.0.1 collector.vantage.test\n").expect("hosts");
    std::fs::write(dir.join("nsswitch.conf"), "").expect("nsswitch.conf");
    std::fs::write(dir.join("resolv.conf"), "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n").expect("resolv.conf");
    let hide = if hide_libraries { "mount -t tmpfs -o ro,size=64k no-libraries /usr/lib/x86_64-linux-gnu\n" } else { "" };
    let script = format!(
        "set -e\nfor f in hosts nsswitch.conf resolv.conf; do mount --bind \"$0/$f\" \"/etc/$f\"; done\n{hide}exec \"$@\""
    );
    let mut cmd = Command::new(require_tool("unshare"));
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", &script]).arg(dir);
    cmd
}

#[test]
fn the_static_probe_resolves_names_without_glibc_nss() {
    require_root();
    let probe = static_probe();
    let collector = Collector::start(&[]).expect("collector");
    let port = port_of(&collector);
    let dir = tempfile::tempdir().expect("tempdir");
    let targets = dir.path().join("targets.toml");
    // The DNS test asks the system resolver for the name; the TCP test connects to the collector.
    std::fs::write(
        &targets,
        format!(
            "[[target]]\nname = \"collector\"\ndomain = \"collector.vantage.test\"\naddress = \"127.0.0.1\"\nport = {port}\ntests = [\"dns\", \"tcp\"]\n"
        ),
    )
    .expect("targets");
    let args = |data: &str| -> Vec<String> {
        let flags = ["--no-helper", "--doh", "off", "--resolver", "off", "--timeout", "5", "--json"];
        let mut args: Vec<String> = ["run", "--targets"].map(String::from).into();
        args.push(targets.display().to_string());
        args.extend(["--collector".to_string(), format!("http://collector.vantage.test:{port}")]);
        // A name, resolved through /etc/hosts to loopback: the transport rule can't know that.
        args.push("--danger-plaintext-collector".to_string());
        args.extend(["--data-dir".to_string(), dir.path().join(data).display().to_string()]);
        args.extend(flags.map(String::from));
        args
    };

    // 1. Under strace: every file the probe (all its threads) opens.
    let trace = dir.path().join("openat.trace");
    let out = run(
        without_nss(dir.path(), false)
            .arg(require_tool("strace"))
            .args(["-f", "-qq", "-e", "trace=open,openat", "-o"])
            .arg(&trace)
            .arg(probe)
            .args(args("traced")),
        Duration::from_secs(120),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "static probe under strace failed:\n{stderr}");
    assert!(stderr.lines().any(|l| l == "collector: 2 stored, 0 already there, 0 refused"), "upload by name:\n{stderr}");
    let measurements: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("NDJSON line")).collect();
    let dns = measurements.iter().find(|m| m["test"] == "dns").expect("a dns measurement");
    assert_eq!(system_answers(dns), ["127.0.0.1"], "the system resolver answered from /etc/hosts: {dns:#}");
    // Every path the probe tried to open, found or not: even a look for nsswitch.conf is NSS.
    let opened: Vec<String> =
        std::fs::read_to_string(&trace).expect("trace").lines().filter_map(|l| l.split('"').nth(1).map(str::to_string)).collect();
    for nss in ["/etc/nsswitch.conf", "/etc/host.conf", "/etc/gai.conf"] {
        assert!(!opened.iter().any(|p| p == nss), "glibc's resolver opened {nss}: {opened:#?}");
    }
    assert!(!opened.iter().any(|p| p.contains("libnss_")), "an NSS module was opened: {opened:#?}");
    for read_by_hickory in ["/etc/hosts", "/etc/resolv.conf"] {
        assert!(opened.iter().any(|p| p == read_by_hickory), "{read_by_hickory} was not read (strace saw nothing?): {opened:#?}");
    }

    // 2. With every shared library hidden: nothing to load, and it still resolves and uploads.
    let out = run(without_nss(dir.path(), true).arg(probe).args(args("hidden")), Duration::from_secs(120));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "static probe without libraries failed:\n{stderr}");
    assert!(stderr.lines().any(|l| l == "collector: 2 stored, 0 already there, 0 refused"), "upload by name:\n{stderr}");
    // Control: in that namespace a dynamic program cannot even start.
    let dynamic = run(without_nss(dir.path(), true).arg("/usr/bin/true"), Duration::from_secs(30));
    assert!(!dynamic.status.success(), "the libraries were not hidden: /usr/bin/true ran");

    let all = stored(&collector);
    assert_eq!(all.len(), 4, "two runs of a dns and a tcp measurement");
}

/// A network to join: a collector serving a signed list of one loopback target (the first
/// collector's port), the invitation from the operator's own commands; then `join` as root and the
/// daemon unit's command as the package's user, until its first cycle reaches the collector.
fn joined_daemon_measures_the_signed_list(target: &Collector, uid: u32) {
    let operator = tempfile::tempdir().expect("tempdir");
    let collector_bin = vantage_tests::procs::bin("vantage-collector").expect("collector binary");
    let key = operator.path().join("list.key");
    run_ok(Command::new(&collector_bin).args(["list-key", "new", "--out"]).arg(&key), Duration::from_secs(30));
    let list = operator.path().join("list.toml");
    std::fs::write(
        &list,
        format!(
            "[list]\nversion = 1\nexpires_days = 7\ninterval_secs = 60\n\n[[target]]\nname = \"collector-port\"\n\
             domain = \"collector.vantage.test\"\naddress = \"127.0.0.1\"\nport = {}\ntests = [\"tcp\"]\n",
            port_of(target)
        ),
    )
    .expect("list.toml");
    let signed = operator.path().join("signed.json");
    run_ok(
        Command::new(&collector_bin).args(["list", "sign", "--key"]).arg(&key).arg("--list").arg(&list).arg("--out").arg(&signed),
        Duration::from_secs(30),
    );
    // GeoIP databases that place loopback, where this probe uploads from, in DE / AS64500.
    let (country, asn) = (operator.path().join("country.mmdb"), operator.path().join("asn.mmdb"));
    let mut db = mmdb::Writer::new("GeoLite2-Country");
    db.insert(std::net::Ipv4Addr::new(127, 0, 0, 0), 8, &mmdb::country("DE"));
    std::fs::write(&country, db.to_bytes()).expect("country db");
    let mut db = mmdb::Writer::new("GeoLite2-ASN");
    db.insert(std::net::Ipv4Addr::new(127, 0, 0, 0), 8, &mmdb::asn(64500, "Loopback Networks"));
    std::fs::write(&asn, db.to_bytes()).expect("asn db");
    let network = Collector::start(&[
        "--signed-list",
        &signed.display().to_string(),
        "--geoip-country",
        &country.display().to_string(),
        "--geoip-asn",
        &asn.display().to_string(),
    ])
    .expect("collector with a list");
    let invitation = run_ok(
        Command::new(&collector_bin).args(["invite", "--key"]).arg(&key).args(["--collector", &network.url]),
        Duration::from_secs(30),
    );
    let invitation = invitation.lines().find(|l| l.contains("/join#")).unwrap_or_else(|| panic!("no invitation in {invitation}"));

    // `sudo vantage-probe join …`: the config goes to /etc/vantage, given to the probe's user.
    let joined = run_ok(
        Command::new("/usr/bin/vantage-probe").args(["join", invitation, "--accept-risks"]).env_remove("VANTAGE_CONFIG"),
        Duration::from_secs(60),
    );
    assert!(
        joined.lines().any(|l| l.starts_with("List: version 1, signed by list-key:")),
        "join's summary names the list version:\n{joined}"
    );
    let config = std::fs::metadata(Path::new(CONFIG_DIR).join("probe.toml")).expect("join wrote /etc/vantage/probe.toml");
    assert_eq!((config.uid(), config.mode() & 0o777), (uid, 0o600), "the config is the probe user's alone");

    let unit = UnitCommand::from_unit(&Path::new(UNIT_DIR).join("vantage-probe-daemon.service"));
    assert_eq!(unit.user, USER, "the daemon runs as the package's user");
    let mut daemon = unit.spawn(&[("VANTAGE_DOH", "off"), ("VANTAGE_RESOLVER", "off")]);
    // The target's slot falls somewhere in the list's 60-second interval; a first batch is
    // uploaded as soon as it is measured.
    let deadline = Instant::now() + Duration::from_secs(150);
    while stored(&network).is_empty() && Instant::now() < deadline && daemon.try_wait().ok().flatten().is_none() {
        std::thread::sleep(Duration::from_millis(500));
    }
    let _ = Command::new("kill").args(["-TERM", &daemon.id().to_string()]).status();
    let status = daemon.wait().expect("wait for the daemon");
    let mut log = String::new();
    if let Some(mut stderr) = daemon.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut stderr, &mut log);
    }
    assert!(status.success(), "the daemon stops cleanly on SIGTERM: {status}\n{log}");
    let all = stored(&network);
    assert!(!all.is_empty(), "the daemon's first cycle reached the collector within 150 s:\n{log}");
    assert!(all.iter().all(|m| m["target"]["name"] == "collector-port" && m["test"] == "tcp"), "{all:#?}");
    // The collector located the probe from the address it uploaded from, and kept only that.
    assert!(all.iter().all(|m| m["collector_observed"] == serde_json::json!({"cc": "DE", "asn": 64500})), "{all:#?}");

    let status = run(
        Command::new("/usr/bin/vantage-probe").args(["status", "--config", "/etc/vantage/probe.toml", "--json"]),
        Duration::from_secs(30),
    );
    let status = String::from_utf8_lossy(&status.stdout);
    let status: Value = serde_json::from_str(&status).unwrap_or_else(|e| panic!("status --json: {e}\n{status}"));
    assert_eq!(status["list_version"], 1, "{status:#}");
    assert_eq!(status["running"], false, "{status:#}");
}

/// What systemd would run for a service, as far as this test needs it: ExecStart's words, the
/// user, and the environment of Environment= then EnvironmentFile= (the later wins).
#[derive(Debug)]
struct UnitCommand {
    argv: Vec<String>,
    user: String,
    env: Vec<(String, String)>,
}

impl UnitCommand {
    fn from_unit(unit: &Path) -> UnitCommand {
        let text = std::fs::read_to_string(unit).unwrap_or_else(|e| panic!("{}: {e}", unit.display()));
        let mut cmd = UnitCommand { argv: Vec::new(), user: String::new(), env: Vec::new() };
        let mut env_files = Vec::new();
        for line in text.lines().map(str::trim).filter(|l| !l.starts_with('#')) {
            let Some((key, value)) = line.split_once('=') else { continue };
            match key {
                "ExecStart" => cmd.argv = value.split_whitespace().map(String::from).collect(),
                "User" => cmd.user = value.to_string(),
                "Environment" => cmd.env.extend(assignment(value)),
                "EnvironmentFile" => env_files.push(value.to_string()),
                _ => {}
            }
        }
        for file in env_files {
            // A leading `-`: a missing file is no error.
            let (optional, file) = file.strip_prefix('-').map_or((false, file.as_str()), |f| (true, f));
            match std::fs::read_to_string(file) {
                Ok(text) => cmd.env.extend(text.lines().filter(|l| !l.trim_start().starts_with('#')).filter_map(assignment)),
                Err(e) => assert!(optional, "{}: EnvironmentFile {file}: {e}", unit.display()),
            }
        }
        assert!(!cmd.argv.is_empty() && !cmd.user.is_empty(), "{}: no ExecStart or User: {cmd:?}", unit.display());
        cmd
    }

    /// Start it as its user, with only the unit's environment plus `extra`, from `/`; its stderr
    /// is kept for the failure message.
    fn spawn(&self, extra: &[(&str, &str)]) -> std::process::Child {
        // setpriv execs (runuser stays the parent and dies of the SIGTERM meant for the daemon),
        // so the signal and the exit status are the daemon's own, as under systemd.
        let mut command = Command::new(require_tool("setpriv"));
        command.args(["--reuid", &self.user, "--regid", &self.user, "--init-groups", "--", "env", "-i"]);
        command.args(self.env.iter().map(|(k, v)| format!("{k}={v}"))).args(extra.iter().map(|(k, v)| format!("{k}={v}")));
        command.args(&self.argv).current_dir("/").stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
        command.spawn().unwrap_or_else(|e| panic!("{:?}: {e}", self.argv))
    }

    /// Run it as its user, with only the unit's environment, from `/` (as systemd does).
    fn run(&self) -> std::process::Output {
        let mut command = Command::new(require_tool("runuser"));
        command.args(["-u", &self.user, "--", "env", "-i"]);
        command.args(self.env.iter().map(|(k, v)| format!("{k}={v}"))).args(&self.argv).current_dir("/");
        run(&mut command, Duration::from_secs(120))
    }
}

fn assignment(text: &str) -> Option<(String, String)> {
    let (key, value) = text.trim().split_once('=')?;
    Some((key.to_string(), value.trim_matches('"').to_string()))
}

/// `getent DATABASE NAME`'s fields, or `None` when there is no such entry.
fn getent(database: &str, name: &str) -> Option<Vec<String>> {
    let out = run(Command::new("getent").args([database, name]), Duration::from_secs(10));
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().split(':').map(String::from).collect())
}

/// Purges the package when the test ends, passed or not, so a failure leaves no user behind.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "vantage-probe"]).output();
    }
}

#[test]
fn the_deb_installs_runs_its_unit_as_its_user_and_purges_clean() {
    require_root();
    let probe = static_probe();
    let dpkg = require_tool("dpkg");
    // A leftover from an interrupted run would hide what this install does.
    run_ok(Command::new(&dpkg).args(["--purge", "vantage-probe"]), Duration::from_secs(120));
    let config_dir_existed = Path::new(CONFIG_DIR).exists();

    let out_dir = tempfile::tempdir().expect("tempdir");
    let deb = out_dir.path().join("vantage-probe.deb");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    run_ok(
        Command::new(cargo)
            .args(["deb", "--no-build", "--target", TRIPLE, "-p", "vantage-probe", "--output"])
            .arg(&deb)
            .current_dir(repo()),
        Duration::from_secs(300),
    );
    let _installed = Installed;
    run_ok(Command::new(&dpkg).arg("--install").arg(&deb), Duration::from_secs(120));

    // The system user, its state directory and the config directory.
    let user = getent("passwd", USER).expect("the package made its user");
    let uid: u32 = user[2].parse().expect("uid");
    let gid: u32 = user[3].parse().expect("gid");
    assert!(uid < 1000, "a system user: uid {uid}");
    assert_eq!((user[5].as_str(), user[6].as_str()), (STATE_DIR, "/usr/sbin/nologin"), "home and shell: {user:?}");
    assert_eq!(getent("group", USER).expect("its group")[2], gid.to_string());
    let state = std::fs::metadata(STATE_DIR).expect("state dir");
    assert_eq!((state.uid(), state.gid(), state.mode() & 0o7777), (uid, gid, 0o700), "{STATE_DIR}: owner and mode");
    let config = std::fs::metadata(CONFIG_DIR).expect("config dir");
    assert_eq!((config.uid(), config.gid(), config.mode() & 0o7777), (uid, gid, 0o700), "{CONFIG_DIR}: owner and mode");
    let installed = std::fs::read("/usr/bin/vantage-probe").expect("installed binary");
    assert!(installed == std::fs::read(probe).expect("static build"), "the package carries the static build");

    // The units, checked by systemd's own offline verifier.
    let units: Vec<PathBuf> = UNITS.iter().map(|u| Path::new(UNIT_DIR).join(u)).collect();
    let out = run(Command::new(require_tool("systemd-analyze")).arg("verify").args(&units), Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify failed:\n{stderr}");
    assert!(!stderr.contains("vantage-probe"), "systemd-analyze verify warns about the units:\n{stderr}");

    // What a volunteer on the timer puts in /etc/vantage (deploy/systemd/vantage-probe.service):
    // here a loopback collector and one loopback target, so nothing leaves this machine.
    let collector = Collector::start(&[]).expect("collector");
    let targets = Path::new(CONFIG_DIR).join("bench-targets.toml");
    std::fs::write(
        &targets,
        format!(
            "[[target]]\nname = \"collector-port\"\ndomain = \"collector.vantage.test\"\naddress = \"127.0.0.1\"\nport = {}\ntests = [\"tcp\"]\n",
            port_of(&collector)
        ),
    )
    .expect("targets");
    std::os::unix::fs::chown(&targets, Some(0), Some(gid)).expect("chown targets");
    std::fs::set_permissions(&targets, std::os::unix::fs::PermissionsExt::from_mode(0o640)).expect("chmod targets");
    std::fs::write(
        Path::new(CONFIG_DIR).join("probe.env"),
        format!(
            "VANTAGE_COLLECTOR={}\nVANTAGE_TARGETS={}\nVANTAGE_DOH=off\nVANTAGE_RESOLVER=off\nVANTAGE_CC=DE\n",
            collector.url,
            targets.display()
        ),
    )
    .expect("probe.env");

    // The timer's unit: one `run` per start, twice.
    let unit = UnitCommand::from_unit(&Path::new(UNIT_DIR).join("vantage-probe.service"));
    assert_eq!(unit.user, USER, "the unit runs as the package's user");
    for cycle in 1..=2 {
        let out = unit.run();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "cycle {cycle}: {:?} failed:\n{stdout}\n{}",
            unit.argv,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.lines().any(|l| l == "collector: 1 stored, 0 already there, 0 refused"), "cycle {cycle}:\n{stdout}");
    }
    let all = stored(&collector);
    assert_eq!(all.len(), 2, "one measurement per cycle");
    assert!(all.iter().all(|m| m["target"]["name"] == "collector-port" && m["test"] == "tcp"), "{all:#?}");
    // The probe's key and spool live in the package's state directory, owned by its user.
    for kept in ["probe.key", "spool"] {
        let meta = std::fs::metadata(Path::new(STATE_DIR).join(kept)).unwrap_or_else(|e| panic!("{STATE_DIR}/{kept}: {e}"));
        assert_eq!(meta.uid(), uid, "{STATE_DIR}/{kept} belongs to {USER}");
    }
    std::fs::remove_file(Path::new(CONFIG_DIR).join("probe.env")).expect("remove probe.env");

    // The daemon's unit, as a volunteer who joined a network runs it.
    joined_daemon_measures_the_signed_list(&collector, uid);

    std::fs::remove_file(&targets).expect("remove the test's targets file");
    run_ok(Command::new(&dpkg).args(["--purge", "vantage-probe"]), Duration::from_secs(120));
    assert_eq!(getent("passwd", USER), None, "the user is gone");
    assert_eq!(getent("group", USER), None, "the group is gone");
    let mut gone: Vec<PathBuf> = units;
    gone.extend(["/usr/bin/vantage-probe", STATE_DIR].map(PathBuf::from));
    if !config_dir_existed {
        gone.push(PathBuf::from(CONFIG_DIR));
    }
    for p in &gone {
        assert!(!p.exists(), "{} is left after purge", p.display());
    }
    let status =
        run(Command::new("dpkg-query").args(["-W", "-f", "${db:Status-Status}", "vantage-probe"]), Duration::from_secs(10));
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.is_empty() || status == "not-installed", "dpkg still knows the package: {status}");
}
