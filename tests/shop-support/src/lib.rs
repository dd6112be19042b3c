//! Test support for the sample shop's apps: what the integration tests of
//! the monolith and the extracted services share beyond the neutral
//! `test-harness`, which knows no app.
//!
//! - [`RunningApp`]: a [`service_runtime::app::BoundApp`] serving in the
//!   background, ready once its `/health` answers, stoppable on demand.
//! - [`SpawnedApp`]: an app on a fresh database of its own (SQLite or
//!   PostgreSQL), serving on a free port.
//! - [`Monolith`]: the real monolith, seeded small, as the services' upstream;
//!   [`spawn_empty_monolith`] for the monolith's own tests.
//! - [`http`]: one request, its status and JSON body, and how long it took.
//! - [`upstreams`]: upstreams that fail on purpose (a closed port, a silent
//!   server) and a stub that records every request and answers as told.
//! - [`AppProcess`]: an app's binary as a child process, to kill with
//!   SIGKILL where a test needs a real crash.
//!
//! Servers bind `127.0.0.1:0` and are awaited through `/health`, never slept
//! for. Panicking is how this crate reports a broken test environment: it is
//! only ever a dev-dependency.

pub mod http;
mod monolith;
mod process;
mod running_app;
mod spawned_app;
pub mod upstreams;

use std::net::SocketAddr;
use std::time::Duration;

pub use monolith::{spawn_empty_monolith, Monolith};
pub use process::AppProcess;
pub use running_app::RunningApp;
pub use spawned_app::SpawnedApp;

/// How long an app under test may drain when it is stopped.
pub const GRACE_PERIOD: Duration = Duration::from_secs(1);

/// `127.0.0.1:0`: the system picks a free port when it is bound.
pub fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}
