//! Programs run inside a namespace: short commands that must succeed, and daemons whose output
//! is kept (for the privacy search and for failure reports) and that die with their handle.
//!
//! `ip netns exec` switches namespace and then `exec`s the program, so the child's pid is the
//! program's own and signalling it needs no process-group tricks.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The longest a setup command (`ip`, `nft`, `tc`, …) may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

/// Run `program args` in namespace `ns` (or in the current one with `None`), require success
/// within [`COMMAND_TIMEOUT`], and return its stdout.
pub fn run(ns: Option<&str>, program: &str, args: &[&str]) -> anyhow::Result<String> {
    run_inner(ns, program, args, None)
}

/// [`run`] with `stdin` as the program's standard input (an nft script, a key to derive from).
pub fn run_with_stdin(ns: Option<&str>, program: &str, args: &[&str], stdin: &str) -> anyhow::Result<String> {
    run_inner(ns, program, args, Some(stdin))
}

fn run_inner(ns: Option<&str>, program: &str, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
    let shown = format!("{}{program} {}", ns.map(|n| format!("[{n}] ")).unwrap_or_default(), args.join(" "));
    let mut child = command(ns, program)
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run `{shown}` (is {program} installed? tests/install-deps.sh)"))?;
    let pid = child.id();
    let input = stdin.map(|s| s.as_bytes().to_vec());
    let pipe = child.stdin.take();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // Written here, not before the wait: a program that blocks on a full stdout pipe before
        // reading all its input then meets the timeout instead of hanging the test.
        if let (Some(mut pipe), Some(input)) = (pipe, input) {
            let _ = pipe.write_all(&input);
        }
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(COMMAND_TIMEOUT) {
        Ok(out) => out?,
        Err(_) => {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            bail!("`{shown}` did not finish within {COMMAND_TIMEOUT:?}");
        }
    };
    if !out.status.success() {
        bail!("`{shown}` failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
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

/// A running program; stopped (see [`Daemon::stop`]) and reaped when dropped.
pub struct Daemon {
    name: String,
    child: Child,
    lines: Arc<Mutex<Vec<(Stream, String)>>>,
    rx: Receiver<String>,
    readers: Vec<JoinHandle<()>>,
    exited: Option<std::process::ExitStatus>,
    sigterm_grace: Option<Duration>,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Daemon({}, pid {})", self.name, self.child.id())
    }
}

impl Daemon {
    /// Start `program args` in namespace `ns` with `env` added; stdout and stderr are collected.
    pub(super) fn spawn<S: AsRef<OsStr>>(
        name: &str,
        ns: &str,
        program: &str,
        args: &[S],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Daemon> {
        let mut child = command(Some(ns), program)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let streams = [
            (Stream::Stdout, child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>)),
            (Stream::Stderr, child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>)),
        ];
        let mut readers = Vec::new();
        for (which, stream) in streams {
            let Some(stream) = stream else { continue };
            let (tx, lines) = (tx.clone(), lines.clone());
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Ok(mut all) = lines.lock() {
                        all.push((which, line.clone()));
                    }
                    let _ = tx.send(line);
                }
            }));
        }
        Ok(Daemon { name: name.to_string(), child, lines, rx, readers, exited: None, sigterm_grace: None })
    }

    /// Stop it with SIGTERM, and SIGKILL only if it is still running after `grace`: for
    /// programs that clean up on the way out (a censor's ip rule, charon's pid file,
    /// wireguard-go's UAPI socket). Without this, stopping is SIGKILL at once.
    pub fn with_sigterm_grace(mut self, grace: Duration) -> Daemon {
        self.sigterm_grace = Some(grace);
        self
    }

    /// The name it was started with.
    pub fn name(&self) -> &str {
        &self.name
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
                        self.drain_output();
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
                self.drain_output();
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

    /// Once it has exited, wait (briefly) for the readers to reach the end of its output, so
    /// nothing it said before dying is missing.
    fn drain_output(&self) {
        let until = Instant::now() + Duration::from_secs(2);
        while !self.readers.iter().all(JoinHandle::is_finished) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn tail(&self) -> String {
        let all = self.output();
        all[all.len().saturating_sub(20)..].join("\n")
    }

    /// Stop it and reap it: SIGKILL, or SIGTERM first (see [`Daemon::with_sigterm_grace`]).
    pub fn stop(&mut self) {
        if self.exited.is_some() {
            return;
        }
        if let Some(grace) = self.sigterm_grace {
            let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline {
                if let Ok(Some(status)) = self.child.try_wait() {
                    self.exited = Some(status);
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = self.child.kill();
        self.exited = self.child.wait().ok();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}
