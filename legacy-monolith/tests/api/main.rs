//! Integration tests of the legacy monolith: a real server on port 0 against
//! a fresh SQLite file and a fresh PostgreSQL database, driven over HTTP.
//!
//! Every case runs on both engines (`test_harness::on_each_engine!`); a
//! PostgreSQL case skips with a printed reason only when the server is absent
//! and `CI` is not set.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod catalog;
mod health_and_errors;
mod helpers;
mod idempotency;
mod orders;
mod saga_endpoints;
mod seed;
mod settings;
mod telemetry;
