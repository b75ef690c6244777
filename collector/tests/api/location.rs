//! Where the probe is: the collector looks the submitting address up in its GeoIP databases
//! (real MaxMind DB files the test writes), stores and returns the observed country and ASN beside
//! the probe's own claim, counts disagreements, and keeps the address nowhere.

use std::net::Ipv4Addr;
use std::path::Path;

use vantage_collector::geoip::{GeoIp, GeoIpError};
use vantage_collector::store::OBSERVED_FIELD;
use vantage_measurement::wire::{IngestReport, ObservedLocation};

use crate::mmdb::{self, Writer};
use crate::support::{Collector, measurement_of, probe_key, sample};

/// Country and ASN databases placing 127.0.0.0/8 in DE / AS64500, and 10.0.0.0/8 in FR / AS3215.
pub fn write_databases(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let mut country = Writer::new("GeoLite2-Country");
    country.insert(Ipv4Addr::new(127, 0, 0, 0), 8, &mmdb::country("DE"));
    country.insert(Ipv4Addr::new(10, 0, 0, 0), 8, &mmdb::country("FR"));
    let mut asn = Writer::new("GeoLite2-ASN");
    asn.insert(Ipv4Addr::new(127, 0, 0, 0), 8, &mmdb::asn(64500, "Loopback Networks"));
    asn.insert(Ipv4Addr::new(10, 0, 0, 0), 8, &mmdb::asn(3215, "Orange"));
    let (country_path, asn_path) = (dir.join("country.mmdb"), dir.join("asn.mmdb"));
    std::fs::write(&country_path, country.to_bytes()).expect("write country db");
    std::fs::write(&asn_path, asn.to_bytes()).expect("write asn db");
    (country_path, asn_path)
}

#[test]
fn the_test_databases_are_read_by_the_maxmind_reader() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (country, asn) = write_databases(dir.path());
    let geoip = GeoIp::open(Some(&country), Some(&asn)).expect("open");
    let at = |a, b, c, d| geoip.locate(Ipv4Addr::new(a, b, c, d).into());
    assert_eq!(at(127, 0, 0, 1), Some(ObservedLocation { cc: Some("DE".into()), asn: Some(64500) }));
    assert_eq!(at(10, 200, 3, 4), Some(ObservedLocation { cc: Some("FR".into()), asn: Some(3215) }));
    assert_eq!(at(192, 0, 2, 1), Some(ObservedLocation { cc: None, asn: None }), "not in the databases");
    let mapped: std::net::IpAddr = "::ffff:127.0.0.1".parse().expect("ip");
    assert_eq!(geoip.locate(mapped).and_then(|o| o.cc), Some("DE".into()), "a v4-mapped peer is looked up as v4");
    assert_eq!(GeoIp::open(None, None).expect("none").locate(Ipv4Addr::LOCALHOST.into()), None);

    // The flags can't be swapped by mistake, and garbage is not a database.
    assert!(matches!(GeoIp::open(Some(&asn), None), Err(GeoIpError::WrongKind { flag: "geoip-country", .. })));
    assert!(matches!(GeoIp::open(None, Some(&country)), Err(GeoIpError::WrongKind { flag: "geoip-asn", .. })));
    let garbage = dir.path().join("garbage.mmdb");
    std::fs::write(&garbage, b"not a database").expect("write");
    assert!(matches!(GeoIp::open(Some(&garbage), None), Err(GeoIpError::Open { .. })));
}

#[tokio::test]
async fn the_observed_location_is_stored_returned_and_counted_and_the_address_is_kept_nowhere() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let (country, asn) = write_databases(scratch.path());
    let mut collector = Collector::start_with(|config, _| {
        config.geoip_country = Some(country.clone());
        config.geoip_asn = Some(asn.clone());
    })
    .await;
    // The probe claims: right, wrong in both, and withheld.
    let right = measurement_of("DE", 64500, "wikipedia", true);
    let wrong = measurement_of("FR", 3215, "wikipedia", true);
    let withheld = measurement_of("ZZ", 0, "wikipedia", true);
    let report = collector.ingest_signed(&probe_key(1), &[right.clone(), wrong.clone(), withheld.clone()]).await;
    let report: IngestReport = serde_json::from_value(report).expect("an ingest report");
    assert_eq!(report.accepted, 3);
    let seen = ObservedLocation { cc: Some("DE".into()), asn: Some(64500) };
    assert_eq!(report.observed, Some(seen.clone()), "the probe is told where the collector saw it");

    let text = collector.http.get(collector.url("/api/v1/measurements")).send().await.expect("GET").text().await.expect("body");
    let mut lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    assert_eq!(lines.len(), 3);
    lines.sort_by_key(|l| l["id"].as_str().map(String::from));
    let mut sent = [&right, &wrong, &withheld];
    sent.sort_by_key(|m| m.id.to_string());
    for (line, m) in lines.iter().zip(sent) {
        assert_eq!(line[OBSERVED_FIELD], serde_json::to_value(&seen).expect("json"), "observed, beside the claim");
        assert_eq!(
            (line["probe"]["cc"].as_str(), line["probe"]["asn"].as_u64()),
            (Some(m.probe.cc.as_str()), Some(u64::from(m.probe.asn)))
        );
    }

    // Researchers can select by either view.
    let count = |query: &'static str| {
        let collector = &collector;
        async move {
            let url = collector.url(&format!("/api/v1/measurements?{query}"));
            collector.http.get(url).send().await.expect("GET").text().await.expect("body").lines().count()
        }
    };
    assert_eq!(count("observed_country=DE&observed_asn=64500").await, 3);
    assert_eq!(count("observed_country=FR").await, 0);
    assert_eq!(count("country=FR").await, 1, "`country` is still the probe's claim");

    let metrics = collector.metrics().await;
    let mismatches = |kind| sample(&metrics, "vantage_probe_location_mismatch_total", &[("kind", kind)]);
    assert_eq!(mismatches("country"), Some(1.0), "only the wrong claim; a withheld one is no mismatch");
    assert_eq!(mismatches("asn"), Some(1.0));

    // The address: in no byte of the store (database, WAL, anything in the data directory).
    collector.stop().await;
    let text_form = b"127.0.0.1";
    let binary_form = [127u8, 0, 0, 1];
    let mut files = 0;
    for entry in std::fs::read_dir(collector.data_dir()).expect("data dir") {
        let path = entry.expect("entry").path();
        let bytes = std::fs::read(&path).expect("read");
        files += 1;
        assert!(!bytes.windows(text_form.len()).any(|w| w == text_form), "{} holds the address as text", path.display());
        assert!(!bytes.windows(4).any(|w| w == binary_form), "{} holds the address as bytes", path.display());
    }
    assert!(files >= 1, "the store was scanned");
}

#[tokio::test]
async fn without_databases_nothing_is_observed() {
    let collector = Collector::start().await;
    let report = collector.ingest_signed(&probe_key(1), &[measurement_of("DE", 3320, "wikipedia", true)]).await;
    assert!(report.get("observed").is_none(), "{report}");
    let text = collector.http.get(collector.url("/api/v1/measurements")).send().await.expect("GET").text().await.expect("body");
    let line: serde_json::Value = serde_json::from_str(text.trim()).expect("one line");
    assert!(line.get(OBSERVED_FIELD).is_none(), "{line}");
}
