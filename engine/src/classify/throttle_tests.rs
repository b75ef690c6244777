//! Scenario tables for the throttle rule: one builder for a download, one per pair.

use super::*;
use crate::classify::testing::{step, tls_step};
use crate::runner::throttle::goodput;
use vantage_measurement::Role;

const TIMEOUT: Option<Failure> = Some(Failure::GenericTimeoutError);
const FULL: u64 = 131072;

/// How one download went.
#[derive(Clone, Copy)]
enum Dl {
    /// Body `bytes` in `ms`, the last byte at `last` ms, ending with `failure`.
    Data { bytes: u64, ms: f64, last: f64, failure: Option<Failure> },
    /// The connect failed.
    Connect(Failure),
    /// The handshake failed.
    Handshake(Failure),
    /// The handshake met a certificate that is not pinned (no data follows).
    Unpinned,
}

/// A complete download of the full body in `ms`.
fn full(ms: f64) -> Dl {
    Dl::Data { bytes: FULL, ms, last: ms, failure: None }
}

/// A download cut by the deadline after `bytes`, the last of them at `last` ms of 4000.
fn cut(bytes: u64, last: f64) -> Dl {
    Dl::Data { bytes, ms: 4000.0, last, failure: TIMEOUT }
}

fn download(role: Role, pair: u32, dl: Dl) -> Vec<Observation> {
    let mut obs = vec![];
    match dl {
        Dl::Connect(f) => obs.push(step(Vantage::Probe, role, Operation::Connect, Some(f))),
        Dl::Handshake(f) => {
            obs.push(step(Vantage::Probe, role, Operation::Connect, None));
            obs.push(tls_step(Vantage::Probe, role, Some(f), None, ""));
        }
        Dl::Unpinned => {
            obs.push(step(Vantage::Probe, role, Operation::Connect, None));
            obs.push(tls_step(Vantage::Probe, role, None, Some(false), "not-ours"));
        }
        Dl::Data { bytes, ms, last, failure } => {
            obs.push(step(Vantage::Probe, role, Operation::Connect, None));
            obs.push(tls_step(Vantage::Probe, role, None, Some(true), "pinned"));
            let mut data = step(Vantage::Probe, role, Operation::Data, failure);
            data.duration_ms = ms;
            let elapsed = if failure.is_none() { last } else { ms };
            data.detail = Some(Detail::Data(DataDetail {
                bytes_sent: 120,
                bytes_received: bytes + 250,
                last_byte_ms: (bytes > 0).then_some(last),
                body_bytes: Some(bytes),
                first_byte_ms: (bytes > 0).then_some(1.0),
                goodput_bytes_per_s: Some(goodput(bytes, elapsed)),
            }));
            obs.push(data);
        }
    }
    obs.iter_mut().for_each(|o| o.trial = Some(pair));
    obs
}

/// Pairs of (control, target) downloads, in the order the runner makes them.
fn pairs(list: &[(Dl, Dl)]) -> Verdict {
    let mut obs = Vec::new();
    for (i, (c, t)) in list.iter().enumerate() {
        let pair = u32::try_from(i + 1).expect("small");
        obs.extend(download(Role::Control, pair, *c));
        obs.extend(download(Role::Target, pair, *t));
    }
    classify(&obs)
}

fn outcome(v: &Verdict) -> (Status, Option<Mechanism>) {
    (v.status, v.mechanism)
}

const THROTTLED: (Status, Option<Mechanism>) = (Status::Blocked, Some(Mechanism::TlsThrottled));
const OK: (Status, Option<Mechanism>) = (Status::Ok, None);

#[test]
fn the_same_rate_for_both_names_is_ok() {
    let v = pairs(&[(full(10.0), full(12.0)), (full(11.0), full(9.0))]);
    assert_eq!(outcome(&v), OK);
    assert!(v.evidence.iter().any(|e| e.starts_with("pair 1: control sni 131072 bytes in 10 ms")), "{:?}", v.evidence);
}

#[test]
fn twitter_2021_style_throttling_is_blocked_with_both_rates() {
    // 128 KiB at about 140 kbit/s takes 7.5 s; the control on a 10 Mbit/s link about 100 ms.
    let v = pairs(&[(full(100.0), full(7500.0)), (full(98.0), full(7480.0))]);
    assert_eq!(outcome(&v), THROTTLED);
    let pair1 = &v.evidence[0];
    assert!(pair1.contains("control sni 131072 bytes in 100 ms, 10 Mbit/s"), "{pair1}");
    assert!(pair1.contains("target sni 131072 bytes in 7500 ms, 140 kbit/s"), "{pair1}");
    assert!(v.evidence.iter().any(|e| e.contains("in all 2 pairs")));
}

#[test]
fn a_trickle_cut_by_the_deadline_is_throttling_too() {
    let v = pairs(&[(full(50.0), cut(60000, 3990.0)), (full(55.0), cut(59000, 3995.0))]);
    assert_eq!(outcome(&v), THROTTLED);
    assert!(v.evidence[0].contains("then generic_timeout_error"));
}

#[test]
fn jitter_on_a_fast_link_is_noise() {
    // A quarter of the control's rate, but milliseconds apart: one retransmission does that.
    let v = pairs(&[(full(10.0), full(45.0)), (full(12.0), full(60.0))]);
    assert_eq!(outcome(&v), OK);
}

#[test]
fn slow_in_one_pair_only_is_noise() {
    let v = pairs(&[(full(100.0), full(3000.0)), (full(100.0), full(130.0))]);
    assert_eq!(outcome(&v), OK);
    assert!(v.evidence.iter().any(|e| e.contains("slow in 1 of 2 pairs only")));
}

#[test]
fn a_uniformly_slow_link_is_not_throttling() {
    let v = pairs(&[(full(3900.0), full(4100.0)), (full(4000.0), full(3800.0))]);
    assert_eq!(outcome(&v), OK);
    // So slow that even the control ran out of time, but far enough to have a rate.
    let v = pairs(&[(cut(100_000, 3990.0), cut(98_000, 3990.0)), (cut(101_000, 3990.0), cut(99_000, 3990.0))]);
    assert_eq!(outcome(&v), OK);
}

#[test]
fn a_rate_within_the_threshold_is_ok_however_slow() {
    // 0.4 of the control's rate, seconds apart, in every pair: worse than noise, but above 0.3.
    let v = pairs(&[(full(1000.0), full(2500.0)), (full(1000.0), full(2500.0))]);
    assert_eq!(outcome(&v), OK);
}

#[test]
fn a_freeze_in_every_pair_is_a_data_stall_and_mixed_with_slow_is_throttling() {
    let v = pairs(&[(full(50.0), cut(16384, 25.0)), (full(50.0), cut(16384, 30.0))]);
    assert_eq!(outcome(&v), (Status::Blocked, Some(Mechanism::TlsDataStall)));
    let v = pairs(&[(full(50.0), cut(16384, 25.0)), (full(50.0), full(6000.0))]);
    assert_eq!(outcome(&v), THROTTLED);
}

#[test]
fn a_control_that_fails_leaves_nothing_to_compare() {
    let v = pairs(&[(Dl::Connect(Failure::GenericTimeoutError), full(10.0)), (full(10.0), full(10.0))]);
    assert_eq!(outcome(&v), (Status::Inconclusive, Some(Mechanism::NoControl)));
    assert!(v.evidence.iter().any(|e| e.contains("control sni")));
    // The endpoint down for both names, and no helper to ask: the TLS test's answer.
    let down = Dl::Connect(Failure::ConnectionRefused);
    let v = pairs(&[(down, down), (down, down)]);
    assert_eq!(outcome(&v), (Status::Inconclusive, Some(Mechanism::NoControl)));
    // A control that brought too little (a misconfigured endpoint's 404).
    let short = Dl::Data { bytes: 0, ms: 5.0, last: 5.0, failure: Some(Failure::UnknownFailure) };
    let v = pairs(&[(short, full(10.0)), (short, full(10.0))]);
    assert_eq!(outcome(&v), (Status::Inconclusive, Some(Mechanism::NoControl)));
    assert!(v.evidence.iter().any(|e| e.contains("too short to compare")));
}

#[test]
fn an_sni_reset_during_the_handshake_is_the_tls_mechanism() {
    let reset = Dl::Handshake(Failure::ConnectionReset);
    let v = pairs(&[(full(10.0), reset), (full(10.0), reset)]);
    assert_eq!(outcome(&v), (Status::Blocked, Some(Mechanism::TlsResetAfterClientHello)));
    assert!(v.evidence.iter().any(|e| e == "blocked in 2 of 2 trials"));
}

#[test]
fn certificates_other_than_the_pinned_one() {
    let v = pairs(&[(full(10.0), Dl::Unpinned), (full(10.0), Dl::Unpinned)]);
    assert_eq!(outcome(&v), (Status::Blocked, Some(Mechanism::TlsMitmCertificate)));
    let v = pairs(&[(Dl::Unpinned, Dl::Unpinned), (Dl::Unpinned, Dl::Unpinned)]);
    assert_eq!(outcome(&v), (Status::Inconclusive, Some(Mechanism::TlsUntrustedCertificate)));
}

#[test]
fn a_control_slowed_after_the_target_is_noted() {
    let v = pairs(&[(full(100.0), full(7000.0)), (full(6000.0), full(7000.0))]);
    assert_eq!(outcome(&v), OK);
    assert!(v.evidence.iter().any(|e| e.contains("the control slowed after the first target download")));
    // Milliseconds apart on a fast link is jitter, not a penalty.
    let v = pairs(&[(full(1.0), full(2.0)), (full(4.0), full(3.0))]);
    assert!(!v.evidence.iter().any(|e| e.contains("the control slowed")), "{:?}", v.evidence);
}

#[test]
fn nothing_recorded_is_inconclusive() {
    assert_eq!(classify(&[]).status, Status::Inconclusive);
}
