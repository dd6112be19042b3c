//! Control: what changes the flow's state and what reports on it, off the
//! request path. The route store and its watcher, the automatic rollback's
//! store write, the gates, the health checks and the admin API.
//!
//! This is the highest layer below the crate root: it may import every
//! layer, and none imports it. The flow reaches it only through what it is
//! handed at start-up (the rollback channel, the shared table).

pub mod admin;
pub(crate) mod auto_rollback;
pub(crate) mod certificate_reload;
pub(crate) mod gate;
pub(crate) mod health_check;
pub(crate) mod idle_sweep;
pub mod route_store;
pub(crate) mod route_watch;
