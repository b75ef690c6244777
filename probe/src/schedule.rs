//! The scheduler: which (target, test) pairs run, in what order, how many at once.
//!
//! Order is shuffled per run so that a censor's residual block triggered by one target is not
//! always felt by the same next target, and so that systematic order effects average out.
//! Concurrency is bounded: a volunteer's uplink and the censor's flow tables are not ours to flood.

use std::sync::Arc;

use futures::StreamExt;
use rand::seq::SliceRandom;
use vantage_measurement::{Measurement, TestKind};

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
            t.tests
                .iter()
                .filter(|test| only.is_none_or(|o| o.contains(test)))
                .map(|&test| Job { target: t.clone(), test })
        })
        .collect();
    jobs.shuffle(&mut rand::rng());
    jobs
}

/// Run `jobs` with at most `concurrency` in flight, handing each measurement to `on_done` as
/// soon as it finishes (so it is spooled before the next one completes).
pub async fn run(cfg: Arc<MeasureConfig>, jobs: Vec<Job>, concurrency: usize, mut on_done: impl FnMut(Measurement)) {
    let stream = futures::stream::iter(jobs).map(|job| {
        let cfg = cfg.clone();
        async move { measure(&cfg, &job.target, job.test).await }
    });
    let mut results = stream.buffer_unordered(concurrency.max(1));
    while let Some(m) = results.next().await {
        on_done(m);
    }
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
}
