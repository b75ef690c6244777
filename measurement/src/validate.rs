//! Validation of a submitted measurement line, with a precise, bounded rejection reason.
//!
//! The collector calls this on every line it ingests, and the probe on every measurement before it
//! spools one, so a probe never queues what the collector would refuse.

use chrono::{DateTime, Duration, Utc};

use crate::envelope::{Measurement, SCHEMA_VERSION};
use crate::verdict::Status;

/// The largest accepted NDJSON line, in bytes. A TLS chain of a few certificates fits easily.
pub const MAX_LINE_BYTES: usize = 256 * 1024;
/// The most observations one measurement may carry.
pub const MAX_OBSERVATIONS: usize = 64;
/// The longest accepted target name, domain or SNI.
pub const MAX_NAME_LEN: usize = 253;
/// How far in the future `started_at` may be (clock skew on volunteers' machines).
pub const MAX_CLOCK_SKEW: Duration = Duration::hours(24);
/// How old a measurement may be: a probe offline for a month still delivers its spool.
pub const MAX_AGE: Duration = Duration::days(90);

/// Why one submitted line was refused. `code()` is a bounded metric label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// The line is larger than [`MAX_LINE_BYTES`].
    #[error("line is {len} bytes, the limit is {MAX_LINE_BYTES}")]
    LineTooLong {
        /// Bytes in the line.
        len: usize,
    },
    /// The line is not JSON, or not a measurement of this schema.
    #[error("does not match schema v1: {detail}")]
    Malformed {
        /// The parser's message, naming the field and position.
        detail: String,
    },
    /// `schema_version` is not one we read.
    #[error("schema_version {found} is not supported (this collector reads {SCHEMA_VERSION})")]
    UnsupportedSchemaVersion {
        /// The version the line declared.
        found: u32,
    },
    /// The id is not a UUIDv7.
    #[error("id must be a UUIDv7, got version {found}")]
    InvalidId {
        /// The UUID version found.
        found: usize,
    },
    /// `probe.cc` is not two upper-case letters.
    #[error("probe.cc must be two upper-case letters (ZZ when unknown), got {found:?}")]
    InvalidCountry {
        /// What was sent.
        found: String,
    },
    /// `started_at` is too far in the future or the past.
    #[error("started_at {found} is outside the accepted window (now -{}d .. now +{}h)", MAX_AGE.num_days(), MAX_CLOCK_SKEW.num_hours())]
    StartedAtOutOfRange {
        /// What was sent.
        found: DateTime<Utc>,
    },
    /// The time in the UUIDv7 id is outside the window `started_at` must be in. The id's day is
    /// where a store files the measurement (PostgreSQL partitions by it), so it must be
    /// plausible: a probe makes the id when it starts the measurement.
    #[error("the id's time {found} is outside the accepted window (now -{}d .. now +{}h)", MAX_AGE.num_days(), MAX_CLOCK_SKEW.num_hours())]
    IdOutOfRange {
        /// The time in the id (millisecond precision).
        found: DateTime<Utc>,
    },
    /// Too many observations.
    #[error("{found} observations, the limit is {MAX_OBSERVATIONS}")]
    TooManyObservations {
        /// How many were sent.
        found: usize,
    },
    /// A name field is too long or contains characters no domain has.
    #[error("{field} is not a plausible name (at most {MAX_NAME_LEN} printable ASCII characters)")]
    InvalidName {
        /// Which field.
        field: &'static str,
    },
    /// A `blocked`, `down` or `inconclusive` verdict must name its rule.
    #[error("verdict {status} needs a mechanism")]
    VerdictWithoutMechanism {
        /// The status sent.
        status: &'static str,
    },
    /// The line contains the submitting client's own address (a privacy leak we refuse to store).
    #[error("contains the submitter's network address; refusing to store it")]
    ContainsSubmitterAddress,
}

crate::closed_set! {
    /// The bounded reason code of a [`Rejection`]: the `reason` of a refused line in the ingest
    /// report and of the rejection counter.
    pub enum RejectionCode {
        /// [`Rejection::LineTooLong`].
        LineTooLong => "line_too_long",
        /// [`Rejection::Malformed`].
        Malformed => "malformed",
        /// [`Rejection::UnsupportedSchemaVersion`].
        UnsupportedSchemaVersion => "unsupported_schema_version",
        /// [`Rejection::InvalidId`].
        InvalidId => "invalid_id",
        /// [`Rejection::InvalidCountry`].
        InvalidCountry => "invalid_country",
        /// [`Rejection::StartedAtOutOfRange`].
        StartedAtOutOfRange => "started_at_out_of_range",
        /// [`Rejection::IdOutOfRange`].
        IdOutOfRange => "id_out_of_range",
        /// [`Rejection::TooManyObservations`].
        TooManyObservations => "too_many_observations",
        /// [`Rejection::InvalidName`].
        InvalidName => "invalid_name",
        /// [`Rejection::VerdictWithoutMechanism`].
        VerdictWithoutMechanism => "verdict_without_mechanism",
        /// [`Rejection::ContainsSubmitterAddress`].
        ContainsSubmitterAddress => "contains_submitter_address",
    }
}

impl Rejection {
    /// The bounded reason code.
    pub fn code(&self) -> RejectionCode {
        match self {
            Self::LineTooLong { .. } => RejectionCode::LineTooLong,
            Self::Malformed { .. } => RejectionCode::Malformed,
            Self::UnsupportedSchemaVersion { .. } => RejectionCode::UnsupportedSchemaVersion,
            Self::InvalidId { .. } => RejectionCode::InvalidId,
            Self::InvalidCountry { .. } => RejectionCode::InvalidCountry,
            Self::StartedAtOutOfRange { .. } => RejectionCode::StartedAtOutOfRange,
            Self::IdOutOfRange { .. } => RejectionCode::IdOutOfRange,
            Self::TooManyObservations { .. } => RejectionCode::TooManyObservations,
            Self::InvalidName { .. } => RejectionCode::InvalidName,
            Self::VerdictWithoutMechanism { .. } => RejectionCode::VerdictWithoutMechanism,
            Self::ContainsSubmitterAddress => RejectionCode::ContainsSubmitterAddress,
        }
    }
}

/// Parse and validate one NDJSON line.
pub fn parse_line(line: &str, now: DateTime<Utc>) -> Result<Measurement, Rejection> {
    if line.len() > MAX_LINE_BYTES {
        return Err(Rejection::LineTooLong { len: line.len() });
    }
    let m: Measurement = serde_json::from_str(line).map_err(|e| {
        // An old or future probe gets the precise reason, not a field error. Read only when the
        // line does not parse: a line that does is one JSON pass, not two.
        #[derive(serde::Deserialize)]
        struct VersionOnly {
            schema_version: Option<u32>,
        }
        match serde_json::from_str(line) {
            Ok(VersionOnly { schema_version: Some(found) }) if found != SCHEMA_VERSION => {
                Rejection::UnsupportedSchemaVersion { found }
            }
            _ => Rejection::Malformed { detail: e.to_string() },
        }
    })?;
    // `validate` names a parsed line's other version as precisely.
    validate(&m, now)?;
    Ok(m)
}

/// Check the rules serde's types cannot express.
pub fn validate(m: &Measurement, now: DateTime<Utc>) -> Result<(), Rejection> {
    if m.schema_version != SCHEMA_VERSION {
        return Err(Rejection::UnsupportedSchemaVersion { found: m.schema_version });
    }
    if m.id.get_version_num() != 7 {
        return Err(Rejection::InvalidId { found: m.id.get_version_num() });
    }
    let cc = &m.probe.cc;
    if !is_country_code(cc) {
        return Err(Rejection::InvalidCountry { found: cc.chars().take(8).collect() });
    }
    if !in_window(m.started_at, now) {
        return Err(Rejection::StartedAtOutOfRange { found: m.started_at });
    }
    let id_time = DateTime::from_timestamp_millis(id_unix_millis(&m.id)).unwrap_or_default();
    if !in_window(id_time, now) {
        return Err(Rejection::IdOutOfRange { found: id_time });
    }
    if m.observations.len() > MAX_OBSERVATIONS {
        return Err(Rejection::TooManyObservations { found: m.observations.len() });
    }
    check_name("target.name", Some(&m.target.name))?;
    check_name("target.domain", m.target.domain.as_deref())?;
    check_name("target.control_sni", m.target.control_sni.as_deref())?;
    for o in &m.observations {
        check_name("observation.sni", o.sni.as_deref())?;
    }
    if m.verdict.status != Status::Ok && m.verdict.mechanism.is_none() {
        return Err(Rejection::VerdictWithoutMechanism { status: m.verdict.status.as_str() });
    }
    Ok(())
}

/// The one window a measurement's times must be in: `now − MAX_AGE ..= now + MAX_CLOCK_SKEW`.
fn in_window(t: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    t >= now - MAX_AGE && t <= now + MAX_CLOCK_SKEW
}

/// The Unix time in milliseconds a UUIDv7 carries in its first 48 bits (for another version,
/// whatever those bits say). A store derives the measurement's day from it.
pub fn id_unix_millis(id: &uuid::Uuid) -> i64 {
    let b = id.as_bytes();
    i64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]])
}

fn check_name(field: &'static str, value: Option<&str>) -> Result<(), Rejection> {
    match value {
        Some(v) if !is_plausible_name(v) => Err(Rejection::InvalidName { field }),
        _ => Ok(()),
    }
}

/// An ISO 3166-1 alpha-2 code as the schema stores it: two upper-case ASCII letters (`ZZ` for
/// unknown). The one rule for a country code, wherever one is read.
pub fn is_country_code(cc: &str) -> bool {
    cc.len() == 2 && cc.bytes().all(|b| b.is_ascii_uppercase())
}

/// A target name, domain or SNI: 1 to [`MAX_NAME_LEN`] printable ASCII characters. The one rule
/// for a name, wherever one is read (targets files, measurements, query filters).
pub fn is_plausible_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_LEN && name.bytes().all(|b| b.is_ascii_graphic())
}
