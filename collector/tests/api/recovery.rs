//! `kill -9` of the real collector binary while several clients post to it loses no acknowledged
//! measurement and stores nothing twice: a `200` is a promise that survives a crash (the store's
//! "durable before acknowledged" contract, SQLite in WAL mode with `synchronous=FULL`).
//!
//! Six clients post batches (signed gzip and anonymous plain, alternately) in a bounded loop; once
//! enough batches have been acknowledged the process gets SIGKILL with requests still in flight.
//! The collector is started again on the same data directory; every acknowledged id must be
//! there, once. Then every batch that got no `200` is sent again, as a probe's spool does, and the
//! store must hold each measurement sent exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use uuid::Uuid;
use vantage_measurement::Measurement;
use vantage_measurement::wire::{IngestReport, KEY_HEADER, SIGNATURE_HEADER};

use crate::support::{gzip, http_client, measurement, ndjson, probe_key};

const BINARY: &str = env!("CARGO_BIN_EXE_vantage-collector");
/// Concurrent clients.
const CLIENTS: usize = 6;
/// Batches each client sends at most (the loop is bounded whatever happens).
const ROUNDS: usize = 40;
/// Measurements per batch.
const BATCH: usize = 20;
/// Acknowledged batches before the kill: well short of the `CLIENTS * ROUNDS` the clients would
/// send, so the kill lands while they are still posting.
const KILL_AFTER: usize = 30;
/// The longest any request may take (a dead collector fails fast; this bounds a hung one).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A `vantage-collector serve` child process on loopback.
struct Process {
    child: Child,
    base: String,
}

impl Process {
    fn start(data_dir: &Path) -> Process {
        let mut child = Command::new(BINARY)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env_remove("VANTAGE_LISTEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the collector");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read stdout");
        let addr = line
            .trim_end()
            .strip_prefix("vantage-collector listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_string();
        // Keep reading so a later line on stdout never meets a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        Process { child, base: format!("http://{addr}") }
    }

    /// SIGKILL, and wait until the process is gone.
    fn kill_9(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("wait");
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One batch as a client built it.
#[derive(Clone)]
struct Batch {
    client: usize,
    signed: bool,
    measurements: Vec<Measurement>,
}

impl Batch {
    fn ids(&self) -> impl Iterator<Item = Uuid> + '_ {
        self.measurements.iter().map(|m| m.id)
    }

    /// POST it: the report of a `200`, or whether the request had connected before it failed.
    async fn post(&self, http: &reqwest::Client, base: &str) -> Result<IngestReport, bool> {
        let mut request = http.post(format!("{base}/api/v1/measurements")).timeout(REQUEST_TIMEOUT);
        let body = if self.signed {
            let body = gzip(ndjson(&self.measurements).as_bytes());
            let key = probe_key(self.client as u8 + 1);
            request = request
                .header("content-encoding", "gzip")
                .header(KEY_HEADER, key.public_key_base64())
                .header(SIGNATURE_HEADER, key.sign_base64(&body));
            body
        } else {
            ndjson(&self.measurements).into_bytes()
        };
        let response = request.body(body).send().await.map_err(|e| !e.is_connect())?;
        if response.status() != 200 {
            return Err(true);
        }
        response.json().await.map_err(|_| true)
    }
}

/// What the clients saw.
#[derive(Default)]
struct Outcome {
    acknowledged: Vec<Batch>,
    unacknowledged: Vec<Batch>,
    /// Requests the kill cut off after they had connected (the rest found nobody listening).
    cut_mid_request: usize,
}

/// A client: up to [`ROUNDS`] batches, stopping at the first that gets no `200`.
async fn client(n: usize, base: String, outcome: Arc<Mutex<Outcome>>, acked: tokio::sync::mpsc::UnboundedSender<()>) {
    let http = http_client();
    for round in 0..ROUNDS {
        let batch =
            Batch { client: n, signed: (n + round).is_multiple_of(2), measurements: (0..BATCH).map(|_| measurement()).collect() };
        match batch.post(&http, &base).await {
            Ok(report) => {
                assert_eq!((report.accepted, report.duplicates, report.rejected.len()), (BATCH, 0, 0), "all new, all valid");
                outcome.lock().expect("lock").acknowledged.push(batch);
                let _ = acked.send(());
            }
            Err(connected) => {
                let mut outcome = outcome.lock().expect("lock");
                outcome.unacknowledged.push(batch);
                outcome.cut_mid_request += usize::from(connected);
                return;
            }
        }
    }
}

/// Every stored measurement id, with how often it appears.
async fn stored_ids(http: &reqwest::Client, base: &str) -> BTreeMap<Uuid, usize> {
    let response = http.get(format!("{base}/api/v1/measurements?limit=100000")).send().await.expect("GET measurements");
    assert_eq!(response.status(), 200);
    let mut ids = BTreeMap::new();
    for line in response.text().await.expect("body").lines() {
        let m: Measurement = crate::support::row_measurement(line);
        *ids.entry(m.id).or_insert(0) += 1;
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_no_acknowledged_measurement_and_duplicates_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut collector = Process::start(dir.path());
    let outcome = Arc::new(Mutex::new(Outcome::default()));
    let (acked, mut acks) = tokio::sync::mpsc::unbounded_channel();
    let clients: Vec<_> =
        (0..CLIENTS).map(|n| tokio::spawn(client(n, collector.base.clone(), Arc::clone(&outcome), acked.clone()))).collect();
    drop(acked);

    // Under load: kill once enough batches were acknowledged, with the clients still posting.
    for _ in 0..KILL_AFTER {
        acks.recv().await.expect("the clients stopped before the kill: the collector refused a batch");
    }
    collector.kill_9();
    for c in clients {
        c.await.expect("client task");
    }
    let outcome = std::mem::take(&mut *outcome.lock().expect("lock"));
    assert!(outcome.acknowledged.len() >= KILL_AFTER);
    assert_eq!(outcome.unacknowledged.len(), CLIENTS, "every client was cut off by the kill");

    // Restarted on the same files: every acknowledged id is there, once; nothing was invented.
    let restarted = Process::start(dir.path());
    let http = http_client();
    let ids = stored_ids(&http, &restarted.base).await;
    let acknowledged: BTreeSet<Uuid> = outcome.acknowledged.iter().flat_map(Batch::ids).collect();
    let sent: BTreeSet<Uuid> = acknowledged.iter().copied().chain(outcome.unacknowledged.iter().flat_map(Batch::ids)).collect();
    let missing: Vec<_> = acknowledged.iter().filter(|id| !ids.contains_key(id)).collect();
    assert!(missing.is_empty(), "{} acknowledged measurements lost, e.g. {:?}", missing.len(), missing.first());
    assert!(ids.values().all(|n| *n == 1), "a measurement is stored twice");
    assert!(ids.keys().all(|id| sent.contains(id)), "a stored id was never sent");
    let stored_unanswered = outcome.unacknowledged.iter().filter(|b| b.ids().all(|id| ids.contains_key(&id))).count();
    println!(
        "acknowledged before the kill: {} batches; cut off: {} ({} mid-request, {} of them stored with the answer lost)",
        outcome.acknowledged.len(),
        outcome.unacknowledged.len(),
        outcome.cut_mid_request,
        stored_unanswered
    );

    // The clients send what got no answer again, as a probe's spool does: each stored once.
    for batch in &outcome.unacknowledged {
        let report = batch.post(&http, &restarted.base).await.expect("the restarted collector takes the batch");
        // A batch is one transaction: stored whole or not at all.
        let before = batch.ids().filter(|id| ids.contains_key(id)).count();
        assert!(before == 0 || before == BATCH, "a batch was half stored: {before} of {BATCH}");
        assert_eq!(report.accepted + report.duplicates, BATCH);
        assert!(report.rejected.is_empty());
    }
    let ids = stored_ids(&http, &restarted.base).await;
    assert_eq!(ids.keys().copied().collect::<BTreeSet<_>>(), sent, "every measurement sent is stored");
    assert!(ids.values().all(|n| *n == 1), "a measurement is stored twice after the re-send");
}
