//! A tiny MaxMind DB writer, so the GeoIP tests use a real database file of the documented
//! format (https://maxmind.github.io/MaxMind-DB/) without shipping GeoLite2: an IPv4 search tree
//! with 24-bit records, a data section, and the metadata map after its marker.

use std::net::Ipv4Addr;

/// A value of the MaxMind DB data section.
pub enum Value {
    Map(Vec<(&'static str, Value)>),
    Str(String),
    U16(u16),
    U32(u32),
    U64(u64),
    Array(Vec<Value>),
}

#[derive(Clone, Copy)]
enum Record {
    Empty,
    Node(usize),
    Data(usize),
}

/// An IPv4 database being built.
pub struct Writer {
    database_type: &'static str,
    nodes: Vec<[Record; 2]>,
    data: Vec<u8>,
}

const METADATA_MARKER: &[u8] = b"\xAB\xCD\xEFMaxMind.com";

impl Writer {
    pub fn new(database_type: &'static str) -> Writer {
        Writer { database_type, nodes: vec![[Record::Empty; 2]], data: Vec::new() }
    }

    /// Map `network/prefix` to `value` (networks must not overlap: enough for tests).
    pub fn insert(&mut self, network: Ipv4Addr, prefix: u32, value: &Value) {
        assert!((1..=32).contains(&prefix));
        let offset = self.data.len();
        encode(value, &mut self.data);
        let bits = u32::from(network);
        let mut node = 0;
        for depth in 0..prefix {
            let bit = ((bits >> (31 - depth)) & 1) as usize;
            if depth == prefix - 1 {
                self.nodes[node][bit] = Record::Data(offset);
            } else {
                node = match self.nodes[node][bit] {
                    Record::Node(next) => next,
                    _ => {
                        self.nodes.push([Record::Empty; 2]);
                        let next = self.nodes.len() - 1;
                        self.nodes[node][bit] = Record::Node(next);
                        next
                    }
                };
            }
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let count = self.nodes.len();
        let value = |record: Record| match record {
            Record::Empty => count,
            Record::Node(n) => n,
            // Past the node count and the 16-byte separator.
            Record::Data(offset) => count + 16 + offset,
        };
        let mut out = Vec::new();
        for node in &self.nodes {
            for record in node {
                let v = u32::try_from(value(*record)).expect("fits");
                assert!(v < 1 << 24, "24-bit records");
                out.extend_from_slice(&v.to_be_bytes()[1..]);
            }
        }
        out.extend_from_slice(&[0; 16]);
        out.extend_from_slice(&self.data);
        out.extend_from_slice(METADATA_MARKER);
        let metadata = Value::Map(vec![
            ("binary_format_major_version", Value::U16(2)),
            ("binary_format_minor_version", Value::U16(0)),
            ("build_epoch", Value::U64(1_700_000_000)),
            ("database_type", Value::Str(self.database_type.into())),
            ("description", Value::Map(vec![("en", Value::Str("Vantage test database".into()))])),
            ("ip_version", Value::U16(4)),
            ("languages", Value::Array(vec![Value::Str("en".into())])),
            ("node_count", Value::U32(u32::try_from(count).expect("fits"))),
            ("record_size", Value::U16(24)),
        ]);
        encode(&metadata, &mut out);
        out
    }
}

/// A GeoLite2-Country style record.
pub fn country(iso_code: &str) -> Value {
    Value::Map(vec![("country", Value::Map(vec![("iso_code", Value::Str(iso_code.into()))]))])
}

/// A GeoLite2-ASN style record.
pub fn asn(number: u32, organisation: &str) -> Value {
    Value::Map(vec![
        ("autonomous_system_number", Value::U32(number)),
        ("autonomous_system_organization", Value::Str(organisation.into())),
    ])
}

fn encode(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Str(s) => {
            control(out, 2, s.len());
            out.extend_from_slice(s.as_bytes());
        }
        Value::U16(n) => unsigned(out, 5, u64::from(*n)),
        Value::U32(n) => unsigned(out, 6, u64::from(*n)),
        Value::U64(n) => unsigned(out, 9, *n),
        Value::Map(pairs) => {
            control(out, 7, pairs.len());
            for (key, value) in pairs {
                encode(&Value::Str((*key).into()), out);
                encode(value, out);
            }
        }
        Value::Array(items) => {
            control(out, 11, items.len());
            for item in items {
                encode(item, out);
            }
        }
    }
}

/// An unsigned integer in as few big-endian bytes as it needs.
fn unsigned(out: &mut Vec<u8>, kind: u8, n: u64) {
    let bytes = n.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    control(out, kind, 8 - skip);
    out.extend_from_slice(&bytes[skip..]);
}

/// The control byte (type in the top 3 bits, extended types after it), then the size.
fn control(out: &mut Vec<u8>, kind: u8, size: usize) {
    let (size_bits, extra): (u8, Vec<u8>) = match size {
        0..=28 => (size as u8, vec![]),
        29..=284 => (29, vec![(size - 29) as u8]),
        285..=65_820 => (30, ((size - 285) as u16).to_be_bytes().to_vec()),
        _ => (31, ((size - 65_821) as u32).to_be_bytes()[1..].to_vec()),
    };
    if kind <= 7 {
        out.push((kind << 5) | size_bits);
    } else {
        out.push(size_bits);
        out.push(kind - 7);
    }
    out.extend_from_slice(&extra);
}
