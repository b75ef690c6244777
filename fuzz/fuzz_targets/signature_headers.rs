//! Any `X-Vantage-Key` / `X-Vantage-Signature` header values and body through the collector's
//! header handling and `verify_batch`: never panics, refuses half-signed batches, and accepts only
//! a genuine signature: the exact public key of a key this target holds and that key's signature
//! over the exact body. The fuzzer holds no secret key, so anything else it gets accepted (a
//! small-order key, a malleated signature, another body) would be a forgery.
//!
//! Input: `flags`, then the key header bytes up to `\n`, the signature header bytes up to `\n`,
//! and the body. `flags` bit 0 sends the key header, bit 1 the signature header; bits 2-3 pick how
//! the headers are made:
//! - 0: as given (any bytes the `http` crate takes as a header value);
//! - 1: a real key and its real signature over the body, each then edited by its field (the first
//!   byte picks a position, the rest replace the text from there; empty: unedited);
//! - 2: a real key with the signature as given;
//! - 3: a real key and its signature over another body (the body plus the signature field).
#![no_main]

use axum::http::{HeaderMap, HeaderValue};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use libfuzzer_sys::fuzz_target;
use vantage_collector::ingest::SignatureHeaders;
use vantage_measurement::wire::{KEY_HEADER, ProbeKey, SIGNATURE_HEADER, SignatureError, verify_batch};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else { return };
    let mut fields = rest.splitn(3, |b| *b == b'\n');
    let (key_field, signature_field) = (fields.next().unwrap_or_default(), fields.next().unwrap_or_default());
    let body = fields.next().unwrap_or_default();
    let keys = [ProbeKey::from_seed(&[7; 32]), ProbeKey::from_seed(&[8; 32])];
    let key = &keys[usize::from(flags >> 4) % keys.len()];

    let (key_text, signature_text) = match (flags >> 2) & 3 {
        0 => (key_field.to_vec(), signature_field.to_vec()),
        1 => (edit(&key.public_key_base64(), key_field), edit(&key.sign_base64(body), signature_field)),
        2 => (key.public_key_base64().into_bytes(), signature_field.to_vec()),
        _ => {
            let other: Vec<u8> = body.iter().chain(signature_field).copied().collect();
            let signature = key.sign_base64(&other);
            if other == body {
                return; // no other body to sign
            }
            (key.public_key_base64().into_bytes(), signature.into_bytes())
        }
    };

    let mut headers = HeaderMap::new();
    let mut sent = (false, false);
    if flags & 1 != 0
        && let Ok(value) = HeaderValue::from_bytes(&key_text)
    {
        headers.insert(KEY_HEADER, value);
        sent.0 = true;
    }
    if flags & 2 != 0
        && let Ok(value) = HeaderValue::from_bytes(&signature_text)
    {
        headers.insert(SIGNATURE_HEADER, value);
        sent.1 = true;
    }

    let verdict = SignatureHeaders::from_headers(&headers).verify(body);
    match sent {
        (false, false) => assert_eq!(verdict, Ok(None), "no headers is an anonymous batch"),
        (true, false) => assert_eq!(verdict, Err(SignatureError::MissingHeader("X-Vantage-Signature"))),
        (false, true) => assert_eq!(verdict, Err(SignatureError::MissingHeader("X-Vantage-Key"))),
        (true, true) => {
            // Header values beyond ASCII are not text to the collector; anything else reaches
            // verify_batch unchanged.
            if !key_text.is_ascii() {
                assert_eq!(verdict, Err(SignatureError::NotBase64("X-Vantage-Key")));
            } else if !signature_text.is_ascii() {
                assert_eq!(verdict, Err(SignatureError::NotBase64("X-Vantage-Signature")));
            } else {
                let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
                let direct = verify_batch(&text(&key_text), &text(&signature_text), body);
                let via_headers = verdict.clone().map(|signer| signer.expect("both headers sent: signed or refused"));
                assert_eq!(via_headers, direct, "the header path and verify_batch disagree");
            }
            if let Ok(signer) = &verdict {
                let signer = signer.as_ref().expect("a signed batch names its signer");
                let genuine = keys.iter().find(|k| &k.key_id() == signer).expect("signed by a key we hold");
                let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).trim().to_string();
                assert_eq!(BASE64.decode(text(&key_text)).ok(), BASE64.decode(genuine.public_key_base64()).ok());
                assert_eq!(BASE64.decode(text(&signature_text)).ok(), BASE64.decode(genuine.sign_base64(body)).ok());
            }
            if (flags >> 2) & 3 == 1 && key_field.is_empty() && signature_field.is_empty() {
                assert_eq!(verdict, Ok(Some(key.key_id())), "a genuine signature is accepted");
            }
            if (flags >> 2) & 3 == 3 {
                assert_eq!(verdict, Err(SignatureError::Mismatch), "a signature over another body");
            }
        }
    }
});

/// `text` with the bytes from position `field[0]` on replaced by `field[1..]` (unchanged when
/// `field` is empty).
fn edit(text: &str, field: &[u8]) -> Vec<u8> {
    let mut out = text.as_bytes().to_vec();
    if let Some((&at, replacement)) = field.split_first() {
        let at = usize::from(at) % (out.len() + 1);
        out.truncate(at);
        out.extend_from_slice(replacement);
    }
    out
}
