//! Integration tests of the facade: a real facade on port 0 in front of tiny
//! real upstreams (axum echo servers, a hyper server for upgrades, and
//! hyper servers that fail on purpose for the safe-cutover cases),
//! against a fresh route store, driven over HTTP and raw TCP.
//!
//! Every case that depends on the route store runs on SQLite and PostgreSQL
//! (`test_harness::on_each_engine!`); a PostgreSQL case skips with a printed
//! reason only when the server is absent and `CI` is not set. Cases whose
//! subject is not the store use a fresh SQLite file.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod admin_api;
mod auto_rollback;
mod canary;
mod client_certificates;
mod client_connection;
mod client_revocation;
mod config;
mod conformance;
mod fallback;
mod flips;
mod gates;
mod headers;
mod helpers;
mod http2_connections;
mod idempotency_keys;
mod limits;
mod operations_metrics;
mod panel;
mod paths;
mod pool;
mod proxy_protocol;
mod replicas;
mod resilience;
mod routing;
mod shadow;
mod shared_session_tickets;
mod shared_store;
mod shutdown;
mod streaming;
mod strict_transport_security;
mod telemetry;
mod tls;
mod tls_sessions;
mod tls_versions;
mod upstream_framing;
mod upstream_tls;
