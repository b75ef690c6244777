//! Volunteer safety: the probe's own addresses, hostname and key id appear nowhere the probe
//! writes or the collector serves; and with no network at all the probe says so instead of
//! measuring.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::sync::Arc;

use serde_json::Value;
use vantage_measurement::wire::ProbeKey;
use vantage_tests::pki::TestCa;
use vantage_tests::procs::{Collector, bin, probe, trust_probe, write_signed_list};
use vantage_tests::servers::{self, DnsBehaviour};

/// This machine's non-loopback interface addresses, as `ip` reports them.
fn own_addresses() -> anyhow::Result<Vec<IpAddr>> {
    let out = Command::new("ip").args(["-o", "addr", "show"]).output()?;
    anyhow::ensure!(out.status.success(), "`ip -o addr show` failed; install iproute2 (tests/install-deps.sh)");
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().skip_while(|w| *w != "inet" && *w != "inet6").nth(1))
        .filter_map(|cidr| cidr.split('/').next()?.parse::<IpAddr>().ok())
        .filter(|ip| !ip.is_loopback())
        .collect())
}

fn hostname() -> anyhow::Result<String> {
    Ok(String::from_utf8(Command::new("hostname").output()?.stdout)?.trim().to_string())
}

/// Every string value in a JSON document, recursively.
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_probe_address_or_hostname_in_output_logs_api_or_metrics() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let addresses = own_addresses()?;
    let host = hostname()?;
    let dir = tempfile::tempdir()?;
    let ca = Arc::new(TestCa::new("Vantage test CA")?);
    let ca_pem = dir.path().join("ca.pem");
    ca.write_pem(&ca_pem)?;
    let tls = servers::tls_any_sni(ca.clone()).await?;
    let quic = servers::quic_any_sni(ca).await?;
    let dns = servers::dns(HashMap::from([("site.example".to_string(), Ipv4Addr::LOCALHOST)]), DnsBehaviour::Honest).await?;
    let targets = dir.path().join("t.toml");
    let text = format!(
        "[[target]]\nname = \"site\"\ndomain = \"site.example\"\naddress = \"127.0.0.1\"\nport = {}\ntests = [\"dns\", \"tcp\", \"tls\"]\n\
         [[target]]\nname = \"q\"\ndomain = \"site.example\"\naddress = \"127.0.0.1\"\nport = {}\ntests = [\"quic\"]\n",
        tls.addr.port(),
        quic.addr.port()
    );
    std::fs::write(&targets, &text)?;
    // Published, so the helper controls the test servers' ports and its answers are in the logs too.
    let list = dir.path().join("signed-list.json");
    write_signed_list(&list, &text, &[])?;
    // The operator vouches for this probe, so it is counted (and shown nowhere) from the start.
    let trusted = dir.path().join("trusted-keys.txt");
    trust_probe(&dir.path().join("data"), &trusted)?;
    let collector = Collector::start(&[
        "--signed-list",
        &list.display().to_string(),
        "--danger-helper-allow-private",
        "--ca",
        &ca_pem.display().to_string(),
        "--helper-resolver",
        &dns.addr.to_string(),
        "--fleet-refresh-secs",
        "1",
        "--trusted-keys",
        &trusted.display().to_string(),
    ])?;
    let out = probe(&[
        "run",
        "--targets",
        &targets.display().to_string(),
        "--json",
        "-vv",
        "--doh",
        "none",
        "--resolver",
        &dns.addr.to_string(),
        "--no-system-resolver",
        "--timeout",
        "3",
        "--ca",
        &ca_pem.display().to_string(),
        "--collector",
        &collector.url,
        "--data-dir",
        &dir.path().join("data").display().to_string(),
    ])?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let api = reqwest::get(format!("{}/api/v1/measurements", collector.url)).await?.text().await?;
    assert_eq!(api.lines().count(), 4, "every measurement arrived: {api}");
    // Wait until the fleet gauges count this probe, so its key id had every chance to show.
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = reqwest::get(format!("{}/metrics", collector.url)).await?.text().await?;
        if metrics.lines().any(|l| l == "vantage_probes_active{country=\"ZZ\"} 1") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(metrics.contains("vantage_probes_active{country=\"ZZ\"} 1"), "the probe was counted: {metrics}");
    let status_page = reqwest::get(format!("{}/", collector.url)).await?.text().await?;
    let key_path = dir.path().join("data/probe.key");
    let seed: [u8; 32] = std::fs::read(&key_path)?.as_slice().try_into()?;
    let key = ProbeKey::from_seed(&seed);
    let key_id = key.key_id().to_string();
    let mut json_strings = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines().chain(api.lines()) {
        strings(&serde_json::from_str(line)?, &mut json_strings);
    }
    let texts = [
        ("probe stdout", String::from_utf8_lossy(&out.stdout).into_owned()),
        ("probe log", String::from_utf8_lossy(&out.stderr).into_owned()),
        ("collector log", collector.logs().join("\n")),
        ("API", api),
        ("metrics", metrics),
        ("status page", status_page),
    ];
    // The key id is the collector's pseudonym for this probe; it is kept beside the measurements
    // for counting and shown nowhere. Nor is the public key it is made from.
    for (place, text) in &texts {
        assert!(!text.contains(&key_id), "{place} contains the probe's key id");
        assert!(!text.contains(&key.public_key_base64()), "{place} contains the probe's public key");
    }
    assert!(!addresses.is_empty(), "this machine has a non-loopback address to look for");
    for ip in &addresses {
        // Whole addresses, not substrings: "10.0.0.2" must not match inside "110.0.0.25".
        let address_char =
            |c: char| if ip.is_ipv4() { c.is_ascii_digit() || c == '.' } else { c.is_ascii_hexdigit() || c == ':' };
        let wanted = ip.to_string();
        for (place, text) in &texts {
            let mut words = text.split(|c: char| !address_char(c));
            assert!(!words.any(|w| w == wanted), "{place} contains this machine's address {ip}");
        }
    }
    // A hostname can be short ("vm"), so look for it as a whole value or word, not a substring.
    assert!(!json_strings.iter().any(|s| s == &host), "a measurement field equals the hostname {host:?}");
    for (place, text) in &texts {
        let words = text.split(|c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '.');
        assert!(!words.into_iter().any(|w| w == host), "{place} mentions the hostname {host:?}");
    }
    Ok(())
}

#[test]
fn without_any_network_the_probe_says_so_and_measures_nothing() -> anyhow::Result<()> {
    // A fresh network namespace has only a loopback interface, and it is down: no route at all.
    let dir = tempfile::tempdir()?;
    let targets = dir.path().join("t.toml");
    std::fs::write(
        &targets,
        "[[target]]\nname = \"a\"\ndomain = \"a.example\"\n[[target]]\nname = \"b\"\ndomain = \"b.example\"\naddress = \"127.0.0.1\"\n",
    )?;
    let out = Command::new("unshare")
        .arg("--net")
        .arg(bin("vantage-probe")?)
        .args(["run", "--targets", &targets.display().to_string(), "--doh", "none"])
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("unshare: unshare failed"),
        "this test needs root to create a network namespace (CI runs as root): {stderr}"
    );
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("No network"), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing was measured, nothing is reported");
    Ok(())
}
