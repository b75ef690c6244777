//! The closed label sets of the collector's own operations: store calls, helper requests and the
//! identity of an ingest batch.

vantage_measurement::closed_set! {
    /// A store operation, the `op` label of [`STORE_DURATION_SECONDS`](super::STORE_DURATION_SECONDS).
    pub enum StoreOp {
        /// One batch insert.
        Insert => "insert",
        /// One query, from the request to the last row streamed.
        Query => "query",
        /// One fleet read (the input of the fleet gauges and the status page).
        Fleet => "fleet",
        /// The blocking-streak lookups of one status page.
        Streaks => "streaks",
    }
}

vantage_measurement::closed_set! {
    /// How a test-helper request ended, the `outcome` label of [`HELPER_REQUESTS_TOTAL`](super::HELPER_REQUESTS_TOTAL).
    pub enum HelperOutcome {
        /// The step ran (whatever it observed).
        Executed => "executed",
        /// The address is one the helper refuses to contact.
        Forbidden => "forbidden",
        /// The request lacked a field the test needs.
        Invalid => "invalid",
        /// Too many requests in flight.
        Busy => "busy",
        /// The step outran the helper's overall deadline.
        TimedOut => "timed_out",
    }
}

vantage_measurement::closed_set! {
    /// Who sent an answered ingest batch, the `identity` label of [`BATCHES_TOTAL`](super::BATCHES_TOTAL).
    pub enum BatchIdentity {
        /// Signed by a probe key the collector verified.
        Signed => "signed",
        /// Sent without signature headers (older or simple clients): stored, never counted as a probe.
        Anonymous => "anonymous",
    }
}

impl BatchIdentity {
    /// The identity of a batch that was (`true`) or was not signed.
    pub fn of(signed: bool) -> Self {
        if signed { Self::Signed } else { Self::Anonymous }
    }
}

vantage_measurement::closed_set! {
    /// Which part of a probe's self-declared location disagrees with where the collector saw its
    /// batch come from, the `kind` label of [`LOCATION_MISMATCH_TOTAL`](super::LOCATION_MISMATCH_TOTAL).
    pub enum LocationField {
        /// `probe.cc` against the GeoIP country.
        Country => "country",
        /// `probe.asn` against the GeoIP ASN.
        Asn => "asn",
    }
}

vantage_measurement::closed_set! {
    /// How a key registration ended, the `outcome` label of [`KEY_REGISTRATIONS_TOTAL`](super::KEY_REGISTRATIONS_TOTAL).
    pub enum RegistrationOutcome {
        /// A new key proved its work and was registered.
        Registered => "registered",
        /// The key was registered before; nothing changed.
        AlreadyRegistered => "already_registered",
        /// The request was not a registration (not JSON, bad base64, wrong lengths).
        Malformed => "malformed",
        /// The proof of work fell short (wrong nonce, or work for another salt or difficulty).
        InsufficientWork => "insufficient_work",
        /// The signature did not verify: the sender does not hold the key.
        BadSignature => "bad_signature",
    }
}
