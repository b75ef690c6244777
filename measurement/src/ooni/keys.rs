//! `test_keys`: a measurement's observations in OONI's sub-formats.
//!
//! Each observation is one *transaction* (`transaction_id` = its 1-based index), and lands in
//! the lists OONI keeps for its operation:
//!
//! | observation | OONI |
//! |---|---|
//! | `resolve` with DNS detail | `queries[]` (df-002): the first reply; later replies (injection evidence) in `x_dns_duplicate_responses[]`, the key OONI's Web Connectivity v0.5 uses |
//! | `connect` | `tcp_connect[]` (df-005) and a `connect` event in `network_events[]` (df-008) |
//! | `tls_handshake` | `tls_handshakes[]` (df-006) |
//! | `quic_handshake` | `quic_handshakes[]` (df-006, as OONI does for QUIC) |
//! | `data` | a `write` and a `read` event in `network_events[]` with the byte counts |
//! | `vpn_handshake` | no OONI sub-format: only in `test_keys.vantage.observations` |
//!
//! Only steps that ran on the probe (vantage `probe` or `doh`) go into OONI's lists: every entry
//! there is, for OONI's tools, something the probe did. The test helper's steps are controls, and
//! stay in `test_keys.vantage.observations` with everything else.
//!
//! `test_keys.vantage.observations` is every observation verbatim (with its `transaction_id`),
//! so nothing Vantage knows is lost in the mapping; the certificate chains of handshakes already
//! in `tls_handshakes`/`quic_handshakes` are not repeated there.

use std::net::{IpAddr, SocketAddr};

use serde_json::{Map, Value, json};

use super::OoniError;
use super::failure::failure_string;
use crate::envelope::{Measurement, Transport};
use crate::failure::Failure;
use crate::observation::{DataDetail, Detail, DnsDetail, DnsEngine, DnsReply, Observation, Operation, TlsDetail, Vantage};

/// Build `test_keys` for `m`.
pub(super) fn test_keys(m: &Measurement) -> Result<Value, OoniError> {
    let mut keys = Lists::default();
    for (index, obs) in m.observations.iter().enumerate() {
        keys.add(m, index + 1, obs)?;
    }
    let mut out = Map::new();
    out.insert("queries".into(), Value::Array(keys.queries));
    out.insert("tcp_connect".into(), Value::Array(keys.tcp_connect));
    out.insert("tls_handshakes".into(), Value::Array(keys.tls_handshakes));
    out.insert("network_events".into(), Value::Array(keys.network_events));
    if !keys.quic_handshakes.is_empty() {
        out.insert("quic_handshakes".into(), Value::Array(keys.quic_handshakes));
    }
    if !keys.duplicates.is_empty() {
        out.insert("x_dns_duplicate_responses".into(), Value::Array(keys.duplicates));
    }
    out.insert(
        "vantage".into(),
        json!({
            "id": m.id,
            "schema_version": m.schema_version,
            "target": m.target,
            "controls": m.controls,
            "verdict": m.verdict,
            "observations": keys.residue,
        }),
    );
    Ok(Value::Object(out))
}

#[derive(Default)]
struct Lists {
    queries: Vec<Value>,
    duplicates: Vec<Value>,
    tcp_connect: Vec<Value>,
    tls_handshakes: Vec<Value>,
    quic_handshakes: Vec<Value>,
    network_events: Vec<Value>,
    residue: Vec<Value>,
}

/// Seconds since the measurement's start, as OONI's `t0`/`t` are.
fn secs(ms: f64) -> f64 {
    ms / 1000.0
}

impl Lists {
    fn add(&mut self, m: &Measurement, tid: usize, obs: &Observation) -> Result<(), OoniError> {
        let on_probe = obs.vantage != Vantage::Helper;
        let mut certificates_mapped = false;
        if on_probe {
            let step = Step::new(tid, obs);
            match (obs.op, obs.detail.as_ref()) {
                (Operation::Resolve, detail) => {
                    let dns = match detail {
                        Some(Detail::Dns(dns)) => Some(dns),
                        _ => None,
                    };
                    self.resolve(&step, obs, dns);
                }
                (Operation::Connect, _) => self.connect(&step, obs, m),
                (Operation::TlsHandshake | Operation::QuicHandshake, detail) => {
                    let tls = match detail {
                        Some(Detail::Tls(tls)) => Some(tls),
                        _ => None,
                    };
                    let entry = handshake(&step, obs, tls);
                    if obs.op == Operation::TlsHandshake {
                        self.tls_handshakes.push(entry);
                    } else {
                        self.quic_handshakes.push(entry);
                    }
                    certificates_mapped = true;
                }
                (Operation::Data, Some(Detail::Data(data))) => self.data(&step, obs, data, m),
                (Operation::Data | Operation::VpnHandshake, _) => {}
            }
        }
        self.residue.push(residue(tid, obs, certificates_mapped)?);
        Ok(())
    }

    fn resolve(&mut self, step: &Step, obs: &Observation, dns: Option<&DnsDetail>) {
        let first = dns.and_then(|d| d.replies.first());
        let t_end = step.t0 + secs(obs.duration_ms);
        self.queries.push(query(step, obs, dns, first, obs.failure, t_end));
        for later in dns.map(|d| d.replies.iter().skip(1)).into_iter().flatten() {
            let t = step.t0 + secs(later.after_ms);
            self.duplicates.push(query(step, obs, dns, Some(later), reply_failure(later), t));
        }
    }

    fn connect(&mut self, step: &Step, obs: &Observation, m: &Measurement) {
        let Some(peer) = peer(obs, m) else { return };
        let failure = step.failure.clone();
        self.tcp_connect.push(json!({
            "ip": peer.ip().to_string(),
            "port": peer.port(),
            "status": {"success": failure.is_none(), "failure": failure},
            "t0": step.t0,
            "t": step.t,
            "transaction_id": step.tid,
            "tags": step.tags,
        }));
        self.network_events.push(json!({
            "address": peer.to_string(),
            "failure": failure,
            "operation": "connect",
            "proto": "tcp",
            "t0": step.t0,
            "t": step.t,
            "transaction_id": step.tid,
            "tags": step.tags,
        }));
    }

    /// A data phase as a `write` at its start and a `read` when the last byte came; a failure
    /// belongs to the read (the step records one failure, and writes rarely fail).
    fn data(&mut self, step: &Step, obs: &Observation, data: &DataDetail, m: &Measurement) {
        let proto = match m.target.transport {
            Some(Transport::Udp) => "udp",
            _ => "tcp",
        };
        let address = peer(obs, m).map(|p| p.to_string());
        let read_at = data.last_byte_ms.map_or(step.t, |ms| step.t0 + secs(ms));
        for (operation, num_bytes, failure, t) in
            [("write", data.bytes_sent, None, step.t0), ("read", data.bytes_received, step.failure.clone(), read_at)]
        {
            let mut event = json!({
                "failure": failure,
                "num_bytes": num_bytes,
                "operation": operation,
                "proto": proto,
                "t0": step.t0,
                "t": t,
                "transaction_id": step.tid,
                "tags": step.tags,
            });
            // `address` is optional in df-008: absent, not null, when the step had no peer.
            if let (Some(address), Value::Object(map)) = (&address, &mut event) {
                map.insert("address".into(), address.clone().into());
            }
            self.network_events.push(event);
        }
    }
}

/// What every entry of one observation shares.
struct Step {
    tid: usize,
    t0: f64,
    t: f64,
    failure: Option<String>,
    tags: Vec<String>,
}

impl Step {
    fn new(tid: usize, obs: &Observation) -> Step {
        let mut tags = vec![format!("role={}", obs.role)];
        if obs.vantage == Vantage::Doh {
            tags.push("vantage=doh".into());
        }
        if let Some(trial) = obs.trial {
            tags.push(format!("trial={trial}"));
        }
        Step {
            tid,
            t0: secs(obs.t_start_ms),
            t: secs(obs.t_start_ms + obs.duration_ms),
            failure: obs.failure.map(|f| failure_string(f, obs.raw.as_ref())),
            tags,
        }
    }
}

/// The server address of a step: its own, else the target's.
fn peer(obs: &Observation, m: &Measurement) -> Option<SocketAddr> {
    obs.peer.or_else(|| Some(SocketAddr::new(m.target.address?, m.target.port?)))
}

/// One df-002 query: the lookup with one of its replies.
fn query(
    step: &Step,
    obs: &Observation,
    dns: Option<&DnsDetail>,
    reply: Option<&DnsReply>,
    failure: Option<Failure>,
    t: f64,
) -> Value {
    let mut tags = step.tags.clone();
    let engine = match dns.map(|d| d.engine) {
        Some(DnsEngine::System) | None => "system",
        Some(DnsEngine::Udp) => "udp",
        Some(DnsEngine::Doh) => "doh",
        // OONI's name for DNS over TLS.
        Some(DnsEngine::Dot) => "dot",
        Some(DnsEngine::Blackhole) => {
            tags.push("blackhole".into());
            "udp"
        }
    };
    let resolver = dns.and_then(|d| d.resolver.clone()).or_else(|| obs.peer.map(|p| p.to_string()));
    let mut entry = json!({
        "answers": reply.map(answers).unwrap_or_default(),
        "engine": engine,
        "failure": failure.map(|f| failure_string(f, obs.raw.as_ref())),
        "hostname": dns.map(|d| d.query_name.as_str()).unwrap_or_default(),
        "query_type": dns.map(|d| d.query_type.as_str()).unwrap_or("ANY"),
        "resolver_address": resolver.unwrap_or_default(),
        "resolver_hostname": null,
        "resolver_port": null,
        "t0": step.t0,
        "t": t,
        "transaction_id": step.tid,
        "tags": tags,
    });
    if let (Some(code), Value::Object(map)) = (reply.and_then(|r| rcode_number(&r.rcode)), &mut entry) {
        map.insert("rcode".into(), code.into());
    }
    entry
}

fn answers(reply: &DnsReply) -> Vec<Value> {
    reply
        .answers
        .iter()
        .map(|a| match a.ip {
            IpAddr::V4(ip) => json!({"answer_type": "A", "ipv4": ip.to_string(), "ttl": a.ttl}),
            IpAddr::V6(ip) => json!({"answer_type": "AAAA", "ipv6": ip.to_string(), "ttl": a.ttl}),
        })
        .collect()
}

/// The numeric rcode OONI records, from the mnemonic Vantage records (RFC 1035 §4.1.1).
fn rcode_number(name: &str) -> Option<u16> {
    Some(match name {
        "NOERROR" => 0,
        "FORMERR" => 1,
        "SERVFAIL" => 2,
        "NXDOMAIN" => 3,
        "NOTIMP" => 4,
        "REFUSED" => 5,
        _ => return None,
    })
}

/// The failure a later reply alone says (the step's failure is the first reply's).
fn reply_failure(reply: &DnsReply) -> Option<Failure> {
    match reply.rcode.as_str() {
        "NOERROR" if reply.answers.is_empty() => Some(Failure::DnsNoAnswer),
        "NOERROR" => None,
        "NXDOMAIN" => Some(Failure::DnsNxdomainError),
        "SERVFAIL" => Some(Failure::DnsServfailError),
        "REFUSED" => Some(Failure::DnsRefusedError),
        _ => Some(Failure::DnsServerMisbehaving),
    }
}

/// One df-006 handshake. A chain that did not verify fails the handshake in OONI's engine (it
/// verifies during the handshake); Vantage finishes the handshake and keeps the chain as
/// evidence, so its `verify_failure` is the entry's `failure` and the chain is kept too.
fn handshake(step: &Step, obs: &Observation, tls: Option<&TlsDetail>) -> Value {
    let failure = step.failure.clone().or_else(|| tls.and_then(|t| t.verify_failure).map(|f| failure_string(f, None)));
    let network = if obs.op == Operation::QuicHandshake { "udp" } else { "tcp" };
    let certificates: Vec<Value> =
        tls.map(|t| t.peer_certificates.iter().map(|c| json!({"data": c, "format": "base64"})).collect()).unwrap_or_default();
    json!({
        "network": network,
        "address": obs.peer.map(|p| p.to_string()).unwrap_or_default(),
        "server_name": obs.sni.clone().unwrap_or_default(),
        "cipher_suite": tls.and_then(|t| t.cipher_suite.as_deref()).map(cipher_suite).unwrap_or_default(),
        "tls_version": tls.and_then(|t| t.version.as_deref()).map(tls_version).unwrap_or_default(),
        "negotiated_protocol": tls.and_then(|t| t.alpn.clone()).unwrap_or_default(),
        "no_tls_verify": false,
        "peer_certificates": certificates,
        "failure": failure,
        "t0": step.t0,
        "t": step.t,
        "transaction_id": step.tid,
        "tags": step.tags,
    })
}

/// rustls's version name (`TLSv1_3`) as Go's (`TLSv1.3`), which OONI records.
fn tls_version(name: &str) -> String {
    name.replace('_', ".")
}

/// rustls's TLS 1.3 suite names (`TLS13_AES_128_GCM_SHA256`) as IANA's and Go's
/// (`TLS_AES_128_GCM_SHA256`); TLS 1.2 names are already the same.
fn cipher_suite(name: &str) -> String {
    match name.strip_prefix("TLS13_") {
        Some(rest) => format!("TLS_{rest}"),
        None => name.to_string(),
    }
}

/// The observation verbatim with its `transaction_id`; certificate chains already written to a
/// handshake entry are not repeated.
fn residue(tid: usize, obs: &Observation, certificates_mapped: bool) -> Result<Value, OoniError> {
    let mut value = serde_json::to_value(obs).map_err(OoniError::Encode)?;
    if let Value::Object(map) = &mut value {
        map.insert("transaction_id".into(), tid.into());
        if certificates_mapped && let Some(Value::Object(detail)) = map.get_mut("detail") {
            detail.remove("peer_certificates");
        }
    }
    Ok(value)
}
