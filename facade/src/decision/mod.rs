//! The decisions: where a request goes and under which rules, as pure
//! functions of the request head, the table and the settings.
//!
//! Nothing here does I/O, reads a clock or holds runtime state, and nothing
//! here imports another layer: the route decision is tested without
//! sockets and benchmarked alone (`benches/route_match.rs`).

pub(crate) mod canary;
pub mod path;
pub(crate) mod policy;
pub mod routing;
pub mod stage;
