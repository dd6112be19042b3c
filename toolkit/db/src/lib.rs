//! What the toolkit needs of databases, and nothing else.
//!
//! - [`DatabaseUrl`]: a URL whose `Display` and `Debug` mask the password,
//!   and the [`Engine`] it names (SQLite, PostgreSQL, MySQL/MariaDB).
//! - [`Database`]: a pool opened through sqlx's `Any` driver, with or
//!   without an app's [`Migrations`].
//! - [`sql_value`]: engine-neutral column values for code that copies or
//!   compares rows without knowing their types at compile time.
//! - [`timestamp`]: the RFC 3339 text the toolkit stores times as.
//!
//! The crate knows no HTTP and no toolkit logic. It is the one toolkit crate
//! the sample apps use too (ARCHITECTURE.md, "Dependency rules").

pub mod database;
pub mod sql_value;
pub mod timestamp;

pub use database::{mask_password, Database, DatabaseError, DatabaseUrl, Engine, Migrations};
pub use sql_value::SqlValue;
