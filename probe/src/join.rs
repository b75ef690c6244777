//! `vantage-probe join <INVITATION_URL>`: agree, fetch the first list, write the config.
//!
//! The order is the volunteer's protection: the consent text comes before any packet, and the
//! config is written only after a collector served a list that verifies under the invitation's
//! key. A join that reaches no collector, or gets a bad list, fails with the reason and leaves
//! the disk as it was. Re-joining keeps the volunteer's own choices (opt-outs, budgets, data
//! directory, proxy) and replaces what the invitation decides (collectors, list key).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use chrono::Utc;
use clap::Args;
use vantage_measurement::wire::pin;
use vantage_measurement::wire::target_list::{Invitation, InvitationError};

use crate::cli::{ConfigError, DEFAULT_TIMEOUT_SECS};
use crate::config::{self, ConfigFileError, ProbeConfig, Socks5Proxy};
use crate::consent::{self, ConsentError, Prompt};
use crate::list::{ActiveList, ListFetchError, ListFetcher, ListStore, ListStoreError};

/// Flags of `vantage-probe join`.
#[derive(Debug, Args)]
pub struct JoinArgs {
    /// The invitation the network's operator gave you (https://…/join#v1.…).
    #[arg(value_name = "INVITATION_URL")]
    pub invitation: String,
    /// Config file to write. Default: $VANTAGE_CONFIG, else /etc/vantage/probe.toml as root, else
    /// ~/.config/vantage/probe.toml.
    #[arg(long, env = "VANTAGE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (spool, probe key, the last good list). Default: the existing config's,
    /// else /var/lib/vantage-probe as root, else ~/.local/share/vantage.
    #[arg(long, env = "VANTAGE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Accept the consent text without a terminal (unattended installs; read docs/probe.md#risks).
    #[arg(long)]
    pub accept_risks: bool,
    /// Fetch lists and upload through this SOCKS5 proxy (HOST:PORT, e.g. a local Tor's 127.0.0.1:9050).
    #[arg(long, value_name = "HOST:PORT", env = "VANTAGE_SOCKS5")]
    pub socks5: Option<Socks5Proxy>,
    /// Extra trust anchors (PEM) for the collectors' certificates. Repeatable.
    #[arg(long = "ca", env = "VANTAGE_CA")]
    pub ca: Vec<PathBuf>,
    /// Allow the invitation's collectors to be plaintext http:// on other machines, and write
    /// `danger_plaintext_collector = true` into the config: for labs only (see `run --help`).
    #[arg(long)]
    pub danger_plaintext_collector: bool,
}

/// Why the probe did not join. In every case nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The invitation is unusable.
    #[error(transparent)]
    Invitation(#[from] InvitationError),
    /// No consent.
    #[error(transparent)]
    Consent(#[from] ConsentError),
    /// A config file exists but can't be read; it is left for the volunteer to fix or remove.
    #[error("{0} (fix it or move it away, then join again; it was left as it is)")]
    ExistingConfig(ConfigFileError),
    /// A flag's value is unusable.
    #[error(transparent)]
    Flag(#[from] ConfigError),
    /// No collector served a list that verifies.
    #[error("could not join, nothing was written")]
    List(#[from] ListFetchError),
    /// Writing the config file failed.
    #[error(transparent)]
    Write(ConfigFileError),
    /// Keeping the list failed (the config was written; the daemon fetches the list again).
    #[error(transparent)]
    Keep(#[from] ListStoreError),
}

/// What a successful join did.
#[derive(Debug)]
pub struct Joined {
    /// Where the config was written.
    pub config_path: PathBuf,
    /// The config.
    pub config: ProbeConfig,
    /// The first list, as this probe will measure it.
    pub list: ActiveList,
}

impl fmt::Display for Joined {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = &self.list;
        writeln!(f, "Joined. Collector: {}", list.served_by.as_deref().unwrap_or("?"))?;
        writeln!(
            f,
            "List: version {}, signed by {}, valid until {}",
            list.version,
            list.signer,
            list.expires_at.format("%Y-%m-%d %H:%M UTC")
        )?;
        writeln!(
            f,
            "Will measure: {} targets, {} tests per pass, every {} min",
            list.targets.len(),
            list.measurements(),
            list.interval.as_secs() / 60
        )?;
        let opt_out = &self.config.opt_out;
        if !opt_out.tests.is_empty() || !opt_out.categories.is_empty() {
            let tests: Vec<&str> = opt_out.tests.iter().map(|t| t.as_str()).collect();
            writeln!(f, "Opted out: tests [{}], categories [{}]", tests.join(", "), opt_out.categories.join(", "))?;
        }
        if !self.config.collector_pins.is_empty() {
            writeln!(f, "Collector keys pinned: {}", pin::list(&self.config.collector_pins))?;
        }
        if self.config.danger_plaintext_collector {
            writeln!(f, "DANGER: plaintext http:// collectors allowed (--danger-plaintext-collector; labs only)")?;
        }
        if let Some(proxy) = &self.config.socks5 {
            writeln!(f, "Through SOCKS5 proxy: {proxy} (list fetches and uploads only)")?;
        }
        writeln!(f, "Config: {}", self.config_path.display())?;
        write!(f, "Start measuring with `vantage-probe daemon` (or the vantage-probe service).")
    }
}

/// Join: see the module docs for the order of things.
pub async fn join(args: &JoinArgs, prompt: &mut dyn Prompt) -> Result<Joined, JoinError> {
    let invitation = Invitation::parse(&args.invitation)?;
    let config_path = args.config.clone().unwrap_or_else(config::default_config_path);
    let previous = match ProbeConfig::load(&config_path) {
        Ok(previous) => Some(previous),
        Err(ConfigFileError::Missing { .. }) => None,
        Err(e) => return Err(JoinError::ExistingConfig(e)),
    };
    let config = joined_config(invitation, args, previous)?;
    // Flags, and the collectors against the transport rule, are checked before the question:
    // nobody should agree to a join that can't start.
    let fetcher = ListFetcher::for_config(&config, Duration::from_secs(DEFAULT_TIMEOUT_SECS))?;
    consent::obtain(&consent::text(&config.collectors), args.accept_risks, prompt)?;

    let store = ListStore::for_config(&config);
    let fetched = store.fetch_at(&fetcher, Utc::now()).await?;
    config.save(&config_path).map_err(JoinError::Write)?;
    store.keep(&fetched)?;
    Ok(Joined { config_path, config, list: fetched.active })
}

/// The new config: the invitation's collectors, key and pins, the volunteer's flags, and what the
/// volunteer chose before. Plaintext is allowed only by this join's flag, never inherited.
fn joined_config(invitation: Invitation, args: &JoinArgs, previous: Option<ProbeConfig>) -> Result<ProbeConfig, JoinError> {
    let collector_pins = invitation.spki_pins()?;
    let data_dir = args
        .data_dir
        .clone()
        .or_else(|| previous.as_ref().map(|p| p.data_dir.clone()))
        .unwrap_or_else(|| config::default_data_dir_for(config::running_as_root()));
    let (socks5, ca, opt_out, daemon) = match previous {
        Some(p) => (p.socks5, p.ca, p.opt_out, p.daemon),
        None => Default::default(),
    };
    Ok(ProbeConfig {
        collectors: invitation.collectors,
        list_key: invitation.list_key,
        data_dir,
        socks5: args.socks5.clone().or(socks5),
        accepted_risks: true,
        ca: if args.ca.is_empty() { ca } else { args.ca.clone() },
        collector_pins,
        danger_plaintext_collector: args.danger_plaintext_collector,
        opt_out,
        daemon,
    })
}

#[cfg(test)]
mod tests {
    use std::fs;

    use vantage_measurement::TestKind;
    use vantage_measurement::wire::target_list::ListKey;

    use super::*;
    use crate::consent::tests::Scripted;
    use crate::list::tests::{TestCollector, document, refusing, signed};

    fn args(invitation: &Invitation, dir: &std::path::Path) -> JoinArgs {
        JoinArgs {
            invitation: invitation.to_url(),
            config: Some(dir.join("etc/probe.toml")),
            data_dir: Some(dir.join("data")),
            accept_risks: false,
            socks5: None,
            ca: vec![],
            danger_plaintext_collector: false,
        }
    }

    fn invitation(collectors: Vec<String>, key: &ListKey) -> Invitation {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Invitation { collectors, list_key: key.public_base64(), pins: vec![] }
    }

    /// Every file under `dir`, relative.
    fn files(dir: &std::path::Path) -> Vec<String> {
        let mut found = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in fs::read_dir(&d).expect("dir").filter_map(Result::ok) {
                if entry.path().is_dir() {
                    stack.push(entry.path());
                } else {
                    found.push(entry.path().strip_prefix(dir).expect("inside").display().to_string());
                }
            }
        }
        found.sort();
        found
    }

    #[tokio::test]
    async fn a_yes_and_a_good_list_write_the_config_and_keep_the_list() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = ListKey::from_seed(&[1; 32]);
        let collector = TestCollector::serving(signed(&key, &document(3))).await;
        let blocked = refusing().await;
        let invitation = invitation(vec![blocked.clone(), collector.url.clone()], &key);
        let mut person = Scripted::new(true, "yes\n");
        let joined = join(&args(&invitation, dir.path()), &mut person).await.expect("joined");

        assert!(person.shown.contains("THE RISK") && person.shown.contains(&collector.url), "consent text shown first");
        assert_eq!(joined.list.version, 3);
        assert_eq!(joined.list.served_by.as_deref(), Some(collector.url.as_str()), "the blocked first collector was skipped");
        let written = ProbeConfig::load(&dir.path().join("etc/probe.toml")).expect("config written");
        assert_eq!(written, joined.config);
        assert_eq!(written.collectors, vec![blocked, collector.url.clone()]);
        assert_eq!(written.list_key, key.public_base64());
        assert!(written.accepted_risks);
        assert_eq!(written.data_dir, dir.path().join("data"));
        assert_eq!(files(dir.path()), ["data/list/signed.json", "data/list/trust.json", "etc/probe.toml"]);
        let summary = joined.to_string();
        assert_eq!(summary.lines().next(), Some(format!("Joined. Collector: {}", collector.url).as_str()));
    }

    #[tokio::test]
    async fn a_bad_list_or_no_collector_writes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = ListKey::from_seed(&[1; 32]);
        let stranger = ListKey::from_seed(&[2; 32]);
        let collector = TestCollector::serving(signed(&stranger, &document(3))).await;
        let mut flagged = args(&invitation(vec![collector.url.clone()], &key), dir.path());
        flagged.accept_risks = true;
        let err = join(&flagged, &mut Scripted::new(false, "")).await.expect_err("foreign list");
        let chain = format!("{:#}", anyhow::Error::new(err));
        assert!(chain.starts_with("could not join, nothing was written: no usable target list: "), "{chain}");
        assert!(chain.contains("which the pinned key") && chain.contains("never endorsed"), "{chain}");

        let nowhere = args(&invitation(vec![refusing().await], &key), dir.path());
        let err =
            join(&JoinArgs { accept_risks: true, ..nowhere }, &mut Scripted::new(false, "")).await.expect_err("unreachable");
        assert!(matches!(err, JoinError::List(ListFetchError::NoGoodList(_))), "{err}");
        assert!(files(dir.path()).is_empty(), "nothing written: {:?}", files(dir.path()));
    }

    #[tokio::test]
    async fn without_consent_no_collector_is_contacted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = ListKey::from_seed(&[1; 32]);
        let collector = TestCollector::serving(signed(&key, &document(3))).await;
        let args = args(&invitation(vec![collector.url.clone()], &key), dir.path());
        let err = join(&args, &mut Scripted::new(false, "yes\n")).await.expect_err("no terminal");
        assert!(matches!(err, JoinError::Consent(ConsentError::NoTerminal)), "{err}");
        let err = join(&args, &mut Scripted::new(true, "no\n")).await.expect_err("declined");
        assert!(matches!(err, JoinError::Consent(ConsentError::Declined)), "{err}");
        assert_eq!(collector.hits(), 0);
        assert!(files(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn rejoining_keeps_the_volunteers_own_choices() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = ListKey::from_seed(&[1; 32]);
        let new = ListKey::from_seed(&[4; 32]);
        let collector = TestCollector::serving(signed(&old, &document(3))).await;
        let mut first = args(&invitation(vec![collector.url.clone()], &old), dir.path());
        first.accept_risks = true;
        let joined = join(&first, &mut Scripted::new(false, "")).await.expect("first join");
        let mut config = joined.config;
        config.opt_out.tests = vec![TestKind::Tor];
        config.opt_out.categories = vec!["news".into()];
        config.save(&joined.config_path).expect("volunteer edits");

        collector.serve(signed(&new, &document(1)));
        let second = JoinArgs { data_dir: None, ..args(&invitation(vec![collector.url.clone()], &new), dir.path()) };
        let rejoined = join(&JoinArgs { accept_risks: true, ..second }, &mut Scripted::new(false, "")).await.expect("rejoin");
        assert_eq!(rejoined.config.list_key, new.public_base64());
        assert_eq!(rejoined.config.opt_out, config.opt_out, "opt-outs survive a re-join");
        assert_eq!(rejoined.config.data_dir, config.data_dir, "same data directory, same probe key");
        let names: Vec<&str> = rejoined.list.targets.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["wikipedia", "retired"], "the opt-outs apply to the new list");
    }

    #[tokio::test]
    async fn a_plaintext_collector_elsewhere_is_refused_before_the_question() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = ListKey::from_seed(&[1; 32]);
        let collector = TestCollector::serving(signed(&key, &document(3))).await;
        let elsewhere = invitation(vec![collector.url.clone(), "http://collector.example".into()], &key);
        let mut person = Scripted::new(true, "yes\n");
        let err = join(&args(&elsewhere, dir.path()), &mut person).await.expect_err("plaintext");
        assert!(matches!(&err, JoinError::Flag(ConfigError::Transport(_))), "{err}");
        assert!(err.to_string().contains("`http://collector.example` is plaintext HTTP"), "{err}");
        assert!(person.shown.is_empty(), "not even asked");
        assert_eq!(collector.hits(), 0);
        assert!(files(dir.path()).is_empty());

        // A lab says so, and the config remembers it for the daemon.
        let lab = JoinArgs { accept_risks: true, danger_plaintext_collector: true, ..args(&elsewhere, dir.path()) };
        let joined = join(&lab, &mut Scripted::new(false, "")).await.expect("a lab");
        assert!(joined.config.danger_plaintext_collector);
        assert!(joined.to_string().contains("DANGER: plaintext"), "{joined}");
        // A re-join without the flag does not inherit it.
        let again = join(&JoinArgs { accept_risks: true, ..args(&elsewhere, dir.path()) }, &mut Scripted::new(false, "")).await;
        assert!(matches!(again, Err(JoinError::Flag(ConfigError::Transport(_)))), "{again:?}");
    }

    #[tokio::test]
    async fn the_invitations_pins_are_checked_on_the_first_fetch_and_written() {
        use crate::transport::tests::{TestCa, pin_of};
        let dir = tempfile::tempdir().expect("tempdir");
        let key = ListKey::from_seed(&[1; 32]);
        let ca = TestCa::new();
        let (live, backup, stranger) = (keypair(), keypair(), keypair());
        let list = signed(&key, &document(3));
        let genuine = ca.issue(&live, 1).serve_body(&list).await;
        // The same name, a certificate from the same CA, another key: a coerced CA's work.
        let impostor = ca.issue(&stranger, 2).serve_body(&list).await;
        let pins = vec![pin_of(&live).to_string(), pin_of(&backup).to_string()];

        let to_impostor = Invitation { pins: pins.clone(), ..invitation(vec![impostor], &key) };
        let flagged = JoinArgs { accept_risks: true, ca: vec![ca.pem.clone()], ..args(&to_impostor, dir.path()) };
        let err = join(&flagged, &mut Scripted::new(false, "")).await.expect_err("not pinned");
        let chain = format!("{:#}", anyhow::Error::new(err));
        assert!(chain.contains("none of the pinned keys"), "{chain}");
        assert!(files(dir.path()).is_empty(), "nothing written");

        let to_genuine = Invitation { pins, ..invitation(vec![genuine], &key) };
        let flagged = JoinArgs { accept_risks: true, ca: vec![ca.pem.clone()], ..args(&to_genuine, dir.path()) };
        let joined = join(&flagged, &mut Scripted::new(false, "")).await.expect("pinned join");
        let written = ProbeConfig::load(&joined.config_path).expect("config");
        assert_eq!(written.collector_pins, vec![pin_of(&live), pin_of(&backup)]);
        assert!(joined.to_string().contains(&format!("Collector keys pinned: {}", pin_of(&live))), "{joined}");

        // Pins can't be checked over plaintext: refused, even on loopback.
        let plain = Invitation { pins: vec![pin_of(&live).to_string()], ..invitation(vec!["http://127.0.0.1:9".into()], &key) };
        let err = join(&JoinArgs { accept_risks: true, ..args(&plain, dir.path()) }, &mut Scripted::new(false, "")).await;
        assert!(matches!(err, Err(JoinError::Flag(ConfigError::Transport(_)))), "{err:?}");
    }

    fn keypair() -> rcgen::KeyPair {
        rcgen::KeyPair::generate().expect("key")
    }
}
