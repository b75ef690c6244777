//! Network sanity, with the real probe in real network namespaces: a tunnel holding the default
//! route pauses `vantage-probe run` (exit 4) or tags its measurements, whatever the tunnel is
//! called and however the route gets there (wg-quick's fwmark policy routing included), while an
//! ordinary interface with a tunnel's name does not; and the network epoch follows the default
//! gateway.
//!
//! ```text
//!  probe ns: up0 (veth, 192.0.2.2/24, default via 192.0.2.1) ───── router ns: lan0 (192.0.2.1/24)
//!            + the tunnel of each case
//! ```
//!
//! The probe measures one TCP port on the router (refused at once), so a run that is not paused
//! takes well under a second and leaves the namespaces.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;
use vantage_tests::netns::{self, Daemon, Netns, Stream, run, veth};
use vantage_tests::procs::bin;

const PREFIX: &str = "netsan";
const TOOLS: &[&str] = &["ip", "wg", "wireguard-go", "unshare", "mount"];
/// Exit status of a run paused because a tunnel holds the default route (docs/probe.md).
const EXIT_PAUSED_ON_VPN: i32 = 4;
/// The longest a probe run may take here: its one TCP test is refused at once.
const RUN_LIMIT: Duration = Duration::from_secs(30);

/// A probe namespace with an uplink to a router, a targets file and a data directory. Field
/// order is drop order: programs stop before their namespaces go.
struct Home {
    daemons: Vec<Daemon>,
    probe: Netns,
    _router: Netns,
    dir: tempfile::TempDir,
}

impl Home {
    /// The uplink is called `uplink` inside the probe namespace.
    fn build(uplink: &str) -> anyhow::Result<Home> {
        netns::preflight("network_sanity", TOOLS)?;
        netns::remove_stale(PREFIX)?;
        let stem = netns::unique_stem(PREFIX);
        let probe = Netns::create(&stem, "probe")?;
        let router = Netns::create_ipv4_only(&stem, "router")?;
        veth(&probe, uplink, &router, "lan0")?;
        probe.add_address(uplink, "192.0.2.2".parse()?, 24)?;
        router.add_address("lan0", "192.0.2.1".parse()?, 24)?;
        probe.ip("route add default via 192.0.2.1")?;
        let dir = tempfile::tempdir()?;
        std::fs::write(
            dir.path().join("targets.toml"),
            "[[target]]\nname = \"router\"\ndomain = \"router.example\"\naddress = \"192.0.2.1\"\nport = 9\ntests = [\"tcp\"]\n",
        )?;
        Ok(Home { daemons: Vec::new(), probe, _router: router, dir })
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `vantage-probe run --json` here with `extra` flags; the exit status and the measurements.
    fn run_probe(&self, extra: &[&str]) -> anyhow::Result<ProbeRun> {
        self.run_probe_in(Proc::Whole, extra)
    }

    /// [`Home::run_probe`], with /proc as the process sees it.
    fn run_probe_in(&self, proc: Proc, extra: &[&str]) -> anyhow::Result<ProbeRun> {
        let targets = self.dir.path().join("targets.toml");
        let data_dir = self.data_dir();
        let mut args: Vec<&str> =
            vec!["run", "--json", "--no-helper", "--doh", "off", "--resolver", "off", "--no-system-resolver"];
        args.extend(["--timeout", "2", "--targets", path_str(&targets)?, "--data-dir", path_str(&data_dir)?]);
        args.extend(["--danger-not-bogon", "192.0.2.0/24"]);
        args.extend(extra);
        let probe = bin("vantage-probe")?;
        let mut daemon = match proc {
            Proc::Whole => self.probe.spawn("vantage-probe", path_str(&probe)?, &args, &[])?,
            Proc::PidsOnly => {
                // A private mount namespace with a /proc that shows only processes, as systemd
                // mounts it for a unit with ProcSubset=pid; then exec the probe.
                let script = "mount -t proc -o subset=pid proc /proc && exec \"$0\" \"$@\"";
                let mut wrapped = vec!["--mount", "--propagation", "private", "sh", "-c", script, path_str(&probe)?];
                wrapped.extend(&args);
                self.probe.spawn("vantage-probe", "unshare", &wrapped, &[])?
            }
        };
        let status = daemon.wait_exit(RUN_LIMIT)?;
        let measurements = daemon
            .stream(Stream::Stdout)
            .iter()
            .map(|line| serde_json::from_str(line).with_context(|| format!("a stdout line is not JSON: {line}")))
            .collect::<anyhow::Result<Vec<Value>>>()?;
        Ok(ProbeRun { code: status.code(), measurements, stderr: daemon.stream(Stream::Stderr) })
    }

    /// wireguard-go's interface `name`, up, with a key and wg-quick's fwmark. Its control socket
    /// (/var/run/wireguard/<name>.sock) is not per namespace, so `name` must be unique on the host.
    fn start_wireguard_go(&mut self, name: &str) -> anyhow::Result<()> {
        let private = run(None, "wg", &["genkey"])?;
        let key_file = self.dir.path().join("wg.key");
        std::fs::write(&key_file, private.trim())?;
        let env = [("WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD", "1")];
        self.daemons.push(self.probe.spawn("wireguard-go", "wireguard-go", &["-f", name], &env)?);
        let deadline = Instant::now() + Duration::from_secs(10);
        // The link appears before the control socket that `wg` talks to.
        while self.probe.run("wg", &["show", name]).is_err() {
            if Instant::now() > deadline {
                bail!("wireguard-go did not create {name} and its control socket");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.probe.run("wg", &["set", name, "private-key", path_str(&key_file)?, "listen-port", "51820", "fwmark", "51820"])?;
        self.probe.ip(&format!("link set {name} up"))
    }
}

/// How much of /proc the probe sees.
#[derive(Clone, Copy)]
enum Proc {
    Whole,
    /// `ProcSubset=pid`, as deploy/systemd/vantage-probe.service has it: no /proc/net.
    PidsOnly,
}

fn path_str(path: &Path) -> anyhow::Result<&str> {
    path.to_str().context("a temporary path is not UTF-8")
}

struct ProbeRun {
    code: Option<i32>,
    measurements: Vec<Value>,
    stderr: Vec<String>,
}

impl ProbeRun {
    /// The `probe` block's `field` in every measurement (at least one).
    fn probe_field(&self, field: &str) -> Vec<Value> {
        assert!(!self.measurements.is_empty(), "the run measured nothing: {:?}", self.stderr);
        self.measurements.iter().map(|m| m["probe"][field].clone()).collect()
    }

    /// No word of the output is one of `names` (interface names are LAN details).
    fn assert_never_names(&self, names: &[&str]) {
        let measurements: Vec<String> = self.measurements.iter().map(Value::to_string).collect();
        for line in self.stderr.iter().chain(&measurements) {
            let mut words = line.split(|c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_');
            assert!(!words.any(|w| names.contains(&w)), "the output names an interface: {line}");
        }
    }
}

/// A probe with its default route on a tunnel: paused with exit 4, nothing measured; with
/// `--on-vpn tag`, measured and every measurement marked `vpn`.
fn assert_tunnel_detected(home: &Home, interface: &str) -> anyhow::Result<()> {
    let paused = home.run_probe(&[])?;
    assert_eq!(paused.code, Some(EXIT_PAUSED_ON_VPN), "{interface}: {:?}", paused.stderr);
    assert!(paused.measurements.is_empty(), "a paused run measures nothing");
    let tagged = home.run_probe(&["--on-vpn", "tag"])?;
    assert_eq!(tagged.code, Some(0), "{interface}: {:?}", tagged.stderr);
    assert!(tagged.probe_field("network_type").iter().all(|t| t == "vpn"), "{:?}", tagged.measurements);
    for run in [&paused, &tagged] {
        run.assert_never_names(&[interface, "up0"]);
    }
    Ok(())
}

/// A probe on an ordinary uplink: measured, not marked `vpn`.
fn assert_no_tunnel(home: &Home) -> anyhow::Result<()> {
    let plain = home.run_probe(&[])?;
    assert_eq!(plain.code, Some(0), "{:?}", plain.stderr);
    assert!(plain.probe_field("network_type").iter().all(Value::is_null), "{:?}", plain.measurements);
    Ok(())
}

#[test]
fn a_plain_uplink_is_no_tunnel() -> anyhow::Result<()> {
    assert_no_tunnel(&Home::build("up0")?)
}

#[test]
fn an_ordinary_interface_named_like_a_tunnel_is_no_tunnel() -> anyhow::Result<()> {
    // A veth called tun0 (containers and routers name links freely).
    assert_no_tunnel(&Home::build("tun0")?)
}

#[test]
fn a_wg_quick_style_policy_route_through_wireguard_go_is_a_tunnel() -> anyhow::Result<()> {
    // What wg-quick sets up for AllowedIPs = 0.0.0.0/0: the main table keeps its default route
    // on the uplink; a rule sends every unmarked packet to table 51820, whose default is the
    // WireGuard interface (named like nothing in particular).
    let mut home = Home::build("up0")?;
    let wg = format!("home{}", std::process::id() % 100_000);
    home.start_wireguard_go(&wg)?;
    home.probe.ip(&format!("addr add 198.51.100.2/32 dev {wg}"))?;
    home.probe.ip(&format!("route add default dev {wg} table 51820"))?;
    home.probe.ip("rule add not fwmark 51820 table 51820")?;
    home.probe.ip("rule add table main suppress_prefixlength 0")?;
    let main_default = home.probe.run("ip", &["route", "show", "default"])?;
    assert!(main_default.contains("dev up0"), "the main table still routes by the uplink: {main_default}");
    assert_tunnel_detected(&home, &wg)
}

#[test]
fn a_tun_device_named_like_ethernet_is_a_tunnel() -> anyhow::Result<()> {
    let home = Home::build("up0")?;
    home.probe.ip("tuntap add dev eth7 mode tun")?;
    home.probe.ip("addr add 203.0.113.7/32 dev eth7")?;
    home.probe.ip("link set eth7 up")?;
    home.probe.ip("route replace default dev eth7")?;
    assert_tunnel_detected(&home, "eth7")
}

/// The daemon asks before every batch: behind a tunnel it measures nothing, records why (without
/// naming the interface), and still stops cleanly.
#[test]
fn the_daemon_pauses_behind_a_tunnel_and_says_why() -> anyhow::Result<()> {
    let home = Home::build("up0")?;
    home.probe.ip("tuntap add dev eth7 mode tun")?;
    home.probe.ip("addr add 203.0.113.7/32 dev eth7")?;
    home.probe.ip("link set eth7 up")?;
    home.probe.ip("route replace default dev eth7")?;
    let (targets, data_dir) = (home.dir.path().join("targets.toml"), home.data_dir());
    let probe = bin("vantage-probe")?;
    let mut args = vec!["-v", "daemon", "--collector", "https://192.0.2.1:9", "--interval", "2"];
    args.extend(["--no-helper", "--doh", "off"]);
    args.extend(["--resolver", "off", "--no-system-resolver", "--timeout", "2", "--danger-not-bogon", "192.0.2.0/24"]);
    args.extend(["--targets", path_str(&targets)?, "--data-dir", path_str(&data_dir)?]);
    let mut daemon = home.probe.spawn("vantage-probe daemon", path_str(&probe)?, &args, &[])?;
    daemon.wait_for("not measuring", Duration::from_secs(20))?;
    run(None, "kill", &["-TERM", &daemon.pid().to_string()])?;
    let exit = daemon.wait_exit(Duration::from_secs(20))?;
    let stderr = daemon.stream(Stream::Stderr);
    assert!(exit.success(), "the daemon stops cleanly: {exit}\n{stderr:?}");

    let status = run(None, path_str(&probe)?, &["status", "--data-dir", path_str(&data_dir)?, "--json"])?;
    let state: Value = serde_json::from_str(&status).with_context(|| format!("status --json: {status}"))?;
    let paused = state["paused"].as_str().unwrap_or_default();
    assert!(paused.starts_with("a tun interface holds the IPv4 default route"), "{state:#}");
    let result = &state["results"]["router tcp"];
    assert_eq!((result["status"].clone(), result["skipped"].as_str()), (Value::Null, Some(paused)), "{state:#}");
    assert_eq!(state["spool_pending"], 0, "nothing was measured: {state:#}");
    for line in stderr.iter().chain([&status]) {
        let mut words = line.split(|c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_');
        assert!(!words.any(|w| w == "eth7" || w == "up0"), "the daemon names an interface: {line}");
    }
    Ok(())
}

#[test]
fn a_tap_device_named_uplink_is_a_tunnel() -> anyhow::Result<()> {
    let home = Home::build("up0")?;
    home.probe.ip("tuntap add dev uplink0 mode tap")?;
    home.probe.ip("addr add 203.0.113.9/24 dev uplink0")?;
    home.probe.ip("link set uplink0 up")?;
    home.probe.ip("route replace default via 203.0.113.1 dev uplink0 onlink")?;
    assert_tunnel_detected(&home, "uplink0")
}

#[test]
fn an_ipv6_default_route_through_a_tunnel_is_seen_too() -> anyhow::Result<()> {
    // IPv4 goes out on the uplink; only IPv6's default route is on the tunnel.
    let home = Home::build("up0")?;
    home.probe.ip("tuntap add dev lan1 mode tun")?;
    home.probe.ip("-6 addr add 2001:db8:6::2/128 dev lan1 nodad")?;
    home.probe.ip("link set lan1 up")?;
    home.probe.ip("-6 route add default dev lan1")?;
    assert_tunnel_detected(&home, "lan1")
}

#[test]
fn a_new_default_gateway_starts_a_new_network_epoch() -> anyhow::Result<()> {
    gateway_changes_start_epochs(Proc::Whole)
}

#[test]
fn a_new_default_gateway_is_seen_under_the_units_proc_subset() -> anyhow::Result<()> {
    // The systemd unit hides /proc/net; the routes must still be read (from /proc/self/net).
    gateway_changes_start_epochs(Proc::PidsOnly)
}

fn gateway_changes_start_epochs(proc: Proc) -> anyhow::Result<()> {
    let home = Home::build("up0")?;
    home._router.ip("addr add 192.0.2.254/24 dev lan0")?;
    let epoch_file = home.data_dir().join("network-epoch.json");
    let stored_hash = || -> anyhow::Result<String> {
        let state: Value = serde_json::from_slice(&std::fs::read(&epoch_file)?)?;
        state["fingerprint"].as_str().map(str::to_string).context("no fingerprint in the epoch file")
    };
    let epochs = |run: &ProbeRun| run.probe_field("network_epoch");

    let first = home.run_probe_in(proc, &[])?;
    assert_eq!(epochs(&first), vec![Value::from(1)], "{:?}", first.stderr);
    let home_hash = stored_hash()?;
    let again = home.run_probe_in(proc, &[])?;
    assert_eq!(epochs(&again), vec![Value::from(1)], "the same network, the same epoch");

    home.probe.ip("route replace default via 192.0.2.254")?;
    let moved = home.run_probe_in(proc, &[])?;
    assert_eq!(epochs(&moved), vec![Value::from(2)], "another gateway, a new epoch");
    assert_ne!(stored_hash()?, home_hash);

    home.probe.ip("route replace default via 192.0.2.1")?;
    let back = home.run_probe_in(proc, &[])?;
    assert_eq!(epochs(&back), vec![Value::from(3)], "epochs never go back: the series says 'changed'");
    assert_eq!(stored_hash()?, home_hash, "the same network gives the same fingerprint");

    // What the probe keeps of the network is a salted hash: no address or name on disk.
    let state = std::fs::read_to_string(&epoch_file)?;
    for detail in ["192.0.2.1", "192.0.2.254", "192.0.2.2", "up0"] {
        assert!(!state.contains(detail), "the epoch file holds {detail}: {state}");
    }
    Ok(())
}
