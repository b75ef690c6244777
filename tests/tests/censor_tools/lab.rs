//! Three namespaces and the censor process, for `censor_tools.rs`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use nix::sched::CloneFlags;

use super::{CENSOR_PROBE_SIDE, CLIENT, SERVER};

/// Prefix of every namespace these tests create (the lab harness uses `vl`).
const PREFIX: &str = "vct";
/// `ip netns add` races with itself while it sets up /run/netns; build one topology at a time.
static CREATING: Mutex<()> = Mutex::new(());

/// Client (A), censor (B) and server (C) namespaces with veth links; deleted on drop.
pub struct Topology {
    pub a: String,
    pub b: String,
    pub c: String,
    /// B's interface towards A (where the censors sniff).
    pub b_to_a: String,
    /// A TUN name free for B.
    pub tun: String,
    created: Vec<String>,
}

impl Topology {
    pub fn create() -> anyhow::Result<Topology> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let _one = CREATING.lock().unwrap_or_else(|e| e.into_inner());
        remove_stale();
        let id = format!("{}x{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let mut t = Topology {
            a: format!("{PREFIX}{id}-a"),
            b: format!("{PREFIX}{id}-b"),
            c: format!("{PREFIX}{id}-c"),
            b_to_a: format!("vcb{id}"),
            tun: format!("vct{id}"),
            created: Vec::new(),
        };
        t.build()
            .with_context(|| format!("building namespaces {} (these tests need root and iproute2; they never skip)", t.a))?;
        Ok(t)
    }

    fn build(&mut self) -> anyhow::Result<()> {
        for ns in [self.a.clone(), self.b.clone(), self.c.clone()] {
            output("ip", &["netns", "add", &ns])?;
            self.created.push(ns.clone());
            sysctl(&ns, "net.ipv6.conf.all.disable_ipv6=1")?;
            ip(&ns, &["link", "set", "lo", "up"])?;
        }
        let (a, b, c) = (self.a.clone(), self.b.clone(), self.c.clone());
        let id = self.b_to_a.trim_start_matches("vcb").to_string();
        let (a_if, bc_if, c_if) = (format!("vca{id}"), format!("vcc{id}"), format!("vcs{id}"));
        ip(&a, &["link", "add", &a_if, "type", "veth", "peer", "name", &self.b_to_a, "netns", &b])?;
        ip(&b, &["link", "add", &bc_if, "type", "veth", "peer", "name", &c_if, "netns", &c])?;
        ip(&a, &["addr", "add", &format!("{CLIENT}/24"), "dev", &a_if])?;
        ip(&b, &["addr", "add", &format!("{CENSOR_PROBE_SIDE}/24"), "dev", &self.b_to_a])?;
        ip(&b, &["addr", "add", "203.0.113.1/24", "dev", &bc_if])?;
        ip(&c, &["addr", "add", &format!("{SERVER}/24"), "dev", &c_if])?;
        ip(&c, &["addr", "add", &format!("{}/24", super::BLACKHOLE), "dev", &c_if])?;
        for (ns, dev) in [(&a, &a_if), (&b, &self.b_to_a), (&b, &bc_if), (&c, &c_if)] {
            ip(ns, &["link", "set", dev, "up"])?;
        }
        ip(&a, &["route", "add", "default", "via", &CENSOR_PROBE_SIDE.to_string()])?;
        ip(&c, &["route", "add", "default", "via", "203.0.113.1"])?;
        sysctl(&b, "net.ipv4.ip_forward=1")?;
        Ok(())
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in self.created.drain(..) {
            let _ = output("ip", &["netns", "del", &ns]);
        }
    }
}

/// Namespaces of earlier runs of these tests whose process is gone (killed mid-test).
fn remove_stale() {
    let Ok(list) = output("ip", &["netns", "list"]) else { return };
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(pid) = name.strip_prefix(PREFIX).and_then(|r| r.split('x').next()) else { continue };
        if pid.parse::<u32>().is_ok() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = output("ip", &["netns", "del", name]);
        }
    }
}

fn ip(ns: &str, args: &[&str]) -> anyhow::Result<String> {
    let mut argv = vec!["-n", ns];
    argv.extend_from_slice(args);
    output("ip", &argv)
}

fn sysctl(ns: &str, setting: &str) -> anyhow::Result<String> {
    output("ip", &["netns", "exec", ns, "sysctl", "-qw", setting])
}

/// Run a command; its stdout, or an error with its stderr.
pub fn output(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program).args(args).output().with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!("`{program} {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Run `f` on a thread inside network namespace `ns`; sockets it opens stay in `ns`.
pub fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> std::io::Result<T> + Send + 'static) -> anyhow::Result<T> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || -> anyhow::Result<T> {
        let file = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
        nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).context("setns")?;
        Ok(f()?)
    })
    .join()
    .map_err(|_| anyhow!("the thread in {ns} panicked"))?
}

/// `vantage-lab-censor` running in a namespace; SIGTERM and wait on drop.
pub struct Censor {
    child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Censor {
    /// Start it and wait for its `ready` line.
    pub fn start(ns: &str, args: &[&str]) -> anyhow::Result<Censor> {
        let bin = vantage_tests::procs::bin("vantage-lab-censor")?;
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = Arc::new(Mutex::new(Vec::new()));
        if let Some(err) = child.stderr.take() {
            let lines = stderr.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    lines.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                }
            });
        }
        let (tx, rx) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        let mut censor = Censor { child, stderr };
        match rx.recv_timeout(Duration::from_secs(15)) {
            Ok(line) if line == "ready" => Ok(censor),
            other => {
                let _ = censor.child.kill();
                std::thread::sleep(Duration::from_millis(100));
                bail!("vantage-lab-censor {args:?} did not get ready ({other:?}); stderr: {:#?}", censor.stderr())
            }
        }
    }

    /// Everything it logged so far.
    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for Censor {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        for _ in 0..50 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
