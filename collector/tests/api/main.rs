//! End-to-end tests of the collector's HTTP API: a real collector on loopback, a real client.
//! One binary, one module per concern (as hickory-dns and rustls organise theirs).

mod support;

mod binary;
mod fleet;
mod helper;
mod identity;
mod ingest;
mod lifecycle;
mod metrics;
mod query;
mod status_page;
