//! End-to-end tests of the orders service against the real monolith (and,
//! for failure cases, stub, silent or closed upstreams), on SQLite and
//! PostgreSQL. One test binary, so the suite links once.

mod cancel;
mod compensation;
mod config;
mod dual_write;
mod helpers;
mod idempotency;
mod placing;
mod recovery;
mod settings;
mod upstream;
