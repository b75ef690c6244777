//! Tor link protocol, first step: the VERSIONS cell (tor-spec §4.1).
//!
//! A TLS handshake alone proves "something speaks TLS on this port"; a relay's VERSIONS answer
//! proves a Tor relay does. It is also the first bytes a censor can see a Tor flow exchange after
//! TLS, so a flow cut right after the handshake shows as a link-stage failure. Pure: build our
//! cell, parse theirs.

/// Command byte of a VERSIONS cell.
const VERSIONS: u8 = 7;
/// Link protocol versions we offer.
const OFFERED: [u16; 3] = [3, 4, 5];
/// A sane upper bound for a VERSIONS payload (a relay lists a handful of versions).
const MAX_PAYLOAD: usize = 512;

/// Why the relay's first bytes are not a VERSIONS cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// More bytes are needed (not an error while the stream is open).
    #[error("incomplete: {need} bytes needed")]
    Incomplete {
        /// Bytes needed.
        need: usize,
    },
    /// Not a VERSIONS cell.
    #[error("command {0}, not VERSIONS")]
    NotVersions(u8),
    /// An odd or oversized payload length.
    #[error("payload length {0}")]
    BadLength(usize),
    /// No link version in common with ours.
    #[error("no common link protocol version")]
    NoCommonVersion,
}

impl DecodeError {
    /// A fixed name for the measurement's `reply_error`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Incomplete { .. } => "incomplete",
            Self::NotVersions(_) => "not_versions",
            Self::BadLength(_) => "bad_length",
            Self::NoCommonVersion => "no_common_version",
        }
    }
}

/// Our VERSIONS cell: circuit id 0 (2 bytes), command 7, length, versions 3, 4, 5.
pub fn versions_cell() -> Vec<u8> {
    let mut cell = vec![0, 0, VERSIONS];
    let len = u16::try_from(OFFERED.len() * 2).unwrap_or(0);
    cell.extend_from_slice(&len.to_be_bytes());
    OFFERED.iter().for_each(|v| cell.extend_from_slice(&v.to_be_bytes()));
    cell
}

/// Parse the relay's VERSIONS cell from the start of the stream; returns the highest common version.
pub fn parse_versions(stream: &[u8]) -> Result<u16, DecodeError> {
    if stream.len() < 5 {
        return Err(DecodeError::Incomplete { need: 5 });
    }
    if stream[2] != VERSIONS {
        return Err(DecodeError::NotVersions(stream[2]));
    }
    let len = usize::from(u16::from_be_bytes([stream[3], stream[4]]));
    if len % 2 != 0 || len > MAX_PAYLOAD {
        return Err(DecodeError::BadLength(len));
    }
    let payload = stream.get(5..5 + len).ok_or(DecodeError::Incomplete { need: 5 + len })?;
    payload
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .filter(|v| OFFERED.contains(v))
        .max()
        .ok_or(DecodeError::NoCommonVersion)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_cell_offers_3_4_5() {
        assert_eq!(versions_cell(), [0, 0, 7, 0, 6, 0, 3, 0, 4, 0, 5]);
    }

    #[test]
    fn a_relay_answer_gives_the_highest_common_version() {
        // tor 0.4.x answers VERSIONS with 3, 4, 5 then CERTS, AUTH_CHALLENGE, NETINFO.
        let mut reply = vec![0, 0, 7, 0, 6, 0, 3, 0, 4, 0, 5];
        reply.extend_from_slice(&[0, 0, 0, 0, 129, 1, 0]);
        assert_eq!(parse_versions(&reply), Ok(5));
        assert_eq!(parse_versions(&[0, 0, 7, 0, 4, 0, 1, 0, 2]), Err(DecodeError::NoCommonVersion));
    }

    #[test]
    fn partial_and_foreign_streams() {
        assert_eq!(parse_versions(&[0, 0, 7]), Err(DecodeError::Incomplete { need: 5 }));
        assert_eq!(parse_versions(&[0, 0, 7, 0, 6, 0, 3]), Err(DecodeError::Incomplete { need: 11 }));
        assert_eq!(parse_versions(b"HTTP/1.1 400"), Err(DecodeError::NotVersions(b'T')));
        assert_eq!(parse_versions(&[0, 0, 7, 0, 3, 0, 3, 0]), Err(DecodeError::BadLength(3)));
        assert_eq!(parse_versions(&[0, 0, 7, 0xff, 0xfe]), Err(DecodeError::BadLength(0xfffe)));
    }
}
