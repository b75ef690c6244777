use super::*;

/// The first-packet exemptions of the fully-encrypted-traffic detector (Wu et al. 2023,
/// Algorithm 1), restated here so the control is checked against the rule, not against itself.
fn exempt(p: &[u8]) -> bool {
    let printable = |b: &u8| (0x20..=0x7e).contains(b);
    let popcount = p.iter().map(|b| b.count_ones()).sum::<u32>() as f64 / p.len() as f64;
    !(3.4..=4.6).contains(&popcount) || p.iter().take(6).all(printable) || p.iter().filter(|b| printable(b)).count() * 2 > p.len()
}

#[test]
fn the_control_is_exempt_from_the_fet_rules_and_as_long_as_the_flow() {
    let len = expected_flow_len();
    assert!(len > DATA_BYTES, "{len}");
    let control = low_entropy(len);
    assert_eq!(control.len(), len);
    assert!(exempt(&control[..1460]));
    assert!(control.iter().all(|b| (0x20..=0x7e).contains(b)));
    // Random-looking bytes like the obfs4 request's (fixed xorshift noise) are not exempt.
    let mut state = 0x9e37_79b9u32;
    let noise: Vec<u8> = (0..1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state.to_le_bytes()[1]
        })
        .collect();
    assert!(!exempt(&noise));
}

#[test]
fn the_client_hello_for_the_upstream_is_a_tls_handshake_record() {
    let hello = client_hello().expect("hello");
    assert_eq!(hello[..3], [0x16, 0x03, 0x01]);
    assert!(hello.len() < codec::MAX_PACKET_BODY);
}

#[tokio::test]
async fn the_control_passes_through_an_echo_and_fails_without_one() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let ctx = StepContext::new(vantage_measurement::Vantage::Probe, std::time::Duration::from_secs(2));
    let obs = control(&ctx, addr, 70_000).await;
    assert!(obs.iter().all(Observation::succeeded), "{obs:?}");
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let closed_addr = closed.local_addr().expect("addr");
    drop(closed);
    let obs = control(&ctx, closed_addr, 100).await;
    assert_eq!(obs[0].failure, Some(Failure::ConnectionRefused), "{obs:?}");
}
