//! The toolkit's own state, in SQLite by default or in PostgreSQL when
//! several facade replicas share it.
//!
//! Three things live here (schema in `migrations/toolkit/`):
//! - `route_state`: where each capability's traffic goes now;
//! - `route_transitions`: every change of that, with actor, reason and time,
//!   written in the same transaction as the change (the audit log);
//! - `reconciliation_runs`: the history of dual-write comparisons, which the
//!   cut-over gate reads.
//!
//! This crate opens and migrates the store; the facade and the reconciler
//! own the queries on their tables.

use sqlx::migrate::Migrator;
use toolkit_db::{Database, DatabaseError, DatabaseUrl, Migrations};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/toolkit/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/toolkit/postgres");

/// The store's schema, per engine.
pub static MIGRATIONS: Migrations = Migrations {
    sqlite: &SQLITE_MIGRATIONS,
    postgres: &POSTGRES_MIGRATIONS,
};

/// An open, migrated toolkit store.
#[derive(Clone, Debug)]
pub struct StateStore {
    db: Database,
}

impl StateStore {
    /// Opens the store at `url`, creating and migrating it as needed.
    pub async fn open(url: &DatabaseUrl) -> Result<Self, DatabaseError> {
        Ok(Self {
            db: Database::connect(url, &MIGRATIONS).await?,
        })
    }

    /// The underlying database.
    pub fn database(&self) -> &Database {
        &self.db
    }
}
