//! Any bytes as an ingest body, the way the collector reads one: as a plain NDJSON body, as a
//! gzip body, and (structure-aware) as the DEFLATE data of a gzip member with a valid header and
//! trailer, so inflate runs past the header checks that reject almost every random input. Never
//! panics; never returns more than the cap; agrees with a reference inflate on what the body
//! holds; the line framing keeps every non-blank line, in order, with its physical number.
#![no_main]

use std::io::Write;

use chrono::{DateTime, Utc};
use flate2::write::GzEncoder;
use flate2::{Compression, Crc, Decompress, FlushDecompress, Status};
use libfuzzer_sys::fuzz_target;
use vantage_collector::payload::{Encoding, MAX_DECOMPRESSED_BYTES, MAX_LINES, PayloadError, decode, inflate_capped, lines};
use vantage_measurement::parse_line;

/// A cap small enough that the fuzzer's inputs can cross it (the real one is 64 MiB).
const SMALL_CAP: usize = 256 * 1024;
/// Lines of one body given to `parse_line` (the `measurement_line` target does the rest).
const PARSED_LINES: usize = 16;

fuzz_target!(|data: &[u8]| {
    identity(data);
    gzip_as_sent(data);
    deflate_in_a_valid_member(data);
    compressed_by_us(data);
});

/// A plain body is accepted exactly when it is UTF-8, and then as sent.
fn identity(data: &[u8]) {
    match (decode(data.to_vec(), Encoding::Identity), std::str::from_utf8(data)) {
        (Ok(text), Ok(expected)) => {
            assert_eq!(text, expected);
            framing(&text);
        }
        (Err(PayloadError::NotUtf8 { offset }), Err(e)) => assert_eq!(offset, e.valid_up_to()),
        (got, reference) => panic!("identity decode {got:?} disagrees with from_utf8 {reference:?}"),
    }
}

/// The bytes as a gzip body: whatever comes out is within the cap, and the full-cap decode agrees.
fn gzip_as_sent(data: &[u8]) {
    checked_inflate(data, None);
}

/// The bytes as raw DEFLATE inside a gzip member whose header and trailer (CRC-32, size) are right
/// for what a reference inflate makes of them.
fn deflate_in_a_valid_member(data: &[u8]) {
    let Some((used, plain)) = reference_inflate(data, SMALL_CAP + 1) else {
        // Damaged or unfinished DEFLATE: the member is damaged too.
        let mut member = gzip_header();
        member.extend_from_slice(data);
        member.extend_from_slice(&[0; 8]);
        assert!(inflate_capped(&member, SMALL_CAP).is_err(), "a damaged member inflated");
        return;
    };
    let mut crc = Crc::new();
    crc.update(&plain);
    let mut member = gzip_header();
    member.extend_from_slice(&data[..used]);
    member.extend_from_slice(&crc.sum().to_le_bytes());
    member.extend_from_slice(&(plain.len() as u32).to_le_bytes());
    checked_inflate(&member, Some(&plain));
}

/// The bytes compressed by us, split into two members at a point the input picks: always back.
fn compressed_by_us(data: &[u8]) {
    let split = data.first().map_or(0, |b| usize::from(*b) % (data.len() + 1));
    let mut body = gzip(&data[..split]);
    body.extend(gzip(&data[split..]));
    checked_inflate(&body, Some(data));
}

/// Inflate `body` with the small cap (and, when that fits, the real one through [`decode`]);
/// with `expected`, the result must be exactly it (or the cap's refusal when it is larger).
fn checked_inflate(body: &[u8], expected: Option<&[u8]>) {
    let small = inflate_capped(body, SMALL_CAP);
    match (&small, expected) {
        (Ok(out), _) => assert!(out.len() <= SMALL_CAP, "{} bytes past a {SMALL_CAP}-byte cap", out.len()),
        (Err(PayloadError::InflatesTooLarge { limit }), _) => assert_eq!(*limit, SMALL_CAP),
        (Err(PayloadError::BadGzip(_)), None) => {}
        (Err(e), _) => panic!("unexpected refusal {e:?} (expected {:?} bytes)", expected.map(<[u8]>::len)),
    }
    if let Some(expected) = expected {
        match &small {
            Ok(out) => assert_eq!(out.as_slice(), expected, "inflate disagrees with the reference"),
            Err(_) => assert!(expected.len() > SMALL_CAP, "refused {} bytes, within the cap", expected.len()),
        }
    }
    // Within the small cap, the real decode path must say the same, plus the UTF-8 check.
    let Ok(out) = small else { return };
    match (decode(body.to_vec(), Encoding::Gzip), String::from_utf8(out)) {
        (Ok(text), Ok(reference)) => {
            assert!(text.len() <= MAX_DECOMPRESSED_BYTES);
            assert_eq!(text, reference);
            framing(&text);
        }
        (Err(PayloadError::NotUtf8 { offset }), Err(e)) => assert_eq!(offset, e.utf8_error().valid_up_to()),
        (got, reference) => panic!("decode {got:?} disagrees with inflate + from_utf8 {:?}", reference.map(|s| s.len())),
    }
}

/// `lines` keeps each non-blank physical line (less a trailing `\r`) with its 1-based number,
/// in order, up to the limit; each then goes through validation without panicking.
fn framing(text: &str) {
    let physical: Vec<&str> = text.split('\n').collect();
    let non_blank = physical.iter().filter(|l| !l.strip_suffix('\r').unwrap_or(l).trim().is_empty()).count();
    let framed = match lines(text) {
        Ok(framed) => framed,
        Err(PayloadError::TooManyLines) => return assert!(non_blank > MAX_LINES, "{non_blank} lines refused"),
        Err(e) => panic!("framing refused {e:?}"),
    };
    assert_eq!(framed.len(), non_blank);
    let mut previous = 0;
    for &(number, line) in &framed {
        assert!(number > previous, "line numbers go forward");
        previous = number;
        let raw = physical[number - 1];
        assert_eq!(line, raw.strip_suffix('\r').unwrap_or(raw));
        assert!(!line.contains('\n') && !line.trim().is_empty());
    }
    for &(_, line) in framed.iter().take(PARSED_LINES) {
        let _ = parse_line(line, now());
    }
}

/// A fixed "now", so a run is reproducible.
fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_750_000_000, 0).unwrap_or_default()
}

/// A minimal gzip member header: magic, DEFLATE, no flags, no time, no extra flags, Unix.
fn gzip_header() -> Vec<u8> {
    vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]
}

/// Raw DEFLATE of `data` as an independent decoder reads it: the bytes the stream used and what
/// they inflate to, or `None` when the stream is damaged, unfinished or inflates past `limit`.
fn reference_inflate(data: &[u8], limit: usize) -> Option<(usize, Vec<u8>)> {
    let mut inflater = Decompress::new(false);
    let mut out = Vec::with_capacity(4096);
    loop {
        if out.len() == out.capacity() {
            if out.len() >= limit {
                return None;
            }
            out.reserve(out.len().max(4096));
        }
        let before = (inflater.total_in(), out.len());
        let consumed = inflater.total_in() as usize;
        match inflater.decompress_vec(&data[consumed..], &mut out, FlushDecompress::Finish) {
            Ok(Status::StreamEnd) => return (out.len() <= limit).then(|| (inflater.total_in() as usize, out)),
            Ok(_) if (inflater.total_in(), out.len()) == before && out.len() < out.capacity() => return None,
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(data).expect("compressing into memory");
    encoder.finish().expect("compressing into memory")
}
