//! The operator's list-key, list and invitation subcommands, as typed.

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// `vantage-collector list-key …`.
#[derive(Debug, Subcommand)]
pub enum ListKeyCommand {
    /// Make a new list key: writes the secret seed to FILE (mode 0600, never overwritten) and the
    /// key's pre-made self-revocation to FILE.revocation.json (keep it apart from the key: it
    /// withdraws the key even if the key is lost), and prints the public key and fingerprint.
    New {
        /// Where to write the secret key.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Hand over from an old key to a new one (made with `list-key new`): appends the old key's
    /// endorsement of the new key to the chain file, which `list sign --chain` then publishes so
    /// that probes pinning the old key follow to the new one.
    Rotate {
        /// The old key (the one probes pin now).
        #[arg(long, value_name = "FILE")]
        old: PathBuf,
        /// The new key.
        #[arg(long, value_name = "FILE")]
        new: PathBuf,
        /// The endorsement chain (JSON); created if missing.
        #[arg(long, value_name = "CHAIN.json")]
        chain: PathBuf,
    },
}

/// `vantage-collector list …`.
#[derive(Debug, Subcommand)]
pub enum ListCommand {
    /// Sign a target list: LIST.toml is a targets file (`[[target]]` tables, as the probe's
    /// `--targets`) plus a `[list]` table with `version`, `expires_days` or `expires_at`,
    /// `interval_secs` or `interval_hours`, and optionally `disabled_tests`, `disabled_targets`
    /// and `labelled`. The targets are checked with the probe's own parser before signing.
    Sign(SignArgs),
}

/// Flags of `list sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// The list key (from `list-key new`).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// The list to sign.
    #[arg(long, value_name = "LIST.toml")]
    pub list: PathBuf,
    /// Where to write the signed list (for `serve --signed-list`). If it holds a signed list
    /// already, the new version must be higher.
    #[arg(long, value_name = "SIGNED.json")]
    pub out: PathBuf,
    /// The endorsement chain from the key probes pinned to this one (`list-key rotate`).
    #[arg(long, value_name = "CHAIN.json")]
    pub chain: Option<PathBuf>,
    /// Revocations to publish (FILE.revocation.json of each withdrawn key).
    #[arg(long, value_name = "FILE", num_args = 1..)]
    pub revocations: Vec<PathBuf>,
}

/// Flags of `invite`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("pin").required(true).args(["list_key_public", "key"])))]
pub struct InviteArgs {
    /// The list key's public half (base64), as `list-key new` printed it.
    #[arg(long, value_name = "B64")]
    pub list_key_public: Option<String>,
    /// Or the list key file itself.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// A collector base URL (https://…); repeat for fallbacks, the first preferred.
    #[arg(long = "collector", value_name = "URL", required = true)]
    pub collectors: Vec<String>,
    /// Pin the TLS key in FILE (PEM: the collector's certificate, its private key, or a public
    /// key): probes then accept a collector only if its certificate verifies AND carries a pinned
    /// key. Repeat with the backup key, made offline, so that a key can be replaced without a new
    /// invitation (see docs/operators.md, "Key pinning and certificate renewal").
    #[arg(long = "pin-from", value_name = "FILE")]
    pub pin_from: Vec<PathBuf>,
    /// Pin a key given as its pin (`sha256/…`, as `vantage-collector pin FILE` prints it), e.g.
    /// the backup key kept offline. Repeatable.
    #[arg(long = "pin", visible_alias = "backup-pin", value_name = "sha256/B64")]
    pub pins: Vec<String>,
    /// Allow plaintext http:// collectors on other machines in the invitation (labs only: probes
    /// refuse them unless they join with the same flag).
    #[arg(long)]
    pub danger_plaintext_collector: bool,
}

/// Flags of `pin`.
#[derive(Debug, Args)]
pub struct PinArgs {
    /// A PEM file: a certificate (the first in the file), a public key, or a PKCS#8 private key.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}
