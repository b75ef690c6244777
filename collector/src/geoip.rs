//! Where a batch came from, by the collector's own reckoning: the submitting address looked up
//! in the operator's GeoIP databases (MaxMind DB format: GeoLite2-Country/City/ASN, or DB-IP's
//! lite databases, `--geoip-country`, `--geoip-asn`).
//!
//! A probe's self-declared country and ASN may be wrong (a volunteer's mistake, a stale config,
//! a VPN) or withheld; the observed ones let researchers see the disagreement and let the probe
//! notice that its network changed. The lookup takes the address and gives back only a country
//! code and an AS number; the address goes no further.

use std::net::IpAddr;
use std::path::Path;

use maxminddb::Reader;
use serde::Deserialize;
use vantage_measurement::is_country_code;
use vantage_measurement::wire::ObservedLocation;

/// Why a GeoIP database can't be used.
#[derive(Debug, thiserror::Error)]
pub enum GeoIpError {
    /// Unreadable or not a MaxMind DB.
    #[error("cannot open the GeoIP database {path}: {message}")]
    Open {
        /// The file.
        path: String,
        /// What the reader said.
        message: String,
    },
    /// A country database where an ASN one belongs, or the other way round.
    #[error("{path} is a {database_type} database; --{flag} wants {wanted}")]
    WrongKind {
        /// The file.
        path: String,
        /// The database's own `database_type`.
        database_type: String,
        /// The flag it was given to.
        flag: &'static str,
        /// What that flag takes.
        wanted: &'static str,
    },
}

/// The country and ASN databases, either or both (or neither: nothing is looked up).
#[derive(Default)]
pub struct GeoIp {
    country: Option<Reader<Vec<u8>>>,
    asn: Option<Reader<Vec<u8>>>,
}

impl std::fmt::Debug for GeoIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = |r: &Option<Reader<Vec<u8>>>| r.as_ref().map(|r| r.metadata().database_type.clone());
        f.debug_struct("GeoIp").field("country", &kind(&self.country)).field("asn", &kind(&self.asn)).finish()
    }
}

#[derive(Deserialize)]
struct CountryRecord<'a> {
    #[serde(borrow, default)]
    country: Option<IsoCode<'a>>,
    /// Where the network is registered: GeoLite2 gives only this for some anycast and satellite
    /// ranges.
    #[serde(borrow, default)]
    registered_country: Option<IsoCode<'a>>,
}

#[derive(Deserialize)]
struct IsoCode<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
}

#[derive(Deserialize)]
struct AsnRecord {
    #[serde(default)]
    autonomous_system_number: Option<u32>,
}

impl GeoIp {
    /// Open the databases named (none named: a `GeoIp` that looks nothing up).
    pub fn open(country: Option<&Path>, asn: Option<&Path>) -> Result<GeoIp, GeoIpError> {
        let country = country.map(|path| open_checked(path, "geoip-country", "a country database", false)).transpose()?;
        let asn = asn.map(|path| open_checked(path, "geoip-asn", "an ASN database", true)).transpose()?;
        Ok(GeoIp { country, asn })
    }

    /// Is there any database?
    pub fn is_enabled(&self) -> bool {
        self.country.is_some() || self.asn.is_some()
    }

    /// The country and ASN of `address`; `None` without databases. An address a database does
    /// not cover (a private one, say) gives `None` fields.
    pub fn locate(&self, address: IpAddr) -> Option<ObservedLocation> {
        if !self.is_enabled() {
            return None;
        }
        // A v4 peer on a dual-stack socket arrives as ::ffff:a.b.c.d.
        let address = address.to_canonical();
        let cc = self.country.as_ref().and_then(|db| {
            let record: CountryRecord<'_> = db.lookup(address).ok()?.decode().ok()??;
            let code = record.country.and_then(|c| c.iso_code).or(record.registered_country.and_then(|c| c.iso_code))?;
            is_country_code(code).then(|| code.to_string())
        });
        let asn = self.asn.as_ref().and_then(|db| {
            let record: AsnRecord = db.lookup(address).ok()?.decode().ok()??;
            record.autonomous_system_number
        });
        Some(ObservedLocation { cc, asn })
    }
}

/// Open a database and check it is the kind the flag wants, by its own `database_type`
/// (GeoLite2-ASN, DBIP-ASN-Lite, … for ASN; anything else for countries).
fn open_checked(path: &Path, flag: &'static str, wanted: &'static str, want_asn: bool) -> Result<Reader<Vec<u8>>, GeoIpError> {
    let shown = path.display().to_string();
    let reader = Reader::open_readfile(path).map_err(|e| GeoIpError::Open { path: shown.clone(), message: e.to_string() })?;
    let database_type = reader.metadata().database_type.clone();
    if database_type.to_ascii_uppercase().contains("ASN") != want_asn {
        return Err(GeoIpError::WrongKind { path: shown, database_type, flag, wanted });
    }
    Ok(reader)
}
