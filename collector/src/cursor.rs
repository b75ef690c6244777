//! The paging cursor of `GET /api/v1/measurements`: an opaque token naming where the last page
//! ended and which filter it belongs to.
//!
//! Layout, before base64url (no padding): a version byte (1), the last row's `started_at` (i64,
//! big-endian), its id (16 bytes), and the first 8 bytes of the SHA-256 of the filter's
//! canonical text ([`fingerprint`]). A cursor used with other filters (or edited) is refused
//! rather than silently walking another selection. `limit` is not part of the binding: a
//! walker may change its page size between pages.
//!
//! Keyset, not offset: the next page is "rows after this `(started_at, id)`", so a walk costs
//! the same per page however deep it is, and rows inserted meanwhile never shift a page.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::store::{Filter, Position};

const VERSION: u8 = 1;
const LEN: usize = 1 + 8 + 16 + 8;

/// A decoded cursor: where the previous page ended, and the filter it was made for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    /// The previous page's last row.
    pub after: Position,
    fingerprint: [u8; 8],
}

impl Cursor {
    /// The cursor after `last` for `filter` (its own `after`/`through` are ignored).
    pub fn new(last: Position, filter: &Filter) -> Cursor {
        Cursor { after: last, fingerprint: fingerprint(filter) }
    }

    /// The token as it goes in a URL.
    pub fn encode(&self) -> String {
        let mut bytes = Vec::with_capacity(LEN);
        bytes.push(VERSION);
        bytes.extend_from_slice(&self.after.started_at.to_be_bytes());
        bytes.extend_from_slice(self.after.id.as_bytes());
        bytes.extend_from_slice(&self.fingerprint);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The cursor in `token`, if it is one and was made for `filter`.
    pub fn decode(token: &str, filter: &Filter) -> Result<Cursor, &'static str> {
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| "a cursor from this API's Link header (it is not base64url)")?;
        if bytes.len() != LEN || bytes[0] != VERSION {
            return Err("a cursor from this API's Link header (unknown version or length)");
        }
        let mut at = [0u8; 8];
        at.copy_from_slice(&bytes[1..9]);
        let mut id = [0u8; 16];
        id.copy_from_slice(&bytes[9..25]);
        let mut print = [0u8; 8];
        print.copy_from_slice(&bytes[25..]);
        if print != fingerprint(filter) {
            return Err("the cursor of a request with the same filters (it was made for other filters)");
        }
        Ok(Cursor { after: Position { started_at: i64::from_be_bytes(at), id: uuid::Uuid::from_bytes(id) }, fingerprint: print })
    }
}

/// What binds a cursor to its filter: a hash of every selecting field in a fixed order and a
/// stable text form (times as Unix seconds, closed sets as their ids).
fn fingerprint(filter: &Filter) -> [u8; 8] {
    let Filter {
        since,
        until,
        country,
        asn,
        test,
        target,
        verdict,
        mechanism,
        observed_country,
        observed_asn,
        collector_key,
        after: _,
        through: _,
    } = filter;
    let text = format!(
        "since={:?}&until={:?}&country={country:?}&asn={asn:?}&test={:?}&target={target:?}&verdict={:?}&mechanism={:?}\
         &observed_country={observed_country:?}&observed_asn={observed_asn:?}&collector_key={:?}",
        since.map(|t| t.timestamp()),
        until.map(|t| t.timestamp()),
        test.map(|t| t.as_str()),
        verdict.map(|v| v.as_str()),
        mechanism.map(|m| m.as_str()),
        collector_key.map(|k| k.as_str()),
    );
    let digest = Sha256::digest(text.as_bytes());
    let mut out = [0u8; 8];
    out.copy_from_slice(&digest[..8]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_and_is_bound_to_its_filter() {
        let filter = Filter { country: Some("DE".into()), ..Filter::default() };
        let last = Position { started_at: 1_750_000_000, id: uuid::Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001) };
        let token = Cursor::new(last, &filter).encode();
        assert_eq!(Cursor::decode(&token, &filter).map(|c| c.after), Ok(last));
        let other = Filter { country: Some("FR".into()), ..Filter::default() };
        assert!(Cursor::decode(&token, &other).is_err(), "another filter");
        assert!(Cursor::decode("not a cursor!", &filter).is_err());
        assert!(Cursor::decode(&token[..token.len() - 2], &filter).is_err(), "truncated");
        // Paging fields are not part of the binding.
        let paged = Filter { after: Some(last), ..filter.clone() };
        assert!(Cursor::decode(&token, &paged).is_ok());
    }
}
