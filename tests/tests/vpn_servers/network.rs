//! The namespaces of the VPN test: probe ⇄ censor ⇄ server (+ echo) ⇄ helper, built with `ip`,
//! torn down on drop, with the processes started in them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Run a command, failing with its stderr.
pub fn run(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(args[0]).args(&args[1..]).output().with_context(|| format!("cannot run {args:?}"))?;
    if !out.status.success() {
        bail!("{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The namespaces of one test run; deleted (with everything in them) on drop.
pub struct Lab {
    prefix: String,
    dir: tempfile::TempDir,
    pub procs: BTreeMap<&'static str, Child>,
}

/// SIGTERM first, so charon removes its global pid file and wireguard-go its UAPI socket;
/// SIGKILL after a second.
fn terminate(child: &mut Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    for _ in 0..20 {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in self.procs.values_mut() {
            terminate(child);
        }
        for ns in ["p", "c", "s", "e", "h"] {
            let _ = Command::new("ip").args(["netns", "del", &self.ns(ns)]).status();
        }
    }
}

impl Lab {
    pub fn ns(&self, which: &str) -> String {
        format!("{}-{which}", self.prefix)
    }

    /// `ip netns exec <ns> args…`.
    pub fn exec(&self, ns: &str, args: &[&str]) -> anyhow::Result<String> {
        let ns = self.ns(ns);
        let mut full = vec!["ip", "netns", "exec", ns.as_str()];
        full.extend_from_slice(args);
        run(&full)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, text: &str) -> anyhow::Result<String> {
        let path = self.path(name);
        std::fs::write(&path, text)?;
        Ok(path.display().to_string())
    }

    /// Start a long-running program in `ns`, its output in `<name>.log`.
    pub fn spawn(&mut self, name: &'static str, ns: &str, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<()> {
        let log = std::fs::File::create(self.path(&format!("{name}.log")))?;
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(ns)])
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        self.procs.insert(name, child);
        Ok(())
    }

    /// Stop one program this test started.
    pub fn stop(&mut self, name: &str) {
        if let Some(mut child) = self.procs.remove(name) {
            terminate(&mut child);
        }
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(&format!("{name}.log"))).unwrap_or_default()
    }

    /// Wait until `ns` has every `(proto, port)` listening.
    pub fn wait_listening(&self, ns: &str, wanted: &[(&str, u16)]) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let udp = self.exec(ns, &["ss", "-Hlnu"])?;
            let tcp = self.exec(ns, &["ss", "-Hlnt"])?;
            let missing: Vec<_> = wanted
                .iter()
                .filter(|(proto, port)| {
                    let table = if *proto == "udp" { &udp } else { &tcp };
                    !table.split_whitespace().any(|w| w.ends_with(&format!(":{port}")))
                })
                .collect();
            if missing.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let logs: Vec<String> = self.procs.keys().map(|n| format!("--- {n}\n{}", self.log(n))).collect();
                bail!("not listening in {ns} after 20 s: {missing:?}\n{}", logs.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Namespaces, links and routes (see the module doc's picture).
pub fn build_network() -> anyhow::Result<Lab> {
    if run(&["id", "-u"])?.trim() != "0" {
        bail!("tests/tests/vpn_servers.rs needs root for network namespaces (CI runs as root)");
    }
    let pid = std::process::id() % 100_000;
    let lab = Lab { prefix: format!("vpnsrv{pid}"), dir: tempfile::tempdir()?, procs: BTreeMap::new() };
    for ns in ["p", "c", "s", "e", "h"] {
        run(&["ip", "netns", "add", &lab.ns(ns)])?;
        lab.exec(ns, &["ip", "link", "set", "lo", "up"])?;
    }
    // (namespace a, iface in a, namespace b, iface in b)
    for (a, ia, b, ib) in [("p", "pc", "c", "cp"), ("c", "cs", "s", "sc"), ("c", "ce", "e", "ec"), ("s", "sh", "h", "hs")] {
        let (ta, tb) = (format!("v{pid}{ia}"), format!("v{pid}{ib}"));
        run(&["ip", "link", "add", &ta, "type", "veth", "peer", "name", &tb])?;
        run(&["ip", "link", "set", &ta, "netns", &lab.ns(a), "name", ia])?;
        run(&["ip", "link", "set", &tb, "netns", &lab.ns(b), "name", ib])?;
        lab.exec(a, &["ip", "link", "set", ia, "up"])?;
        lab.exec(b, &["ip", "link", "set", ib, "up"])?;
    }
    let steps: &[(&str, &[&str])] = &[
        ("p", &["ip", "addr", "add", "198.51.100.2/24", "dev", "pc"]),
        ("p", &["ip", "route", "add", "default", "via", "198.51.100.1"]),
        ("c", &["ip", "addr", "add", "198.51.100.1/24", "dev", "cp"]),
        ("c", &["ip", "addr", "add", "203.0.113.1/32", "dev", "cs"]),
        ("c", &["ip", "addr", "add", "203.0.113.2/32", "dev", "ce"]),
        ("c", &["ip", "route", "add", "203.0.113.40/32", "dev", "cs"]),
        ("c", &["ip", "route", "add", "203.0.113.60/32", "via", "203.0.113.40", "dev", "cs"]),
        ("c", &["ip", "route", "add", "203.0.113.41/32", "dev", "ce"]),
        ("c", &["sysctl", "-qw", "net.ipv4.ip_forward=1"]),
        ("s", &["ip", "addr", "add", "203.0.113.40/32", "dev", "sc"]),
        ("s", &["ip", "route", "add", "203.0.113.1/32", "dev", "sc"]),
        ("s", &["ip", "route", "add", "default", "via", "203.0.113.1", "dev", "sc"]),
        ("s", &["ip", "route", "add", "203.0.113.60/32", "dev", "sh"]),
        ("s", &["sysctl", "-qw", "net.ipv4.ip_forward=1"]),
        ("e", &["ip", "addr", "add", "203.0.113.41/32", "dev", "ec"]),
        ("e", &["ip", "route", "add", "203.0.113.2/32", "dev", "ec"]),
        ("e", &["ip", "route", "add", "default", "via", "203.0.113.2", "dev", "ec"]),
        ("h", &["ip", "addr", "add", "203.0.113.60/32", "dev", "hs"]),
        ("h", &["ip", "route", "add", "203.0.113.40/32", "dev", "hs"]),
        ("h", &["ip", "route", "add", "default", "via", "203.0.113.40", "dev", "hs"]),
    ];
    for (ns, args) in steps {
        lab.exec(ns, args)?;
    }
    Ok(lab)
}
