//! What a volunteer agrees to before their machine measures anything for a network, and how the
//! agreement is asked for: a `yes` typed on a terminal, or `--accept-risks` for an unattended
//! install by someone who read the same text (docs/probe.md, "Risks"). Without a terminal and
//! without the flag, nothing goes ahead: silence is not consent.

use std::io::{self, BufRead, IsTerminal, Write};
use std::path::Path;

use crate::config::{ConfigFileError, ProbeConfig};

/// Where the risks are explained at length.
pub const RISKS_DOC: &str = "docs/probe.md#risks (the section \"Risks\" of the probe's documentation)";

/// The consent text for joining the network of these collectors.
pub fn text(collectors: &[String]) -> String {
    let list = collectors.iter().map(|c| format!("  - {c}")).collect::<Vec<_>>().join("\n");
    format!(
        "\
Before this probe joins, please read what it will do.

WHAT IS MEASURED
  From this network, the probe will regularly try to reach the websites, DNS names, VPN and
  Tor endpoints on a list that the network's operator publishes and signs. It resolves names,
  opens connections and starts TLS, QUIC and VPN handshakes, as a browser or VPN app would,
  and records whether they worked and how they failed. It sends no passwords or personal data.
  You can switch off test kinds or target categories in the config file ([opt_out]).

WHAT IS SENT WHERE
  The results go to the collector(s):
{list}
  The results never contain this machine's IP address. While uploading, the collector sees
  that address as any web server would; it may look up the country and network (ASN) it
  belongs to, stores those, and then forgets the address. Results are published for
  researchers, without any key or address that would identify this probe.

THE RISK
  In some countries, testing whether blocked sites and VPNs are reachable is itself watched,
  and running a censorship probe can bring legal or personal trouble: anyone who watches this
  network can see the connections the probe makes. Only run it where you are willing to take
  that risk. Read {RISKS_DOC} before you say yes.

You can stop at any time, and `vantage-probe forget` asks the collector to delete everything
this probe sent.
"
    )
}

/// How the volunteer agreed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Agreement {
    /// Typed `yes`.
    Typed,
    /// Passed `--accept-risks`.
    Flag,
}

/// Why the probe does not go ahead.
#[derive(Debug, thiserror::Error)]
pub enum ConsentError {
    /// Nobody can be asked.
    #[error(
        "no terminal to ask for consent on, and no --accept-risks: nothing was done. Read the text above (or {RISKS_DOC}) and run again on a terminal, or with --accept-risks for an unattended install"
    )]
    NoTerminal,
    /// The answer was not `yes`.
    #[error("you did not answer `yes`: nothing was done")]
    Declined,
    /// Reading the answer failed.
    #[error("reading your answer: {0}")]
    Io(#[from] io::Error),
    /// The agreement could not be recorded in the config file.
    #[error("recording your agreement: {0}")]
    Record(ConfigFileError),
}

/// Where the question is asked: the process's terminal, or a script in tests.
pub trait Prompt {
    /// Whether a person can answer here.
    fn is_terminal(&self) -> bool;
    /// Show text to the person.
    fn show(&mut self, text: &str) -> io::Result<()>;
    /// Read one answer line (empty at end of input).
    fn answer(&mut self) -> io::Result<String>;
}

/// The process's own stdin and stderr (stdout carries the command's result).
#[derive(Debug, Default)]
pub struct Terminal;

impl Prompt for Terminal {
    fn is_terminal(&self) -> bool {
        io::stdin().is_terminal()
    }

    fn show(&mut self, text: &str) -> io::Result<()> {
        let mut err = io::stderr().lock();
        err.write_all(text.as_bytes())?;
        err.flush()
    }

    fn answer(&mut self) -> io::Result<String> {
        let mut line = String::new();
        io::stdin().lock().read_line(&mut line)?;
        Ok(line)
    }
}

/// Only the word itself counts: `y`, `ok` or a stray Enter must not sign anyone up.
pub fn is_yes(answer: &str) -> bool {
    answer.trim().eq_ignore_ascii_case("yes")
}

/// Show the text and get an explicit yes (or the flag).
pub fn obtain(text: &str, accept_risks: bool, prompt: &mut dyn Prompt) -> Result<Agreement, ConsentError> {
    prompt.show(text)?;
    if accept_risks {
        prompt.show("\nAccepted with --accept-risks.\n")?;
        return Ok(Agreement::Flag);
    }
    if !prompt.is_terminal() {
        return Err(ConsentError::NoTerminal);
    }
    prompt.show("\nType `yes` to accept and join, anything else to stop: ")?;
    if is_yes(&prompt.answer()?) { Ok(Agreement::Typed) } else { Err(ConsentError::Declined) }
}

/// For commands after `join` (the daemon): nothing to ask when the config records the
/// agreement; otherwise ask, and record the yes in the config file at `path`.
pub fn ensure(config: &mut ProbeConfig, path: &Path, accept_risks: bool, prompt: &mut dyn Prompt) -> Result<(), ConsentError> {
    if config.accepted_risks {
        return Ok(());
    }
    obtain(&text(&config.collectors), accept_risks, prompt)?;
    config.accepted_risks = true;
    config.save(path).map_err(ConsentError::Record)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A person (or nobody) answering from a script.
    pub(crate) struct Scripted {
        pub terminal: bool,
        pub answer: &'static str,
        pub shown: String,
    }

    impl Scripted {
        pub(crate) fn new(terminal: bool, answer: &'static str) -> Scripted {
            Scripted { terminal, answer, shown: String::new() }
        }
    }

    impl Prompt for Scripted {
        fn is_terminal(&self) -> bool {
            self.terminal
        }

        fn show(&mut self, text: &str) -> io::Result<()> {
            self.shown.push_str(text);
            Ok(())
        }

        fn answer(&mut self) -> io::Result<String> {
            Ok(self.answer.to_string())
        }
    }

    #[test]
    fn only_yes_typed_on_a_terminal_or_the_flag_agrees() {
        let text = text(&["https://c1.example".into()]);
        assert_eq!(obtain(&text, false, &mut Scripted::new(true, "yes\n")).expect("typed"), Agreement::Typed);
        assert_eq!(obtain(&text, false, &mut Scripted::new(true, "  YES \n")).expect("typed"), Agreement::Typed);
        for answer in ["y\n", "\n", "", "no\n", "yes please\n"] {
            let err = obtain(&text, false, &mut Scripted::new(true, answer)).expect_err(answer);
            assert!(matches!(err, ConsentError::Declined), "{answer:?}: {err}");
        }
        assert_eq!(obtain(&text, true, &mut Scripted::new(false, "")).expect("flag"), Agreement::Flag);
    }

    #[test]
    fn without_a_terminal_and_without_the_flag_nothing_goes_ahead() {
        let mut nobody = Scripted::new(false, "yes\n");
        let err = obtain(&text(&["https://c1.example".into()]), false, &mut nobody).expect_err("no terminal");
        assert!(matches!(err, ConsentError::NoTerminal));
        assert!(err.to_string().contains("--accept-risks"), "{err}");
        assert!(nobody.shown.contains("THE RISK"), "the text is shown even when nobody can answer");
    }

    #[test]
    fn a_recorded_agreement_is_not_asked_again_and_a_new_one_is_recorded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("probe.toml");
        let key = vantage_measurement::wire::target_list::ListKey::from_seed(&[1; 32]).public_base64();
        let text = format!("collectors = [\"https://c1.example\"]\nlist_key = \"{key}\"\ndata_dir = \"/d\"\n");
        let mut config = ProbeConfig::parse(&text, "t").expect("config");

        let err = ensure(&mut config, &path, false, &mut Scripted::new(false, "")).expect_err("nobody to ask");
        assert!(matches!(err, ConsentError::NoTerminal));
        assert!(!path.exists() && !config.accepted_risks);

        ensure(&mut config, &path, false, &mut Scripted::new(true, "yes\n")).expect("typed");
        assert!(ProbeConfig::load(&path).expect("recorded").accepted_risks);

        let mut silent = Scripted::new(false, "");
        ensure(&mut config, &path, false, &mut silent).expect("already agreed");
        assert!(silent.shown.is_empty(), "not asked again");
    }

    #[test]
    fn the_text_names_the_collectors_and_the_risk_section() {
        let shown = text(&["https://c1.example".into(), "https://c2.example".into()]);
        let collectors: Vec<&str> = shown.lines().filter_map(|l| l.trim().strip_prefix("- ")).collect();
        assert_eq!(collectors, ["https://c1.example", "https://c2.example"]);
        assert!(shown.contains(RISKS_DOC));
    }
}
