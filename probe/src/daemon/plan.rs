//! What the daemon measures, and how often: the seam between the scheduler and wherever the
//! list comes from (today the `--targets` file or the built-in list; a signed list fetched from
//! the collector plugs in through the same trait).

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use vantage_engine::targets::{self, TargetSpec};

/// A plan for the coming cycle.
#[derive(Clone, Debug)]
pub struct Plan {
    /// What to measure (each target's `tests`, already filtered by opt-outs and kill switches).
    pub targets: Vec<TargetSpec>,
    /// How often each target is measured.
    pub interval: Duration,
    /// The signed list's version, when the plan came from one.
    pub list_version: Option<u64>,
    /// The fingerprint of the key that signed the list, when the plan came from one.
    pub list_signer: Option<String>,
}

/// Where plans come from. Asked once at start and then once an interval, at least hourly; an
/// error keeps the previous plan (the daemon works through a collector outage on what it has).
/// Targets that stay on a new plan keep their slots.
pub trait PlanSource {
    /// The plan to follow now.
    fn plan(&mut self) -> impl Future<Output = anyhow::Result<Plan>>;
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
            Some(path) => targets::load(path)?,
            None => targets::builtin(),
        };
        Ok(Plan { targets, interval: self.interval, list_version: None, list_signer: None })
    }
}
