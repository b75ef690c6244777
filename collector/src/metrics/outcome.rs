//! The closed label sets of the collector's own operations: store calls and helper requests.

/// A store operation, the `op` label of [`STORE_DURATION_SECONDS`](super::STORE_DURATION_SECONDS).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreOp {
    /// One batch insert.
    Insert,
    /// One query, from the request to the last row streamed.
    Query,
    /// One fleet read (the input of the fleet gauges and the status page).
    Fleet,
    /// The blocking-streak lookups of one status page.
    Streaks,
}

impl StoreOp {
    pub(super) const ALL: &'static [StoreOp] = &[Self::Insert, Self::Query, Self::Fleet, Self::Streaks];

    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Insert => "insert",
            Self::Query => "query",
            Self::Fleet => "fleet",
            Self::Streaks => "streaks",
        }
    }
}

/// How a test-helper request ended, the `outcome` label of [`HELPER_REQUESTS_TOTAL`](super::HELPER_REQUESTS_TOTAL).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HelperOutcome {
    /// The step ran (whatever it observed).
    Executed,
    /// The address is one the helper refuses to contact.
    Forbidden,
    /// The request lacked a field the test needs.
    Invalid,
    /// Too many requests in flight.
    Busy,
    /// The step outran the helper's overall deadline.
    TimedOut,
}

impl HelperOutcome {
    pub(super) const ALL: &'static [HelperOutcome] =
        &[Self::Executed, Self::Forbidden, Self::Invalid, Self::Busy, Self::TimedOut];

    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Executed => "executed",
            Self::Forbidden => "forbidden",
            Self::Invalid => "invalid",
            Self::Busy => "busy",
            Self::TimedOut => "timed_out",
        }
    }
}
