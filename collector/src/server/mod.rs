//! The collector's connection layer: everything between `accept()` and the router.
//!
//! Each accepted connection goes through the same steps, each bounded in time or count, and is
//! closed without a word at the first it fails (counted in
//! `vantage_collector_connections_refused_total{reason}`):
//!
//! 1. **Global cap** (`--max-connections`): over it, the connection is reset at once.
//! 2. **Per-source cap** (`--max-connections-per-source`, an IPv4 address or IPv6 /64): a peer
//!    that is not a trusted proxy is counted under its own address right away; a trusted proxy's
//!    connection under the client its PROXY header names (step 3), or not at all (one proxy
//!    carries many clients; it is bounded by the global cap). Loopback is not counted (see `caps`).
//! 3. **PROXY header** ([`proxy_protocol`], with `--proxy-protocol`): required from a
//!    `--trusted-proxy` peer, refused from anyone else (a client must not choose its own
//!    address), read within the header timeout.
//! 4. **TLS** ([`tls`], with `--tls-cert`): the handshake must finish within the handshake
//!    timeout.
//! 5. **HTTP/1.1** (hyper): each request head must arrive within the header timeout, which also
//!    bounds how long a kept-alive connection may sit idle between requests; a response the client
//!    stops reading fails after the send timeout (`io::SendDeadline`); a request body must end
//!    within the body timeout on every route (`io::BodyDeadline`; `payload` bounds ingest tighter). Every request carries its [`ClientSource`] ([`source`]), the address handlers
//!    use.
//!
//! Shutdown drains as before: the listener closes, idle connections close, requests in flight
//! finish (the caller cuts the drain short after its timeout).

mod accept;
pub mod args;
mod caps;
mod io;
pub mod proxy_protocol;
pub mod source;
pub mod tls;

use std::time::Duration;

pub(crate) use accept::Server;
/// The unit a per-source rule counts (IPv4 address, IPv6 /64): the connection caps and the rate limits share it.
pub(crate) use caps::SourceKey;
pub use source::{ClientSource, ForwardedHeader, TrustedProxies};
pub use tls::{CertSlot, TlsError};

/// Connections held at once unless `--max-connections` says otherwise.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Connections one source may hold at once unless `--max-connections-per-source` says otherwise:
/// a probe uses one or two; a NAT of a few dozen volunteers still fits.
pub const DEFAULT_MAX_CONNECTIONS_PER_SOURCE: usize = 32;
/// How long a request head (or the next one on a kept-alive connection, or a PROXY header) may
/// take unless `--header-timeout-secs` says otherwise.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a TLS handshake may take unless `--tls-handshake-timeout-secs` says otherwise.
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a response may wait for the client to read anything.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a request body may take, on any route: the ingest route's own bound plus a margin,
/// so that its `408` comes first there.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(crate::payload::BODY_TIMEOUT.as_secs() + 10);
/// The most a connection buffers while reading a request head: a longer head is refused. The
/// probe's heads are well under 1 KiB.
pub const MAX_BUFFER_BYTES: usize = 32 * 1024;

/// How the connection layer treats connections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Peers whose PROXY and forwarded-for headers are believed.
    pub trusted_proxies: TrustedProxies,
    /// Expect a PROXY header from trusted proxies.
    pub proxy_protocol: bool,
    /// The forwarded-for header read from trusted proxies.
    pub forwarded_header: ForwardedHeader,
    /// Connections at once, in all.
    pub max_connections: usize,
    /// Connections at once from one source.
    pub max_connections_per_source: usize,
    /// The wait for a PROXY header or a request head.
    pub header_timeout: Duration,
    /// The wait for a TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// The wait for a client to read any of a response.
    pub send_timeout: Duration,
    /// The longest a request body may take.
    pub body_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            trusted_proxies: TrustedProxies::default(),
            proxy_protocol: false,
            forwarded_header: ForwardedHeader::default(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_source: DEFAULT_MAX_CONNECTIONS_PER_SOURCE,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            tls_handshake_timeout: DEFAULT_TLS_HANDSHAKE_TIMEOUT,
            send_timeout: DEFAULT_SEND_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
        }
    }
}
