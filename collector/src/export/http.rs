//! The export over HTTP: published days, their manifests and files, the latest manifest and the
//! publication key. Unauthenticated, like the measurements API.
//!
//! A file is made from the store on request, streamed as it is compressed (one group's rows,
//! read in the export's order), not cached on disk: the store is the one copy of the data, so
//! retention and a volunteer's deletion request reach the files with nothing else to clean up,
//! and replicas need no shared disk. Because gzip is deterministic, the bytes are those
//! published, as long as the stored rows are: if they are not (rows deleted on a volunteer's
//! request, or changed behind the collector's back) the file no longer matches its manifest, the
//! collector logs an error naming it, and `vantage-collector verify` fails on it. The served
//! bytes are never silently "fixed".

use std::io::{self, Write};
use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use ed25519_dalek::VerifyingKey;
use serde_json::json;
use tokio::sync::mpsc;
use vantage_measurement::{TestKind, is_country_code};

use super::day::{Hashing, gzip, row_or_skip};
use super::format::Format;
use super::manifest::Manifest;
use super::publish::{closes_at, is_closed};
use crate::clock::Clock;
use crate::error::ApiError;
use crate::store::{DayRows, Store};

/// The collector's publication key, public half (a piece of the router's state).
#[derive(Clone, Debug)]
pub struct PublicationKey(pub VerifyingKey);

/// Chunks handed to the response at once.
const CHUNK_BYTES: usize = 64 * 1024;

fn not_found(message: String) -> ApiError {
    ApiError::client(StatusCode::NOT_FOUND, None, message)
}

fn parse_day(text: &str) -> Result<NaiveDate, ApiError> {
    NaiveDate::parse_from_str(text, "%Y%m%d")
        .ok()
        .filter(|d| d.format("%Y%m%d").to_string() == text)
        .ok_or_else(|| ApiError::client(StatusCode::BAD_REQUEST, None, format!("{text:?} is not a day (YYYYMMDD)")))
}

/// The published manifest of `day`, or the 404 saying why there is none.
async fn published(store: &dyn Store, clock: &dyn Clock, day: NaiveDate) -> Result<String, ApiError> {
    if !is_closed(day, clock.now()) {
        return Err(not_found(format!(
            "{day} is not closed: a day closes at {} ({} minutes after it ends, UTC) and is published within minutes",
            closes_at(day).format("%Y-%m-%dT%H:%M:%SZ"),
            super::publish::CLOSE_DELAY.num_minutes()
        )));
    }
    match store.publication(day).await {
        Ok(Some(publication)) => Ok(publication.manifest),
        Ok(None) => Err(not_found(format!("{day} is not published: no measurements before it, or publication is pending"))),
        Err(e) => Err(ApiError::from(&e)),
    }
}

fn manifest_response(manifest: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], manifest).into_response()
}

/// `GET /api/v1/exports`: the published days, oldest first.
pub(crate) async fn get_exports(State(store): State<Arc<dyn Store>>) -> Response {
    match store.published_days().await {
        Ok(days) => {
            let days: Vec<_> = days
                .iter()
                .map(|d| json!({"day": d.to_string(), "manifest": format!("/api/v1/exports/{}/manifest.json", d.format("%Y%m%d"))}))
                .collect();
            Json(json!({ "days": days })).into_response()
        }
        Err(e) => ApiError::from(&e).into_response(),
    }
}

/// `GET /api/v1/exports/latest`: the latest signed manifest.
pub(crate) async fn get_latest(State(store): State<Arc<dyn Store>>) -> Response {
    match store.latest_publication().await {
        Ok(Some(publication)) => manifest_response(publication.manifest),
        Ok(None) => not_found("nothing is published yet".into()).into_response(),
        Err(e) => ApiError::from(&e).into_response(),
    }
}

/// `GET /api/v1/exports/{YYYYMMDD}/manifest.json`.
pub(crate) async fn get_manifest(
    State(store): State<Arc<dyn Store>>,
    State(clock): State<Arc<dyn Clock>>,
    Path((day, name)): Path<(String, String)>,
) -> Response {
    if name != "manifest.json" {
        return not_found(format!("no {name:?}: a day has manifest.json and CC/TEST/FILE.gz")).into_response();
    }
    let day = match parse_day(&day) {
        Ok(day) => day,
        Err(e) => return e.into_response(),
    };
    match published(store.as_ref(), clock.as_ref(), day).await {
        Ok(manifest) => manifest_response(manifest),
        Err(e) => e.into_response(),
    }
}

/// `GET /api/v1/publication-key`.
pub(crate) async fn get_publication_key(State(key): State<Arc<PublicationKey>>) -> Response {
    Json(json!({
        "algorithm": "ed25519",
        "key": super::key::public_base64(&key.0),
        "key_id": super::key::key_id(&key.0),
    }))
    .into_response()
}

/// `GET /api/v1/exports/{YYYYMMDD}/{CC}/{TEST}/{FILE}.gz`: made from the store as it streams.
pub(crate) async fn get_file(
    State(store): State<Arc<dyn Store>>,
    State(clock): State<Arc<dyn Clock>>,
    Path((day, cc, test, name)): Path<(String, String, String, String)>,
) -> Response {
    let day = match parse_day(&day) {
        Ok(day) => day,
        Err(e) => return e.into_response(),
    };
    let (Some(format), Some(test_kind)) = (Format::of_file_name(&name), TestKind::parse(&test)) else {
        return not_found(format!("no {cc}/{test}/{name} on {day}")).into_response();
    };
    if !is_country_code(&cc) {
        return not_found(format!("no {cc}/{test}/{name} on {day}")).into_response();
    }
    let manifest = match published(store.as_ref(), clock.as_ref(), day).await {
        Ok(text) => text,
        Err(e) => return e.into_response(),
    };
    let path = format!("{cc}/{test}/{name}");
    let entry = match serde_json::from_str::<Manifest>(&manifest) {
        Ok(manifest) => manifest.file(&path).cloned(),
        Err(e) => {
            tracing::error!(day = %day, "a published manifest does not parse: {e}");
            return ApiError::server(crate::error::ServerFault::Internal, "a published manifest is damaged").into_response();
        }
    };
    let Some(entry) = entry else {
        return not_found(format!("no {path} on {day}: see /api/v1/exports/{}/manifest.json", day.format("%Y%m%d")))
            .into_response();
    };
    let rows = match store.day_rows(&DayRows { day, group: Some((cc, test_kind)) }).await {
        Ok(rows) => rows,
        Err(e) => return ApiError::from(&e).into_response(),
    };
    let (chunks_tx, mut chunks_rx) = mpsc::channel::<io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        let day_text = day.format("%Y-%m-%d").to_string();
        let result = write_file(rows, format, &day_text, Chunks { tx: chunks_tx.clone(), buffer: Vec::new() });
        match result {
            Ok(sha256) if sha256 == entry.sha256 => {}
            Ok(sha256) => tracing::error!(
                day = %day_text, file = %entry.path, published = %entry.sha256, served = %sha256,
                "a served export file no longer matches its published manifest: stored rows changed since publication"
            ),
            Err(e) => {
                tracing::error!(day = %day_text, file = %entry.path, "export file aborted: {e}");
                let _ = chunks_tx.blocking_send(Err(e));
            }
        }
    });
    let body = futures::stream::poll_fn(move |cx| chunks_rx.poll_recv(cx));
    ([(header::CONTENT_TYPE, "application/gzip")], Body::from_stream(body)).into_response()
}

/// Write one file's rows through `out`; the SHA-256 of the bytes written.
fn write_file(mut rows: crate::store::RowReceiver, format: Format, day: &str, out: Chunks) -> io::Result<String> {
    let mut gz = gzip(Hashing::new(out));
    gz.write_all(&format.header())?;
    while let Some(line) = rows.blocking_recv() {
        let line = line.map_err(io::Error::other)?;
        if let Some(row) = row_or_skip(format, &line, day).map_err(io::Error::other)? {
            gz.write_all(&row)?;
        }
    }
    let (sha256, mut out) = gz.finish()?.finish();
    out.flush()?;
    Ok(sha256)
}

/// A writer handing the response body chunks of [`CHUNK_BYTES`] (from a blocking thread).
struct Chunks {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buffer: Vec<u8>,
}

impl Write for Chunks {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(buf);
        if self.buffer.len() >= CHUNK_BYTES {
            self.flush()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buffer));
        // The client went away: stop making the file.
        self.tx.blocking_send(Ok(chunk)).map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "client gone"))
    }
}
