//! Network namespaces for the tests that need a real network: the censorship lab, the censor
//! tools' tests and the VPN servers' test build their topologies from these pieces.
//!
//! A [`Netns`] is deleted when dropped, so a topology goes away even when a test panics; its
//! name (`<prefix><pid>-<n>-<role>`) is unique per process and call, so topologies are built in
//! parallel, and one left by a killed run is recognised by its dead pid and removed by
//! [`remove_stale`]. Links are created directly between namespaces (`ip -n A link add … peer …
//! netns B`): the host's own namespace never gets an address, a route or an interface.
//!
//! Everything here needs root and fails loudly without it ([`preflight`]): a test that skips
//! proves nothing.

mod process;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, anyhow, bail};
use nix::sched::CloneFlags;

pub use process::{COMMAND_TIMEOUT, Daemon, Stream, run, run_with_stdin};

/// `ip netns add` races with itself when several threads create the first namespaces at once
/// (it sets up the /run/netns mount); creating one namespace at a time is cheap and avoids that.
static CREATING: Mutex<()> = Mutex::new(());

/// Fail with a clear message unless this process is root and every tool (a name on PATH, or an
/// absolute path) is installed. `who` names the caller in the message.
pub fn preflight(who: &str, tools: &[&str]) -> anyhow::Result<()> {
    let status = std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let uid = status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|l| l.split_whitespace().nth(1));
    if uid != Some("0") {
        bail!("{who} creates network namespaces and must run as root (sudo tests/run); refusing to skip");
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let installed = |tool: &str| {
        if tool.starts_with('/') {
            Path::new(tool).is_file()
        } else {
            std::env::split_paths(&path).any(|dir| dir.join(tool).is_file())
        }
    };
    let missing: Vec<&str> = tools.iter().copied().filter(|tool| !installed(tool)).collect();
    if !missing.is_empty() {
        bail!("{who} needs {} installed: run tests/install-deps.sh (as root)", missing.join(", "));
    }
    Ok(())
}

/// A stem no other topology of this or any live process uses: `<prefix><pid>-<n>`.
pub fn unique_stem(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Remove the namespaces named with `prefix` whose process is gone (a killed test, a power cut).
pub fn remove_stale(prefix: &str) -> anyhow::Result<()> {
    for line in run(None, "ip", &["netns", "list"])?.lines() {
        let Some(name) = line.split_whitespace().next() else { continue };
        let Some(pid) = name.strip_prefix(prefix).and_then(|rest| rest.split('-').next()) else { continue };
        let Ok(pid) = pid.parse::<u32>() else { continue };
        if !PathBuf::from(format!("/proc/{pid}")).exists() {
            let _ = run(None, "ip", &["netns", "del", name]);
            let _ = std::fs::remove_dir_all(etc_dir(name));
        }
    }
    Ok(())
}

/// `ip netns exec` mounts the files of /etc/netns/<name>/ over those of /etc.
fn etc_dir(name: &str) -> PathBuf {
    PathBuf::from(format!("/etc/netns/{name}"))
}

/// One network namespace, with its loopback up; deleted (with its /etc/netns files) on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Create `<stem>-<role>` (see [`unique_stem`]).
    pub fn create(stem: &str, role: &str) -> anyhow::Result<Netns> {
        let name = format!("{stem}-{role}");
        {
            let _one_at_a_time = CREATING.lock().unwrap_or_else(|e| e.into_inner());
            run(None, "ip", &["netns", "add", &name])?;
        }
        let ns = Netns { name };
        ns.ip("link set lo up")?;
        Ok(ns)
    }

    /// [`Netns::create`], IPv4 only: no link-local IPv6 addresses, router solicitations or a
    /// second address plan.
    pub fn create_ipv4_only(stem: &str, role: &str) -> anyhow::Result<Netns> {
        let ns = Netns::create(stem, role)?;
        ns.sysctl(&["net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"])?;
        Ok(ns)
    }

    /// [`Netns::create`], dual stack: IPv6 on, but without duplicate address detection (so an
    /// address is usable the moment it is added), router advertisements or autoconfiguration
    /// (every IPv6 address and route is one the topology adds).
    pub fn create_dual_stack(stem: &str, role: &str) -> anyhow::Result<Netns> {
        let ns = Netns::create(stem, role)?;
        let mut settings = Vec::new();
        for scope in ["all", "default"] {
            for (key, value) in [("disable_ipv6", 0), ("accept_dad", 0), ("dad_transmits", 0), ("accept_ra", 0), ("autoconf", 0)]
            {
                settings.push(format!("net.ipv6.conf.{scope}.{key}={value}"));
            }
        }
        ns.sysctl(&settings.iter().map(String::as_str).collect::<Vec<_>>())?;
        Ok(ns)
    }

    /// Its name, for `ip netns exec NAME` and `ip -n NAME`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NS <words>`.
    pub fn ip(&self, command: &str) -> anyhow::Result<()> {
        let mut args = vec!["-n", &self.name];
        args.extend(command.split_whitespace());
        run(None, "ip", &args).map(drop)
    }

    /// Add `address/prefix_len` to `dev`.
    pub fn add_address(&self, dev: &str, address: Ipv4Addr, prefix_len: u8) -> anyhow::Result<()> {
        self.ip(&format!("addr add {address}/{prefix_len} dev {dev}"))
    }

    /// Add the IPv6 `address/prefix_len` to `dev`, usable at once (`nodad`).
    pub fn add_address6(&self, dev: &str, address: Ipv6Addr, prefix_len: u8) -> anyhow::Result<()> {
        self.ip(&format!("-6 addr add {address}/{prefix_len} dev {dev} nodad"))
    }

    /// `sysctl -qw k=v…` inside the namespace.
    pub fn sysctl(&self, settings: &[&str]) -> anyhow::Result<()> {
        let mut args = vec!["-qw"];
        args.extend_from_slice(settings);
        self.run("sysctl", &args).map(drop)
    }

    /// Route IPv4 between its interfaces.
    pub fn enable_forwarding(&self) -> anyhow::Result<()> {
        self.sysctl(&["net.ipv4.ip_forward=1"])
    }

    /// Route IPv6 between its interfaces.
    pub fn enable_forwarding6(&self) -> anyhow::Result<()> {
        self.sysctl(&["net.ipv6.conf.all.forwarding=1"])
    }

    /// Load an nft script (`nft -f -`).
    pub fn nft(&self, script: &str) -> anyhow::Result<()> {
        run_with_stdin(Some(&self.name), "nft", &["-f", "-"], script).map(drop)
    }

    /// Make `text` the /etc/resolv.conf of programs run here, so their system resolver asks the
    /// topology's resolver rather than the host's.
    pub fn set_resolv_conf(&self, text: &str) -> anyhow::Result<()> {
        let dir = etc_dir(&self.name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(dir.join("resolv.conf"), text).with_context(|| format!("writing {}/resolv.conf", dir.display()))
    }

    /// Run `program args` here, require success within [`COMMAND_TIMEOUT`], return its stdout.
    pub fn run(&self, program: &str, args: &[&str]) -> anyhow::Result<String> {
        run(Some(&self.name), program, args)
    }

    /// Start `program args` here with `env` added; see [`Daemon`].
    pub fn spawn<S: AsRef<std::ffi::OsStr>>(
        &self,
        name: &str,
        program: &str,
        args: &[S],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Daemon> {
        Daemon::spawn(name, &self.name, program, args, env)
    }

    /// Run `f` on a thread that has entered this namespace (setns(2)): sockets it opens live
    /// here, and stay here when handed back to the caller.
    pub fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> std::io::Result<T> + Send + 'static) -> anyhow::Result<T> {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || -> anyhow::Result<T> {
            let file = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
            nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).with_context(|| format!("setns into {path}"))?;
            Ok(f()?)
        })
        .join()
        .map_err(|_| anyhow!("the thread in {} panicked", self.name))?
    }
}

impl std::fmt::Display for Netns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(&self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = run(None, "ip", &["netns", "del", &self.name]) {
            eprintln!("could not remove network namespace {}: {e:#}", self.name);
        }
        let _ = std::fs::remove_dir_all(etc_dir(&self.name));
    }
}

/// A veth pair: `a_if` in `a` and `b_if` in `b`, both up.
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> anyhow::Result<()> {
    a.ip(&format!("link add {a_if} type veth peer name {b_if} netns {}", b.name))?;
    a.ip(&format!("link set {a_if} up"))?;
    b.ip(&format!("link set {b_if} up"))
}
