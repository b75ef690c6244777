//! The system resolver: what the volunteer's own applications would get.
//!
//! hickory-resolver reads the OS configuration (`/etc/resolv.conf` on Unix, the registry on
//! Windows) and asks A and AAAA in parallel. The configured server is usually a LAN address (the
//! home router), so neither the observation's `peer` nor `resolver` ever carries it: recording it
//! would leak the volunteer's network layout.

use hickory_resolver::ResolverBuilder;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::LookupIpStrategy;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use tokio::time::Instant;
use vantage_measurement::{Detail, DnsAnswer, DnsDetail, DnsEngine, DnsReply, Failure, Observation, Operation, RawCode, Role};

use super::{QUERY_TYPE_BOTH, codec, dns_failure, reply_outcome};
use crate::runner::{StepContext, io_failure, ms, timeout_failure};

/// Resolve `name` (A and AAAA) with the system resolver, under `ctx.timeout`.
///
/// One reply is recorded: NOERROR with every address, or the negative rcode (with whether an SOA
/// came along). If the OS configuration can't be read, the step fails with
/// `dns_server_misbehaving` and a fixed raw name; it never panics.
pub async fn system_lookup(ctx: &StepContext, role: Role, name: &str) -> Observation {
    lookup_with(ctx, role, name, TokioResolver::builder_tokio()).await
}

/// [`system_lookup`] with the resolver configuration given (tests point it at a local server).
async fn lookup_with(
    ctx: &StepContext,
    role: Role,
    name: &str,
    builder: Result<ResolverBuilder<TokioRuntimeProvider>, NetError>,
) -> Observation {
    // No `.peer()`: see the module docs.
    let step = ctx.step(Operation::Resolve, role);
    let mut detail = DnsDetail {
        engine: DnsEngine::System,
        resolver: None,
        query_name: name.to_string(),
        query_type: QUERY_TYPE_BOTH.to_string(),
        replies: Vec::new(),
    };
    let resolver = builder.and_then(|mut b| {
        let opts = b.options_mut();
        opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        // hickory's per-try wait must not outlast the step's.
        opts.timeout = opts.timeout.min(ctx.timeout);
        b.build()
    });
    let resolver = match resolver {
        Ok(r) => r,
        Err(e) => return step.finish(Err(config_failure(&e)), Some(Detail::Dns(detail))),
    };

    let started = Instant::now();
    let result = tokio::time::timeout(ctx.timeout, resolver.lookup_ip(name)).await;
    let after_ms = ms(started.elapsed());
    let outcome = match result {
        Err(_) => Err(timeout_failure(ctx.timeout)),
        Ok(Ok(lookup)) => {
            let answers: Vec<DnsAnswer> = lookup
                .as_lookup()
                .answers()
                .iter()
                .filter_map(|r| r.data.ip_addr().map(|ip| DnsAnswer { ip, ttl: r.ttl }))
                .collect();
            let outcome = reply_outcome(0, !answers.is_empty());
            detail.replies.push(reply(after_ms, 0, answers, false));
            outcome
        }
        Ok(Err(e)) => {
            let (outcome, negative) = lookup_failure(&e, started);
            if let Some((rcode, has_soa)) = negative {
                detail.replies.push(reply(after_ms, rcode, Vec::new(), has_soa));
            }
            Err(outcome)
        }
    };
    step.finish(outcome, Some(Detail::Dns(detail)))
}

fn reply(after_ms: f64, rcode: u16, answers: Vec<DnsAnswer>, has_soa: bool) -> DnsReply {
    DnsReply { after_ms, rcode: codec::rcode_name(rcode).to_string(), answers, has_soa, ip_ttl: None }
}

/// A resolver error as failure + raw code, and the rcode/SOA of the reply behind it, if one came.
fn lookup_failure(err: &NetError, started: Instant) -> ((Failure, RawCode), Option<(u16, bool)>) {
    match err {
        NetError::Dns(DnsError::NoRecordsFound(nr)) => {
            let rcode = u16::from(nr.response_code);
            let outcome = reply_outcome(rcode, false).err().unwrap_or((Failure::DnsNoAnswer, super::rcode_raw(rcode)));
            (outcome, Some((rcode, nr.soa.is_some())))
        }
        NetError::Dns(DnsError::ResponseCode(code)) => {
            let rcode = u16::from(*code);
            let outcome = reply_outcome(rcode, false).err().unwrap_or((Failure::DnsServerMisbehaving, super::rcode_raw(rcode)));
            (outcome, Some((rcode, false)))
        }
        NetError::Timeout => (timeout_failure(started.elapsed()), None),
        NetError::Io(e) => (io_failure(e), None),
        NetError::Proto(_) => (dns_failure(Failure::DnsServerMisbehaving, "malformed_reply"), None),
        NetError::Truncated => (dns_failure(Failure::DnsServerMisbehaving, "truncated_reply"), None),
        NetError::NoConnections => (dns_failure(Failure::DnsServerMisbehaving, "no_connections"), None),
        // Other library errors carry free text; only a fixed name goes into the measurement.
        _ => (dns_failure(Failure::DnsServerMisbehaving, "resolver_error"), None),
    }
}

/// The OS resolver configuration could not be read or holds no usable server.
fn config_failure(err: &NetError) -> (Failure, RawCode) {
    let kind = match err {
        NetError::Io(e) => e.kind(),
        _ => std::io::ErrorKind::InvalidData,
    };
    // The io kind's Debug name is fixed text (`NotFound`, `InvalidData`), never a path.
    (Failure::DnsServerMisbehaving, RawCode::io_kind(kind))
}

#[cfg(test)]
mod tests {
    use super::super::test_server::{Behaviour, TestServer};
    use super::*;
    use hickory_resolver::Resolver;
    use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
    use std::net::SocketAddr;
    use std::time::Duration;
    use vantage_measurement::Vantage;

    fn builder_for(server: SocketAddr) -> Result<ResolverBuilder<TokioRuntimeProvider>, NetError> {
        let mut udp = ConnectionConfig::udp();
        udp.port = server.port();
        let ns = NameServerConfig::new(server.ip(), true, vec![udp]);
        let mut b = Resolver::builder_with_config(ResolverConfig::from_name_servers(vec![ns]), TokioRuntimeProvider::default());
        b.options_mut().attempts = 1;
        Ok(b)
    }

    async fn lookup(server: &TestServer, timeout_ms: u64) -> Observation {
        let ctx = StepContext::new(Vantage::Probe, Duration::from_millis(timeout_ms));
        lookup_with(&ctx, Role::Target, "example.com.", builder_for(server.addr)).await
    }

    fn detail(obs: &Observation) -> &DnsDetail {
        match &obs.detail {
            Some(Detail::Dns(d)) => d,
            other => panic!("no dns detail: {other:?}"),
        }
    }

    #[tokio::test]
    async fn both_families_are_collected_and_the_resolver_is_not_recorded() {
        let server = TestServer::spawn(Behaviour::answer(&["192.0.2.10", "2001:db8::10"])).await;
        let obs = lookup(&server, 3000).await;
        assert!(obs.succeeded(), "{obs:?}");
        assert_eq!(obs.peer, None);
        let d = detail(&obs);
        assert_eq!((d.engine, d.resolver.as_deref(), d.query_type.as_str()), (DnsEngine::System, None, "A,AAAA"));
        let mut ips: Vec<String> = d.replies[0].answers.iter().map(|a| a.ip.to_string()).collect();
        ips.sort();
        assert_eq!(ips, ["192.0.2.10", "2001:db8::10"]);
        assert_eq!(d.replies[0].rcode, "NOERROR");
        // The loopback server's address appears nowhere in the serialised observation.
        let json = serde_json::to_string(&obs).expect("json");
        assert!(!json.contains("127.0.0.1"), "{json}");
    }

    #[tokio::test]
    async fn nxdomain_keeps_the_rcode_and_the_soa_flag() {
        let server = TestServer::spawn(Behaviour::Rcode { rcode: 3, soa: true }).await;
        let obs = lookup(&server, 3000).await;
        assert_eq!(obs.failure, Some(Failure::DnsNxdomainError), "{obs:?}");
        assert_eq!(obs.raw.as_ref().and_then(|r| r.name.as_deref()), Some("NXDOMAIN"));
        let r = &detail(&obs).replies;
        assert_eq!((r.len(), r[0].rcode.as_str(), r[0].has_soa), (1, "NXDOMAIN", true));
    }

    #[tokio::test]
    async fn an_empty_noerror_is_no_answer() {
        let server = TestServer::spawn(Behaviour::answer(&[])).await;
        let obs = lookup(&server, 3000).await;
        assert_eq!(obs.failure, Some(Failure::DnsNoAnswer), "{obs:?}");
    }

    #[tokio::test]
    async fn servfail_and_refused_are_named() {
        for (rcode, failure) in [(2, Failure::DnsServfailError), (5, Failure::DnsRefusedError)] {
            let server = TestServer::spawn(Behaviour::Rcode { rcode, soa: false }).await;
            let obs = lookup(&server, 3000).await;
            assert_eq!(obs.failure, Some(failure), "{obs:?}");
            assert_eq!(obs.raw.as_ref().and_then(|r| r.code), Some(rcode.into()));
        }
    }

    #[tokio::test]
    async fn silence_is_a_timeout() {
        let server = TestServer::spawn(Behaviour::Silence).await;
        let obs = lookup(&server, 500).await;
        assert_eq!(obs.failure, Some(Failure::GenericTimeoutError), "{obs:?}");
        assert!(detail(&obs).replies.is_empty());
    }

    #[tokio::test]
    async fn a_missing_system_config_is_a_failure_not_a_panic() {
        let ctx = StepContext::new(Vantage::Probe, Duration::from_secs(1));
        let missing = Err(NetError::from(std::io::Error::from(std::io::ErrorKind::NotFound)));
        let obs = lookup_with(&ctx, Role::Target, "example.com", missing).await;
        assert_eq!(obs.failure, Some(Failure::DnsServerMisbehaving));
        assert_eq!(obs.raw.and_then(|r| r.name).as_deref(), Some("NotFound"));
    }
}
