//! Throttle rules: the same body from the project's reference endpoint under the target SNI and
//! the control SNI, pair by pair (docs/throttling.md).
//!
//! Each pair (control download, then target download, one `trial` number) is judged on its own:
//! - connect, handshake and certificate by the TLS rules (an SNI reset during the handshake is
//!   still `tls.reset_after_client_hello`); a target handshake that met a certificate other than
//!   the pinned one while the control met the pinned one is interception;
//! - then the data: the control must have brought at least [`MIN_CONTROL_BYTES`], or there is
//!   nothing to compare with; the target is *slow* when its goodput is under [`RATIO`] of the
//!   control's **and** its download took at least [`MIN_EXTRA_MS`] longer; it *stalled* when it
//!   failed, or its bytes stopped well before the deadline.
//!
//! The pairs together: a handshake-level block in any pair is reported as the TLS test reports
//! trials; `blocked tls.throttled` needs the target slow (or stalled) in **every** pair; stalled in
//! every pair is `blocked tls.data_stall`. Slow in some pairs only is noise: `ok`, and so is a
//! link that is slow for both names alike (the ratio is near 1).
//!
//! False positives we avoid: jitter on a fast link (milliseconds apart: [`MIN_EXTRA_MS`]), one
//! unlucky download (every pair), a slow access link (a ratio, not a rate), a server that is not
//! ours (the pin).

use std::collections::BTreeSet;

use vantage_measurement::{DataDetail, Detail, Failure, Mechanism, Observation, Operation, Status, Vantage, Verdict};

use super::evidence::{Steps, describe, tls_detail};
use super::{combine_trials, tls};

/// The target is slow when its goodput is below this fraction of the control's. Russia's 2021
/// throttling held Twitter to 130-150 kbit/s, under 0.1 of any link faster than 1.5 Mbit/s; a
/// fraction of 0.3 needs noise to make the target 3.3 times slower in every pair.
pub const RATIO: f64 = 0.3;
/// ... and its download took at least this much longer than the control's (a fast link's
/// downloads last milliseconds, where one retransmission timeout is a factor of ten).
pub const MIN_EXTRA_MS: f64 = 1000.0;
/// The least body the control must deliver to be compared with (past slow start and a shaper's
/// burst; a control that timed out after this much still measured its rate).
pub const MIN_CONTROL_BYTES: u64 = 32 * 1024;

/// What one pair's downloads showed, when both got to the data.
#[derive(Debug)]
struct Rates<'a> {
    control: &'a Observation,
    target: &'a Observation,
    slow: bool,
    stalled: bool,
}

/// Classify a throttle measurement (every pair's observations, tagged with `trial`).
pub fn classify(observations: &[Observation]) -> Verdict {
    let probe: Vec<&Observation> = observations.iter().filter(|o| o.vantage == Vantage::Probe).collect();
    let pairs: BTreeSet<u32> = probe.iter().map(|o| o.trial.unwrap_or(1)).collect();
    if pairs.is_empty() {
        return Verdict::new(Status::Inconclusive, Mechanism::Other, vec!["no download recorded".into()]);
    }
    let groups: Vec<(u32, Vec<Observation>)> = pairs
        .iter()
        .map(|pair| (*pair, probe.iter().filter(|o| o.trial.unwrap_or(1) == *pair).map(|o| (*o).clone()).collect()))
        .collect();
    let mut judged = Vec::new();
    let mut rates = Vec::new();
    for (pair, obs) in &groups {
        match judge_pair(obs) {
            Ok(r) => {
                judged.push(Verdict::ok());
                rates.push((*pair, r));
            }
            Err(mut v) => {
                v.evidence.insert(0, format!("pair {pair}"));
                judged.push(v);
            }
        }
    }
    if judged.iter().any(|v| v.status == Status::Blocked) {
        return combine_trials(judged);
    }
    // "Every pair" needs every pair compared: one without a usable control says nothing.
    if let Some(v) = judged.into_iter().find(|v| v.status != Status::Ok) {
        return v;
    }
    rates_verdict(&rates)
}

/// One pair: `Err` with a verdict when it did not get as far as two comparable downloads.
fn judge_pair(obs: &[Observation]) -> Result<Rates<'_>, Verdict> {
    let steps = Steps(obs);
    let control_hs = steps.probe_control(Operation::TlsHandshake);
    let target_hs = steps.probe_target(Operation::TlsHandshake);
    let pinned = |o: Option<&Observation>| o.and_then(tls_detail).and_then(|d| d.verified);
    if let (Some(c), Some(t)) = (control_hs, target_hs)
        && c.succeeded()
        && t.succeeded()
        && pinned(Some(c)) == Some(true)
        && pinned(Some(t)) == Some(false)
    {
        let leaf = tls_detail(t).and_then(|d| d.leaf_sha256.clone()).unwrap_or_default();
        let evidence = vec![
            format!("target sni: a certificate that is not the endpoint's pinned one (leaf sha256 {leaf})"),
            "control sni: the pinned certificate, from the same address".into(),
        ];
        return Err(Verdict::new(Status::Blocked, Mechanism::TlsMitmCertificate, evidence));
    }
    if pinned(control_hs) == Some(false) && pinned(target_hs) == Some(false) {
        let evidence = vec!["neither name met the pinned certificate: this address is not the reference endpoint".into()];
        return Err(Verdict::new(Status::Inconclusive, Mechanism::TlsUntrustedCertificate, evidence));
    }
    // Connect and handshake as the TLS test judges them (the data rule is ours, so no data steps).
    let without_data: Vec<Observation> = obs.iter().filter(|o| o.op != Operation::Data).cloned().collect();
    let handshake = tls::classify(&without_data);
    if handshake.status != Status::Ok {
        return Err(handshake);
    }
    let no_control = |why: String| Verdict::new(Status::Inconclusive, Mechanism::NoControl, vec![why]);
    let control = steps.probe_control(Operation::Data).ok_or_else(|| {
        let failed = [steps.probe_control(Operation::Connect), control_hs].into_iter().flatten().find(|o| !o.succeeded());
        no_control(failed.map_or("control sni: no download".into(), |o| describe("control sni", o)))
    })?;
    let target = steps.probe_target(Operation::Data).ok_or_else(|| no_control("target sni: no download".into()))?;
    let (c, t) = (data(control), data(target));
    let control_usable =
        c.body_bytes.unwrap_or(0) >= MIN_CONTROL_BYTES && matches!(control.failure, None | Some(Failure::GenericTimeoutError));
    if !control_usable {
        return Err(no_control(format!("control sni download too short to compare: {}", download(control))));
    }
    let stalled = match target.failure {
        None => false,
        Some(Failure::GenericTimeoutError) => {
            t.body_bytes.unwrap_or(0) == 0 || t.last_byte_ms.is_none_or(|last| last < 0.75 * target.duration_ms)
        }
        Some(_) => true,
    };
    let (c_rate, t_rate) = (c.goodput_bytes_per_s.unwrap_or(0) as f64, t.goodput_bytes_per_s.unwrap_or(0) as f64);
    let slow = !stalled && t_rate < RATIO * c_rate && target.duration_ms - control.duration_ms >= MIN_EXTRA_MS;
    Ok(Rates { control, target, slow, stalled })
}

/// Every pair got two downloads: compare them.
fn rates_verdict(rates: &[(u32, Rates<'_>)]) -> Verdict {
    let mut evidence: Vec<String> = rates
        .iter()
        .map(|(pair, r)| {
            let ratio = goodput(r.target) as f64 / goodput(r.control).max(1) as f64;
            format!(
                "pair {pair}: control sni {}; target sni {} ({ratio:.4} of the control's rate)",
                download(r.control),
                download(r.target)
            )
        })
        .collect();
    if let [(_, first), (_, second), ..] = rates
        && (goodput(second.control) as f64) < RATIO * goodput(first.control) as f64
        && second.control.duration_ms - first.control.duration_ms >= MIN_EXTRA_MS
    {
        evidence.push("the control slowed after the first target download: a penalty that outlives the flow?".into());
    }
    let total = rates.len();
    let slow = rates.iter().filter(|(_, r)| r.slow).count();
    let stalled = rates.iter().filter(|(_, r)| r.stalled).count();
    if stalled == total {
        evidence.push(format!("the target's download stalled in all {total} pairs while the control's flowed"));
        return Verdict::new(Status::Blocked, Mechanism::TlsDataStall, evidence);
    }
    if slow + stalled == total {
        evidence.push(format!(
            "target slower than {RATIO} of the control and over {:.0} s longer in all {total} pairs",
            MIN_EXTRA_MS / 1000.0
        ));
        return Verdict::new(Status::Blocked, Mechanism::TlsThrottled, evidence);
    }
    if slow + stalled > 0 {
        evidence.push(format!("the target was slow in {} of {total} pairs only: noise, not a rule", slow + stalled));
    }
    let mut v = Verdict::ok();
    v.evidence = evidence;
    v
}

fn data(o: &Observation) -> DataDetail {
    match &o.detail {
        Some(Detail::Data(d)) => d.clone(),
        _ => DataDetail::default(),
    }
}

fn goodput(o: &Observation) -> u64 {
    data(o).goodput_bytes_per_s.unwrap_or(0)
}

/// `131072 bytes in 2048 ms, 512 kbit/s` (then the failure, if any).
fn download(o: &Observation) -> String {
    let d = data(o);
    let kbit = d.goodput_bytes_per_s.unwrap_or(0) as f64 * 8.0 / 1000.0;
    let rate = if kbit >= 10_000.0 { format!("{:.0} Mbit/s", kbit / 1000.0) } else { format!("{kbit:.0} kbit/s") };
    let failure = o.failure.map(|f| format!(", then {f}")).unwrap_or_default();
    format!("{} bytes in {:.0} ms, {rate}{failure}", d.body_bytes.unwrap_or(0), o.duration_ms)
}

#[cfg(test)]
#[path = "throttle_tests.rs"]
mod tests;
