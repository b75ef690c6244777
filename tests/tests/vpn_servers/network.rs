//! The namespaces of the VPN test: probe ⇄ censor ⇄ server (+ echo) ⇄ helper, on the tests'
//! namespace harness ([`vantage_tests::netns`]), with the programs started in them. Everything
//! is stopped and removed on drop, even when the test panics.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use vantage_tests::netns::{self, Daemon, Netns, veth};

/// Prefix of every namespace this test creates.
const PREFIX: &str = "vpnsrv";
/// Programs the test runs (charon and swanctl by path: Debian keeps them off PATH).
const TOOLS: &[&str] =
    &["ip", "ss", "sysctl", "nft", "openvpn", "wg", "wireguard-go", "/usr/lib/ipsec/charon", "/usr/sbin/swanctl", "tor", "socat"];
/// The collector's (test helper's) address, in `helper`.
pub const HELPER: &str = "203.0.113.60";
/// The CA (in the lab's directory) whose certificate the collector serves.
pub const COLLECTOR_CA: &str = "collector-ca.pem";
/// SIGTERM, then SIGKILL after this: charon removes its global pid file and wireguard-go its
/// UAPI socket on the way out.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// The namespaces of one test run and the programs running in them. Field order is drop
/// order: the programs stop before their namespaces go, and both before the directory.
pub struct Lab {
    daemons: BTreeMap<String, Daemon>,
    /// Where `vantage-probe` runs.
    pub probe: Netns,
    /// The router whose nft rules play the censor.
    pub censor: Netns,
    /// The VPN servers, and the router to the helper.
    pub server: Netns,
    /// The echoes of the random-bytes control.
    pub echo: Netns,
    /// The collector as test helper, off the censored path.
    pub helper: Netns,
    dir: tempfile::TempDir,
}

impl Lab {
    /// Namespaces, links and routes (see the picture in `vpn_servers.rs`).
    pub fn build() -> anyhow::Result<Lab> {
        netns::preflight("tests/tests/vpn_servers.rs", TOOLS)?;
        netns::remove_stale(PREFIX)?;
        let stem = netns::unique_stem(PREFIX);
        Lab::build_in(&stem).with_context(|| format!("building the VPN test's namespaces {stem}"))
    }

    fn build_in(stem: &str) -> anyhow::Result<Lab> {
        let lab = Lab {
            daemons: BTreeMap::new(),
            probe: Netns::create(stem, "p")?,
            censor: Netns::create(stem, "c")?,
            server: Netns::create(stem, "s")?,
            echo: Netns::create(stem, "e")?,
            helper: Netns::create(stem, "h")?,
            dir: tempfile::tempdir()?,
        };
        let (p, c, s, e, h) = (&lab.probe, &lab.censor, &lab.server, &lab.echo, &lab.helper);
        veth(p, "pc", c, "cp")?;
        veth(c, "cs", s, "sc")?;
        veth(c, "ce", e, "ec")?;
        veth(s, "sh", h, "hs")?;

        let plan = [
            (p, "addr add 198.51.100.2/24 dev pc"),
            (p, "route add default via 198.51.100.1"),
            (c, "addr add 198.51.100.1/24 dev cp"),
            (c, "addr add 203.0.113.1/32 dev cs"),
            (c, "addr add 203.0.113.2/32 dev ce"),
            (c, "route add 203.0.113.40/32 dev cs"),
            (c, "route add 203.0.113.60/32 via 203.0.113.40 dev cs"),
            (c, "route add 203.0.113.41/32 dev ce"),
            (s, "addr add 203.0.113.40/32 dev sc"),
            (s, "route add 203.0.113.1/32 dev sc"),
            (s, "route add default via 203.0.113.1 dev sc"),
            (s, "route add 203.0.113.60/32 dev sh"),
            (e, "addr add 203.0.113.41/32 dev ec"),
            (e, "route add 203.0.113.2/32 dev ec"),
            (e, "route add default via 203.0.113.2 dev ec"),
            (h, "addr add 203.0.113.60/32 dev hs"),
            (h, "route add 203.0.113.40/32 dev hs"),
            (h, "route add default via 203.0.113.40 dev hs"),
        ];
        for (ns, command) in plan {
            ns.ip(command)?;
        }
        for router in [c, s] {
            router.enable_forwarding()?;
        }
        Ok(lab)
    }

    /// A file in the test's working directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Write `text` to the working directory's `name`; returns its path.
    pub fn write(&self, name: &str, text: &str) -> anyhow::Result<String> {
        let path = self.path(name);
        std::fs::write(&path, text)?;
        Ok(path.display().to_string())
    }

    /// Keep `daemon` running (by its name) until [`Lab::stop`] or the end of the test.
    pub fn keep(&mut self, daemon: Daemon) {
        let daemon = daemon.with_sigterm_grace(STOP_GRACE);
        self.daemons.insert(daemon.name().to_string(), daemon);
    }

    /// Stop one program this test started.
    pub fn stop(&mut self, name: &str) {
        self.daemons.remove(name);
    }

    /// What one program printed so far.
    pub fn log(&self, name: &str) -> String {
        self.daemons.get(name).map(|d| d.output().join("\n")).unwrap_or_default()
    }

    /// The collector as test helper, off the censored path, over HTTPS (the probe refuses
    /// plaintext off loopback), with a CA named `ca_name` in [`COLLECTOR_CA`]; returns its URL.
    pub fn start_collector(&mut self, ca_name: &str, helper_timeout_secs: u32) -> anyhow::Result<String> {
        let collector_bin = vantage_tests::procs::bin("vantage-collector")?.display().to_string();
        let data = self.path("collector").display().to_string();
        let ca = vantage_tests::pki::TestCa::new(ca_name)?;
        ca.write_pem(&self.path(COLLECTOR_CA))?;
        let (cert, key) = ca.issue_files(HELPER, &self.path(""), "collector")?;
        let (cert, key) = (cert.display().to_string(), key.display().to_string());
        let (listen, timeout) = (format!("{HELPER}:8080"), helper_timeout_secs.to_string());
        let args = ["serve", "--listen", &listen, "--danger-helper-allow-private", "--helper-timeout-secs", &timeout]
            .into_iter()
            .chain(["--data-dir", &data, "--tls-cert", &cert, "--tls-key", &key])
            .collect::<Vec<_>>();
        self.keep(self.helper.spawn("collector", &collector_bin, &args, &[])?);
        let started = self.wait_for("collector", "vantage-collector listening on ", Duration::from_secs(20))?;
        Ok(started.split("listening on ").nth(1).map(str::trim).context("collector did not start")?.to_string())
    }

    /// A Tor relay in `server` that publishes nothing and assumes it is reachable (no network to
    /// check with), its ORPort on `orport`, as program `tor`. Wait for "Bootstrapped 0%" before
    /// use: tor opens its ORPort before its TLS context is ready.
    pub fn start_tor_relay(&mut self, orport: &str, nickname: &str) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt as _;
        let tor_dir = self.path("tor");
        std::fs::create_dir(&tor_dir)?;
        std::fs::set_permissions(&tor_dir, std::fs::Permissions::from_mode(0o700))?;
        let torrc = self.write(
            "torrc",
            &format!(
                "DataDirectory {}\nORPort {orport}\nSocksPort 0\nAssumeReachable 1\nPublishServerDescriptor 0\n\
                 ExitRelay 0\nNickname {nickname}\nContactInfo lab\nLog notice stderr\n",
                tor_dir.display()
            ),
        )?;
        self.keep(self.server.spawn("tor", "tor", &["-f", &torrc], &[])?);
        Ok(())
    }

    /// Wait until program `name` prints a line containing `needle`; returns the line.
    pub fn wait_for(&mut self, name: &str, needle: &str, timeout: Duration) -> anyhow::Result<String> {
        self.daemons.get_mut(name).with_context(|| format!("{name} was never started"))?.wait_for(needle, timeout)
    }

    /// Wait until `ns` has every `(proto, port)` listening.
    pub fn wait_listening(&self, ns: &Netns, wanted: &[(&str, u16)]) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let udp = ns.run("ss", &["-Hlnu"])?;
            let tcp = ns.run("ss", &["-Hlnt"])?;
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
                let logs: Vec<String> = self.daemons.keys().map(|n| format!("--- {n}\n{}", self.log(n))).collect();
                bail!("not listening in {ns} after 20 s: {missing:?}\n{}", logs.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
