//! `vantage-collector export` and `verify`: thin drivers over the pure parts (`day`, `verify`).

use std::collections::BTreeMap;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use chrono::Utc;
use ed25519_dalek::VerifyingKey;

use super::args::{ExportArgs, VerifyArgs};
use super::day::Output;
use super::manifest::{Manifest, public_key};
use super::publish::{catch_up, closes_at, export_day, is_closed};
use crate::store::{self, StoreLocation};

/// `export`: publish what is closed and unpublished, then write each day's files and its
/// published manifest. Fails (after writing) if a day's rows no longer match its manifest.
pub async fn export(args: ExportArgs) -> anyhow::Result<String> {
    if args.until <= args.since {
        bail!("--until ({}) must be after --since ({})", args.until, args.since);
    }
    let location = match &args.database {
        Some(url) => StoreLocation::Postgres { url: url.0.clone() },
        None => StoreLocation::Sqlite { data_dir: args.data_dir.clone() },
    };
    let key_path = super::key::path(args.publication.publication_key.as_deref(), &args.data_dir);
    let key = super::key::load_or_create(&key_path)?;
    let store = store::open(&location).await.with_context(|| format!("opening {location}"))?;
    let now = Utc::now();
    catch_up(store.as_ref(), &key, now).await.context("publishing closed days")?;
    let mut report = Vec::new();
    let mut changed = Vec::new();
    let mut day = args.since;
    while day < args.until {
        if !is_closed(day, now) {
            bail!("{day} is not closed: it closes at {} UTC; export it after that", closes_at(day).format("%Y-%m-%d %H:%M"));
        }
        let Some(publication) = store.publication(day).await? else {
            report.push(format!("{day}: no measurements (nothing published)"));
            day = day + chrono::Days::new(1);
            continue;
        };
        let published: Manifest = serde_json::from_str(&publication.manifest).context("a published manifest")?;
        let dir = args.out.join(day.format("%Y%m%d").to_string());
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let files_dir = dir.clone();
        let open = move |path: &str| -> std::io::Result<Output> {
            let file = files_dir.join(path);
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent)?;
            }
            Ok(Box::new(BufWriter::new(std::fs::File::create(file)?)))
        };
        let made = export_day(store.as_ref(), day, vec![args.format], open, published.previous.clone()).await?;
        std::fs::write(dir.join("manifest.json"), publication.manifest.as_bytes())
            .with_context(|| format!("cannot write {}", dir.join("manifest.json").display()))?;
        let written: Vec<_> = made.files.iter().filter(|f| f.path.ends_with(args.format.file_name())).collect();
        for file in &written {
            if published.file(&file.path) != Some(*file) {
                changed.push(format!("{day}/{}", file.path));
            }
        }
        report.push(format!("{day}: {} rows in {} files", made.rows, written.len()));
        day = day + chrono::Days::new(1);
    }
    store.close().await?;
    if !changed.is_empty() {
        bail!(
            "the store no longer matches what was published for: {} (rows deleted on request, or changed); \
             the files were written as the store holds them now",
            changed.join(", ")
        );
    }
    report.push(format!("written under {}", args.out.display()));
    Ok(report.join("\n"))
}

/// `verify`: the manifest's signature, then every file given; the report, or the first failure.
pub fn verify(args: &VerifyArgs) -> anyhow::Result<String> {
    let key = match (&args.key, &args.key_file) {
        (Some(key), _) => public_key(key)?,
        (None, Some(file)) => read_public_key(file)?,
        (None, None) => bail!("give the collector's public key: --key BASE64 or --key-file FILE"),
    };
    let bytes = std::fs::read(&args.manifest).with_context(|| format!("cannot read {}", args.manifest.display()))?;
    let manifest = super::verify::manifest(&bytes, &key).with_context(|| format!("{}", args.manifest.display()))?;
    let mut files = BTreeMap::new();
    for path in &args.paths {
        collect(path, &manifest, &mut files)?;
    }
    if files.is_empty() {
        bail!(
            "no export files of {} under {}",
            manifest.day,
            args.paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        );
    }
    let mut lines = vec![format!(
        "manifest {}: signature valid ({}), {} rows, Merkle root {}",
        manifest.day,
        super::key::key_id(&key),
        manifest.rows,
        manifest.merkle_root
    )];
    for (relative, file) in &files {
        let reader = std::fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?;
        let report = super::verify::file(&manifest, relative, std::io::BufReader::new(reader))
            .with_context(|| format!("{} does not verify", file.display()))?;
        let rows = if report.merkle_checked { "rows match the Merkle root" } else { "hash matches" };
        lines.push(format!("{relative}: ok, {} rows, {rows}", report.rows));
    }
    lines.push(format!("{} of the manifest's {} files checked; all verify", files.len(), manifest.files.len()));
    let mut out = lines.join("\n");
    out.truncate(out.trim_end().len());
    Ok(out)
}

/// The public key in `file`: base64 text, or `{"key": …}` as the API serves it.
fn read_public_key(file: &Path) -> anyhow::Result<VerifyingKey> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let b64 = match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(value) => value["key"].as_str().map(str::to_string).with_context(|| format!("{} has no \"key\"", file.display()))?,
        Err(_) => text.trim().to_string(),
    };
    Ok(public_key(&b64)?)
}

/// The .gz files under `path` that belong to `manifest`'s day, by path relative to the day
/// (their last three components: CC/TEST/NAME).
fn collect(path: &Path, manifest: &Manifest, files: &mut BTreeMap<String, PathBuf>) -> anyhow::Result<()> {
    if path.is_dir() {
        let mut entries: Vec<_> =
            std::fs::read_dir(path).with_context(|| format!("cannot list {}", path.display()))?.collect::<Result<Vec<_>, _>>()?;
        entries.sort_by_key(std::fs::DirEntry::path);
        for entry in entries {
            let child = entry.path();
            let other_day = child.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.len() == 8 && n.bytes().all(|b| b.is_ascii_digit()) && *n != manifest.day.format("%Y%m%d").to_string()
            });
            if child.is_dir() && !other_day {
                collect(&child, manifest, files)?;
            } else if child.extension().is_some_and(|e| e == "gz") {
                files.insert(relative(&child)?, child);
            }
        }
        return Ok(());
    }
    files.insert(relative(path)?, path.to_path_buf());
    Ok(())
}

fn relative(file: &Path) -> anyhow::Result<String> {
    let parts: Vec<_> = file.iter().rev().take(3).map(|p| p.to_string_lossy().into_owned()).collect();
    if parts.len() < 3 {
        bail!("{}: an export file's path ends in CC/TEST/NAME.gz", file.display());
    }
    Ok(parts.into_iter().rev().collect::<Vec<_>>().join("/"))
}
