//! The scheduler: which (target, test) pairs run, in what order, how many at once.
//!
//! Residual censorship shapes the schedule. After a trigger, censors block the whole
//! (client, server, port) tuple for 90–180 s, so a later test of the same endpoint can fail for
//! a reason that belongs to an earlier one. Therefore:
//! - jobs that share an endpoint (address or name, port, transport) run one after another in a
//!   fixed order (tcp before tls, then by target name), never concurrently;
//! - inside a measurement the control runs first, on its own port when the target has one
//!   (`control_port`), so the target's trigger can't reach it;
//! - once a test of an endpoint came out `blocked` by what it sent (an SNI, content: see
//!   `triggers_residual`), a later `blocked` on the same endpoint in the same run is reported as
//!   `inconclusive` / `residual.suspected`: the earlier trigger alone explains it. IP blocks
//!   don't taint: a bare SYN triggers no content censor.
//!
//! Endpoints are visited in shuffled order so that order effects average out across runs.
//! Concurrency is bounded: a volunteer's uplink and the censor's flow tables are not ours to flood.

use std::sync::Arc;

use futures::StreamExt;
use rand::seq::SliceRandom;
use std::collections::HashMap;

use vantage_measurement::{Measurement, Mechanism, Status, TestKind, Verdict};

use crate::measure::{MeasureConfig, measure};
use crate::targets::TargetSpec;

/// One unit of work.
#[derive(Clone, Debug)]
pub struct Job {
    /// What to measure.
    pub target: TargetSpec,
    /// With which test.
    pub test: TestKind,
}

/// Expand targets into jobs (only the tests in `only`, if given), shuffled.
pub fn plan(targets: &[TargetSpec], only: Option<&[TestKind]>) -> Vec<Job> {
    let mut jobs: Vec<Job> = targets
        .iter()
        .flat_map(|t| {
            t.tests.iter().filter(|test| only.is_none_or(|o| o.contains(test))).map(|&test| Job { target: t.clone(), test })
        })
        .collect();
    jobs.shuffle(&mut rand::rng());
    jobs
}

/// Run `jobs` with at most `concurrency` endpoints in flight, handing each measurement to
/// `on_done` as soon as it finishes (so it is spooled before the next one completes).
pub async fn run(cfg: Arc<MeasureConfig>, jobs: Vec<Job>, concurrency: usize, mut on_done: impl FnMut(Measurement)) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // The producer owns `tx`, so the channel closes once every endpoint group is done.
    let producer = async move {
        let groups = futures::stream::iter(by_endpoint(jobs));
        groups.for_each_concurrent(concurrency.max(1), |group| run_group(cfg.clone(), group, tx.clone())).await;
    };
    let consumer = async {
        while let Some(m) = rx.recv().await {
            on_done(m);
        }
    };
    tokio::join!(producer, consumer);
}

/// Measure one endpoint's jobs in order, guarding against residual blocks between them.
async fn run_group(cfg: Arc<MeasureConfig>, group: Vec<Job>, tx: tokio::sync::mpsc::UnboundedSender<Measurement>) {
    let mut earlier_block: Option<String> = None;
    for job in group {
        let mut m = measure(&cfg, &job.target, job.test).await;
        guard_residual(&mut m.verdict, earlier_block.as_deref());
        if m.verdict.status == Status::Blocked && earlier_block.is_none() && triggers_residual(m.verdict.mechanism) {
            earlier_block = Some(format!("{} {}", job.target.name, job.test.as_str()));
        }
        let _ = tx.send(m);
    }
}

/// Group jobs by the endpoint they touch; groups shuffled, jobs in a group in a fixed order.
fn by_endpoint(jobs: Vec<Job>) -> Vec<Vec<Job>> {
    let mut groups: HashMap<String, Vec<Job>> = HashMap::new();
    for job in jobs {
        let host = job.target.address.map(|a| a.to_string()).unwrap_or_else(|| job.target.domain.clone());
        let key = match job.test {
            TestKind::Dns => format!("dns {}", job.target.name),
            TestKind::Tcp | TestKind::Tls | TestKind::Tor => format!("tcp {host}:{}", job.target.port),
            TestKind::Quic | TestKind::Wireguard | TestKind::Ikev2 => format!("udp {host}:{}", job.target.port),
            TestKind::Openvpn => match job.target.transport {
                Some(vantage_measurement::Transport::Tcp) => format!("tcp {host}:{}", job.target.port),
                _ => format!("udp {host}:{}", job.target.port),
            },
        };
        groups.entry(key).or_default().push(job);
    }
    let mut groups: Vec<Vec<Job>> = groups.into_values().collect();
    for group in &mut groups {
        group.sort_by(|a, b| (a.test, &a.target.name).cmp(&(b.test, &b.target.name)));
    }
    groups.shuffle(&mut rand::rng());
    groups
}

/// Only blocks triggered by what a flow *said* (a name, content) start a residual penalty; a bare
/// SYN or datagram to a blocked address can't, so IP blocks don't taint the endpoint.
fn triggers_residual(mechanism: Option<Mechanism>) -> bool {
    matches!(
        mechanism,
        Some(
            Mechanism::TlsResetAfterClientHello
                | Mechanism::TlsTimeoutSni
                | Mechanism::TlsEofAfterClientHello
                | Mechanism::TlsAlertSni
                | Mechanism::TlsDataStall
                | Mechanism::QuicSniBlocked
        )
    )
}

/// A `blocked` after an earlier `blocked` on the same endpoint may be the censor's residual
/// block of the earlier trigger, not a block of its own.
fn guard_residual(verdict: &mut Verdict, earlier_block: Option<&str>) {
    let Some(earlier) = earlier_block else { return };
    if verdict.status != Status::Blocked {
        return;
    }
    let original = verdict.mechanism.map(Mechanism::as_str).unwrap_or("other");
    verdict.status = Status::Inconclusive;
    verdict.mechanism = Some(Mechanism::ResidualSuspected);
    verdict.evidence.push(format!(
        "looked like {original}, but {earlier} was blocked on the same endpoint earlier in this run; \
         censors keep blocking the (client, server, port) tuple for 90-180 s after a trigger"
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets;

    #[test]
    fn plan_expands_and_filters() {
        let ts = targets::parse(
            "[[target]]\nname='a'\ndomain='a.example'\n[[target]]\nname='b'\ndomain='b.example'\ntests=['tls']\n",
            "t",
        )
        .expect("valid");
        assert_eq!(plan(&ts, None).len(), 5);
        let tls_only = plan(&ts, Some(&[TestKind::Tls]));
        assert_eq!(tls_only.len(), 2);
        assert!(tls_only.iter().all(|j| j.test == TestKind::Tls));
    }

    #[test]
    fn jobs_on_one_endpoint_share_a_group_in_a_fixed_order() {
        let ts = targets::parse(
            "[[target]]\nname='b'\ndomain='b.example'\naddress='192.0.2.1'\n\
             [[target]]\nname='a'\ndomain='a.example'\naddress='192.0.2.1'\n",
            "t",
        )
        .expect("valid");
        let groups = by_endpoint(plan(&ts, None));
        // tcp+tls of both targets share 192.0.2.1:443/tcp; quic has its own; dns is per target.
        assert_eq!(groups.len(), 4);
        let tcp = groups.iter().find(|g| g.len() == 4).expect("the tcp group");
        let order: Vec<(TestKind, &str)> = tcp.iter().map(|j| (j.test, j.target.name.as_str())).collect();
        assert_eq!(order, [(TestKind::Tcp, "a"), (TestKind::Tcp, "b"), (TestKind::Tls, "a"), (TestKind::Tls, "b")]);
    }

    #[test]
    fn only_content_triggered_blocks_start_a_penalty() {
        assert!(triggers_residual(Some(Mechanism::TlsResetAfterClientHello)));
        assert!(triggers_residual(Some(Mechanism::QuicSniBlocked)));
        assert!(!triggers_residual(Some(Mechanism::TcpTimeout)));
        assert!(!triggers_residual(Some(Mechanism::UdpBlocked)));
    }

    #[test]
    fn a_second_block_on_a_tainted_endpoint_is_residual_suspected() {
        let mut v = Verdict::new(Status::Blocked, Mechanism::TlsHandshakeBlocked, Vec::new());
        guard_residual(&mut v, Some("a tls"));
        assert_eq!((v.status, v.mechanism), (Status::Inconclusive, Some(Mechanism::ResidualSuspected)));
        assert!(v.evidence[0].contains("tls.handshake_blocked") && v.evidence[0].contains("a tls"));
        let mut ok = Verdict::ok();
        guard_residual(&mut ok, Some("a tls"));
        assert_eq!(ok.status, Status::Ok);
        let mut first = Verdict::new(Status::Blocked, Mechanism::TcpReset, Vec::new());
        guard_residual(&mut first, None);
        assert_eq!(first.status, Status::Blocked);
    }
}
