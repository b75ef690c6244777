//! The OONI records of the example measurements, field by field, against the field lists and
//! published examples of `ooni/spec` (df-000 §3.1, df-002, df-005, df-006, df-008 in
//! `reference/ooni.md`).

use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;

use super::*;
use crate::envelope::NetworkType;
use crate::example;
use crate::failure::Failure;
use crate::failure::{CodeSpace, RawCode};
use crate::observation::{DataDetail, Detail, Observation, Operation, Role, Vantage, VpnDetail, VpnProtocol, VpnStage};

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 5, 4, 3).single().expect("valid time")
}

fn ooni(m: &Measurement) -> Value {
    record(m).expect("a v1 measurement maps")
}

/// JSON types as the spec names them.
#[derive(Clone, Copy, Debug)]
enum Type {
    String,
    Int,
    Float,
    Bool,
    Object,
    Array,
    NullableString,
    StringOrNull,
}

fn has_type(value: &Value, ty: Type) -> bool {
    match ty {
        Type::String => value.is_string(),
        Type::Int => value.is_u64() || value.is_i64(),
        Type::Float => value.is_number(),
        Type::Bool => value.is_boolean(),
        Type::Object => value.is_object(),
        Type::Array => value.is_array(),
        Type::NullableString | Type::StringOrNull => value.is_string() || value.is_null(),
    }
}

/// Every field in `fields` is present in `object` with its type.
fn assert_fields(object: &Value, fields: &[(&str, Type)], what: &str) {
    for (name, ty) in fields {
        let value = object.get(*name).unwrap_or_else(|| panic!("{what}: `{name}` is missing in {object}"));
        assert!(has_type(value, *ty), "{what}: `{name}` is {value}, not {ty:?}");
    }
}

/// df-000 (data format 0.2.0): the base record's fields a Vantage record always has.
const BASE: &[(&str, Type)] = &[
    ("annotations", Type::Object),
    ("data_format_version", Type::String),
    ("extensions", Type::Object),
    ("input", Type::StringOrNull),
    ("measurement_start_time", Type::String),
    ("probe_asn", Type::String),
    ("probe_cc", Type::String),
    ("probe_ip", Type::String),
    ("report_id", Type::String),
    ("software_name", Type::String),
    ("software_version", Type::String),
    ("test_keys", Type::Object),
    ("test_name", Type::String),
    ("test_runtime", Type::Float),
    ("test_start_time", Type::String),
    ("test_version", Type::String),
];

/// df-002 Query. Not written: `getaddrinfo_error` (no getaddrinfo), `raw_response` (the reply's
/// bytes are not kept), `dial_id` (optional, deprecated by `transaction_id`).
const QUERY: &[(&str, Type)] = &[
    ("answers", Type::Array),
    ("engine", Type::String),
    ("failure", Type::NullableString),
    ("hostname", Type::String),
    ("query_type", Type::String),
    ("resolver_address", Type::String),
    ("resolver_hostname", Type::NullableString),
    ("resolver_port", Type::NullableString),
    ("t0", Type::Float),
    ("t", Type::Float),
    ("transaction_id", Type::Int),
    ("tags", Type::Array),
];

/// df-002 Answer of an address (`asn`/`as_org_name` are left out: the probe does not know them).
const ANSWER: &[(&str, Type)] = &[("answer_type", Type::String), ("ttl", Type::Int)];

/// df-005 TCPConnect (and its Status; the deprecated `blocked` is not written).
const TCP_CONNECT: &[(&str, Type)] = &[
    ("ip", Type::String),
    ("port", Type::Int),
    ("status", Type::Object),
    ("t0", Type::Float),
    ("t", Type::Float),
    ("transaction_id", Type::Int),
    ("tags", Type::Array),
];
const TCP_STATUS: &[(&str, Type)] = &[("failure", Type::NullableString), ("success", Type::Bool)];

/// df-006 TLSHandshake. Not written: `outer_server_name`/`echconfig` (no ECH), `so_error`, `conn_id`
/// (optional, superseded by `transaction_id`).
const TLS_HANDSHAKE: &[(&str, Type)] = &[
    ("address", Type::String),
    ("cipher_suite", Type::String),
    ("failure", Type::NullableString),
    ("negotiated_protocol", Type::String),
    ("no_tls_verify", Type::Bool),
    ("peer_certificates", Type::Array),
    ("t", Type::Float),
    ("tags", Type::Array),
    ("tls_version", Type::String),
    ("transaction_id", Type::Int),
    ("server_name", Type::String),
    ("network", Type::String),
    ("t0", Type::Float),
];

/// df-008 Event, as the reference lists it for OONI's current engine (`transaction_id` in place of
/// the older `conn_id`).
const EVENT: &[(&str, Type)] = &[
    ("address", Type::String),
    ("failure", Type::NullableString),
    ("operation", Type::String),
    ("proto", Type::String),
    ("t0", Type::Float),
    ("t", Type::Float),
    ("transaction_id", Type::Int),
    ("tags", Type::Array),
];

/// Every failure string anywhere in the record's OONI lists is df-007's.
fn assert_failures_are_df_007(record: &Value) {
    let keys = &record["test_keys"];
    let mut failures = Vec::new();
    for list in ["queries", "tls_handshakes", "quic_handshakes", "network_events", "x_dns_duplicate_responses"] {
        for entry in keys[list].as_array().into_iter().flatten() {
            failures.push(entry["failure"].clone());
        }
    }
    for entry in keys["tcp_connect"].as_array().into_iter().flatten() {
        failures.push(entry["status"]["failure"].clone());
    }
    for failure in failures.iter().filter_map(Value::as_str) {
        assert!(
            super::failure::tests::DF_007.contains(&failure) || failure.starts_with("unknown_failure: "),
            "{failure} is not a df-007 failure string"
        );
    }
}

#[test]
fn the_base_record_has_every_df_000_field_with_its_type() {
    for m in [example::tls_reset(at()), example::dns_injected(at()), example::tls_fleet(3, at())] {
        let r = ooni(&m);
        assert_fields(&r, BASE, "base record");
        assert_eq!(r["data_format_version"], "0.2.0");
        assert_eq!(r["probe_ip"], "127.0.0.1");
        assert_eq!(r["software_name"], "vantage-probe");
        assert_eq!(r["software_version"], "0.1.0");
        for (name, value) in r["annotations"].as_object().expect("object") {
            assert!(value.is_string(), "annotation {name} is {value}: OONI's annotations are strings");
        }
        assert_failures_are_df_007(&r);
    }
}

#[test]
fn times_are_in_ooni_form_and_the_runtime_in_seconds() {
    let r = ooni(&example::tls_reset(at()));
    assert_eq!(r["measurement_start_time"], "2026-12-01 05:04:03");
    assert_eq!(r["test_start_time"], "2026-12-01 05:04:03");
    assert_eq!(r["test_runtime"], 0.012);
}

#[test]
fn the_probe_is_described_as_ooni_describes_a_withheld_one() {
    let r = ooni(&example::tls_reset(at()));
    assert_eq!((r["probe_cc"].as_str(), r["probe_asn"].as_str()), (Some("ZZ"), Some("AS0")));
    let fleet = ooni(&example::tls_fleet(3, at()));
    let asn = fleet["probe_asn"].as_str().expect("string");
    assert!(asn.starts_with("AS") && asn[2..].parse::<u32>().is_ok(), "{asn}");
}

#[test]
fn a_tls_reset_is_a_connection_reset_handshake_beside_a_completed_control() {
    let r = ooni(&example::tls_reset(at()));
    assert_eq!(r["test_name"], "urlgetter");
    assert_eq!(r["input"], "tlshandshake://blocked.example:443");
    let handshakes = r["test_keys"]["tls_handshakes"].as_array().expect("array");
    assert_eq!(handshakes.len(), 2);
    for h in handshakes {
        assert_fields(h, TLS_HANDSHAKE, "tls_handshakes[]");
        assert_eq!(h["address"], "203.0.113.10:443");
        assert_eq!(h["network"], "tcp");
        assert_eq!(h["no_tls_verify"], false);
    }
    let (control, target) = (&handshakes[0], &handshakes[1]);
    assert_eq!(control["failure"], Value::Null);
    assert_eq!(control["server_name"], "control.example");
    assert_eq!(control["tls_version"], "TLSv1.3");
    assert_eq!(control["tags"], serde_json::json!(["role=control"]));
    assert_eq!(target["failure"], "connection_reset");
    assert_eq!(target["server_name"], "blocked.example");
    assert_eq!(target["tls_version"], "");
    assert_eq!(target["tags"], serde_json::json!(["role=target"]));
    assert_eq!((target["t0"].as_f64(), target["t"].as_f64()), (Some(0.0), Some(0.0025)));
    assert_eq!(target["transaction_id"], 2);
}

#[test]
fn connects_are_tcp_connect_entries_and_connect_events() {
    let r = ooni(&example::tls_fleet(3, at()));
    let keys = &r["test_keys"];
    let connects = keys["tcp_connect"].as_array().expect("array");
    assert_eq!(connects.len(), 2, "the control's and the target's connect");
    for c in connects {
        assert_fields(c, TCP_CONNECT, "tcp_connect[]");
        assert_fields(&c["status"], TCP_STATUS, "tcp_connect[].status");
        assert_eq!(c["status"]["success"], true);
        assert_eq!(c["port"], 443);
    }
    let events = keys["network_events"].as_array().expect("array");
    assert_eq!(events.len(), 2);
    for (event, connect) in events.iter().zip(connects) {
        assert_fields(event, EVENT, "network_events[]");
        assert_eq!(event["operation"], "connect");
        assert_eq!(event["proto"], "tcp");
        assert_eq!(event["address"], format!("{}:443", connect["ip"].as_str().expect("ip")));
        assert_eq!(event["transaction_id"], connect["transaction_id"]);
    }
}

#[test]
fn a_data_phase_is_a_write_and_a_read_event() {
    let mut m = example::tls_reset(at());
    m.observations.push(Observation {
        op: Operation::Data,
        role: Role::Target,
        vantage: Vantage::Probe,
        t_start_ms: 10.0,
        duration_ms: 5000.0,
        peer: "203.0.113.10:443".parse().ok(),
        sni: None,
        failure: Some(Failure::GenericTimeoutError),
        raw: None,
        detail: Some(Detail::Data(DataDetail {
            bytes_sent: 517,
            bytes_received: 1400,
            last_byte_ms: Some(40.0),
            ..DataDetail::default()
        })),
        trial: Some(2),
    });
    let r = ooni(&m);
    let events = r["test_keys"]["network_events"].as_array().expect("array");
    let (write, read) = (&events[0], &events[1]);
    assert_fields(write, EVENT, "network_events[] write");
    assert_fields(read, EVENT, "network_events[] read");
    assert_eq!((write["operation"].as_str(), write["num_bytes"].as_u64()), (Some("write"), Some(517)));
    assert_eq!(write["failure"], Value::Null);
    assert_eq!((read["operation"].as_str(), read["num_bytes"].as_u64()), (Some("read"), Some(1400)));
    assert_eq!(read["failure"], "generic_timeout_error");
    assert_eq!(read["t"].as_f64(), Some(0.05));
    assert_eq!(read["tags"], serde_json::json!(["role=target", "trial=2"]));

    // Without a peer or a target address there is no address to say: absent, not null.
    m.target.address = None;
    m.observations.retain(|o| o.op == Operation::Data);
    m.observations[0].peer = None;
    let r = ooni(&m);
    assert!(r["test_keys"]["network_events"][0].get("address").is_none());
}

#[test]
fn dns_answers_are_df_002_queries_and_later_replies_duplicate_responses() {
    let r = ooni(&example::dns_injected(at()));
    assert_eq!(r["test_name"], "urlgetter");
    assert_eq!(r["input"], "dnslookup://blocked.example");
    let keys = &r["test_keys"];
    let queries = keys["queries"].as_array().expect("array");
    assert_eq!(queries.len(), 2);
    for q in queries {
        assert_fields(q, QUERY, "queries[]");
        assert_eq!(q["hostname"], "blocked.example");
        assert_eq!(q["query_type"], "A");
        assert_eq!(q["rcode"], 0);
    }
    for answer in queries.iter().flat_map(|q| q["answers"].as_array().into_iter().flatten()) {
        assert_fields(answer, ANSWER, "queries[].answers[]");
    }
    let target = &queries[0];
    assert_eq!(target["engine"], "udp");
    assert_eq!(target["resolver_address"], "192.0.2.53:53");
    assert_eq!(target["failure"], Value::Null);
    assert_eq!(target["answers"], serde_json::json!([{"answer_type": "A", "ipv4": "10.10.34.35", "ttl": 60}]));
    let control = &queries[1];
    assert_eq!(control["engine"], "doh");
    assert_eq!(control["tags"], serde_json::json!(["role=control", "vantage=doh"]));
    assert_eq!(control["answers"][0]["ipv4"], "203.0.113.20");
    let duplicates = keys["x_dns_duplicate_responses"].as_array().expect("array");
    assert_eq!(duplicates.len(), 1);
    assert_fields(&duplicates[0], QUERY, "x_dns_duplicate_responses[]");
    assert_eq!(duplicates[0]["answers"][0]["ipv4"], "203.0.113.20");
    assert_eq!(duplicates[0]["transaction_id"], target["transaction_id"]);
    assert_eq!(duplicates[0]["t"].as_f64(), Some(0.0125));
}

#[test]
fn an_nxdomain_is_a_dns_nxdomain_error_with_its_rcode() {
    let mut m = example::dns_injected(at());
    m.observations.truncate(1);
    m.observations[0].failure = Some(Failure::DnsNxdomainError);
    if let Some(Detail::Dns(dns)) = &mut m.observations[0].detail {
        dns.replies.truncate(1);
        dns.replies[0].rcode = "NXDOMAIN".into();
        dns.replies[0].answers.clear();
    }
    let r = ooni(&m);
    let q = &r["test_keys"]["queries"][0];
    assert_eq!(q["failure"], "dns_nxdomain_error");
    assert_eq!(q["rcode"], 3);
    assert_eq!(q["answers"], serde_json::json!([]));
    assert!(r["test_keys"].get("x_dns_duplicate_responses").is_none());
}

#[test]
fn certificates_are_binary_data_and_an_unverified_chain_fails_the_handshake() {
    // Fleet measurements 0.. include every outcome; find an interception one.
    let m = (0..200)
        .map(|n| example::tls_fleet(n, at()))
        .find(|m| m.verdict.mechanism == Some(crate::verdict::Mechanism::TlsMitmCertificate));
    let r = ooni(&m.expect("the fleet has interception"));
    let handshakes = r["test_keys"]["tls_handshakes"].as_array().expect("array");
    assert_eq!(handshakes.len(), 2, "the probe's two; the helper's is not OONI's probe data");
    let target = &handshakes[1];
    assert_eq!(target["failure"], "ssl_unknown_authority");
    assert_eq!(target["cipher_suite"], "TLS_AES_128_GCM_SHA256");
    assert_eq!(target["negotiated_protocol"], "http/1.1");
    let chain = target["peer_certificates"].as_array().expect("array");
    assert_eq!(chain.len(), 2);
    for cert in chain {
        assert_eq!(cert["format"], "base64");
        assert!(cert["data"].as_str().is_some_and(|d| !d.is_empty()));
    }
    assert_failures_are_df_007(&r);
}

#[test]
fn test_keys_vantage_keeps_what_ooni_has_no_field_for() {
    let m = example::tls_fleet(3, at());
    let r = ooni(&m);
    let vantage = &r["test_keys"]["vantage"];
    assert_eq!(vantage["id"], m.id.to_string());
    assert_eq!(vantage["schema_version"], 1);
    assert_eq!(vantage["verdict"]["status"], m.verdict.status.as_str());
    assert_eq!(vantage["target"]["name"], m.target.name);
    assert_eq!(vantage["controls"], serde_json::json!(["control_sni", "helper"]));
    let observations = vantage["observations"].as_array().expect("array");
    assert_eq!(observations.len(), m.observations.len());
    for (i, (kept, original)) in observations.iter().zip(&m.observations).enumerate() {
        assert_eq!(kept["transaction_id"], i + 1);
        assert_eq!(kept["op"], original.op.as_str());
        assert_eq!(kept["vantage"], original.vantage.as_str());
    }
    // The probe's chains are in tls_handshakes only; the helper's stay here, its only place.
    let helper = observations.last().expect("the helper's step");
    assert_eq!(helper["vantage"], "helper");
    assert!(helper["detail"]["peer_certificates"].as_array().is_some_and(|c| !c.is_empty()));
    assert!(observations[1]["detail"].get("peer_certificates").is_none());
    assert_eq!(observations[1]["detail"]["leaf_sha256"].as_str().map(str::len), Some(64));
}

#[test]
fn envelope_facts_without_an_ooni_field_are_string_annotations() {
    let mut m = example::tls_reset(at());
    m.probe.network_type = Some(NetworkType::Vpn);
    m.probe.network_epoch = Some(4);
    m.target.list_version = Some(17);
    let r = ooni(&m);
    let a = &r["annotations"];
    assert_eq!(a["network_type"], "vpn");
    assert_eq!(a["vantage_network_epoch"], "4");
    assert_eq!(a["vantage_target_list_version"], "17");
    assert_eq!(a["platform"], "linux");
    assert_eq!(a["architecture"], "x86_64");
    assert_eq!(a["engine_name"], "vantage-probe");
    let bare = ooni(&example::tls_reset(at()));
    for absent in ["network_type", "vantage_network_epoch", "vantage_target_list_version"] {
        assert!(bare["annotations"].get(absent).is_none(), "{absent} without a value");
    }
}

#[test]
fn every_test_has_a_test_name_and_only_urlgetter_shapes_claim_urlgetter() {
    for test in TestKind::ALL {
        let name = test_name(*test);
        match test {
            TestKind::Dns | TestKind::Tcp | TestKind::Tls => assert_eq!(name, "urlgetter"),
            other => assert_eq!(name, format!("vantage_{}", other.as_str())),
        }
    }
}

#[test]
fn inputs_use_ooni_schemes_and_the_vpn_tests_have_none() {
    let mut m = example::tls_reset(at());
    m.test = TestKind::Tcp;
    assert_eq!(ooni(&m)["input"], "tcpconnect://203.0.113.10:443");
    m.test = TestKind::Quic;
    assert_eq!(ooni(&m)["input"], "quichandshake://blocked.example:443");
    m.test = TestKind::Openvpn;
    assert_eq!(ooni(&m)["input"], Value::Null);
    assert_eq!(ooni(&m)["test_name"], "vantage_openvpn");
    m.test = TestKind::Dot;
    assert_eq!(ooni(&m)["input"], "dot://blocked.example:443");
    m.test = TestKind::Doh;
    assert_eq!(ooni(&m)["input"], "https://blocked.example/dns-query");
}

#[test]
fn the_report_id_follows_ooni_s_layout_and_links_nothing() {
    let a = example::tls_reset(at());
    let b = example::tls_reset(at());
    let id = ooni(&a)["report_id"].as_str().expect("string").to_string();
    assert_eq!(id, format!("20261201T050403Z_urlgetter_ZZ_0_n1_{}", a.id.simple()));
    assert_ne!(id, ooni(&b)["report_id"], "two measurements of one probe get two reports");
}

#[test]
fn a_record_carries_no_address_the_measurement_does_not() {
    let m = example::tls_fleet(5, at());
    let original = m.to_json_line().expect("encode");
    let text = ooni(&m).to_string();
    let addresses = text
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter(|s| s.split('.').count() == 4 && s.parse::<std::net::Ipv4Addr>().is_ok());
    for address in addresses {
        assert!(address == PROBE_IP || original.contains(address), "{address} is not in the measurement");
    }
}

#[test]
fn the_same_measurement_gives_the_same_record() {
    let m = example::tls_fleet(11, at());
    assert_eq!(ooni(&m), ooni(&m));
}

#[test]
fn another_schema_version_is_refused() {
    let mut m = example::tls_reset(at());
    m.schema_version = 2;
    let err = record(&m).expect_err("v2 is unknown");
    assert!(matches!(err, OoniError::SchemaVersion(2)), "{err}");
}

#[test]
fn a_vpn_step_has_no_ooni_entry_and_is_kept_whole_in_test_keys_vantage() {
    let mut m = example::tls_reset(at());
    m.test = TestKind::Openvpn;
    m.observations = vec![Observation {
        op: Operation::VpnHandshake,
        role: Role::Target,
        vantage: Vantage::Probe,
        t_start_ms: 0.0,
        duration_ms: 30.0,
        peer: "203.0.113.10:1194".parse().ok(),
        sni: None,
        failure: Some(Failure::ProtocolMismatch),
        raw: Some(RawCode::named(CodeSpace::Protocol, None, "bad_hmac")),
        detail: Some(Detail::Vpn(VpnDetail {
            protocol: VpnProtocol::Openvpn,
            stage_reached: VpnStage::Reply,
            packets_sent: 1,
            packets_received: 1,
            ..VpnDetail::default()
        })),
        trial: None,
    }];
    let r = ooni(&m);
    let keys = &r["test_keys"];
    for list in ["queries", "tcp_connect", "tls_handshakes", "network_events"] {
        assert_eq!(keys[list], serde_json::json!([]), "{list}");
    }
    let kept = &keys["vantage"]["observations"][0];
    assert_eq!(kept["failure"], "protocol_mismatch");
    assert_eq!(kept["raw"]["name"], "bad_hmac");
    assert_eq!(kept["detail"]["stage_reached"], "reply");
    assert_eq!(kept["transaction_id"], 1);
}

#[test]
fn every_fleet_measurement_maps_to_a_complete_record() {
    for n in 0..300 {
        let m = example::tls_fleet(n, at());
        let r = ooni(&m);
        assert_fields(&r, BASE, "base record");
        let keys = &r["test_keys"];
        for h in keys["tls_handshakes"].as_array().expect("array") {
            assert_fields(h, TLS_HANDSHAKE, "tls_handshakes[]");
        }
        for c in keys["tcp_connect"].as_array().expect("array") {
            assert_fields(c, TCP_CONNECT, "tcp_connect[]");
        }
        for e in keys["network_events"].as_array().expect("array") {
            assert_fields(e, EVENT, "network_events[]");
        }
        assert_eq!(keys["vantage"]["observations"].as_array().map(Vec::len), Some(m.observations.len()));
        assert_failures_are_df_007(&r);
    }
}
