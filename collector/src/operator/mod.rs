//! The operator's offline commands: make and rotate the list key, sign a target list, print an
//! invitation, print a TLS key's pin. None of them needs the collector to run, and the list key need never be on the
//! serving machine: sign elsewhere, copy the signed list over, send SIGHUP.
//!
//! The key file holds the 32-byte ed25519 seed in base64 and is created with mode 0600, never
//! overwritten. The formats of what is signed are in [`vantage_measurement::wire::target_list`].

pub mod args;
pub mod listfile;
pub mod pin;

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::Utc;
use serde::Serialize;
use serde::de::DeserializeOwned;
use vantage_measurement::wire::pin::SpkiPin;
use vantage_measurement::wire::target_list::{self, Endorsement, Invitation, ListKey, ListTrust, Revocation, SignedList};
use vantage_measurement::wire::transport::{self, Allowance};

use crate::published::PublishedList;
use args::{InviteArgs, ListCommand, ListKeyCommand, SignArgs};

/// `list-key new|rotate`; returns what to print.
pub fn list_key(command: ListKeyCommand) -> anyhow::Result<String> {
    match command {
        ListKeyCommand::New { out } => new_key(&out),
        ListKeyCommand::Rotate { old, new, chain } => rotate(&old, &new, &chain),
    }
}

/// `list sign`; returns what to print.
pub fn list(command: ListCommand) -> anyhow::Result<String> {
    match command {
        ListCommand::Sign(args) => sign(&args),
    }
}

/// `invite`: the invitation URL.
pub fn invite(args: &InviteArgs) -> anyhow::Result<String> {
    let list_key = match (&args.list_key_public, &args.key) {
        (Some(public), _) => public.trim().to_string(),
        (None, Some(path)) => read_key(path)?.public_base64(),
        (None, None) => bail!("give the list key: --list-key-public B64 or --key FILE"),
    };
    let mut pins: Vec<SpkiPin> = Vec::new();
    let from_files = args.pin_from.iter().map(|p| pin::pin_of_file(p));
    let literals = args.pins.iter().map(|p| p.trim().parse::<SpkiPin>().context("--pin"));
    for pin in from_files.chain(literals) {
        let pin = pin?;
        // The certificate and its key given both are one pin.
        if !pins.contains(&pin) {
            pins.push(pin);
        }
    }
    if pins.len() == 1 {
        tracing::warn!(
            "only one key pinned: if that key is lost or must be replaced, every probe has to join again; \
             pin a backup key too (--pin-from BACKUP.key, made offline)"
        );
    }
    // The probe's transport rule, applied here first: an invitation probes would refuse is no use.
    let allowance =
        Allowance { danger_plaintext: args.danger_plaintext_collector, pinned: !pins.is_empty(), ..Allowance::default() };
    for collector in &args.collectors {
        transport::check(collector, allowance).context("the invitation would be refused by probes")?;
    }
    let pins = pins.iter().map(ToString::to_string).collect();
    let invitation = Invitation { collectors: args.collectors.clone(), list_key, pins };
    let url = invitation.to_url();
    // What the probe will check, checked here first.
    Invitation::parse(&url).with_context(|| "the invitation would be refused by probes")?;
    Ok(url)
}

/// The path of a key's self-revocation: `FILE.revocation.json`.
pub fn revocation_path(key: &Path) -> PathBuf {
    let mut name = key.as_os_str().to_owned();
    name.push(".revocation.json");
    PathBuf::from(name)
}

fn new_key(out: &Path) -> anyhow::Result<String> {
    let revocation_file = revocation_path(out);
    for path in [out, revocation_file.as_path()] {
        if path.exists() {
            bail!("{} exists; refusing to overwrite a key (move it away first)", path.display());
        }
    }
    let key = ListKey::generate();
    write_seed(out, key.seed())?;
    write_private(&revocation_file, &json_bytes(&key.revoke())?)?;
    Ok(format!(
        "list key written to {} (secret: keep it off the collector and backed up)\n\
         public key:  {}\n\
         fingerprint: {}\n\
         self-revocation written to {} (keep it apart from the key; publish it with \
         `list sign --revocations` to withdraw the key)",
        out.display(),
        key.public_base64(),
        key.fingerprint(),
        revocation_file.display()
    ))
}

fn rotate(old: &Path, new: &Path, chain_file: &Path) -> anyhow::Result<String> {
    let (old, new) = (read_key(old)?, read_key(new)?);
    if old.public_base64() == new.public_base64() {
        bail!("--old and --new are the same key");
    }
    let mut chain: Vec<Endorsement> = if chain_file.exists() { read_json(chain_file)? } else { Vec::new() };
    if let Some(last) = chain.last()
        && last.key != old.public_base64()
    {
        bail!(
            "the chain in {} ends at {}, not at the old key {}: rotate from the newest key",
            chain_file.display(),
            target_list::fingerprint_of(&last.key),
            old.fingerprint()
        );
    }
    chain.push(old.endorse(&new));
    write_replacing(chain_file, &json_bytes(&chain)?)?;
    Ok(format!(
        "{} now endorses {} ({} endorsement(s) in {}); sign the next list with the new key and --chain {}",
        old.fingerprint(),
        new.fingerprint(),
        chain.len(),
        chain_file.display(),
        chain_file.display()
    ))
}

fn sign(args: &SignArgs) -> anyhow::Result<String> {
    let now = Utc::now();
    let key = read_key(&args.key)?;
    let origin = args.list.display().to_string();
    let text = std::fs::read_to_string(&args.list).with_context(|| format!("cannot read {origin}"))?;
    let document = listfile::document(&text, &origin, now)?;
    if let Some(previous) = previous_version(&args.out)?
        && document.version <= previous
    {
        bail!(
            "{} holds version {previous}; probes refuse a list that is not newer: raise [list] version above {previous}",
            args.out.display()
        );
    }
    let chain: Vec<Endorsement> = args.chain.as_deref().map(read_json).transpose()?.unwrap_or_default();
    let revocations = args.revocations.iter().map(|p| read_json::<Revocation>(p)).collect::<anyhow::Result<Vec<_>>>()?;
    let signed = key.sign(&document, chain, revocations);
    // A probe pinning the chain's first key (or this key) must accept it; so must `serve`.
    let pinned = signed.endorsements.first().map_or_else(|| key.public_base64(), |e| e.signed_by.clone());
    target_list::verify(&signed, &ListTrust { pinned, version: None }, now)
        .context("the signed list would be refused by probes")?;
    let bytes = json_bytes(&signed)?;
    PublishedList::check(bytes.clone(), &args.out.display().to_string(), now)?;
    write_replacing(&args.out, &bytes)?;
    Ok(format!(
        "signed list version {} by {} written to {}: {} labelled, interval {} s, expires {}",
        document.version,
        key.fingerprint(),
        args.out.display(),
        document.labelled.len(),
        document.interval_secs,
        document.expires_at.to_rfc3339()
    ))
}

/// The version of the signed list already at `out`, if there is a readable one.
fn previous_version(out: &Path) -> anyhow::Result<Option<u64>> {
    if !out.exists() {
        return Ok(None);
    }
    let list: SignedList = read_json(out)?;
    let document: target_list::ListDocument =
        serde_json::from_str(&list.document).with_context(|| format!("{} holds no readable list document", out.display()))?;
    Ok(Some(document.version))
}

/// Read a list key file.
pub fn read_key(path: &Path) -> anyhow::Result<ListKey> {
    Ok(ListKey::from_seed(&read_seed(path, "list key", "list-key new")?))
}

/// Read an ed25519 key file: the 32-byte seed in base64 (`what` names the key, `made_by` the
/// command that makes it, in errors). The list key and the publication key share this format.
pub(crate) fn read_seed(path: &Path, what: &str, made_by: &str) -> anyhow::Result<[u8; 32]> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read the {what} {}", path.display()))?;
    let seed = BASE64.decode(text.trim()).ok().and_then(|bytes| <[u8; 32]>::try_from(bytes.as_slice()).ok());
    seed.with_context(|| format!("{} is not a {what} (made by {made_by})", path.display()))
}

/// Write a new key file holding `seed` (mode 0600; fails if the file exists).
pub(crate) fn write_seed(path: &Path, seed: &[u8; 32]) -> anyhow::Result<()> {
    write_private(path, format!("{}\n", BASE64.encode(seed)).as_bytes())
}

fn read_json<T: DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("{} is not the expected JSON", path.display()))
}

fn json_bytes<T: Serialize>(value: &T) -> anyhow::Result<Vec<u8>> {
    let mut bytes = serde_json::to_vec_pretty(value)?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Create `path` with mode 0600; fails if it exists.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(bytes).and_then(|()| file.sync_all()).with_context(|| format!("cannot write {}", path.display()))
}

/// Replace `path` in one step (write beside it, then rename), so a reader never sees half a file.
fn write_replacing(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    let temporary = PathBuf::from(name);
    std::fs::write(&temporary, bytes).with_context(|| format!("cannot write {}", temporary.display()))?;
    std::fs::rename(&temporary, path).with_context(|| format!("cannot replace {}", path.display()))
}
