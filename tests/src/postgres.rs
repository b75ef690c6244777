//! A throwaway PostgreSQL server for the tests: Debian's `initdb` and `pg_ctl` in a temp
//! directory, listening on a free loopback port and a unix socket inside that directory.
//!
//! PostgreSQL refuses to run as root, and the suite runs as root: then the server (and initdb)
//! run as `nobody` through `setpriv`, in a directory handed to that user. `fsync` stays on (the
//! stores' durability is what is tested); `initdb --no-sync` only skips syncing the template.
//!
//! [`TempPostgres::shared`] is one server per test binary, with a fresh database per test
//! ([`TempPostgres::create_database`]); a watchdog process stops it and removes its directory
//! when the test binary exits, however it exits. [`TempPostgres::start`] is a server of one's own,
//! stopped on drop. Missing binaries fail loudly: a database test that skips proves nothing.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, bail};

/// A running PostgreSQL server in a temp directory.
#[derive(Debug)]
pub struct TempPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_nobody: bool,
}

impl TempPostgres {
    /// `initdb` + `pg_ctl start` in a fresh temp directory. Fails (never skips) when Debian's
    /// PostgreSQL server binaries are missing: install `postgresql` (tests/install-deps.sh).
    pub fn start() -> anyhow::Result<TempPostgres> {
        let bin = server_binaries()?;
        let dir = tempfile::Builder::new().prefix("vantage-pg-").tempdir().context("temp dir")?;
        let as_nobody = nix::unistd::Uid::effective().is_root();
        if as_nobody {
            run(Command::new("chown").args(["nobody:nogroup"]).arg(dir.path()))?;
        }
        let port = free_port()?;
        let server = TempPostgres { dir, bin, port, as_nobody };
        let data = server.data_dir();
        server.run_server_tool("initdb", |c| {
            c.arg("-D").arg(&data).args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"])
        })?;
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300 -c shared_buffers=64MB",
            server.dir.path().display()
        );
        let log = server.dir.path().join("server.log");
        let started = server.run_server_tool("pg_ctl", |c| {
            c.arg("-D").arg(&data).arg("-l").arg(&log).args(["-w", "-t", "60", "-o", &options, "start"])
        });
        if let Err(e) = started {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            bail!("{e:#}\nserver log:\n{log}");
        }
        Ok(server)
    }

    /// One server for the whole test binary, started on first use and stopped (its directory
    /// removed) by a watchdog when the binary exits.
    pub fn shared() -> anyhow::Result<&'static TempPostgres> {
        static SHARED: OnceLock<Result<TempPostgres, String>> = OnceLock::new();
        let server = SHARED.get_or_init(|| {
            let server = TempPostgres::start().map_err(|e| format!("{e:#}"))?;
            server.watch(std::process::id()).map_err(|e| format!("{e:#}"))?;
            Ok(server)
        });
        server.as_ref().map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// A fresh, empty database named `name` (letters, digits, `_`; `_n` is added to keep it
    /// unique within this server); its URL.
    pub fn create_database(&self, name: &str) -> anyhow::Result<String> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            bail!("database name {name:?}: letters, digits and _ only");
        }
        let name = format!("{}_{}", name.to_ascii_lowercase(), NEXT.fetch_add(1, Ordering::Relaxed));
        let port = self.port.to_string();
        run(Command::new(self.bin.join("createdb")).args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres", &name]))?;
        Ok(self.url_of(&name))
    }

    /// The URL of the default database (`postgres`), over loopback TCP.
    pub fn url(&self) -> String {
        self.url_of("postgres")
    }

    /// The loopback port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The unix socket directory (for a `?host=` URL).
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    fn url_of(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Run a server tool as the server's user.
    fn run_server_tool(&self, tool: &str, args: impl FnOnce(&mut Command) -> &mut Command) -> anyhow::Result<()> {
        let mut command = if self.as_nobody {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]).arg(self.bin.join(tool));
            c
        } else {
            Command::new(self.bin.join(tool))
        };
        run(args(command.current_dir(self.dir.path())))
    }

    /// Stop the server and remove its directory once process `pid` is gone.
    fn watch(&self, pid: u32) -> anyhow::Result<()> {
        let stop = self.stop_command_line();
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {stop} >/dev/null 2>&1; rm -rf '{}'",
            self.dir.path().display()
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the PostgreSQL watchdog")?;
        Ok(())
    }

    fn stop_command_line(&self) -> String {
        let prefix = if self.as_nobody { "setpriv --reuid=nobody --regid=nogroup --clear-groups -- " } else { "" };
        format!("{prefix}'{}' -D '{}' -m immediate stop", self.bin.join("pg_ctl").display(), self.data_dir().display())
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        let data = self.data_dir();
        let _ = self.run_server_tool("pg_ctl", |c| c.arg("-D").arg(&data).args(["-m", "immediate", "stop"]));
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` with the server tools.
fn server_binaries() -> anyhow::Result<PathBuf> {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            ["initdb", "pg_ctl", "postgres", "createdb"].iter().all(|t| bin.join(t).is_file()).then_some((version, bin))
        })
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => Ok(bin),
        None => bail!(
            "no PostgreSQL server binaries (initdb, pg_ctl, postgres, createdb) under {}/<version>/bin: \
             install Debian's postgresql package (tests/install-deps.sh does)",
            root.display()
        ),
    }
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("a free loopback port")?;
    Ok(listener.local_addr()?.port())
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let output = command.stdin(Stdio::null()).output().with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}
