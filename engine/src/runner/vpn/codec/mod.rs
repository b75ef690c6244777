//! Pure codecs of the VPN tests: build the first packets, parse and authenticate the replies.
//!
//! No sockets, no clock, no randomness: keys, ids, nonces and times are arguments, so every
//! function is tested with byte vectors (several captured from the real servers) and fuzzed
//! (`fuzz/`). Replies come from hostile networks: every parser returns a small numeric error
//! instead of panicking, and none of them keeps bytes from the packet in its error.

pub mod icmp;
pub mod ikev2;
pub mod openvpn;
pub mod tor;
pub mod wireguard;
