//! Why a reconciliation could not finish. Every message names the side
//! (monolith or service) and never carries a password: URLs in errors are
//! `DatabaseUrl`s, whose `Display` masks it.

use mapping::Side;

/// A reconciliation that could not run to the end; nothing it found is
/// reported as a result.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The mapping file is unusable.
    #[error(transparent)]
    Mapping(#[from] mapping::MappingError),
    /// A SQLite database file does not exist (it would otherwise be
    /// created empty and compared as such).
    #[error("the {side} database {path} does not exist; check the path")]
    MissingFile {
        /// Which database.
        side: Side,
        /// The file.
        path: String,
    },
    /// The database could not be reached or refused the connection.
    #[error("cannot connect to the {side} database {url}")]
    Connect {
        /// Which database.
        side: Side,
        /// The URL, password masked.
        url: String,
        /// The driver's reason.
        #[source]
        source: sqlx::Error,
    },
    /// The database did not answer in time.
    #[error("the {side} database did not answer within {seconds} s while {doing}")]
    Timeout {
        /// Which database.
        side: Side,
        /// What the reconciler was doing.
        doing: String,
        /// The limit.
        seconds: u64,
    },
    /// A query failed (a lost connection, a refused statement, …).
    #[error("the {side} database failed while {doing}")]
    Query {
        /// Which database.
        side: Side,
        /// What the reconciler was doing.
        doing: String,
        /// The driver's reason.
        #[source]
        source: sqlx::Error,
    },
    /// A mapped table does not exist.
    #[error("the {side} database has no table `{table}`; fix the mapping file or the schema (nothing was compared)")]
    UnknownTable {
        /// Which database.
        side: Side,
        /// The table.
        table: String,
    },
    /// A mapped column does not exist.
    #[error(
        "the {side} table `{table}` has no column `{column}` (it has: {known}); fix the mapping file or the schema (nothing was compared)"
    )]
    UnknownColumn {
        /// Which database.
        side: Side,
        /// The table.
        table: String,
        /// The missing column.
        column: String,
        /// The columns the table has.
        known: String,
    },
    /// Key columns whose types cannot be ordered alike on both sides.
    #[error(
        "key column `{column}` of table `{table}` is {legacy_type} in the monolith but {service_type} in the service; keys must be both integers or both text (nothing was compared)"
    )]
    IncompatibleKey {
        /// The legacy table.
        table: String,
        /// The legacy key column.
        column: String,
        /// Its declared type in the monolith.
        legacy_type: String,
        /// Its declared type in the service.
        service_type: String,
    },
    /// A key column holds NULL, which no key may: no keyset batch or
    /// bounded range would ever read that row.
    #[error(
        "table `{table}` in the {side} database has a row with NULL in its key {key}; the mapped key must never be NULL: map key columns that are never NULL, or fill or remove those rows (nothing was reported)"
    )]
    NullKey {
        /// Which database.
        side: Side,
        /// The table.
        table: String,
        /// This side's key columns, quoted: `` `code` `` or
        /// `` (`order_id`, `line_no`) ``.
        key: String,
    },
    /// More than one row holds the same key.
    #[error(
        "table `{table}` in the {side} database has more than one row with key {key}; the mapped key must be unique: remove the duplicate rows or map columns that are unique (nothing was reported)"
    )]
    KeyNotUnique {
        /// Which database.
        side: Side,
        /// The table.
        table: String,
        /// The key with its column names, as a user would write it
        /// (`code = C015`).
        key: String,
    },
    /// Keys came back in an order other than the one the comparison
    /// merges in, which would turn equal rows into missing and extra ones.
    #[error(
        "table `{table}` in the {side} database returned key {key} after {previous}, out of byte order; map key columns that hold only integers or only text (nothing was reported)"
    )]
    KeyOutOfOrder {
        /// Which database.
        side: Side,
        /// The table.
        table: String,
        /// The key that came too late, with its column names.
        key: String,
        /// The key before it.
        previous: String,
    },
    /// Something the reconciler cannot do (a bug if it ever shows).
    #[error("{0}")]
    Unsupported(String),
    /// A table whose divergences cannot be repaired automatically.
    #[error("cannot plan a repair of table `{table}`: {reason}; repair it by hand")]
    NotRepairable {
        /// The legacy table.
        table: String,
        /// Why.
        reason: String,
    },
    /// Applying a repair failed; statements before the failing batch stay applied.
    #[error("applying the repair failed after {applied} statements; re-run to plan the rest")]
    Apply {
        /// Statements committed before the failure.
        applied: usize,
        /// The driver's reason.
        #[source]
        source: sqlx::Error,
    },
    /// Applying a repair outlived the statement timeout (a row locked by
    /// someone else, a server that stopped answering).
    #[error("the {side} database did not answer within {seconds} s while applying the repair ({doing}); {outcome}")]
    ApplyTimeout {
        /// The follower.
        side: Side,
        /// The step that timed out.
        doing: String,
        /// The limit.
        seconds: f64,
        /// What is applied and what was rolled back.
        outcome: String,
    },
    /// The toolkit store did not answer in time.
    #[error("the toolkit store did not answer within {seconds} s while {doing}")]
    StoreTimeout {
        /// What the reconciler was doing.
        doing: String,
        /// The limit.
        seconds: u64,
    },
    /// The toolkit store could not be opened or written.
    #[error("cannot record the run in the toolkit store")]
    Store(#[source] sqlx::Error),
    /// The toolkit store could not be opened.
    #[error("cannot open the toolkit store")]
    StoreOpen(#[source] toolkit_db::DatabaseError),
    /// A recorded run holds what this version cannot read.
    #[error("run #{id} in the toolkit store cannot be read")]
    StoredRun {
        /// The run's id.
        id: i64,
        /// What is wrong with it.
        #[source]
        source: crate::run_store::UnknownRunStatus,
    },
}

impl ReconcileError {
    /// The whole cause chain on one line, for the run's `error` column.
    pub fn chain(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }
}
