//! A and AAAA from one resolver as one lookup: what a control needs to learn every family of a
//! name (a dual-stack target is measured on each), and what the helper checks a listed name's
//! IPv6 address against.

use std::net::SocketAddr;
use std::time::Duration;

use vantage_measurement::{Detail, Observation, Role};

use super::{QUERY_TYPE_BOTH, QueryType, udp_lookup};
use crate::runner::StepContext;

/// Ask `resolver` for `name`'s A and AAAA records at once; one `resolve` observation whose reply
/// holds the addresses of both (see [`merge`]).
pub async fn udp_lookup_both(ctx: &StepContext, role: Role, resolver: SocketAddr, name: &str) -> Observation {
    let (a, aaaa) = tokio::join!(
        udp_lookup(ctx, role, resolver, name, QueryType::A, Duration::ZERO),
        udp_lookup(ctx, role, resolver, name, QueryType::Aaaa, Duration::ZERO)
    );
    merge(a, aaaa)
}

/// The A lookup with the AAAA lookup's addresses added to its reply: NOERROR with addresses if
/// either found some (the A lookup's failure, such as `dns_no_answer` for an IPv6-only name, is
/// then lifted); otherwise the A lookup as it was.
pub fn merge(mut a: Observation, aaaa: Observation) -> Observation {
    let v6_answers = match &aaaa.detail {
        Some(Detail::Dns(d)) => d.replies.first().filter(|r| r.rcode == "NOERROR").map(|r| r.answers.clone()).unwrap_or_default(),
        _ => Vec::new(),
    };
    a.duration_ms = a.duration_ms.max(aaaa.duration_ms);
    let Some(Detail::Dns(detail)) = &mut a.detail else { return a };
    detail.query_type = QUERY_TYPE_BOTH.to_string();
    if v6_answers.is_empty() {
        return a;
    }
    match detail.replies.first_mut() {
        Some(reply) if reply.rcode == "NOERROR" => reply.answers.extend(v6_answers),
        _ => {
            if let Some(Detail::Dns(d6)) = aaaa.detail {
                detail.replies = d6.replies.into_iter().take(1).collect();
            }
        }
    }
    a.failure = None;
    a.raw = None;
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use vantage_measurement::{DnsAnswer, DnsDetail, DnsReply, Failure, Operation, Vantage};

    fn lookup(rcode: &str, ips: &[&str], failure: Option<Failure>) -> Observation {
        let mut obs = crate::classify::testing::step(Vantage::Helper, Role::Target, Operation::Resolve, failure);
        let answers = ips.iter().map(|ip| DnsAnswer { ip: ip.parse().expect("ip"), ttl: 60 }).collect();
        obs.detail = Some(Detail::Dns(DnsDetail {
            query_type: "A".into(),
            replies: vec![DnsReply { rcode: rcode.into(), answers, ..DnsReply::default() }],
            ..DnsDetail::default()
        }));
        obs
    }

    fn answers(obs: &Observation) -> Vec<String> {
        match &obs.detail {
            Some(Detail::Dns(d)) => d.replies[0].answers.iter().map(|a| a.ip.to_string()).collect(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn a_dual_stack_name_has_both_families_in_one_reply() {
        let merged = merge(lookup("NOERROR", &["192.0.2.1"], None), lookup("NOERROR", &["2001:db8::1"], None));
        assert_eq!(answers(&merged), ["192.0.2.1", "2001:db8::1"]);
        assert!(matches!(&merged.detail, Some(Detail::Dns(d)) if d.query_type == "A,AAAA"));
    }

    #[test]
    fn an_ipv6_only_name_resolves_and_an_ipv4_only_one_is_unchanged() {
        let v6_only = merge(lookup("NOERROR", &[], Some(Failure::DnsNoAnswer)), lookup("NOERROR", &["2001:db8::1"], None));
        assert_eq!((v6_only.failure, answers(&v6_only)), (None, vec!["2001:db8::1".to_string()]));
        let v4_only = merge(lookup("NOERROR", &["192.0.2.1"], None), lookup("NOERROR", &[], Some(Failure::DnsNoAnswer)));
        assert_eq!((v4_only.failure, answers(&v4_only)), (None, vec!["192.0.2.1".to_string()]));
    }

    #[test]
    fn nxdomain_stays_nxdomain() {
        let gone = merge(
            lookup("NXDOMAIN", &[], Some(Failure::DnsNxdomainError)),
            lookup("NXDOMAIN", &[], Some(Failure::DnsNxdomainError)),
        );
        assert_eq!(gone.failure, Some(Failure::DnsNxdomainError));
    }
}
