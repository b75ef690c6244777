//! The ingest benchmark's workload (`tests/bench/ingest.sh`, binary `ingest-load`): realistic TLS
//! measurements, signed gzip batches as a probe sends them, and the percentiles of what was timed.
//!
//! A measurement here has the shape `vantage-probe run` gives a TLS target that answered: a TCP
//! connect, a TLS handshake and a `GET /` for the control SNI and again for the target SNI, each
//! handshake with the certificate chain the server sent (a P-256 leaf, as `tests/bench/lib.sh`'s
//! `openssl s_server` sends), its SHA-256 and the verification result. That is about 3 KB of JSON,
//! most of it the two base64 chains, which repeat for every measurement of the same target (what
//! a store that keeps blobs once can exploit, and what gzip on the wire partly does).

use std::io::Write;

use chrono::{DateTime, Utc};
use flate2::Compression;
use flate2::write::GzEncoder;
use vantage_measurement::observation::{DataDetail, Detail, Observation, Operation, Role, TlsDetail, Vantage};
use vantage_measurement::wire::ProbeKey;
use vantage_measurement::{ControlKind, Measurement, Target, TestKind, Transport, Verdict, example};

use crate::pki::TestCa;

/// A certificate chain as the probe records it: base64 DER, leaf first, and the leaf's SHA-256.
#[derive(Clone, Debug)]
struct Chain {
    certificates: Vec<String>,
    leaf_sha256: String,
}

impl Chain {
    fn issued(ca: &TestCa, name: &str) -> anyhow::Result<Chain> {
        use base64::Engine;
        let (leaf, _key) = ca.issue(name)?;
        let digest = ring::digest::digest(&ring::digest::SHA256, &leaf);
        let leaf_sha256 = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        Ok(Chain { certificates: vec![base64::engine::general_purpose::STANDARD.encode(&leaf)], leaf_sha256 })
    }
}

/// Targets with their certificates, and the control's: what measurements are made from.
pub struct Workload {
    targets: Vec<(String, Chain)>,
    control: Chain,
}

impl Workload {
    /// `targets` TLS targets named `t0`, `t1`, … (`t<i>.bench.test`), each with its own leaf
    /// certificate, and the control SNI `control.bench.test`.
    pub fn new(targets: usize) -> anyhow::Result<Workload> {
        let ca = TestCa::new("vantage-bench-ca")?;
        let control = Chain::issued(&ca, "control.bench.test")?;
        let targets = (0..targets)
            .map(|i| Ok((format!("t{i}"), Chain::issued(&ca, &format!("t{i}.bench.test"))?)))
            .collect::<anyhow::Result<_>>()?;
        Ok(Workload { targets, control })
    }

    /// The names of the targets (for the collector's `--targets` list).
    pub fn target_names(&self) -> impl Iterator<Item = &str> {
        self.targets.iter().map(|(name, _)| name.as_str())
    }

    /// A targets file (TOML) listing every target, for `serve --targets`.
    pub fn targets_toml(&self) -> String {
        self.target_names().map(|name| format!("[[target]]\nname = \"{name}\"\n\n")).collect()
    }

    /// A fresh measurement (new UUIDv7 id) of target `target % targets` that ended `ok`, from a
    /// probe in `cc` / `asn`, started at `started_at`.
    pub fn measurement(&self, target: usize, cc: &str, asn: u32, started_at: DateTime<Utc>) -> Measurement {
        let (name, chain) = &self.targets[target % self.targets.len()];
        let domain = format!("{name}.bench.test");
        let peer: std::net::SocketAddr = ([127, 0, 0, (target % 8) as u8 + 1], 8443).into();
        let mut m = example::tls_reset(started_at);
        m.probe.cc = cc.to_string();
        m.probe.asn = asn;
        m.runtime_ms = 9;
        m.test = TestKind::Tls;
        m.target = Target {
            name: name.clone(),
            domain: Some(domain.clone()),
            address: Some(peer.ip()),
            port: Some(peer.port()),
            transport: Some(Transport::Tcp),
            control_sni: Some("control.bench.test".into()),
            list_version: None,
        };
        m.controls = vec![ControlKind::ControlSni];
        m.observations = [(Role::Control, "control.bench.test", &self.control, 0.0), (Role::Target, domain.as_str(), chain, 4.5)]
            .into_iter()
            .flat_map(|(role, sni, chain, t)| handshake_steps(role, peer, sni, chain, t))
            .collect();
        m.verdict = Verdict::ok();
        m
    }
}

/// Connect, handshake and `GET /` of one role, starting `t` ms into the measurement.
fn handshake_steps(role: Role, peer: std::net::SocketAddr, sni: &str, chain: &Chain, t: f64) -> [Observation; 3] {
    let step = |op, t_start_ms, duration_ms, sni: Option<&str>, detail| Observation {
        op,
        role,
        vantage: Vantage::Probe,
        t_start_ms,
        duration_ms,
        peer: Some(peer),
        sni: sni.map(str::to_string),
        failure: None,
        raw: None,
        detail,
        trial: None,
    };
    let tls = TlsDetail {
        version: Some("TLSv1_3".into()),
        alpn: None,
        cipher_suite: Some("TLS13_AES_256_GCM_SHA384".into()),
        peer_certificates: chain.certificates.clone(),
        leaf_sha256: Some(chain.leaf_sha256.clone()),
        verified: Some(true),
        verify_failure: None,
        ech: None,
    };
    let data = DataDetail { bytes_sent: 84, bytes_received: 3137, last_byte_ms: Some(0.61), ..DataDetail::default() };
    [
        step(Operation::Connect, t, 0.12, None, None),
        step(Operation::TlsHandshake, t + 0.12, 2.87, Some(sni), Some(Detail::Tls(tls))),
        step(Operation::Data, t + 3.0, 0.64, Some(sni), Some(Detail::Data(data))),
    ]
}

/// A batch as the probe sends it: NDJSON, gzip, signed by its key.
#[derive(Clone, Debug)]
pub struct SignedBatch {
    /// `X-Vantage-Key`.
    pub key: String,
    /// `X-Vantage-Signature`.
    pub signature: String,
    /// The gzip body.
    pub body: Vec<u8>,
    /// Lines in it.
    pub lines: usize,
    /// Bytes of NDJSON before compression.
    pub raw_bytes: usize,
}

impl SignedBatch {
    /// Serialise, compress and sign `batch` with `key`.
    pub fn new(key: &ProbeKey, batch: &[Measurement]) -> anyhow::Result<SignedBatch> {
        let mut ndjson = String::new();
        for m in batch {
            ndjson.push_str(&m.to_json_line()?);
            ndjson.push('\n');
        }
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(ndjson.as_bytes())?;
        let body = encoder.finish()?;
        Ok(SignedBatch {
            key: key.public_key_base64(),
            signature: key.sign_base64(&body),
            body,
            lines: batch.len(),
            raw_bytes: ndjson.len(),
        })
    }
}

/// The `p` quantile (0..=1) of `sorted` by the nearest-rank method; zero when empty.
pub fn percentile(sorted: &[std::time::Duration], p: f64) -> std::time::Duration {
    if sorted.is_empty() {
        return std::time::Duration::ZERO;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measurements_are_valid_tls_measurements_of_about_three_kilobytes() -> anyhow::Result<()> {
        let workload = Workload::new(3)?;
        let now = Utc::now();
        let m = workload.measurement(4, "DE", 3320, now);
        let line = m.to_json_line()?;
        assert_eq!(vantage_measurement::parse_line(&line, now).map_err(|e| anyhow::anyhow!("{e}"))?, m);
        assert_eq!(m.target.name, "t1");
        assert!((2_000..4_000).contains(&line.len()), "{} bytes", line.len());
        assert_ne!(workload.measurement(4, "DE", 3320, now).id, m.id, "each has its own id");
        Ok(())
    }

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let ms = |n: u64| std::time::Duration::from_millis(n);
        let sorted: Vec<_> = (1..=100).map(ms).collect();
        assert_eq!((percentile(&sorted, 0.5), percentile(&sorted, 0.99), percentile(&sorted, 1.0)), (ms(50), ms(99), ms(100)));
        assert_eq!(percentile(&[], 0.5), ms(0));
    }
}
