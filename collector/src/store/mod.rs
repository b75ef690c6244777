//! Where measurements live: one trait, one implementation per database.
//!
//! The collector holds an `Arc<dyn Store>` and never names a database, so PostgreSQL (several
//! stateless collectors behind a load balancer) can slot in beside SQLite (one embedded file) and
//! run the very same tests. The contract every implementation keeps:
//!
//! - **Exactly once.** [`Store::insert`] commits a whole batch in one transaction and is
//!   idempotent by measurement `id`: an id already stored, or seen earlier in the same batch, is
//!   reported [`InsertOutcome::Duplicate`] and stored once.
//! - **Durable before acknowledged.** `insert` returns only after the commit is durable, so
//!   a `200` the collector sends afterwards is a promise that survives a crash.
//! - **Streaming reads.** [`Store::query`] hands rows over a bounded channel as it reads them, so
//!   an export of 100 000 rows never sits in memory at once and a slow reader slows the database
//!   read rather than growing a buffer.
//! - **Canonical rows.** What comes back is the measurement re-serialised from its parsed form
//!   ([`Measurement::to_json_line`]), never the submitter's bytes.
//! - **The signer beside, not inside.** A signed batch's [`KeyId`] is stored next to each of its
//!   measurements and never added to the measurement JSON, so the researcher API can't leak it.
//!   It is read back only in aggregate form ([`FleetRows`]) for counting distinct probes, and
//!   to delete a volunteer's data on their signed request ([`Store::delete_probe`]).
//! - **The observed location beside, too.** Where the collector's GeoIP databases placed the
//!   submitting address (country, ASN; never the address) is stored in columns of its own and
//!   added to each row [`Store::query`] returns as [`OBSERVED_FIELD`], so the probe's own claim
//!   (`probe.cc`, `probe.asn`) and the collector's view are both visible.
//! - **The signer's standing at ingest, too.** Where the signing key stood before its batch
//!   ([`CollectorKey`]: trusted, untrusted, unregistered, or anonymous for an unsigned batch) is
//!   stored per row and added to it as [`KEY_FIELD`]: a researcher can keep only rows of keys
//!   that had earned trust, as the metrics do.
//! - **Key records in step with ingest.** Each signing key's activity ([`KeyActivity`]: first and
//!   last arrival, distinct UTC days, measurements) is updated in the same transaction as the
//!   batch that moved it, so the trust policy never sees measurements without their activity or
//!   the other way round. Registration ([`Store::register_key`]) is recorded beside it.
//! - **One published view for all replicas.** What the fleet gauges, the status page and the ASN
//!   label rule show is computed by one replica and kept in the database ([`FleetSnapshot`]);
//!   the label combinations the series budget admitted are kept there too ([`Store::admit_series`]),
//!   so every replica folds the same ones. Both are small and bounded (see `shared`).
//! - **Counted rows only in the fleet.** [`Store::fleet`] reads only rows of the keys it is told
//!   count (the trust policy's verdict, made in `crate::trust`) and leaves out rows whose
//!   collector-observed ASN contradicts the claimed one.

mod aggregate;
pub mod args;
pub mod blobs;
mod filter;
pub mod postgres;
mod publication;
mod row;
pub mod sqlite;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use tokio::sync::mpsc;
use vantage_measurement::wire::{KeyId, KeyStanding, ObservedLocation};
use vantage_measurement::{Measurement, Mechanism, Status, TestKind};

pub use aggregate::{AggregateRow, Aggregation, Axis, MAX_AGGREGATE_ROWS, TimeGrain};
pub use postgres::PostgresStore;
pub use publication::{DayRows, Publication};
pub(crate) use publication::{day_number, day_of_number, day_seconds};
pub use sqlite::SqliteStore;

/// Where the measurements are: which backend, and where it keeps them.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// One SQLite file in `data_dir` (one collector process).
    Sqlite {
        /// The data directory.
        data_dir: std::path::PathBuf,
    },
    /// A PostgreSQL database, shared by any number of collector replicas.
    Postgres {
        /// `postgres://user[:password]@host[:port]/database[?options]` (or the key=value form).
        /// Never shown with its password: see [`StoreLocation`]'s `Debug` and `Display`.
        url: String,
    },
}

impl std::fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::fmt::Display for StoreLocation {
    /// The location as logs may show it: the password is never written.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite { data_dir } => write!(f, "sqlite:{}", data_dir.join(sqlite::FILE_NAME).display()),
            Self::Postgres { url } => f.write_str(&postgres::redact(url)),
        }
    }
}

/// Open (creating or migrating as needed) the store at `location`.
pub async fn open(location: &StoreLocation) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    Ok(match location {
        StoreLocation::Sqlite { data_dir } => std::sync::Arc::new(SqliteStore::open(data_dir).await?),
        StoreLocation::Postgres { url } => std::sync::Arc::new(PostgresStore::open(url).await?),
    })
}

/// What became of one measurement of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsertOutcome {
    /// Newly stored.
    Inserted,
    /// Its id was already stored (or appeared earlier in the same batch); nothing was written.
    Duplicate,
}

/// Which measurements a query selects. `None` fields do not filter.
///
/// Times compare at whole-second precision (the schema's own precision for `started_at`):
/// `since <= started_at < until`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter {
    /// Earliest `started_at`, inclusive.
    pub since: Option<DateTime<Utc>>,
    /// Latest `started_at`, exclusive.
    pub until: Option<DateTime<Utc>>,
    /// `probe.cc`, two upper-case letters.
    pub country: Option<String>,
    /// `probe.asn`.
    pub asn: Option<u32>,
    /// The test.
    pub test: Option<TestKind>,
    /// `target.name`.
    pub target: Option<String>,
    /// `verdict.status`.
    pub verdict: Option<Status>,
    /// `verdict.mechanism`.
    pub mechanism: Option<Mechanism>,
    /// The collector-observed country (GeoIP).
    pub observed_country: Option<String>,
    /// The collector-observed ASN (GeoIP).
    pub observed_asn: Option<u32>,
    /// Where the signing key stood at ingest ([`KEY_FIELD`]); rows stored without it never match.
    pub collector_key: Option<CollectorKey>,
    /// Only rows after this position (keyset paging), exclusive.
    pub after: Option<Position>,
    /// Only rows up to this position, inclusive.
    pub through: Option<Position>,
}

/// A row's place in the query order: `started_at` (whole seconds), then `id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    /// `started_at`, Unix seconds.
    pub started_at: i64,
    /// The measurement id.
    pub id: uuid::Uuid,
}

vantage_measurement::closed_set! {
    /// Where a row's signer stood with the collector when the row arrived: the key's
    /// [`KeyStanding`] before its batch, or `anonymous` for an unsigned batch. Stored beside the
    /// row and added to it as [`KEY_FIELD`], so researchers can choose which rows to trust.
    pub enum CollectorKey {
        /// Signed by a trusted key.
        Trusted => "trusted",
        /// Signed by a registered key still earning trust.
        Untrusted => "untrusted",
        /// Signed by a key that never registered.
        Unregistered => "unregistered",
        /// Not signed.
        Anonymous => "anonymous",
    }
}

impl From<KeyStanding> for CollectorKey {
    fn from(standing: KeyStanding) -> Self {
        match standing {
            KeyStanding::Trusted => Self::Trusted,
            KeyStanding::Untrusted => Self::Untrusted,
            KeyStanding::Unregistered => Self::Unregistered,
        }
    }
}

/// Who sent a batch, and when: what [`Store::insert`] stores beside each of its rows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Submission<'a> {
    /// The key id that signed the batch (`None`: anonymous).
    pub probe: Option<&'a KeyId>,
    /// Where the collector's GeoIP databases place the submitting address (`None`: no databases).
    pub observed: Option<&'a ObservedLocation>,
    /// Where the signer stood before this batch (`Anonymous` for an unsigned one); `None`: not
    /// known, nothing is recorded.
    pub standing: Option<CollectorKey>,
    /// When the batch arrived.
    pub received_at: DateTime<Utc>,
}

/// The most (probe, target, test) rows one fleet read returns ([`FleetRows::latest`]). 2 000
/// probes × 100 targets × 4 tests fit; beyond it the gauges are a lower bound and the refresh logs
/// a warning.
pub const MAX_LATEST_ROWS: usize = 1_000_000;

/// One probe's latest measurement of one (target, test): the unit the fleet gauges count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LatestVerdict {
    /// The probe's key id (a pseudonym; kept in memory for counting, never exported).
    pub probe: String,
    /// `probe.cc` of that measurement.
    pub cc: String,
    /// `probe.asn` of that measurement.
    pub asn: u32,
    /// `target.name`.
    pub target: String,
    /// The test.
    pub test: TestKind,
    /// Its verdict.
    pub status: Status,
    /// Its mechanism, if any.
    pub mechanism: Option<Mechanism>,
    /// Its `started_at`, Unix seconds.
    pub started_at: i64,
}

/// What the fleet gauges and the status page are computed from. Only measurements of counted keys
/// (signed, and trusted) whose observed ASN does not contradict the claimed one are read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FleetRows {
    /// Distinct probe keys with a measurement received in the window, all countries.
    pub probes_total: u64,
    /// Per country: distinct probe keys with a measurement received in the window.
    pub active_probes: Vec<(String, u64)>,
    /// Per (country, ASN): distinct probe keys with a measurement received in the window.
    pub asn_probes: Vec<(String, u32, u64)>,
    /// Per (probe, target, test): the latest measurement started in the window.
    pub latest: Vec<LatestVerdict>,
    /// `latest` stopped at the row cap; the counts built from it are a lower bound.
    pub truncated: bool,
    /// When the last measurement (signed or not) was received, Unix seconds: the collector's own
    /// activity, not a fleet figure.
    pub last_received: Option<i64>,
}

/// One signing key's record: registration and activity. Times are Unix seconds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyActivity {
    /// The key id (a pseudonym; never exported).
    pub key: String,
    /// When it was registered (`None`: never).
    pub registered_at: Option<i64>,
    /// When its first measurement arrived (`None`: none yet).
    pub first_received: Option<i64>,
    /// When its latest measurement arrived.
    pub last_received: Option<i64>,
    /// On how many distinct UTC days its measurements arrived.
    pub days: u32,
    /// How many of its measurements were newly stored.
    pub measurements: u64,
}

/// One probe's history of one (target, test), for [`Store::blocked_since`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StreakKey {
    /// The probe's key id.
    pub probe: String,
    /// `target.name`.
    pub target: String,
    /// The test.
    pub test: TestKind,
}

/// The top-level field [`Store::query`] adds to a row stored with an observed location:
/// `"collector_observed": {"cc": "DE", "asn": 3320}` (either may be `null`). It is the
/// collector's annotation, not part of the schema-v1 measurement, and is absent when the
/// collector had no GeoIP database at ingest or the address was in none.
pub const OBSERVED_FIELD: &str = "collector_observed";

/// The top-level field [`Store::query`] adds to a row stored with its signer's standing:
/// `"collector_key": "trusted"` (a [`CollectorKey`]). Absent for rows stored before it was
/// recorded (SQLite layout 7, PostgreSQL layout 5) or through [`Store::insert_batch`].
pub const KEY_FIELD: &str = "collector_key";

/// Every top-level field the collector adds to a stored measurement: strip these to get the
/// schema-v1 measurement back.
pub const ANNOTATIONS: [&str; 2] = [OBSERVED_FIELD, KEY_FIELD];

vantage_measurement::closed_set! {
    /// Periodic work that one replica does for all (several collectors share one database): the
    /// database decides who, so nothing is done twice or left undone when a replica dies.
    pub enum Duty {
        /// Read the fleet and publish what every replica reports (`crate::fleet`).
        FleetRefresh => "fleet_refresh",
        /// Drop measurements older than `--retain-days`.
        Retention => "retention",
        /// Publish each closed day's signed export manifest (`crate::export::publish`).
        Publish => "publish",
    }
}

/// What one replica published for all (the fleet figures, the ASN label rule's set, the status
/// page), as `crate::fleet` serialises it: opaque to the store, which keeps only the latest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetSnapshot {
    /// The serialisation's version: a replica that does not know it keeps what it published.
    pub format: u32,
    /// When it was made (by whichever replica), millisecond precision.
    pub made_at: DateTime<Utc>,
    /// The serialised figures.
    pub body: String,
}

/// One label combination the series budget admitted (`crate::metrics::budget`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdmittedSeries {
    /// The family's stable id.
    pub family: String,
    /// The label values, in the family's label order.
    pub labels: Vec<String>,
    /// Series the combination adds to the exposition.
    pub cost: u32,
}

/// A request to admit one label combination: its candidates from unfolded to folded all the way.
/// The store admits the first candidate that is admitted already, or fits under the cap counting
/// every admitted combination, or is the last (`crate::metrics::budget::first_admissible`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeriesClaim {
    /// The family's stable id.
    pub family: String,
    /// The candidates, in folding order; never empty.
    pub candidates: Vec<Vec<String>>,
    /// Series one combination adds.
    pub cost: u32,
}

/// Add [`OBSERVED_FIELD`] (unless nothing was observed) and [`KEY_FIELD`] (when recorded: the
/// stored text, written by us from [`CollectorKey`]) to a stored body (a JSON object: we wrote it).
pub(crate) fn annotate(body: String, observed: &ObservedLocation, key: Option<&str>) -> Result<String, StoreError> {
    let seen = observed.cc.is_some() || observed.asn.is_some();
    if !seen && key.is_none() {
        return Ok(body);
    }
    let Some(open) = body.strip_suffix('}') else {
        return Err(StoreError::Corrupt("a stored body is not a JSON object".into()));
    };
    let mut out = String::from(open);
    if seen {
        let value = serde_json::to_string(observed).map_err(|e| StoreError::Encode(e.to_string()))?;
        out.push_str(&format!(",\"{OBSERVED_FIELD}\":{value}"));
    }
    if let Some(key) = key {
        let key = CollectorKey::parse(key).ok_or_else(|| StoreError::Corrupt(format!("unknown {KEY_FIELD} {key:?}")))?;
        out.push_str(&format!(",\"{KEY_FIELD}\":\"{}\"", key.as_str()));
    }
    out.push('}');
    Ok(out)
}

/// Milliseconds in a UTC day (Unix time has no leap seconds).
const DAY_MILLIS: i64 = 86_400_000;

/// The UTC day (days since 1970-01-01) a measurement is filed under: the day of the time in its
/// UUIDv7 id, which validation keeps within the window `started_at` must be in
/// (`id_out_of_range`). Retention drops by this day on every backend.
pub(crate) fn id_day(id: &uuid::Uuid) -> i32 {
    day_of_millis(vantage_measurement::validate::id_unix_millis(id))
}

/// The UTC day of `t`.
pub(crate) fn day_of(t: DateTime<Utc>) -> i32 {
    day_of_millis(t.timestamp_millis())
}

fn day_of_millis(millis: i64) -> i32 {
    i32::try_from(millis.div_euclid(DAY_MILLIS)).unwrap_or(if millis < 0 { i32::MIN } else { i32::MAX })
}

/// The smallest id of `day`: every id of an earlier day sorts before it, as bytes (PostgreSQL's
/// `uuid`) and as lower-case hyphenated text (SQLite's `id`).
pub(crate) fn first_id_of_day(day: i32) -> uuid::Uuid {
    let millis = u64::try_from(i64::from(day).max(0) * DAY_MILLIS).unwrap_or(0).min((1 << 48) - 1);
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
    uuid::Uuid::from_bytes(bytes)
}

/// Admitted label values as both backends store them: a JSON array, unambiguous whatever a value
/// holds.
pub(crate) fn encode_labels(labels: &[String]) -> Result<String, StoreError> {
    serde_json::to_string(labels).map_err(|e| StoreError::Encode(e.to_string()))
}

/// The stored form of admitted label values back.
pub(crate) fn decode_labels(labels: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(labels).map_err(|e| StoreError::Corrupt(format!("admitted labels {labels:?}: {e}")))
}

/// One NDJSON line (no newline) or the error that ended the stream early.
pub type RowReceiver = mpsc::Receiver<Result<String, StoreError>>;

/// Why the store could not do what was asked. Every variant is the collector's fault, answered
/// `503` where it passes and `500` where something broke (the one mapping is in `error.rs`); the
/// probe keeps its spool and retries either way, so no variant loses data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database could not be opened or reached (a file, or a server and its credentials).
    #[error("cannot open the store at {what}: {reason}")]
    Open {
        /// The file, or the server (never its password).
        what: String,
        /// What the database said.
        reason: String,
    },
    /// The data directory could not be created.
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: String,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// A statement failed, or the connection to the database broke (the database's own message).
    /// Transient as far as the client can tell: locked, out of space, I/O, a server restarting.
    #[error("store error: {0}")]
    Database(String),
    /// The store was closed (the collector is shutting down).
    #[error("the store is closed")]
    Closed,
    /// Too many queries are running; try again shortly.
    #[error("too many queries are running; retry shortly")]
    Busy,
    /// The blocking task running the statement died.
    #[error("store task failed: {0}")]
    Task(String),
    /// The database can't be used as this collector needs (newer table layout, no WAL support).
    #[error("incompatible store: {0}")]
    Incompatible(String),
    /// A measurement could not be encoded for storing (a bug: our types always serialise).
    #[error("cannot encode a measurement: {0}")]
    Encode(String),
    /// A stored row could not be decoded (the file was edited by hand, or is damaged).
    #[error("stored row is damaged: {0}")]
    Corrupt(String),
    /// An aggregation has more groups than [`MAX_AGGREGATE_ROWS`]: the request's fault.
    #[error("the aggregation has more than {limit} groups; narrow the filter or use fewer axes")]
    TooLarge {
        /// The most groups allowed.
        limit: usize,
    },
}

/// A measurement database. Object-safe: the collector holds an `Arc<dyn Store>`.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Store `batch` in one transaction, with what [`Submission`] says beside each row; one
    /// outcome per measurement, in order. The signer's [`KeyActivity`] moves in the same
    /// transaction when anything was newly stored. A duplicate keeps what its first copy was
    /// stored with.
    async fn insert(&self, batch: &[Measurement], submission: &Submission<'_>) -> Result<Vec<InsertOutcome>, StoreError>;

    /// [`Store::insert`] without the signer's standing (no [`KEY_FIELD`] is recorded): `probe`
    /// signed the batch (`None`: anonymous), `observed` is the submitter's GeoIP location.
    async fn insert_batch(
        &self,
        batch: &[Measurement],
        probe: Option<&KeyId>,
        observed: Option<&ObservedLocation>,
        received_at: DateTime<Utc>,
    ) -> Result<Vec<InsertOutcome>, StoreError> {
        self.insert(batch, &Submission { probe, observed, standing: None, received_at }).await
    }

    /// Delete every measurement signed by `probe` and the key's record (the volunteer's deletion
    /// request); returns how many measurements were deleted.
    async fn delete_probe(&self, probe: &KeyId) -> Result<u64, StoreError>;

    /// Record that `probe` proved its work at `at`. Returns `true` if it was not registered
    /// before; registering again changes nothing. Its activity, if any, is kept.
    async fn register_key(&self, probe: &KeyId, at: DateTime<Utc>) -> Result<bool, StoreError>;

    /// The record of `probe` (`None`: never registered, never stored a measurement).
    async fn key_activity(&self, probe: &KeyId) -> Result<Option<KeyActivity>, StoreError>;

    /// The records of every key whose latest measurement arrived at or after `since`.
    async fn active_keys(&self, since: DateTime<Utc>) -> Result<Vec<KeyActivity>, StoreError>;

    /// This collector installation's registration salt (base64), made on first use and the same
    /// ever after (for every replica sharing the database).
    async fn registration_salt(&self) -> Result<String, StoreError>;

    /// Stream at most `limit` matching measurements as NDJSON lines, ordered by `started_at`
    /// then `id`. Errors before the first row come back as `Err`; later ones end the stream.
    async fn query(&self, filter: &Filter, limit: usize) -> Result<RowReceiver, StoreError>;

    /// Count the rows `aggregation` selects per group, ordered by the group values (axes in
    /// `group_by` order; a missing mechanism first). At most [`MAX_AGGREGATE_ROWS`] groups, else
    /// [`StoreError::TooLarge`]. Without axes, one row (all zero when nothing matched).
    async fn aggregate(&self, aggregation: &Aggregation) -> Result<Vec<AggregateRow>, StoreError>;

    /// Stream the rows received on `rows.day` (UTC; `received_at` in `[day, day + 1)`) as NDJSON
    /// lines, the same lines [`Store::query`] returns, ordered by `probe.cc`, test, then id
    /// (byte order): the export's file order, so an export keeps one group's files open at a time.
    /// Errors before the first row come back as `Err`; later ones end the stream.
    async fn day_rows(&self, rows: &DayRows) -> Result<RowReceiver, StoreError>;

    /// When the earliest stored measurement arrived (`None`: none stored).
    async fn earliest_received(&self) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Add `publication` to the publication log unless its day is there already: a published
    /// manifest is never overwritten. `true` if it was added.
    async fn publish(&self, publication: &Publication) -> Result<bool, StoreError>;

    /// The published manifest of `day` (`None`: not published).
    async fn publication(&self, day: NaiveDate) -> Result<Option<Publication>, StoreError>;

    /// The latest published day's manifest (`None`: nothing published yet).
    async fn latest_publication(&self) -> Result<Option<Publication>, StoreError>;

    /// Every published day, oldest first.
    async fn published_days(&self) -> Result<Vec<NaiveDate>, StoreError>;

    /// The positions of at most `take` matching rows after skipping `skip`, in query order: where
    /// a page of [`Store::query`] ends, without reading the rows.
    async fn positions(&self, filter: &Filter, skip: usize, take: usize) -> Result<Vec<Position>, StoreError>;

    /// How many measurements are stored.
    async fn count(&self) -> Result<u64, StoreError>;

    /// The fleet as seen since `since`: probes by their received measurements, verdicts by the
    /// measurements started since then; only rows of the `counted` key ids, and none whose
    /// observed ASN contradicts the claimed one.
    async fn fleet(&self, since: DateTime<Utc>, counted: &[String]) -> Result<FleetRows, StoreError>;

    /// For each key, when its current blocking streak began: the first `blocked` measurement after
    /// the probe's last `ok` one of that (target, test), Unix seconds; `None` if it has none.
    async fn blocked_since(&self, keys: Vec<StreakKey>) -> Result<Vec<Option<i64>>, StoreError>;

    /// Does this collector hold `duty` now? Takes it if no live replica holds it. A replica keeps a
    /// duty until its database session ends (it stopped, died or lost the connection), so asking
    /// again each period is cheap and a dead holder's duty passes to the next replica that asks.
    /// A store only one process can use (SQLite) always holds every duty.
    async fn hold_duty(&self, duty: Duty) -> Result<bool, StoreError>;

    /// Keep `snapshot` as the latest fleet snapshot, unless a newer one is stored already (a
    /// replica that lost its duty mid-refresh never overwrites its successor's).
    async fn put_fleet_snapshot(&self, snapshot: &FleetSnapshot) -> Result<(), StoreError>;

    /// The latest fleet snapshot (`None`: none made yet).
    async fn fleet_snapshot(&self) -> Result<Option<FleetSnapshot>, StoreError>;

    /// Every label combination the series budget admitted, for every family.
    async fn admitted_series(&self) -> Result<Vec<AdmittedSeries>, StoreError>;

    /// Decide `claims` in one transaction, in order, against the cap `max` (series, summed over
    /// every admitted combination of every family): for each, the index of the candidate
    /// admitted, by the rule of [`SeriesClaim`]. Concurrent callers (several replicas) are
    /// serialised, so a combination is admitted once and the cap holds across replicas.
    async fn admit_series(&self, claims: Vec<SeriesClaim>, max: u64) -> Result<Vec<usize>, StoreError>;

    /// Drop every measurement whose day (the UTC day of the time in its UUIDv7 id) is before
    /// `before`'s day; returns how many were dropped. Key records are kept (they are the keys'
    /// history, not measurements). PostgreSQL drops whole daily partitions; SQLite deletes in
    /// bounded chunks so ingest is never held up for long.
    async fn retain(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Does the database answer?
    async fn ping(&self) -> Result<(), StoreError>;

    /// Finish outstanding writes and release the database. Later calls fail with
    /// [`StoreError::Closed`].
    async fn close(&self) -> Result<(), StoreError>;
}
