//! The VPN tests against real servers: Debian's openvpn (UDP and TCP; plain, tls-auth, tls-crypt),
//! wireguard-go, strongSwan's charon (UDP 500 and 4500) and a Tor relay, each in network
//! namespaces this test creates, measured by the real `vantage-probe` through a censor namespace
//! whose nft rules play the scenarios, with `vantage-collector` as test helper on an uncensored
//! path:
//!
//! ```text
//!  probe ───── censor (nft) ───── server: openvpn ×6, wireguard-go, charon, tor  ───── helper
//!  198.51.100.2                    203.0.113.40                                        203.0.113.60
//!                     └───── echo: socat UDP/TCP echo on the same port numbers, 203.0.113.41
//! ```
//!
//! The echo lives in its own namespace because wireguard-go and charon bind the wildcard address
//! of their ports. Needs root (CI is root) and the packages of `tests/install-deps.sh`; it fails
//! loudly without them, never skips. Scenarios, one probe run each: clean; censor rules (UDP port
//! drop, TCP port reset, OpenVPN opcode drop, WireGuard initiation drop, IKE ports dropped, Tor
//! port reset); data killed after N packets; a lossy path; servers stopped.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use vantage_measurement::{Detail, Measurement, Operation, Role, Status, Vantage, VpnStage};
use vantage_tests::netns::{Stream, run, run_with_stdin};

#[path = "vpn_servers/network.rs"]
mod network;

use network::{COLLECTOR_CA, Lab};

const SERVER: &str = "203.0.113.40";
const ECHO: &str = "203.0.113.41";

/// The OpenVPN servers: (name, proto, port, mode).
const OPENVPN: [(&str, &str, u16, &str); 6] = [
    ("openvpn-udp-plain", "udp", 1194, "plain"),
    ("openvpn-tcp-plain", "tcp", 1194, "plain"),
    ("openvpn-udp-tls-auth", "udp", 1195, "tls-auth"),
    ("openvpn-tcp-tls-auth", "tcp", 1195, "tls-auth"),
    ("openvpn-udp-tls-crypt", "udp", 1196, "tls-crypt"),
    ("openvpn-tcp-tls-crypt", "tcp", 1196, "tls-crypt"),
];

struct Keys {
    static_key: String,
    wg_server_public: String,
    wg_probe_private: String,
    wg_helper_private: String,
}

/// How long one probe run may take (its timeout is 2 s a step; every target runs at once).
const PROBE_DEADLINE: Duration = Duration::from_secs(120);
/// How long a server may take to say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Start every server and the echoes; returns what the targets file must publish.
fn start_servers(lab: &mut Lab, wg_if: &str) -> anyhow::Result<Keys> {
    // OpenVPN: a self-signed EC certificate is its own CA (the probe stops before TLS anyway).
    let cert = rcgen::generate_simple_self_signed(vec!["endpoint.vantage.test".to_string()])?;
    let cert_pem = lab.write("server.pem", &cert.cert.pem())?;
    let key_pem = lab.write("server.key", &cert.signing_key.serialize_pem())?;
    let static_key_path = lab.path("ta.key").display().to_string();
    run(None, "openvpn", &["--genkey", "secret", &static_key_path])?;
    let static_key = std::fs::read_to_string(&static_key_path)?;
    let names = ["ovpn-udp-plain", "ovpn-tcp-plain", "ovpn-udp-auth", "ovpn-tcp-auth", "ovpn-udp-crypt", "ovpn-tcp-crypt"];
    for (i, ((_, proto, port, mode), name)) in OPENVPN.iter().zip(names).enumerate() {
        let wrap = match *mode {
            "tls-auth" => format!("tls-auth {static_key_path} 0\nauth SHA256\n"),
            "tls-crypt" => format!("tls-crypt {static_key_path}\n"),
            _ => String::new(),
        };
        let proto = if *proto == "udp" { "udp4" } else { "tcp4-server" };
        let pool = 128 + 16 * i;
        let conf = format!(
            "mode server\ntls-server\nproto {proto}\nlocal {SERVER}\nport {port}\ndev tun\ntopology subnet\n\
             server 198.51.100.{pool} 255.255.255.240\nca {cert_pem}\ncert {cert_pem}\nkey {key_pem}\ndh none\n{wrap}verb 3\n"
        );
        let path = lab.write(&format!("{name}.conf"), &conf)?;
        lab.keep(lab.server.spawn(name, "openvpn", &["--config", &path], &[])?);
    }

    // WireGuard: the endpoint, a probe peer with a tunnel address, a helper peer without one.
    let genkey = || -> anyhow::Result<(String, String)> {
        let private = run(None, "wg", &["genkey"])?.trim().to_string();
        let public = run_with_stdin(None, "wg", &["pubkey"], &private)?.trim().to_string();
        Ok((private, public))
    };
    let (server_private, server_public) = genkey()?;
    let (probe_private, probe_public) = genkey()?;
    let (helper_private, helper_public) = genkey()?;
    let server_key = lab.write("wg-server.key", &server_private)?;
    let wireguard_env = [("WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD", "1")];
    lab.keep(lab.server.spawn("wireguard-go", "wireguard-go", &["-f", wg_if], &wireguard_env)?);
    let deadline = Instant::now() + Duration::from_secs(10);
    while lab.server.ip(&format!("link show {wg_if}")).is_err() {
        if Instant::now() > deadline {
            bail!("wireguard-go did not create {wg_if}: {}", lab.log("wireguard-go"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    lab.server.run(
        "wg",
        &[
            "set",
            wg_if,
            "private-key",
            &server_key,
            "listen-port",
            "51820",
            "peer",
            &probe_public,
            "allowed-ips",
            "203.0.113.130/32",
            "peer",
            &helper_public,
            "allowed-ips",
            "203.0.113.131/32",
        ],
    )?;
    lab.server.ip(&format!("addr add 203.0.113.129/32 dev {wg_if}"))?;
    lab.server.ip(&format!("link set {wg_if} up"))?;
    lab.server.ip(&format!("route add 203.0.113.130/32 dev {wg_if}"))?;

    // strongSwan: its own config, vici socket and no routes; one PSK connection.
    let vici = format!("unix://{}", lab.path("charon.vici").display());
    let swanctl_conf = lab.write(
        "swanctl.conf",
        "connections {\n  probe {\n    version = 2\n    proposals = aes256-sha256-ecp256\n    local {\n      auth = psk\n    }\n    \
         remote {\n      auth = psk\n    }\n  }\n}\nsecrets {\n  ike-probe {\n    secret = \"vantage-lab-not-a-secret\"\n  }\n}\n",
    )?;
    let strongswan_conf = lab.write(
        "strongswan.conf",
        &format!(
            "charon {{\n  port = 500\n  port_nat_t = 4500\n  install_routes = no\n  install_virtual_ip = no\n  \
             plugins {{\n    vici {{\n      socket = {vici}\n    }}\n  }}\n  start-scripts {{\n    \
             swanctl = /usr/sbin/swanctl --load-all --uri {vici} --file {swanctl_conf}\n  }}\n}}\n"
        ),
    )?;
    lab.keep(lab.server.spawn("charon", "/usr/lib/ipsec/charon", &[] as &[&str], &[("STRONGSWAN_CONF", &strongswan_conf)])?);

    lab.start_tor_relay(&format!("{SERVER}:9001"), "vantagelab")?;

    // Echoes for the random-bytes control, on the VPN port numbers.
    for port in [1194u16, 1195, 1196, 51820, 500, 4500] {
        let listen = format!("UDP4-RECVFROM:{port},bind={ECHO},fork");
        lab.keep(lab.echo.spawn(&format!("echo-udp-{port}"), "socat", &[&listen, "EXEC:cat"], &[])?);
    }
    for port in [1194u16, 1195, 1196] {
        let listen = format!("TCP4-LISTEN:{port},bind={ECHO},fork,reuseaddr");
        lab.keep(lab.echo.spawn(&format!("echo-tcp-{port}"), "socat", &[&listen, "EXEC:cat"], &[])?);
    }
    lab.wait_listening(
        &lab.server,
        &[
            ("udp", 1194),
            ("tcp", 1194),
            ("udp", 1195),
            ("tcp", 1195),
            ("udp", 1196),
            ("tcp", 1196),
            ("udp", 51820),
            ("udp", 500),
            ("udp", 4500),
            ("tcp", 9001),
        ],
    )?;
    // tor opens its ORPort before its TLS context is ready; this line comes after both.
    lab.wait_for("tor", "Bootstrapped 0%", READY_TIMEOUT)?;
    lab.wait_listening(&lab.echo, &[("udp", 1194), ("udp", 51820), ("udp", 500), ("udp", 4500), ("tcp", 1196)])?;
    Ok(Keys { static_key, wg_server_public: server_public, wg_probe_private: probe_private, wg_helper_private: helper_private })
}

/// The targets file: every VPN target with its published parameters.
fn targets(keys: &Keys) -> String {
    let mut t = String::new();
    let head = |name: &str, port: u16, test: &str| {
        format!(
            "[[target]]\nname = \"{name}\"\ndomain = \"endpoint.vantage.test\"\naddress = \"{SERVER}\"\nport = {port}\ntests = [\"{test}\"]\n"
        )
    };
    for (name, proto, port, mode) in OPENVPN {
        t += &head(name, port, "openvpn");
        t += &format!("transport = \"{proto}\"\necho_address = \"{ECHO}\"\n[target.openvpn]\nmode = \"{mode}\"\n");
        match mode {
            "tls-auth" => t += &format!("key_direction = 1\nauth = \"SHA256\"\nkey = \"\"\"\n{}\"\"\"\n", keys.static_key),
            "tls-crypt" => t += &format!("key = \"\"\"\n{}\"\"\"\n", keys.static_key),
            _ => {}
        }
    }
    t += &head("wireguard", 51820, "wireguard");
    t += &format!(
        "echo_address = \"{ECHO}\"\n[target.wireguard]\nserver_public_key = \"{}\"\nprivate_key = \"{}\"\n\
         helper_private_key = \"{}\"\naddress = \"203.0.113.130\"\nserver_address = \"203.0.113.129\"\n",
        keys.wg_server_public, keys.wg_probe_private, keys.wg_helper_private
    );
    for port in [500, 4500] {
        t += &head(&format!("ikev2-{port}"), port, "ikev2");
        t += &format!("echo_address = \"{ECHO}\"\n");
    }
    t += &head("tor", 9001, "tor");
    t
}

/// Run the probe in its namespace on every target; measurements by target name.
fn probe(lab: &Lab, collector: &str, targets_file: &str, run_name: &str) -> anyhow::Result<BTreeMap<String, Measurement>> {
    let probe = vantage_tests::procs::bin("vantage-probe")?.display().to_string();
    let data_dir = lab.path(&format!("probe-{run_name}")).display().to_string();
    let ca = lab.path(COLLECTOR_CA).display().to_string();
    let args = ["run", "--json", "--targets", targets_file, "--collector", collector, "--ca", &ca]
        .into_iter()
        .chain(["--doh", "none", "--resolver", "none"])
        .chain(["--no-system-resolver", "--timeout", "2", "--concurrency", "16", "--data-dir", &data_dir]);
    let mut run = lab.probe.spawn(&format!("vantage-probe ({run_name})"), &probe, &args.collect::<Vec<_>>(), &[])?;
    let status = run.wait_exit(PROBE_DEADLINE)?;
    let stdout = run.stream(Stream::Stdout);
    if !status.success() {
        bail!("probe run {run_name} failed: {}\n{}", run.stream(Stream::Stderr).join("\n"), stdout.join("\n"));
    }
    let mut by_name = BTreeMap::new();
    for line in stdout.iter().filter(|l| l.starts_with('{')) {
        let m: Measurement = serde_json::from_str(line).with_context(|| format!("not a measurement: {line}"))?;
        by_name.insert(m.target.name.clone(), m);
    }
    // The confusion-matrix row of this run, for the log (`--nocapture`) and failures.
    for (name, m) in &by_name {
        let mechanism = m.verdict.mechanism.map(|x| x.as_str()).unwrap_or("-");
        eprintln!("{run_name:>9} {name:<22} {:<12} {mechanism:<28} stage {:?}", m.verdict.status.as_str(), stage(m));
    }
    Ok(by_name)
}

/// The probe's target handshake stage (the last VPN detail of a target step on the probe).
fn stage(m: &Measurement) -> Option<VpnStage> {
    m.observations
        .iter()
        .filter(|o| o.vantage == Vantage::Probe && o.role == Role::Target)
        .filter_map(|o| match &o.detail {
            Some(Detail::Vpn(d)) => Some(d.stage_reached),
            _ => None,
        })
        .max()
}

/// Expected against got, per protocol, across every scenario: the confusion matrix.
#[derive(Default)]
struct Matrix(BTreeMap<String, BTreeMap<(String, String), usize>>);

impl Matrix {
    fn count(&mut self, target: &str, expected: String, got: String) {
        let protocol = target.split('-').next().unwrap_or(target).to_string();
        *self.0.entry(protocol).or_default().entry((expected, got)).or_default() += 1;
    }

    fn render(&self) -> String {
        let mut out = String::new();
        for (protocol, cells) in &self.0 {
            out += &format!("{protocol} (expected -> got: count)\n");
            for ((expected, got), n) in cells {
                let mark = if expected == got { " " } else { "!" };
                out += &format!("  {mark} {expected:<40} -> {got:<40} {n}\n");
            }
        }
        out
    }
}

fn label(status: Status, mechanism: Option<&str>) -> String {
    match mechanism {
        Some(m) => format!("{} {m}", status.as_str()),
        None => status.as_str().to_string(),
    }
}

/// What every scenario shares: the probe's inputs, and the misses and the confusion matrix so
/// far. A miss is collected rather than fatal, so one run shows every scenario's row.
struct Scenarios {
    collector: String,
    targets_file: String,
    matrix: Matrix,
    wrong: Vec<String>,
}

impl Scenarios {
    /// One probe run over every target; measurements by target name.
    fn probe(&self, lab: &Lab, run_name: &str) -> anyhow::Result<BTreeMap<String, Measurement>> {
        probe(lab, &self.collector, &self.targets_file, run_name)
    }

    /// Count each expected (status, mechanism) in the matrix; note every miss.
    fn expect(&mut self, results: &BTreeMap<String, Measurement>, expected: &[(&str, Status, Option<&str>)]) {
        for (name, status, mechanism) in expected {
            let Some(m) = results.get(*name) else {
                self.matrix.count(name, label(*status, *mechanism), "no measurement".into());
                self.wrong.push(format!("{name}: no measurement"));
                continue;
            };
            let got = (m.verdict.status, m.verdict.mechanism.map(|x| x.as_str()));
            self.matrix.count(name, label(*status, *mechanism), label(got.0, got.1));
            if got != (*status, *mechanism) {
                self.wrong
                    .push(format!("{name}: expected {status:?} {mechanism:?}, got {got:?}; evidence {:?}", m.verdict.evidence));
            }
        }
    }

    /// Print the matrix; fail with every miss.
    fn finish(self) {
        println!("{}", self.matrix.render());
        assert!(
            self.wrong.is_empty(),
            "{} scenario(s) wrong:\n{}\n{}",
            self.wrong.len(),
            self.wrong.join("\n"),
            self.matrix.render()
        );
    }
}

/// Replace the censor's rules with `rules` (none: no censor).
fn nft(lab: &Lab, rules: &[&str]) -> anyhow::Result<()> {
    let _ = lab.censor.run("nft", &["delete", "table", "inet", "vpncensor"]);
    let mut script =
        String::from("table inet vpncensor {\n  chain forward {\n    type filter hook forward priority 0; policy accept;\n");
    for rule in rules {
        script += &format!("    {rule}\n");
    }
    script += "  }\n}\n";
    lab.censor.nft(&script)
}

/// 1. Clean network: every test ok, at the furthest stage it has.
fn clean_network(lab: &Lab, scenarios: &mut Scenarios) -> anyhow::Result<BTreeMap<String, Measurement>> {
    let clean = scenarios.probe(lab, "clean")?;
    for (name, want) in [
        ("openvpn-udp-plain", VpnStage::Handshake),
        ("openvpn-tcp-plain", VpnStage::Handshake),
        ("openvpn-udp-tls-auth", VpnStage::Handshake),
        ("openvpn-tcp-tls-auth", VpnStage::Handshake),
        ("openvpn-udp-tls-crypt", VpnStage::Handshake),
        ("openvpn-tcp-tls-crypt", VpnStage::Handshake),
        ("wireguard", VpnStage::Data),
        ("ikev2-500", VpnStage::Handshake),
        ("ikev2-4500", VpnStage::Handshake),
        ("tor", VpnStage::Data),
    ] {
        match clean.get(name) {
            Some(m) if m.verdict.status == Status::Ok && stage(m) == Some(want) => {
                scenarios.matrix.count(name, "ok".into(), "ok".into());
            }
            Some(m) => {
                scenarios.matrix.count(name, "ok".into(), label(m.verdict.status, m.verdict.mechanism.map(|x| x.as_str())));
                scenarios.wrong.push(format!(
                    "clean {name}: {:?} stage {:?}, {:?}",
                    m.verdict.status,
                    stage(m),
                    m.verdict.evidence
                ));
            }
            None => scenarios.wrong.push(format!("clean {name}: no measurement")),
        }
    }
    Ok(clean)
}

/// charon here accepts ECP-256 only: it names that group in INVALID_KE_PAYLOAD to our first
/// (Curve25519) share, and the probe retries with it; both exchanges are recorded.
fn ike_retries_with_the_group_charon_names(clean: &BTreeMap<String, Measurement>) {
    let ike_replies: Vec<Option<&str>> = clean
        .get("ikev2-500")
        .map(|m| m.observations.iter())
        .into_iter()
        .flatten()
        .filter(|o| o.vantage == Vantage::Probe && o.op == Operation::VpnHandshake)
        .map(|o| match &o.detail {
            Some(Detail::Vpn(d)) => d.reply.map(|r| r.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(ike_replies, [Some("notify:INVALID_KE_PAYLOAD"), Some("sa_init_response")]);
}

/// 2. A censor with one rule per behaviour; unlisted targets must stay ok.
fn one_rule_per_behaviour(lab: &Lab, scenarios: &mut Scenarios) -> anyhow::Result<BTreeMap<String, Measurement>> {
    nft(
        lab,
        &[
            "udp dport 1194 drop",
            "tcp dport 1195 reject with tcp reset",
            "udp dport 1196 @th,64,8 0x38 drop",
            "udp dport 51820 udp length 156 @th,64,32 0x01000000 drop",
            "udp dport { 500, 4500 } drop",
            "tcp dport 9001 reject with tcp reset",
        ],
    )?;
    let censored = scenarios.probe(lab, "censored")?;
    scenarios.expect(
        &censored,
        &[
            ("openvpn-udp-plain", Status::Blocked, Some("vpn.port_blocked")),
            ("openvpn-tcp-tls-auth", Status::Blocked, Some("tcp.refused")),
            ("openvpn-udp-tls-crypt", Status::Blocked, Some("vpn.fingerprint_blocked")),
            ("wireguard", Status::Blocked, Some("vpn.fingerprint_blocked")),
            ("ikev2-500", Status::Blocked, Some("vpn.port_blocked")),
            ("ikev2-4500", Status::Blocked, Some("vpn.port_blocked")),
            ("tor", Status::Blocked, Some("tcp.refused")),
            ("openvpn-tcp-plain", Status::Ok, None),
            ("openvpn-udp-tls-auth", Status::Ok, None),
            ("openvpn-tcp-tls-crypt", Status::Ok, None),
        ],
    );
    Ok(censored)
}

/// 3. Handshake allowed, then the flow killed after 3 packets from the probe.
fn data_killed_after_the_handshake(lab: &Lab, scenarios: &mut Scenarios) -> anyhow::Result<()> {
    nft(lab, &["ip daddr 203.0.113.40 udp dport 51820 ct original packets > 3 drop"])?;
    let stalled = scenarios.probe(lab, "stalled")?;
    scenarios.expect(&stalled, &[("wireguard", Status::Blocked, Some("vpn.data_stall")), ("ikev2-500", Status::Ok, None)]);
    Ok(())
}

/// 4. A lossy path (benign): 15% of datagrams to the endpoint lost; retransmits and replaced
///    echoes must keep every UDP test ok (all four sends lost: 0.05% per target).
fn lossy_path(lab: &Lab, scenarios: &mut Scenarios) -> anyhow::Result<()> {
    nft(
        lab,
        &["ip daddr 203.0.113.40 udp dport { 1194, 1195, 1196, 51820, 500, 4500 } numgen random mod 100 < 15 counter drop"],
    )?;
    let lossy = scenarios.probe(lab, "lossy")?;
    let counter = lab.censor.run("nft", &["list", "chain", "inet", "vpncensor", "forward"])?;
    eprintln!("lossy: {}", counter.lines().find(|l| l.contains("counter")).unwrap_or("?").trim());
    scenarios.expect(
        &lossy,
        &[
            ("openvpn-udp-plain", Status::Ok, None),
            ("openvpn-udp-tls-auth", Status::Ok, None),
            ("openvpn-udp-tls-crypt", Status::Ok, None),
            ("wireguard", Status::Ok, None),
            ("ikev2-500", Status::Ok, None),
            ("ikev2-4500", Status::Ok, None),
        ],
    );
    Ok(())
}

/// 5. Servers stopped (benign): down, never blocked.
fn servers_stopped(lab: &mut Lab, scenarios: &mut Scenarios) -> anyhow::Result<BTreeMap<String, Measurement>> {
    nft(lab, &[])?;
    for name in ["ovpn-udp-plain", "ovpn-tcp-crypt", "wireguard-go", "charon", "tor"] {
        lab.stop(name);
    }
    let stopped = scenarios.probe(lab, "stopped")?;
    scenarios.expect(
        &stopped,
        &[
            ("openvpn-udp-plain", Status::Down, Some("control.failed")),
            ("openvpn-tcp-tls-crypt", Status::Down, Some("control.failed")),
            ("wireguard", Status::Down, Some("control.failed")),
            ("ikev2-500", Status::Down, Some("control.failed")),
            ("ikev2-4500", Status::Down, Some("control.failed")),
            ("tor", Status::Down, Some("control.failed")),
            ("openvpn-udp-tls-auth", Status::Ok, None),
        ],
    );
    Ok(stopped)
}

/// Keys never reach a measurement.
fn no_key_in_any_measurement(keys: &Keys, runs: [&BTreeMap<String, Measurement>; 3]) {
    for m in runs.into_iter().flat_map(BTreeMap::values) {
        let line = m.to_json_line().expect("serialise");
        for secret in [&keys.wg_probe_private, &keys.wg_helper_private] {
            assert!(!line.contains(secret.as_str()), "{} leaks a private key", m.target.name);
        }
        assert!(!line.contains("OpenVPN Static key"), "{} leaks the static key", m.target.name);
    }
}

#[test]
fn vpn_tests_against_real_servers_in_namespaces() -> anyhow::Result<()> {
    let mut lab = Lab::build()?;
    let wg_if = format!("wgv{}", std::process::id() % 100_000);
    let keys = start_servers(&mut lab, &wg_if)?;
    let targets_file = lab.write("targets.toml", &targets(&keys))?;
    let collector = lab.start_collector("VPN lab CA", 2)?;
    let mut scenarios = Scenarios { collector, targets_file, matrix: Matrix::default(), wrong: Vec::new() };

    let clean = clean_network(&lab, &mut scenarios)?;
    ike_retries_with_the_group_charon_names(&clean);
    let censored = one_rule_per_behaviour(&lab, &mut scenarios)?;
    data_killed_after_the_handshake(&lab, &mut scenarios)?;
    lossy_path(&lab, &mut scenarios)?;
    let stopped = servers_stopped(&mut lab, &mut scenarios)?;

    no_key_in_any_measurement(&keys, [&clean, &censored, &stopped]);
    scenarios.finish();
    Ok(())
}
