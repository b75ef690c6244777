//! obfs4 runner: the bridge handshake, a data phase past the volume cuts, and the low-entropy control.

pub mod bridge;
pub mod codec;
