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
        /// The aggregate behind the status page's timelines, once per fleet refresh.
        Timelines => "timelines",
    }
}

vantage_measurement::closed_set! {
    /// How a test-helper request ended, the `outcome` label of [`HELPER_REQUESTS_TOTAL`](super::HELPER_REQUESTS_TOTAL).
    pub enum HelperOutcome {
        /// The step ran (whatever it observed).
        Executed => "executed",
        /// The address is one the helper refuses to contact (not public unicast).
        Forbidden => "forbidden",
        /// The request lacked a field the test needs.
        Invalid => "invalid",
        /// Too many requests in flight.
        Busy => "busy",
        /// The step outran the helper's overall deadline.
        TimedOut => "timed_out",
        /// The destination is not one the published list names (without a list: not a standard
        /// port of the test).
        NotListed => "not_listed",
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
    /// An endpoint with rate limits, the `endpoint` label of
    /// [`RATE_LIMITED_TOTAL`](super::RATE_LIMITED_TOTAL) and [`RATE_LIMIT_ENTRIES`](super::RATE_LIMIT_ENTRIES).
    pub enum LimitedEndpoint {
        /// `POST /api/v1/measurements`.
        Ingest => "ingest",
        /// `POST /api/v1/control`, the test helper.
        Helper => "helper",
        /// `POST /api/v1/keys`, key registration.
        Register => "register",
    }
}

vantage_measurement::closed_set! {
    /// What a rate limit counts against, the `scope` label of
    /// [`RATE_LIMITED_TOTAL`](super::RATE_LIMITED_TOTAL) and [`RATE_LIMIT_ENTRIES`](super::RATE_LIMIT_ENTRIES).
    pub enum LimitScope {
        /// A probe key (only ever charged after its signature verified).
        Key => "key",
        /// A client address (IPv6: its /64), as a salted hash.
        Source => "source",
    }
}

impl LimitedEndpoint {
    /// The scopes this endpoint is limited in: only ingest knows the key before answering.
    pub fn scopes(self) -> &'static [LimitScope] {
        match self {
            Self::Ingest => &[LimitScope::Source, LimitScope::Key],
            Self::Helper | Self::Register => &[LimitScope::Source],
        }
    }

    /// Every (endpoint, scope) pair that has a limit.
    pub fn pairs() -> impl Iterator<Item = (LimitedEndpoint, LimitScope)> {
        Self::ALL.iter().flat_map(|e| e.scopes().iter().map(move |s| (*e, *s)))
    }
}

vantage_measurement::closed_set! {
    /// Why the connection layer closed a connection without serving it (or cut it), the `reason`
    /// label of [`CONNECTIONS_REFUSED_TOTAL`](super::CONNECTIONS_REFUSED_TOTAL).
    pub enum ConnectionRefusal {
        /// Every connection slot (`--max-connections`) was taken.
        GlobalLimit => "global_limit",
        /// The source already held `--max-connections-per-source` connections.
        SourceLimit => "source_limit",
        /// A trusted proxy connected without the PROXY header `--proxy-protocol` asks for.
        ProxyHeaderMissing => "proxy_header_missing",
        /// A PROXY header that does not parse, or names no TCP address.
        ProxyHeaderInvalid => "proxy_header_invalid",
        /// A PROXY header from a peer that is not a `--trusted-proxy`: never honoured.
        ProxyHeaderUntrusted => "proxy_header_untrusted",
        /// The TLS handshake did not finish within the handshake timeout.
        TlsHandshakeTimeout => "tls_handshake_timeout",
        /// The TLS handshake failed (not TLS, no shared version or cipher, a client alert).
        TlsHandshakeFailed => "tls_handshake_failed",
        /// No complete request head within the header timeout, before the connection's first
        /// request (a slow or silent client; idle keep-alive connections closed later are not
        /// counted).
        HeaderTimeout => "header_timeout",
        /// The client stopped reading a response for the send timeout.
        SendStalled => "send_stalled",
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
