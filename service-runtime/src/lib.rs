//! The pieces every HTTP process of the toolkit and of its sample apps shares.
//!
//! The sample monolith, the extracted services and (later) the facade are
//! separate deployables, but they agree on how a database URL is chosen and
//! migrated, how an error looks on the wire, how a request is correlated in
//! the logs and how a server drains on shutdown. Keeping that here means a
//! user reading one app's code has read them all.

pub mod api_error;
pub mod app;
pub mod database;
pub mod extract;
pub mod health;
pub mod pagination;
pub mod request_id;
pub mod server;
pub mod sql_value;
pub mod telemetry;
pub mod text_position;
pub mod timestamp;

pub use api_error::ApiError;
pub use database::{Database, DatabaseError, DatabaseUrl, Engine, Migrations};
