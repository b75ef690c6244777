//! Controls: how the probe learns whether a target is up for everyone.
//!
//! The test helper (served by the collector at `POST /api/v1/control`) repeats one step from its
//! own network with the very same runners the probe uses, and returns the observations. DNS can
//! also be controlled over DoH. [`protocol`] holds the wire types and the helper's side;
//! [`client`] the probe's side of the helper; [`doh`] the DoH control resolver.

pub mod client;
pub mod doh;
pub mod protocol;

pub use client::{CappedReadError, HelperClient, error_chain, read_capped};
pub use doh::DohClient;
pub use protocol::{ControlRequest, ControlResponse, HelperTrust, execute};
