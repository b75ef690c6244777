//! Test kit for Vantage's end-to-end tests: real servers on loopback, and the real binaries.
//!
//! - [`pki`]: a throwaway CA that issues a certificate for whatever SNI a client sends;
//! - [`servers`]: TLS and QUIC servers that accept any SNI, a DNS responder that can also play an
//!   on-path injector, and an SNI-filtering proxy that resets connections like a censor;
//! - [`postgres`]: a throwaway PostgreSQL server (initdb + pg_ctl in a temp dir) for the store tests;
//! - [`procs`]: start `vantage-collector` and run `vantage-probe` as a user would;
//! - [`load`]: the ingest benchmark's measurements and signed batches (`tests/bench/ingest.sh`);
//! - [`netns`]: network namespaces, veth links and the programs run inside them, for the tests
//!   that need a real network (the censorship [`lab`], the censor tools', the VPN servers').
//!
//! Everything listens on 127.0.0.1 port 0 or inside namespaces the tests create; nothing here
//! contacts another host.

pub mod censor;
pub mod edns_server;
pub mod lab;
pub mod load;
pub mod netns;
pub mod pki;
pub mod postgres;
pub mod procs;
pub mod servers;
