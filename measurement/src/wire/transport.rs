//! Which collector and test-helper URLs a probe may talk to.
//!
//! An upload carries what the probe found, and a helper request names what it tests: over
//! plaintext HTTP both cross the probe's network, and its censor, in the clear. So a collector
//! or helper URL must be `https://`, unless its host is this machine (a loopback address or
//! `localhost`: the bytes never leave it), or the volunteer passed `--danger-plaintext-collector`
//! (labs). One rule, here, for the probe's flags, its config file, the invitations it joins and
//! the operator's `invite`.
//!
//! The URL is read by the same parser the HTTP client connects with (`url`, WHATWG), so what is
//! judged loopback here is where the bytes go: `http://127.0.0.1@evil.example/` is
//! `evil.example`. `localhost` is answered by the probe's resolver itself (RFC 6761), never asked
//! of the network. Through a SOCKS5 proxy that is not itself on this machine even a loopback
//! collector's bytes leave it (to the proxy, in the clear), so the exception does not apply.

use std::fmt;

use url::{Host, Url};

/// How the bytes to a URL travel, when the rule lets them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Carriage {
    /// TLS.
    Https,
    /// Plaintext that never leaves this machine.
    Loopback,
    /// Plaintext across the network, because the volunteer said so (labs).
    DangerPlaintext,
}

/// What the rule weighs besides the URL.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Allowance {
    /// `--danger-plaintext-collector` (or `danger_plaintext_collector = true` in probe.toml).
    pub danger_plaintext: bool,
    /// The connection goes through a proxy on another machine.
    pub remote_proxy: bool,
    /// The probe holds key pins for the collector: they are checked in the TLS handshake, so
    /// plaintext can't satisfy them, on any machine, danger or not.
    pub pinned: bool,
}

/// Why a URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// Not `http(s)://` with a host.
    #[error("`{0}` is not an http(s) URL with a host")]
    NotHttp(String),
    /// Plaintext that would leave this machine.
    #[error(
        "`{url}` is plaintext HTTP {where_}: what the probe found and the names it tests would cross the network, and its censor, in the clear; use https://, or in a lab only, --danger-plaintext-collector (danger_plaintext_collector = true in probe.toml)"
    )]
    Plaintext {
        /// The URL.
        url: String,
        /// To another machine, or through a proxy on one.
        where_: Where,
    },
    /// Plaintext to a collector the probe holds key pins for.
    #[error(
        "`{0}` is plaintext HTTP, but collector_pins are set: pins are checked in the TLS handshake, so a pinned collector must be https://"
    )]
    PinnedPlaintext(String),
}

/// Where plaintext would go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Where {
    /// The URL's host is another machine.
    OtherMachine,
    /// The URL's host is this machine, but the proxy is not.
    ThroughRemoteProxy,
}

impl fmt::Display for Where {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Where::OtherMachine => "to another machine",
            Where::ThroughRemoteProxy => "through a SOCKS5 proxy on another machine",
        })
    }
}

/// The rule: may the probe send to `url`, and how will the bytes travel?
pub fn check(url: &str, allowance: Allowance) -> Result<Carriage, TransportError> {
    let not_http = || TransportError::NotHttp(url.to_string());
    let parsed = Url::parse(url).map_err(|_| not_http())?;
    let host = parsed.host().ok_or_else(not_http)?;
    match parsed.scheme() {
        "https" => Ok(Carriage::Https),
        "http" if allowance.pinned => Err(TransportError::PinnedPlaintext(url.to_string())),
        "http" if allowance.danger_plaintext => Ok(Carriage::DangerPlaintext),
        "http" if is_loopback(&host) && !allowance.remote_proxy => Ok(Carriage::Loopback),
        "http" => {
            let where_ = if is_loopback(&host) { Where::ThroughRemoteProxy } else { Where::OtherMachine };
            Err(TransportError::Plaintext { url: url.to_string(), where_ })
        }
        _ => Err(not_http()),
    }
}

/// Whether a host name or address is this machine: a loopback address or `localhost`.
pub fn is_loopback_host(host: &str) -> bool {
    // Brackets around an IPv6 literal are how both URLs and HOST:PORT write it.
    Host::parse(host).is_ok_and(|h| is_loopback(&h))
}

fn is_loopback<S: AsRef<str>>(host: &Host<S>) -> bool {
    match host {
        Host::Ipv4(ip) => ip.is_loopback(),
        Host::Ipv6(ip) => ip.is_loopback(),
        // The parser has lowercased it.
        Host::Domain(name) => name.as_ref() == "localhost",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: Allowance = Allowance { danger_plaintext: false, remote_proxy: false, pinned: false };
    const DANGER: Allowance = Allowance { danger_plaintext: true, ..NONE };
    const PROXY: Allowance = Allowance { remote_proxy: true, ..NONE };
    const PINNED: Allowance = Allowance { pinned: true, ..NONE };

    #[test]
    fn https_is_always_fine_and_plaintext_only_on_this_machine() {
        for url in ["https://collector.example", "https://192.0.2.1:8443/", "https://[2001:db8::1]"] {
            assert_eq!(check(url, NONE), Ok(Carriage::Https), "{url}");
            assert_eq!(check(url, PROXY), Ok(Carriage::Https), "{url}");
        }
        for url in
            ["http://127.0.0.1:8080", "http://127.8.9.10", "http://[::1]:8080/", "http://localhost:8080", "http://LOCALHOST"]
        {
            assert_eq!(check(url, NONE), Ok(Carriage::Loopback), "{url}");
        }
        for url in ["http://collector.example", "http://192.0.2.1:8080", "http://[2001:db8::1]", "http://10.0.0.1"] {
            assert!(matches!(check(url, NONE), Err(TransportError::Plaintext { where_: Where::OtherMachine, .. })), "{url}");
            assert_eq!(check(url, DANGER), Ok(Carriage::DangerPlaintext), "{url}");
        }
    }

    #[test]
    fn the_host_is_where_the_bytes_go_not_what_the_url_seems_to_say() {
        for url in [
            "http://127.0.0.1@evil.example/",
            "http://localhost.evil.example",
            "http://127.0.0.1.nip.io",
            "http://localhost./",
            "http://0.0.0.0:8080",
            "http://[::ffff:8.8.8.8]",
        ] {
            assert!(check(url, NONE).is_err(), "{url}");
        }
        // The parser normalises these the way the client connects: to loopback.
        for url in ["http://0x7f000001/", "http://127.1/", "http://evil.example@127.0.0.1/", "http://127.0.0.1\\@evil.example/"] {
            assert_eq!(check(url, NONE), Ok(Carriage::Loopback), "{url}");
        }
    }

    #[test]
    fn a_remote_proxy_takes_away_the_loopback_exception() {
        let err = check("http://127.0.0.1:8080", PROXY).expect_err("through a proxy elsewhere");
        assert!(err.to_string().contains("through a SOCKS5 proxy on another machine"), "{err}");
        assert_eq!(check("http://127.0.0.1:8080", Allowance { danger_plaintext: true, ..PROXY }), Ok(Carriage::DangerPlaintext));
    }

    #[test]
    fn pins_need_tls_even_on_this_machine_and_even_with_danger() {
        assert_eq!(check("https://collector.example", PINNED), Ok(Carriage::Https));
        for allowance in [PINNED, Allowance { danger_plaintext: true, ..PINNED }] {
            for url in ["http://127.0.0.1:8080", "http://collector.example"] {
                assert_eq!(check(url, allowance), Err(TransportError::PinnedPlaintext(url.to_string())), "{url}");
            }
        }
    }

    #[test]
    fn what_is_not_an_http_url_is_refused_as_such() {
        for url in ["collector.example", "ftp://collector.example", "https://", "file:///etc/passwd", "mailto:a@b.example", ""] {
            assert_eq!(check(url, DANGER), Err(TransportError::NotHttp(url.to_string())), "{url}");
        }
    }

    #[test]
    fn the_message_says_what_leaks_and_what_to_do() {
        let err = check("http://collector.example", NONE).expect_err("plaintext").to_string();
        for needle in
            ["`http://collector.example` is plaintext HTTP to another machine", "https://", "--danger-plaintext-collector"]
        {
            assert!(err.contains(needle), "{err} should say {needle}");
        }
    }

    #[test]
    fn proxy_hosts_are_judged_by_the_same_parser() {
        for host in ["127.0.0.1", "[::1]", "localhost", "127.0.0.53"] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in ["tor.lan", "192.0.2.1", "[2001:db8::1]", "::1", "localhost.evil.example"] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }
}
