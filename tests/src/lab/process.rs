//! Programs run inside a namespace: short commands that must succeed, and daemons whose output
//! is kept (for the privacy search and for failure reports) and that die with their handle.
//!
//! `ip netns exec` switches namespace and then `exec`s the program, so the child's pid is the
//! program's own and killing it needs no process-group tricks.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The longest a setup command (`ip`, `nft`, `tc`, …) may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

/// Run `program args` in namespace `ns` (or in the current one with `None`), require success,
/// and return its stdout.
pub fn run(ns: Option<&str>, program: &str, args: &[&str]) -> anyhow::Result<String> {
    let shown = format!("{}{program} {}", ns.map(|n| format!("[{n}] ")).unwrap_or_default(), args.join(" "));
    let child = command(ns, program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run `{shown}` (is {program} installed? tests/install-deps.sh)"))?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(COMMAND_TIMEOUT) {
        Ok(out) => out?,
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            bail!("`{shown}` did not finish within {COMMAND_TIMEOUT:?}");
        }
    };
    if !out.status.success() {
        bail!("`{shown}` failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Run `program` with `stdin` as its input (an nft script) in namespace `ns`.
pub fn run_with_input(ns: &str, program: &str, args: &[&str], stdin: &str) -> anyhow::Result<()> {
    let path = std::env::temp_dir().join(format!("vantage-lab-{}-{}.in", std::process::id(), unique()));
    std::fs::write(&path, stdin)?;
    let path_str = path.display().to_string();
    let mut all: Vec<&str> = args.to_vec();
    all.push(&path_str);
    let result = run(Some(ns), program, &all);
    let _ = std::fs::remove_file(&path);
    result.map(drop)
}

fn unique() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

fn command(ns: Option<&str>, program: &str) -> Command {
    match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, program]);
            c
        }
        None => Command::new(program),
    }
}

/// One of a program's output streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// A running program; killed (and reaped) when dropped.
pub struct Daemon {
    name: String,
    child: Child,
    lines: Arc<Mutex<Vec<(Stream, String)>>>,
    rx: Receiver<String>,
    exited: Option<std::process::ExitStatus>,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Daemon({}, pid {})", self.name, self.child.id())
    }
}

impl Daemon {
    /// Start `program args` in namespace `ns` with `env`; stdout and stderr are collected.
    pub fn spawn(name: &str, ns: &str, program: &str, args: &[String], env: &[(&str, &str)]) -> anyhow::Result<Daemon> {
        let mut cmd = command(Some(ns), program);
        cmd.args(args).stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Daemon::spawn_command(name, cmd)
    }

    fn spawn_command(name: &str, mut cmd: Command) -> anyhow::Result<Daemon> {
        let mut child =
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().with_context(|| format!("cannot start {name}"))?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let streams = [
            (Stream::Stdout, child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>)),
            (Stream::Stderr, child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>)),
        ];
        for (which, stream) in streams {
            let Some(stream) = stream else { continue };
            let (tx, lines) = (tx.clone(), lines.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Ok(mut all) = lines.lock() {
                        all.push((which, line.clone()));
                    }
                    let _ = tx.send(line);
                }
            });
        }
        Ok(Daemon { name: name.to_string(), child, lines, rx, exited: None })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Wait until a line containing `needle` appears; returns that line. Fails if the program
    /// exits first or `timeout` passes.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(line) if line.contains(needle) => return Ok(line),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                    if let Some(status) = self.child.try_wait()? {
                        self.exited = Some(status);
                        // Let the readers drain what the program said before dying.
                        std::thread::sleep(Duration::from_millis(100));
                        bail!("{} exited ({status}) before saying `{needle}`: {}", self.name, self.tail());
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    bail!("{} did not say `{needle}` within {timeout:?}: {}", self.name, self.tail())
                }
                Err(RecvTimeoutError::Disconnected) => {
                    bail!("{} closed its output before saying `{needle}`: {}", self.name, self.tail())
                }
            }
        }
    }

    /// Wait for the program to exit; kill it after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                self.exited = Some(status);
                // The readers finish once the pipes close; give them a moment to hand over.
                let drain_until = Instant::now() + Duration::from_secs(2);
                while self.rx.recv_timeout(Duration::from_millis(50)).is_ok() && Instant::now() < drain_until {}
                return Ok(status);
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!("{} did not finish within {timeout:?}: {}", self.name, self.tail());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Everything it printed so far, stdout and stderr interleaved as read.
    pub fn output(&self) -> Vec<String> {
        self.lines.lock().map(|l| l.iter().map(|(_, line)| line.clone()).collect()).unwrap_or_default()
    }

    /// What it printed on one stream.
    pub fn stream(&self, which: Stream) -> Vec<String> {
        let lines = self.lines.lock().map(|l| l.clone()).unwrap_or_default();
        lines.into_iter().filter(|(w, _)| *w == which).map(|(_, line)| line).collect()
    }

    fn tail(&self) -> String {
        let all = self.output();
        all[all.len().saturating_sub(20)..].join("\n")
    }

    /// Stop it (SIGKILL) and reap it.
    pub fn stop(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            self.exited = self.child.wait().ok();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}
