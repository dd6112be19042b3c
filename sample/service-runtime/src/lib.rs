//! What every HTTP process of the sample shop shares: the monolith and the
//! extracted services.
//!
//! They are separate deployables, but they agree on how an error looks on
//! the wire, how a request is correlated in the logs and how a server drains
//! on shutdown. Keeping that here means a user reading one app's code has
//! read them all. Databases are opened with the toolkit's `toolkit-db`
//! (re-exported here), the one toolkit crate the sample uses: it holds no
//! toolkit logic, only URLs, engines, pools and migrations.

pub mod api_error;
pub mod app;
pub mod extract;
pub mod health;
pub mod idempotency;
pub mod pagination;
pub mod request_id;
pub mod server;
pub mod telemetry;
pub mod timestamp;

pub use api_error::ApiError;
pub use toolkit_db::{Database, DatabaseError, DatabaseUrl, Engine, Migrations};
