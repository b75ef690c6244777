//! What the daemon measures, and how often: the seam between the scheduler and where the list
//! comes from: the signed list of the network the probe joined ([`ListPlan`]), or the
//! `--targets` file or built-in list with `--interval` ([`FlagsPlan`]).

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use vantage_engine::targets::{self, TargetSpec};
use vantage_measurement::Measurement;

use crate::list::{ActiveList, Current, ListFetcher, ListStore};

/// A plan for the coming cycle.
#[derive(Clone, Debug)]
pub struct Plan {
    /// What to measure (each target's `tests`, already filtered by opt-outs and kill switches);
    /// shared with the jobs that measure them.
    pub targets: Vec<Arc<TargetSpec>>,
    /// How often each target is measured.
    pub interval: Duration,
    /// The signed list's version, when the plan came from one.
    pub list_version: Option<u64>,
    /// The fingerprint of the key that signed the list, when the plan came from one.
    pub list_signer: Option<String>,
    /// The collector that just served the list: uploads follow it, so that when the first
    /// collector of an invitation is blocked, the fallback that answered gets the results too.
    pub collector: Option<String>,
}

impl Plan {
    /// Mark a measurement made under this plan with the version of the signed list it came from
    /// (none for a targets file or the built-in list), so each row says which list it answered.
    pub fn stamp(&self, m: &mut Measurement) {
        m.target.list_version = self.list_version;
    }
}

/// Where plans come from. Asked once at start and then once an interval, at least hourly; an
/// error keeps the previous plan (the daemon works through a collector outage on what it has).
/// Targets that stay on a new plan keep their slots.
pub trait PlanSource {
    /// The plan to follow now.
    fn plan(&mut self) -> impl Future<Output = anyhow::Result<Plan>> + Send;
}

/// The plan from the command line: a targets file (read again each time, so an edited file is
/// picked up without a restart) or the built-in list, at a fixed interval.
#[derive(Debug)]
pub struct FlagsPlan {
    /// `--targets`, or `None` for the built-in list.
    pub targets: Option<PathBuf>,
    /// `--interval`.
    pub interval: Duration,
}

impl PlanSource for FlagsPlan {
    async fn plan(&mut self) -> anyhow::Result<Plan> {
        let targets = match &self.targets {
            Some(path) => crate::targets_file::load(path)?,
            None => targets::builtin(),
        };
        Ok(Plan {
            targets: targets.into_iter().map(Arc::new).collect(),
            interval: self.interval,
            list_version: None,
            list_signer: None,
            collector: None,
        })
    }
}

/// The plan from the joined network's signed list: fetched afresh each time it is asked (from the
/// collectors in order), else the last good list kept on disk, never an expired one.
#[derive(Debug)]
pub struct ListPlan {
    /// The kept list and trust state.
    pub store: ListStore,
    /// The collectors to fetch from.
    pub fetcher: ListFetcher,
}

impl PlanSource for ListPlan {
    async fn plan(&mut self) -> anyhow::Result<Plan> {
        let Current { list, refresh_error } = self.store.current(&self.fetcher).await;
        if let Some(e) = refresh_error {
            tracing::warn!("the target list was not refreshed: {e}");
        }
        Ok(Plan::from(list?))
    }
}

impl From<ActiveList> for Plan {
    fn from(list: ActiveList) -> Plan {
        Plan {
            targets: list.targets.into_iter().map(Arc::new).collect(),
            interval: list.interval,
            list_version: Some(list.version),
            list_signer: Some(list.signer),
            collector: list.served_by,
        }
    }
}

#[cfg(test)]
mod tests {
    use vantage_measurement::wire::target_list::ListKey;
    use vantage_measurement::{example, validate};

    use super::*;
    use crate::config::OptOut;
    use crate::list::tests::{TestCollector, document, fetcher, now, signed};

    #[tokio::test]
    async fn measurements_carry_the_version_of_the_list_they_were_made_from() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = ListKey::generate();
        let collector = TestCollector::serving(signed(&key, &document(9))).await;
        let mut source = ListPlan {
            store: ListStore::open(dir.path(), &key.public_base64(), OptOut::default()),
            fetcher: fetcher(vec![collector.url.clone()]),
        };
        let mut m = example::tls_reset(now());
        source.plan().await.expect("a good list").stamp(&mut m);
        assert_eq!(m.target.list_version, Some(9));
        let line = m.to_json_line().expect("encode");
        assert!(line.contains(r#""list_version":9"#), "{line}");
        assert!(validate(&m, now()).is_ok(), "a stamped measurement is still valid");

        // The operator signs a new list: the next plan's measurements say so.
        collector.serve(signed(&key, &document(10)));
        source.plan().await.expect("the newer list").stamp(&mut m);
        assert_eq!(m.target.list_version, Some(10));
    }

    #[tokio::test]
    async fn measurements_from_a_targets_file_carry_no_list_version() {
        let mut source = FlagsPlan { targets: None, interval: Duration::from_secs(60) };
        let mut m = example::tls_reset(now());
        m.target.list_version = Some(3);
        source.plan().await.expect("the built-in list").stamp(&mut m);
        assert_eq!(m.target.list_version, None);
        assert!(!m.to_json_line().expect("encode").contains("list_version"));
    }
}
