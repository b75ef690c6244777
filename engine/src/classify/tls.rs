//! TLS rules: the target SNI against a control SNI on the same address, plus the helper's view.
//!
//! False positives we avoid:
//! - a server that is down fails the control SNI and the helper too → `down`, never `blocked`;
//! - a server that rejects unknown SNIs fails only the control SNI → the target works → `ok`;
//! - a server with a self-signed or expired certificate is untrusted for the helper too → `ok`
//!   (misconfiguration is not interception).

use vantage_measurement::{DataDetail, Detail, Failure, Mechanism, Observation, Operation, Status, Verdict};

use super::evidence::{Steps, describe, tls_detail};
use super::tcp::connect_verdict;

/// Classify a TLS measurement.
pub fn classify(observations: &[Observation]) -> Verdict {
    let steps = Steps(observations);
    match target_handshake(&steps) {
        Ok(target) => handshake_verdict(&steps, Operation::TlsHandshake, target),
        Err(verdict) => verdict,
    }
}

/// The probe's handshake with the target after a connect that succeeded; otherwise the verdict
/// already known: a failed connect is an IP/port block judged as TCP (no SNI was sent yet), a
/// missing step is inconclusive.
pub fn target_handshake<'a>(steps: &Steps<'a>) -> Result<&'a Observation, Verdict> {
    let Some(connect) = steps.probe_target(Operation::Connect) else {
        return Err(Verdict::new(Status::Inconclusive, Mechanism::Other, vec!["no connect step recorded".into()]));
    };
    if connect.failure.is_some() {
        return Err(connect_verdict(steps, connect));
    }
    steps
        .probe_target(Operation::TlsHandshake)
        .ok_or_else(|| Verdict::new(Status::Inconclusive, Mechanism::Other, vec!["no handshake step recorded".into()]))
}

/// Shared by TLS and QUIC: the verdict from the target handshake, the control-SNI handshake and
/// the helper's handshake with the target SNI.
pub(super) fn handshake_verdict(steps: &Steps<'_>, op: Operation, target: &Observation) -> Verdict {
    let control = steps.probe_control(op);
    let helper = steps.helper(op);
    let mut evidence = vec![describe("target sni", target)];
    if let Some(c) = control {
        evidence.push(describe("control sni", c));
    }
    if let Some(h) = helper {
        evidence.push(describe("helper, target sni", h));
    }

    let Some(failure) = target.failure else {
        let verdict = certificate_verdict(target, helper, evidence);
        if verdict.status != Status::Ok || op != Operation::TlsHandshake {
            return verdict;
        }
        return data_verdict(steps).unwrap_or(verdict);
    };
    if steps.probe_offline() {
        return Verdict::new(Status::Inconclusive, Mechanism::NetworkOffline, evidence);
    }
    let helper_ok = helper.map(Observation::succeeded);
    if helper_ok == Some(false) {
        return Verdict::new(Status::Down, Mechanism::ControlFailed, evidence);
    }
    let control_ok = control.is_some_and(Observation::succeeded);
    match (control_ok, helper_ok) {
        // The same server answered another SNI on the same path: the name is what's blocked.
        (true, _) => Verdict::new(Status::Blocked, sni_mechanism(op, failure, helper_ok), evidence),
        (false, Some(true)) if op == Operation::QuicHandshake => {
            // Plain UDP to the same address tells QUIC filtering from all-UDP blocking.
            match steps.probe_control(Operation::Data) {
                Some(echo) if echo.succeeded() => {
                    evidence.push(describe("udp echo", echo));
                    Verdict::new(Status::Blocked, Mechanism::QuicBlocked, evidence)
                }
                Some(echo) => {
                    evidence.push(describe("udp echo", echo));
                    Verdict::new(Status::Blocked, Mechanism::UdpBlocked, evidence)
                }
                None => Verdict::new(Status::Blocked, Mechanism::UdpBlocked, evidence),
            }
        }
        (false, Some(true)) => Verdict::new(Status::Blocked, Mechanism::TlsHandshakeBlocked, evidence),
        (false, _) => {
            evidence.push("control sni failed too and no helper answered: cannot tell blocking from an outage".into());
            Verdict::new(Status::Inconclusive, Mechanism::NoControl, evidence)
        }
    }
}

/// How an SNI-specific failure looked.
fn sni_mechanism(op: Operation, failure: Failure, helper_ok: Option<bool>) -> Mechanism {
    if op == Operation::QuicHandshake {
        return if failure.is_timeout() { Mechanism::QuicSniBlocked } else { Mechanism::Other };
    }
    match failure {
        Failure::ConnectionReset => Mechanism::TlsResetAfterClientHello,
        Failure::GenericTimeoutError => Mechanism::TlsTimeoutSni,
        Failure::EofError => Mechanism::TlsEofAfterClientHello,
        // An alert could be the server's own policy; only the helper's success makes it ours.
        _ if helper_ok == Some(true) => Mechanism::TlsAlertSni,
        _ => Mechanism::Other,
    }
}

/// Below this many bytes a goodput comparison is noise (a redirect against a page).
const MIN_BYTES_TO_COMPARE: u64 = 16 * 1024;
/// The target is "throttled" when its goodput is below this fraction of the control's.
const THROTTLE_RATIO: f64 = 0.25;

/// After both handshakes completed: did data flow for the target as it did for the control?
///
/// - the target's read timed out while the control's completed: if bytes were still arriving in
///   the last quarter of the wait, the flow is being slowed (`tls.throttled`, inconclusive: a
///   busy server looks the same); if it fell silent early, it froze (`tls.data_stall`, blocked:
///   the control SNI on the same server and path was served);
/// - both completed with enough bytes to compare, the target at under a quarter of the control's
///   goodput: `tls.throttled`, inconclusive.
fn data_verdict(steps: &Steps<'_>) -> Option<Verdict> {
    let target = steps.probe_target(Operation::Data)?;
    let control = steps.probe_control(Operation::Data).filter(|c| c.succeeded())?;
    let (t, c) = (data_detail(target)?, data_detail(control)?);
    let evidence = vec![
        format!("target sni data: {} bytes in {:.0} ms{}", t.bytes_received, target.duration_ms, failure_note(target)),
        format!("control sni data: {} bytes in {:.0} ms", c.bytes_received, control.duration_ms),
    ];
    match target.failure {
        Some(Failure::GenericTimeoutError) => {
            let still_trickling = t.bytes_received > 0 && t.last_byte_ms.is_some_and(|last| last >= 0.75 * target.duration_ms);
            Some(if still_trickling {
                Verdict::new(Status::Inconclusive, Mechanism::TlsThrottled, evidence)
            } else {
                Verdict::new(Status::Blocked, Mechanism::TlsDataStall, evidence)
            })
        }
        Some(_) => Some(Verdict::new(Status::Blocked, Mechanism::TlsDataStall, evidence)),
        None => {
            let comparable = t.bytes_received >= MIN_BYTES_TO_COMPARE && c.bytes_received >= MIN_BYTES_TO_COMPARE;
            let goodput = |bytes: u64, ms: f64| bytes as f64 / ms.max(1.0);
            let slow =
                goodput(t.bytes_received, target.duration_ms) < THROTTLE_RATIO * goodput(c.bytes_received, control.duration_ms);
            (comparable && slow && target.duration_ms > 1000.0)
                .then(|| Verdict::new(Status::Inconclusive, Mechanism::TlsThrottled, evidence))
        }
    }
}

fn data_detail(o: &Observation) -> Option<&DataDetail> {
    match &o.detail {
        Some(Detail::Data(d)) => Some(d),
        _ => None,
    }
}

fn failure_note(o: &Observation) -> String {
    o.failure.map(|f| format!(", then {f}")).unwrap_or_default()
}

/// The handshake completed: was the certificate the real one?
fn certificate_verdict(target: &Observation, helper: Option<&Observation>, mut evidence: Vec<String>) -> Verdict {
    let Some(detail) = tls_detail(target) else { return Verdict::ok() };
    if detail.verified != Some(false) {
        return Verdict::ok();
    }
    let why = detail.verify_failure.map(Failure::as_str).unwrap_or("unverified");
    evidence.push(format!("target certificate did not verify: {why}"));
    let helper_detail = helper.filter(|h| h.succeeded()).and_then(tls_detail);
    match helper_detail {
        Some(h) if h.verified == Some(true) => {
            evidence.push(format!(
                "helper sees a trusted certificate (leaf sha256 {}), the probe a different one ({})",
                h.leaf_sha256.as_deref().unwrap_or("?"),
                detail.leaf_sha256.as_deref().unwrap_or("?"),
            ));
            Verdict::new(Status::Blocked, Mechanism::TlsMitmCertificate, evidence)
        }
        Some(h) if h.leaf_sha256 == detail.leaf_sha256 => {
            evidence.push("helper sees the same untrusted certificate: server misconfiguration".into());
            let mut v = Verdict::ok();
            v.evidence = evidence;
            v
        }
        _ => Verdict::new(Status::Inconclusive, Mechanism::TlsUntrustedCertificate, evidence),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::testing::{step, tls_step};
    use vantage_measurement::{Role, Vantage};

    fn probe_connect_ok() -> Observation {
        step(Vantage::Probe, Role::Target, Operation::Connect, None)
    }

    fn scenario(target: Option<Failure>, control: Option<Failure>, helper: Option<Option<Failure>>) -> Verdict {
        let mut obs = vec![
            step(Vantage::Probe, Role::Control, Operation::Connect, None),
            tls_step(Vantage::Probe, Role::Control, control, Some(true), "leaf"),
            probe_connect_ok(),
            tls_step(Vantage::Probe, Role::Target, target, Some(true), "leaf"),
        ];
        if let Some(h) = helper {
            obs.push(step(Vantage::Helper, Role::Target, Operation::Connect, None));
            obs.push(tls_step(Vantage::Helper, Role::Target, h, Some(true), "leaf"));
        }
        classify(&obs)
    }

    #[test]
    fn clean_handshake_is_ok() {
        assert_eq!(scenario(None, None, Some(None)).status, Status::Ok);
    }

    #[test]
    fn sni_rst_injection() {
        let v = scenario(Some(Failure::ConnectionReset), None, Some(None));
        assert_eq!((v.status, v.mechanism), (Status::Blocked, Some(Mechanism::TlsResetAfterClientHello)));
        assert!(v.evidence.iter().any(|e| e.contains("connection_reset")));
        // The control SNI on the same path is enough, even without the helper.
        let v = scenario(Some(Failure::ConnectionReset), None, None);
        assert_eq!(v.mechanism, Some(Mechanism::TlsResetAfterClientHello));
    }

    #[test]
    fn sni_drop_is_a_timeout_block() {
        let v = scenario(Some(Failure::GenericTimeoutError), None, Some(None));
        assert_eq!((v.status, v.mechanism), (Status::Blocked, Some(Mechanism::TlsTimeoutSni)));
    }

    #[test]
    fn server_broken_for_everyone_is_down() {
        let v = scenario(Some(Failure::ConnectionReset), Some(Failure::ConnectionReset), Some(Some(Failure::ConnectionReset)));
        assert_eq!((v.status, v.mechanism), (Status::Down, Some(Mechanism::ControlFailed)));
    }

    #[test]
    fn every_sni_failing_here_but_not_at_the_helper_is_a_handshake_block() {
        let v = scenario(Some(Failure::EofError), Some(Failure::EofError), Some(None));
        assert_eq!((v.status, v.mechanism), (Status::Blocked, Some(Mechanism::TlsHandshakeBlocked)));
    }

    #[test]
    fn a_server_that_refuses_unknown_snis_is_fine() {
        let v = scenario(None, Some(Failure::SslInvalidHostname), Some(None));
        assert_eq!(v.status, Status::Ok);
    }

    #[test]
    fn an_alert_the_helper_also_gets_is_not_blocking() {
        let v = scenario(Some(Failure::SslFailedHandshake), None, Some(Some(Failure::SslFailedHandshake)));
        assert_eq!(v.status, Status::Down);
        let v = scenario(Some(Failure::SslFailedHandshake), None, Some(None));
        assert_eq!(v.mechanism, Some(Mechanism::TlsAlertSni));
    }

    #[test]
    fn interception_certificate() {
        let obs = vec![
            probe_connect_ok(),
            tls_step(Vantage::Probe, Role::Target, None, Some(false), "censor-leaf"),
            tls_step(Vantage::Helper, Role::Target, None, Some(true), "real-leaf"),
        ];
        let v = classify(&obs);
        assert_eq!((v.status, v.mechanism), (Status::Blocked, Some(Mechanism::TlsMitmCertificate)));
    }

    #[test]
    fn a_self_signed_server_is_untrusted_everywhere_and_not_blocked() {
        let obs = vec![
            probe_connect_ok(),
            tls_step(Vantage::Probe, Role::Target, None, Some(false), "self-signed"),
            tls_step(Vantage::Helper, Role::Target, None, Some(false), "self-signed"),
        ];
        assert_eq!(classify(&obs).status, Status::Ok);
        let alone = vec![probe_connect_ok(), tls_step(Vantage::Probe, Role::Target, None, Some(false), "x")];
        assert_eq!(classify(&alone).mechanism, Some(Mechanism::TlsUntrustedCertificate));
    }

    fn data(role: Role, failure: Option<Failure>, bytes: u64, duration_ms: f64, last_byte_ms: f64) -> Observation {
        let mut o = step(Vantage::Probe, role, Operation::Data, failure);
        o.duration_ms = duration_ms;
        o.detail = Some(Detail::Data(DataDetail {
            bytes_sent: 60,
            bytes_received: bytes,
            last_byte_ms: Some(last_byte_ms),
            ..DataDetail::default()
        }));
        o
    }

    fn with_data(control: Observation, target: Observation) -> Verdict {
        classify(&[
            step(Vantage::Probe, Role::Control, Operation::Connect, None),
            tls_step(Vantage::Probe, Role::Control, None, Some(true), "leaf"),
            control,
            probe_connect_ok(),
            tls_step(Vantage::Probe, Role::Target, None, Some(true), "leaf"),
            target,
        ])
    }

    #[test]
    fn a_flow_that_freezes_after_the_handshake_is_a_data_stall() {
        let v = with_data(
            data(Role::Control, None, 65536, 30.0, 29.0),
            data(Role::Target, Some(Failure::GenericTimeoutError), 16384, 4000.0, 25.0),
        );
        assert_eq!((v.status, v.mechanism), (Status::Blocked, Some(Mechanism::TlsDataStall)));
        assert!(v.evidence.iter().any(|e| e.contains("16384 bytes")));
    }

    #[test]
    fn a_trickle_until_the_deadline_is_throttling_not_a_block() {
        let v = with_data(
            data(Role::Control, None, 65536, 30.0, 29.0),
            data(Role::Target, Some(Failure::GenericTimeoutError), 30000, 4000.0, 3990.0),
        );
        assert_eq!((v.status, v.mechanism), (Status::Inconclusive, Some(Mechanism::TlsThrottled)));
        let slow = with_data(data(Role::Control, None, 65536, 30.0, 29.0), data(Role::Target, None, 65536, 3000.0, 2990.0));
        assert_eq!(slow.mechanism, Some(Mechanism::TlsThrottled));
    }

    #[test]
    fn small_or_similar_transfers_are_fine() {
        let small = with_data(data(Role::Control, None, 300, 5.0, 5.0), data(Role::Target, None, 2000, 1500.0, 1500.0));
        assert_eq!(small.status, Status::Ok);
        let similar = with_data(data(Role::Control, None, 65536, 40.0, 40.0), data(Role::Target, None, 65536, 50.0, 50.0));
        assert_eq!(similar.status, Status::Ok);
    }

    #[test]
    fn ip_block_before_the_clienthello_is_judged_as_tcp() {
        let obs = vec![
            step(Vantage::Probe, Role::Target, Operation::Connect, Some(Failure::GenericTimeoutError)),
            step(Vantage::Helper, Role::Target, Operation::Connect, None),
        ];
        assert_eq!(classify(&obs).mechanism, Some(Mechanism::TcpTimeout));
    }
}
