//! The connection layer's flags, flattened into `vantage-collector serve` (the rest of the flags
//! and every other `VANTAGE_*` name are in [`config`](crate::config), which re-exports these).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::source::parse_trusted_proxy;
use super::{ForwardedHeader, Settings, TrustedProxies};

/// Environment twin of `--tls-cert`.
pub const ENV_TLS_CERT: &str = "VANTAGE_TLS_CERT";
/// Environment twin of `--tls-key`.
pub const ENV_TLS_KEY: &str = "VANTAGE_TLS_KEY";
/// Environment twin of `--trusted-proxy` (comma-separated).
pub const ENV_TRUSTED_PROXIES: &str = "VANTAGE_TRUSTED_PROXIES";
/// Environment twin of `--proxy-protocol`.
pub const ENV_PROXY_PROTOCOL: &str = "VANTAGE_PROXY_PROTOCOL";
/// Environment twin of `--forwarded-header`.
pub const ENV_FORWARDED_HEADER: &str = "VANTAGE_FORWARDED_HEADER";
/// Environment twin of `--max-connections`.
pub const ENV_MAX_CONNECTIONS: &str = "VANTAGE_MAX_CONNECTIONS";
/// Environment twin of `--max-connections-per-source`.
pub const ENV_MAX_CONNECTIONS_PER_SOURCE: &str = "VANTAGE_MAX_CONNECTIONS_PER_SOURCE";
/// Environment twin of `--header-timeout-secs`.
pub const ENV_HEADER_TIMEOUT_SECS: &str = "VANTAGE_HEADER_TIMEOUT_SECS";
/// Environment twin of `--tls-handshake-timeout-secs`.
pub const ENV_TLS_HANDSHAKE_TIMEOUT_SECS: &str = "VANTAGE_TLS_HANDSHAKE_TIMEOUT_SECS";

/// HTTPS, trusted proxies, connection caps and timeouts.
#[derive(Debug, Args)]
pub struct ConnectionArgs {
    /// Serve HTTPS with this certificate chain (PEM, the server's certificate first, e.g.
    /// certbot's fullchain.pem). Re-read with --tls-key on SIGHUP; a pair that does not load then
    /// is logged and the old one kept. Without --tls-cert/--tls-key the collector serves plain
    /// HTTP, for loopback or behind a TLS-terminating proxy.
    #[arg(long, value_name = "FILE", env = ENV_TLS_CERT, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE", env = ENV_TLS_KEY, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// A load balancer or reverse proxy (CIDR block or address; repeat the flag, or
    /// comma-separate in the environment) whose X-Forwarded-For (or --forwarded-header) and
    /// PROXY header are believed. Anyone else's are not: the client address is the TCP peer.
    #[arg(
        long = "trusted-proxy",
        value_name = "CIDR",
        env = ENV_TRUSTED_PROXIES,
        value_delimiter = ',',
        value_parser = parse_trusted_proxy
    )]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// Expect a PROXY protocol header (v1 or v2) on every connection from a --trusted-proxy
    /// (HAProxy send-proxy, AWS NLB, ...); such a connection without one is refused, and so is a
    /// PROXY header from any other peer.
    #[arg(long, env = ENV_PROXY_PROTOCOL, requires = "trusted_proxies")]
    pub proxy_protocol: bool,

    /// The header a --trusted-proxy names the client in: x-forwarded-for or forwarded (RFC 7239).
    /// Only this one is read.
    #[arg(
        long,
        value_name = "HEADER",
        env = ENV_FORWARDED_HEADER,
        default_value = "x-forwarded-for",
        value_parser = ForwardedHeader::from_flag
    )]
    pub forwarded_header: ForwardedHeader,

    /// Connections held at once; more are reset on arrival.
    #[arg(
        long,
        value_name = "N",
        env = ENV_MAX_CONNECTIONS,
        default_value_t = super::DEFAULT_MAX_CONNECTIONS as u64,
        value_parser = clap::value_parser!(u64).range(1..=1_000_000)
    )]
    pub max_connections: u64,

    /// Connections one source (an IPv4 address, an IPv6 /64; behind a trusted proxy, the client
    /// it names) may hold at once; more are reset on arrival. Loopback is not counted.
    #[arg(
        long,
        value_name = "N",
        env = ENV_MAX_CONNECTIONS_PER_SOURCE,
        default_value_t = super::DEFAULT_MAX_CONNECTIONS_PER_SOURCE as u64,
        value_parser = clap::value_parser!(u64).range(1..=1_000_000)
    )]
    pub max_connections_per_source: u64,

    /// Seconds a client has to send a request head (and a PROXY header), and the longest a
    /// kept-alive connection may sit idle between requests.
    #[arg(
        long,
        value_name = "S",
        env = ENV_HEADER_TIMEOUT_SECS,
        default_value_t = super::DEFAULT_HEADER_TIMEOUT.as_secs(),
        value_parser = clap::value_parser!(u64).range(1..=300)
    )]
    pub header_timeout_secs: u64,

    /// Seconds a client has to finish the TLS handshake.
    #[arg(
        long,
        value_name = "S",
        env = ENV_TLS_HANDSHAKE_TIMEOUT_SECS,
        default_value_t = super::DEFAULT_TLS_HANDSHAKE_TIMEOUT.as_secs(),
        value_parser = clap::value_parser!(u64).range(1..=300)
    )]
    pub tls_handshake_timeout_secs: u64,
}

impl ConnectionArgs {
    /// The settings these flags ask for (the send and body timeouts are not flags).
    pub fn settings(&self) -> Settings {
        Settings {
            trusted_proxies: TrustedProxies::new(self.trusted_proxies.clone()),
            proxy_protocol: self.proxy_protocol,
            forwarded_header: self.forwarded_header,
            max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
            max_connections_per_source: usize::try_from(self.max_connections_per_source).unwrap_or(usize::MAX),
            header_timeout: Duration::from_secs(self.header_timeout_secs),
            tls_handshake_timeout: Duration::from_secs(self.tls_handshake_timeout_secs),
            ..Settings::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        connection: ConnectionArgs,
    }

    fn parse(args: &[&str]) -> Result<ConnectionArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("serve").chain(args.iter().copied())).map(|cli| cli.connection)
    }

    #[test]
    fn the_flags_are_consistent_and_default_to_the_constants() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let args = parse(&[]).expect("defaults");
        assert_eq!((args.tls_cert.as_ref(), args.tls_key.as_ref()), (None, None));
        assert_eq!(args.settings(), Settings::default());
    }

    #[test]
    fn every_flag_reaches_the_settings() {
        let args = parse(&[
            "--tls-cert",
            "fullchain.pem",
            "--tls-key",
            "privkey.pem",
            "--trusted-proxy",
            "10.0.0.0/8,192.0.2.1",
            "--trusted-proxy",
            "2001:db8::/32",
            "--proxy-protocol",
            "--forwarded-header",
            "forwarded",
            "--max-connections",
            "100",
            "--max-connections-per-source",
            "4",
            "--header-timeout-secs",
            "5",
            "--tls-handshake-timeout-secs",
            "7",
        ])
        .expect("valid flags");
        assert_eq!(args.tls_cert, Some(PathBuf::from("fullchain.pem")));
        assert_eq!(args.tls_key, Some(PathBuf::from("privkey.pem")));
        let settings = args.settings();
        let blocks: Vec<String> = settings.trusted_proxies.blocks().iter().map(|b| b.to_string()).collect();
        assert_eq!(blocks, ["10.0.0.0/8", "192.0.2.1/32", "2001:db8::/32"]);
        assert!(settings.proxy_protocol);
        assert_eq!(settings.forwarded_header, ForwardedHeader::Forwarded);
        assert_eq!((settings.max_connections, settings.max_connections_per_source), (100, 4));
        assert_eq!(settings.header_timeout, Duration::from_secs(5));
        assert_eq!(settings.tls_handshake_timeout, Duration::from_secs(7));
    }

    #[test]
    fn flags_that_cannot_work_are_refused() {
        for (args, why) in [
            (&["--tls-cert", "c.pem"][..], "a certificate without its key"),
            (&["--tls-key", "k.pem"], "a key without its certificate"),
            (&["--proxy-protocol"], "PROXY headers from nobody"),
            (&["--trusted-proxy", "10.0.0.1/8"], "host bits below the prefix"),
            (&["--trusted-proxy", "proxy.example"], "a name"),
            (&["--forwarded-header", "x-real-ip"], "an unknown header"),
            (&["--max-connections-per-source", "0"], "no connection at all"),
            (&["--header-timeout-secs", "0"], "no time at all"),
        ] {
            assert!(parse(args).is_err(), "{why}");
        }
    }
}
