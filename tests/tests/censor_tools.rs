//! The lab's userspace censors (`vantage-lab-censor`) against real traffic, in a three-namespace
//! topology built here and removed on drop (even on panic):
//!
//! ```text
//!   client ns A ── 198.51.100.2/.1 ── censor ns B ── 203.0.113.1/.2 ── server ns C
//!                                     (vantage-lab-censor)            (.2 servers, .3 no DNS)
//! ```
//!
//! The censor runs as its real binary in B (`ip netns exec`). Clients and servers run in this
//! process, on sockets opened from a thread that entered A or C with setns(2), so every
//! assertion is about packets that crossed B. Needs root; fails (never skips) without it.

#[path = "censor_tools/lab.rs"]
mod lab;
#[path = "censor_tools/quic_tls.rs"]
mod quic_tls;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use hickory_proto::op::{Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{Name, RData, Record, RecordType};

const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const CENSOR_PROBE_SIDE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const CENSOR_SERVER_SIDE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const SERVER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
/// An address in C where nothing listens on port 53: any DNS answer from it is injected.
const BLACKHOLE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 3);
const FORGED: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 66);
/// The honest resolver's zone.
const ZONE: &[(&str, Ipv4Addr)] = &[
    ("blocked.example", Ipv4Addr::new(203, 0, 113, 80)),
    ("nx.example", Ipv4Addr::new(203, 0, 113, 81)),
    ("open.example", Ipv4Addr::new(203, 0, 113, 82)),
];
const ZONE_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x80);
/// How long the honest resolver "recurses" before answering, as a real one would.
const RESOLVER_DELAY: Duration = Duration::from_millis(30);

use lab::{B_TO_A, TUN, Topology, censor};
use vantage_tests::netns::{Netns, Stream};

// ---------------------------------------------------------------- DNS injection

/// The honest resolver in C: answers from [`ZONE`] after [`RESOLVER_DELAY`]; stops on drop.
struct Resolver(Arc<AtomicBool>);

impl Resolver {
    fn start(ns: &Netns) -> anyhow::Result<Resolver> {
        let socket = ns.enter(|| UdpSocket::bind((SERVER, 53)))?;
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !flag.load(Ordering::Relaxed) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else { continue };
                let Some(reply) = Message::from_vec(&buf[..n]).ok().and_then(|q| honest_reply(&q)) else { continue };
                std::thread::sleep(RESOLVER_DELAY);
                let _ = socket.send_to(&reply, from);
            }
        });
        Ok(Resolver(stop))
    }
}

impl Drop for Resolver {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn honest_reply(query: &Message) -> Option<Vec<u8>> {
    let q = query.queries.first()?.clone();
    let name = q.name().to_ascii().trim_end_matches('.').to_ascii_lowercase();
    let known = ZONE.iter().find(|(n, _)| *n == name).map(|(_, ip)| *ip);
    let mut m = Message::error_msg(
        query.metadata.id,
        OpCode::Query,
        if known.is_some() { ResponseCode::NoError } else { ResponseCode::NXDomain },
    );
    m.metadata.recursion_desired = true;
    m.metadata.recursion_available = true;
    m.add_query(q.clone());
    match (known, q.query_type()) {
        (Some(ip), RecordType::A) => m.add_answer(Record::from_rdata(q.name().clone(), 60, RData::A(A(ip)))),
        (Some(_), RecordType::AAAA) => m.add_answer(Record::from_rdata(q.name().clone(), 60, RData::AAAA(AAAA(ZONE_V6)))),
        _ => &mut m,
    };
    m.to_vec().ok()
}

/// Every reply to one query within `linger` of the first (or 2 s if none), in arrival order.
fn ask(
    socket: &UdpSocket,
    server: Ipv4Addr,
    name: &str,
    rtype: RecordType,
    id: u16,
) -> anyhow::Result<Vec<(SocketAddr, Message)>> {
    let mut query = Message::query();
    query.metadata.id = id;
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(Name::from_ascii(name)?, rtype));
    socket.send_to(&query.to_vec()?, (server, 53))?;
    let mut replies = Vec::new();
    let mut deadline = Instant::now() + Duration::from_secs(2);
    let mut buf = [0u8; 1500];
    while let Some(left) = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) {
        socket.set_read_timeout(Some(left))?;
        let Ok((n, from)) = socket.recv_from(&mut buf) else { break };
        let Ok(reply) = Message::from_vec(&buf[..n]) else { continue };
        if reply.metadata.id != id {
            continue; // a straggler from an earlier query
        }
        if replies.is_empty() {
            deadline = Instant::now() + Duration::from_millis(400);
        }
        replies.push((from, reply));
    }
    Ok(replies)
}

fn a_records(m: &Message) -> Vec<Ipv4Addr> {
    m.answers.iter().filter_map(|r| if let RData::A(a) = &r.data { Some(a.0) } else { None }).collect()
}

#[test]
fn dns_inject_races_the_real_resolver_and_answers_for_a_blackhole() -> anyhow::Result<()> {
    let topo = Topology::create()?;
    let _resolver = Resolver::start(&topo.c)?;
    let forged = FORGED.to_string();
    let _a = censor(&topo.b, &["dns-inject", "--iface", B_TO_A, "--name", "blocked.example", "--answer", &forged])?;
    let _nx = censor(&topo.b, &["dns-inject", "--iface", B_TO_A, "--name", "nx.example", "--answer", "nxdomain"])?;
    let client = topo.a.enter(|| UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)))?;
    let server: SocketAddr = (SERVER, 53).into();

    // A listed name: the forged answer first, then the real one, both "from" the resolver.
    let r = ask(&client, SERVER, "blocked.example", RecordType::A, 1)?;
    ensure!(r.len() == 2, "want forged + real reply, got {r:#?}");
    assert!(r.iter().all(|(from, _)| *from == server));
    assert_eq!(a_records(&r[0].1), vec![FORGED], "forged first: {r:#?}");
    assert_eq!(r[0].1.answers[0].ttl, 300);
    assert_eq!(a_records(&r[1].1), vec![ZONE[0].1], "then the real answer");

    // AAAA: an empty NOERROR races the real AAAA record.
    let r = ask(&client, SERVER, "blocked.example", RecordType::AAAA, 2)?;
    ensure!(r.len() == 2, "AAAA: {r:#?}");
    assert!(r[0].1.answers.is_empty() && r[0].1.metadata.response_code == ResponseCode::NoError);
    assert_eq!(r[1].1.answers.len(), 1);

    // NXDOMAIN mode: no SOA, and the real answer still follows.
    let r = ask(&client, SERVER, "nx.example", RecordType::A, 3)?;
    ensure!(r.len() == 2, "nxdomain: {r:#?}");
    assert_eq!(r[0].1.metadata.response_code, ResponseCode::NXDomain);
    assert!(r[0].1.authorities.is_empty());
    assert_eq!(a_records(&r[1].1), vec![ZONE[1].1]);

    // An unlisted name: one honest reply, nothing injected.
    let r = ask(&client, SERVER, "open.example", RecordType::A, 4)?;
    ensure!(r.len() == 1 && a_records(&r[0].1) == vec![ZONE[2].1], "unlisted: {r:#?}");

    // The blackhole control: a host with no DNS server answers only for the listed name.
    let r = ask(&client, BLACKHOLE, "blocked.example", RecordType::A, 5)?;
    ensure!(r.len() == 1, "blackhole, listed: {r:#?}");
    assert_eq!(r[0].0, SocketAddr::from((BLACKHOLE, 53)));
    assert_eq!(a_records(&r[0].1), vec![FORGED]);
    let r = ask(&client, BLACKHOLE, "open.example", RecordType::A, 6)?;
    ensure!(r.is_empty(), "blackhole, unlisted must stay silent: {r:#?}");
    Ok(())
}

// ---------------------------------------------------------------- QUIC SNI drop

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_sni_drop_drops_listed_initials_and_forwards_the_rest() -> anyhow::Result<()> {
    let topo = Topology::create()?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = Arc::new(vantage_tests::pki::TestCa::new("lab server CA")?);
    let _server = quic_tls::quic_server(&topo.c, ca.clone()).await?;
    let _resolver = Resolver::start(&topo.c)?;
    let sni_drop = censor(&topo.b, &["quic-sni-drop", "--tun", TUN, "--probe-iface", B_TO_A, "--name", "blocked.example"])?;

    // The control SNI completes through the TUN; the listed one, and its subdomain, time out.
    quic_tls::quic_handshake(&topo.a, &ca, "example.org").await.context("control SNI through the filter")?;
    for sni in ["blocked.example", "www.blocked.example"] {
        match quic_tls::quic_handshake(&topo.a, &ca, sni).await {
            Err(e) if e.to_string().contains("timed out") => {}
            other => bail!("{sni}: want a handshake timeout, got {other:?}"),
        }
    }
    // Other UDP goes through the TUN too, and is forwarded.
    let client = topo.a.enter(|| UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)))?;
    let r = ask(&client, SERVER, "open.example", RecordType::A, 7)?;
    ensure!(r.len() == 1, "DNS through the TUN: {r:#?}");

    let log = sni_drop.stream(Stream::Stderr);
    assert!(log.iter().any(|l| l.contains("dropped QUIC Initial") && l.contains("\"blocked.example\"")), "{log:#?}");
    assert!(log.iter().any(|l| l.contains("forwarded QUIC Initial") && l.contains("\"example.org\"")), "{log:#?}");
    // The rule is gone once the censor stops.
    drop(sni_drop);
    let rules = topo.b.run("ip", &["rule", "show"])?;
    assert!(!rules.contains("ipproto"), "rule left behind:\n{rules}");

    // With --all-initials even the control SNI is dropped; other UDP still passes.
    let _all = censor(&topo.b, &["quic-sni-drop", "--tun", TUN, "--probe-iface", B_TO_A, "--all-initials"])?;
    match quic_tls::quic_handshake(&topo.a, &ca, "example.org").await {
        Err(e) if e.to_string().contains("timed out") => {}
        other => bail!("--all-initials: want a handshake timeout, got {other:?}"),
    }
    let r = ask(&client, SERVER, "open.example", RecordType::A, 8)?;
    ensure!(r.len() == 1, "DNS with --all-initials: {r:#?}");
    Ok(())
}

// ---------------------------------------------------------------- TLS MITM

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mitm_intercepts_listed_snis_with_the_censor_ca_and_splices_the_rest() -> anyhow::Result<()> {
    let topo = Topology::create()?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir()?;
    let server_ca = Arc::new(vantage_tests::pki::TestCa::new("lab server CA")?);
    let censor_ca = vantage_tests::pki::TestCa::new("censor CA")?;
    censor_ca.save(dir.path(), "censor-ca")?;
    let _server = quic_tls::tls_echo_server(&topo.c, server_ca.clone()).await?;

    // DNAT the server's port to the proxy, as the harness does.
    let listen = format!("{CENSOR_PROBE_SIDE}:8443");
    let rules = format!(
        "table ip vantage_mitm {{\n chain pre {{\n  type nat hook prerouting priority dstnat; policy accept;\n  \
         iifname \"{B_TO_A}\" ip daddr {SERVER} tcp dport 443 dnat to {listen}\n }}\n}}\n"
    );
    topo.b.nft(&rules).context("nft DNAT in the censor namespace (is nftables installed?)")?;
    let ca_dir = dir.path().display().to_string();
    let upstream = format!("{SERVER}:443");
    let _mitm = censor(
        &topo.b,
        &["mitm", "--listen", &listen, "--upstream", &upstream, "--ca-dir", &ca_dir, "--intercept", "blocked.example"],
    )?;

    let server_roots = quic_tls::roots(&server_ca, dir.path(), "server")?;
    let censor_roots = quic_tls::roots(&censor_ca, dir.path(), "censor")?;
    // Listed: a certificate for the name from the censor's CA, and the plaintext is relayed.
    let echoed = quic_tls::tls_exchange(&topo.a, censor_roots.clone(), "blocked.example").await?;
    assert_eq!(echoed, "upstream saw blocked.example: ping");
    let err = quic_tls::tls_exchange(&topo.a, server_roots.clone(), "blocked.example").await;
    assert!(format!("{err:?}").contains("UnknownIssuer"), "the real CA must not validate it: {err:?}");
    // Unlisted: spliced to the real server, whose CA validates it and the censor's does not.
    let echoed = quic_tls::tls_exchange(&topo.a, server_roots, "example.org").await?;
    assert_eq!(echoed, "upstream saw example.org: ping");
    let err = quic_tls::tls_exchange(&topo.a, censor_roots, "example.org").await;
    assert!(format!("{err:?}").contains("UnknownIssuer"), "not intercepted: {err:?}");
    Ok(())
}
