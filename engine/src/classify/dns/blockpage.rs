//! Known block-page addresses: public addresses that censors answer in place of the real one.
//!
//! ISP resolvers answer a blocked name with the address of their block-page server, and the GFW
//! answers with addresses of unrelated networks. Such an address is only recognisable because
//! someone published it, so the list is data, shipped in `engine/data/blockpages.toml` and
//! embedded at build time; every entry names the published rows it comes from. A lab adds its
//! own documentation-range entries with `--danger-blockpage` (see [`Blockpage::from_flag`]):
//! the shipped list holds only real, cited addresses.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::LazyLock;

use serde::Deserialize;

use crate::classify::bogon::{BogonPolicyError, in_prefix, parse_cidr};

/// The shipped list, as written.
const SHIPPED: &str = include_str!("../../../data/blockpages.toml");

/// One known block-page address or range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blockpage {
    /// The network (`range` in the file).
    net: IpAddr,
    /// Its prefix length.
    prefix: u8,
    /// The fingerprint's name in its source (`ooni.tr_6`).
    pub id: String,
    /// Where it was seen (ISO 3166-1 alpha-2), if the source says.
    pub country: Option<String>,
    /// What it is, in a few words.
    pub what: String,
    /// The published rows it comes from (`repository:file#row`).
    pub source: Vec<String>,
}

impl Blockpage {
    /// A lab's entry from `--danger-blockpage CIDR`.
    pub fn from_flag(cidr: &str) -> Result<Self, BogonPolicyError> {
        let (net, prefix) = parse_cidr(cidr)?;
        Ok(Blockpage {
            net,
            prefix,
            id: format!("flag:{}", cidr.trim()),
            country: None,
            what: "an address given on the command line".into(),
            source: vec!["--danger-blockpage".into()],
        })
    }

    /// Does this entry cover `ip`?
    pub fn covers(&self, ip: IpAddr) -> bool {
        in_prefix(self.net, self.prefix, ip)
    }

    /// `ooni.tr_6 (TR: national poisoned DNS answer, …; from ooni/blocking-fingerprints:…)`.
    pub fn describe(&self) -> String {
        let country = self.country.as_deref().map(|c| format!("{c}: ")).unwrap_or_default();
        format!("{} ({country}{}; from {})", self.id, self.what, self.source.join(", "))
    }
}

/// Why the list file was refused.
#[derive(Debug, thiserror::Error)]
pub enum BlockpageListError {
    /// Not TOML of the expected shape.
    #[error("block-page list: {0}")]
    Format(#[from] toml::de::Error),
    /// An entry is unusable.
    #[error("block-page list entry `{id}`: {reason}")]
    Entry {
        /// The entry's id.
        id: String,
        /// What is wrong.
        reason: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    sources: BTreeMap<String, String>,
    blockpage: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    range: String,
    id: String,
    #[serde(default)]
    country: Option<String>,
    what: String,
    source: Vec<String>,
    /// For readers of the file: the source row's own references.
    #[serde(default, rename = "references")]
    _references: Vec<String>,
    /// For readers of the file: a measurement that shows the entry.
    #[serde(default, rename = "example")]
    _example: Option<String>,
}

/// Parse a list. Every entry needs a range, and at least one source from a file listed in
/// `[sources]` (pinned to a commit there).
pub fn parse(text: &str) -> Result<Vec<Blockpage>, BlockpageListError> {
    let file: File = toml::from_str(text)?;
    file.blockpage
        .into_iter()
        .map(|e| {
            let bad = |reason: String| BlockpageListError::Entry { id: e.id.clone(), reason };
            let (net, prefix) = parse_cidr(&e.range).map_err(|err| bad(err.to_string()))?;
            if e.source.is_empty() {
                return Err(bad("no source".into()));
            }
            for s in &e.source {
                let (file_part, row) = s.split_once('#').ok_or_else(|| bad(format!("source `{s}` names no row (file#row)")))?;
                if row.is_empty() || !file.sources.contains_key(file_part) {
                    return Err(bad(format!("source `{s}` is not a row of a file in [sources]")));
                }
            }
            Ok(Blockpage { net, prefix, id: e.id, country: e.country, what: e.what, source: e.source })
        })
        .collect()
}

/// The shipped list. It is checked by a test, so a parse failure here means a broken build;
/// it is logged and the list is then empty rather than taking the probe down.
pub fn shipped() -> &'static [Blockpage] {
    static LIST: LazyLock<Vec<Blockpage>> = LazyLock::new(|| {
        parse(SHIPPED).unwrap_or_else(|e| {
            tracing::error!("the shipped block-page list is unusable: {e}");
            Vec::new()
        })
    });
    &LIST
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::classify::bogon::is_bogon;

    #[test]
    fn the_shipped_list_parses_and_every_entry_is_sourced_public_and_unique() {
        let list = parse(SHIPPED).expect("the shipped list parses");
        assert!(list.len() >= 20, "only {} entries", list.len());
        let mut ids = BTreeSet::new();
        let mut ranges = BTreeSet::new();
        for e in &list {
            assert!(!e.source.is_empty(), "{} has no source", e.id);
            assert!(!e.what.trim().is_empty(), "{} says nothing about itself", e.id);
            assert!(!is_bogon(e.net), "{} is a bogon: dns.bogon already catches it", e.id);
            assert!(e.country.as_deref().is_none_or(|c| c.len() == 2), "{}: country", e.id);
            assert!(ids.insert(e.id.clone()), "duplicate id {}", e.id);
            assert!(ranges.insert((e.net, e.prefix)), "duplicate range in {}", e.id);
        }
        assert_eq!(shipped().len(), list.len());
    }

    #[test]
    fn a_listed_address_is_covered_and_its_neighbour_is_not() {
        let turkey = shipped().iter().find(|e| e.id == "ooni.tr_6").expect("ooni.tr_6 is shipped");
        assert!(turkey.covers("195.175.254.2".parse().expect("ip")));
        assert!(!turkey.covers("195.175.254.3".parse().expect("ip")));
        assert!(turkey.describe().contains("ooni/blocking-fingerprints:fingerprints_dns.csv#ooni.tr_6"));
    }

    #[test]
    fn entries_without_a_pinned_source_are_refused() {
        let head = "[sources]\n\"a/b:f.csv\" = \"https://example.org/f.csv\"\n[[blockpage]]\nrange = \"8.8.8.8/32\"\nid = \"x\"\nwhat = \"y\"\n";
        assert!(parse(&format!("{head}source = [\"a/b:f.csv#x\"]\n")).is_ok());
        for bad in ["source = []", "source = [\"a/b:f.csv\"]", "source = [\"c/d:g.csv#x\"]", "source = [\"a/b:f.csv#\"]"] {
            assert!(parse(&format!("{head}{bad}\n")).is_err(), "{bad}");
        }
        assert!(parse(&head.replace("8.8.8.8/32", "8.8.8.8")).is_err(), "a range needs its prefix");
    }

    #[test]
    fn a_flag_entry_says_where_it_came_from() {
        let e = Blockpage::from_flag("203.0.113.80/32").expect("cidr");
        assert!(e.covers("203.0.113.80".parse().expect("ip")));
        assert!(e.describe().contains("--danger-blockpage"));
        assert!(Blockpage::from_flag("203.0.113.80").is_err());
    }
}
