//! End-to-end tests of the catalog service against the real monolith (and,
//! for failure cases, stub or silent upstreams), on SQLite and PostgreSQL.
//! One test binary, so the suite links once.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod helpers;
mod reads;
mod settings;
mod telemetry;
mod updates;
mod upstream;
