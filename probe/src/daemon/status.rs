//! `vantage-probe status`: what the daemon did, read from its state file.

use std::fmt::Write;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::Args;

use super::state::{self, State};
use crate::cli;
use crate::config::{self, ProbeConfig};

/// Flags of `vantage-probe status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The daemon's data directory. Default: the config's `data_dir`.
    #[arg(long, env = "VANTAGE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The config file `join` wrote (default: see `join --help`); without one, the data directory
    /// a `daemon --collector …` uses.
    #[arg(long, env = "VANTAGE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print the state file as JSON instead of the summary.
    #[arg(long)]
    pub json: bool,
}

/// Print the daemon's state; an error if it never ran with this data directory.
pub fn run(args: &StatusArgs) -> anyhow::Result<()> {
    let data_dir = match (&args.data_dir, &args.config) {
        (Some(dir), _) => dir.clone(),
        (None, Some(path)) => ProbeConfig::load(path)?.data_dir,
        (None, None) => {
            let path = config::default_config_path();
            if path.exists() { ProbeConfig::load(&path)?.data_dir } else { cli::default_data_dir() }
        }
    };
    let path = state::path(&data_dir);
    let Some(state) = state::read(&path)? else {
        anyhow::bail!("no daemon has run with data directory {} (no {})", data_dir.display(), state::STATE_FILE);
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&state)?);
    } else {
        print!("{}", render(&state, Utc::now()));
    }
    Ok(())
}

/// The summary a volunteer reads.
pub fn render(s: &State, now: DateTime<Utc>) -> String {
    let mut out = String::new();
    let when = |t: Option<DateTime<Utc>>| t.map(|t| ago(t, now)).unwrap_or_else(|| "never".into());
    let running = if s.running { "running" } else { "stopped" };
    let _ = writeln!(out, "daemon:      {running} (state written {})", when(s.written_at));
    let list = match (s.list_version, &s.list_signer) {
        (Some(v), Some(signer)) => format!("version {v}, signed by {signer}"),
        (Some(v), None) => format!("version {v}"),
        _ => "local (--targets or the built-in list), unsigned".into(),
    };
    let _ = writeln!(out, "list:        {list}; every {} s", s.interval_secs);
    if let Some(why) = &s.paused {
        let _ = writeln!(out, "paused:      {why}");
    }
    let b = &s.budget;
    let limit = |n: u64, unit: &str| if n == 0 { "no limit".to_string() } else { format!("{n} {unit}") };
    let _ = writeln!(
        out,
        "budget:      {} of {} today (UTC), {} measurement(s) this hour of {}, {} skipped today",
        b.usage.bytes,
        limit(b.daily_bytes, "bytes"),
        b.usage.started,
        limit(u64::from(b.max_per_hour), "allowed"),
        b.usage.skipped
    );
    let _ = writeln!(out, "spool:       {} measurement(s) waiting for upload", s.spool_pending);
    let _ = write!(out, "upload:      last success {}", when(s.upload.last_ok_at));
    if let Some(e) = &s.upload.last_error {
        let _ = write!(out, "; last error: {e}");
    }
    if let Some(t) = s.upload.not_before.filter(|t| *t > now) {
        let _ = write!(out, "; next try {}", ahead(t, now));
    }
    let _ = writeln!(out);
    if s.clock_jumps > 0 {
        let _ = writeln!(out, "clock:       {} jump(s) or resume(s) noticed; re-planned each time", s.clock_jumps);
    }
    let _ = writeln!(out, "\n{:<24} {:<10} {:<14} {:<36} NEXT", "TARGET", "TEST", "LAST", "RESULT");
    for r in s.results.values() {
        let result = match (&r.skipped, r.status) {
            (Some(why), _) => format!("skipped: {why}"),
            (None, Some(status)) => match r.mechanism {
                Some(m) => format!("{} {}", status.as_str(), m.as_str()),
                None => status.as_str().to_string(),
            },
            (None, None) => "-".into(),
        };
        let next = s.next_runs.get(&r.target).map(|t| ahead(*t, now)).unwrap_or_else(|| "-".into());
        let _ = writeln!(out, "{:<24} {:<10} {:<14} {:<36} {}", r.target, r.test.as_str(), ago(r.at, now), result, next);
    }
    for (name, at) in s.next_runs.iter().filter(|(name, _)| !s.results.values().any(|r| &r.target == *name)) {
        let _ = writeln!(out, "{:<24} {:<10} {:<14} {:<36} {}", name, "-", "never", "-", ahead(*at, now));
    }
    out
}

fn ago(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    format!("{} ago", span((now - t).num_seconds().max(0)))
}

fn ahead(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    format!("in {}", span((t - now).num_seconds().max(0)))
}

fn span(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7_200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3_600),
        s => format!("{} d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::budget::Usage;
    use crate::daemon::state::{BudgetState, LastResult};
    use vantage_measurement::{Mechanism, Status, TestKind};

    #[test]
    fn the_summary_says_what_happened_per_target_and_the_limits() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).expect("time");
        let mut s = State {
            written_at: Some(now - chrono::Duration::seconds(5)),
            running: true,
            list_version: Some(42),
            list_signer: Some("ed25519:abcd".into()),
            interval_secs: 3600,
            spool_pending: 3,
            budget: BudgetState {
                daily_bytes: 20_000_000,
                max_per_hour: 600,
                usage: Usage { bytes: 1234, skipped: 2, started: 7, ..Usage::default() },
            },
            ..State::default()
        };
        s.results.insert(
            "wiki tls".into(),
            LastResult {
                target: "wiki".into(),
                test: TestKind::Tls,
                at: now - chrono::Duration::seconds(600),
                status: Some(Status::Blocked),
                mechanism: Some(Mechanism::TlsResetAfterClientHello),
                skipped: None,
            },
        );
        s.next_runs.insert("wiki".into(), now + chrono::Duration::seconds(3000));
        s.next_runs.insert("fresh".into(), now + chrono::Duration::seconds(90));
        let text = render(&s, now);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "daemon:      running (state written 5 s ago)");
        assert_eq!(lines[1], "list:        version 42, signed by ed25519:abcd; every 3600 s");
        assert_eq!(
            lines[2],
            "budget:      1234 of 20000000 bytes today (UTC), 7 measurement(s) this hour of 600 allowed, 2 skipped today"
        );
        assert_eq!(lines[3], "spool:       3 measurement(s) waiting for upload");
        let row = |name: &str| -> Vec<String> {
            let line = lines.iter().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no row for {name}: {text}"));
            line.split("  ").map(str::trim).filter(|c| !c.is_empty()).map(str::to_string).collect()
        };
        assert_eq!(row("wiki"), ["wiki", "tls", "10 min ago", "blocked tls.reset_after_clienthello", "in 50 min"]);
        assert_eq!(row("fresh"), ["fresh", "-", "never", "-", "in 90 s"]);
    }
}
