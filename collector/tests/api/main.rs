//! End-to-end tests of the collector's HTTP API: a real collector on loopback, a real client.
//! One binary, one module per concern (as hickory-dns and rustls organise theirs).

mod support;

mod binary;
mod client_source;
mod connections;
mod events;
mod exports;
mod fairness;
mod fleet;
mod forget;
mod helper;
mod https;
mod identity;
mod ingest;
mod lifecycle;
mod limits;
mod location;
mod markup;
mod metrics;
mod mmdb;
mod operator;
mod properties;
mod query;
mod quickstart;
mod recovery;
mod research;
mod status_page;
mod status_timeline;
mod targets;
mod trust;
