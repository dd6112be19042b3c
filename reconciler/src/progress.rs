//! Progress of a comparison and of an applied repair, told to whoever
//! draws it. The reconciler only counts; a caller that wants a display (the
//! CLI's progress bars) implements [`Progress`] and hands it over in
//! [`Options::progress`](crate::Options) or
//! [`ApplyOptions::progress`](crate::repair::ApplyOptions).
//!
//! The counts arrive in steps of [`KEYS_PER_STEP`] keys (and at the end of
//! each table), never per row, so that a display costs the comparison one
//! call per few thousand rows; a display that redraws on its own timer
//! (indicatif's steady tick) needs nothing more. Without a hook nothing is
//! counted and nothing extra is queried.

use std::fmt;
use std::sync::Arc;

/// How many compared keys a step of [`Progress::keys_compared`] carries at
/// most (a range whose checksums match counts at once, however large).
pub const KEYS_PER_STEP: u64 = 4096;

/// What a progress display is told. Every method is called from the task
/// that runs the comparison or the repair, one table at a time, and must
/// return quickly: it runs between batches of rows.
pub trait Progress: Send + Sync {
    /// Comparing `table` (the monolith's name) starts. `estimated_keys` is
    /// the larger of the two catalogs' row estimates (PostgreSQL's
    /// `reltuples`, MySQL's `table_rows`, SQLite's largest rowid), when
    /// either has one: an estimate for an ETA, which the real count may
    /// pass.
    fn table_started(&self, table: &str, estimated_keys: Option<u64>);

    /// `keys` more keys of the current table were compared. The steps of
    /// one table add up to its report's `rows_compared`.
    fn keys_compared(&self, keys: u64);

    /// The current table is compared: `keys` keys in all.
    fn table_finished(&self, keys: u64);

    /// Applying a repair of `statements` statements starts.
    fn repair_started(&self, statements: u64) {
        let _ = statements;
    }

    /// `statements` more statements were committed.
    fn statements_applied(&self, statements: u64) {
        let _ = statements;
    }

    /// Applying the repair ended (whether or not it succeeded).
    fn repair_finished(&self) {}
}

/// A shared [`Progress`], as options carry it.
#[derive(Clone)]
pub struct ProgressHook(Arc<dyn Progress>);

impl ProgressHook {
    /// Wraps `progress`.
    pub fn new(progress: Arc<dyn Progress>) -> Self {
        Self(progress)
    }
}

impl std::ops::Deref for ProgressHook {
    type Target = dyn Progress;

    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

impl fmt::Debug for ProgressHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProgressHook")
    }
}

/// A table's progress inside the merge's judge: the keys already told.
#[derive(Debug)]
pub(crate) struct TableProgress {
    hook: ProgressHook,
    told: u64,
}

impl TableProgress {
    /// Starts telling `hook` about `table`.
    pub(crate) fn start(hook: ProgressHook, table: &str, estimated_keys: Option<u64>) -> Self {
        hook.table_started(table, estimated_keys);
        Self { hook, told: 0 }
    }

    /// Tells the hook once at least a step's keys are new; `compared` is the
    /// table's count so far.
    #[inline]
    pub(crate) fn update(&mut self, compared: u64) {
        if compared - self.told >= KEYS_PER_STEP {
            self.tell(compared);
        }
    }

    fn tell(&mut self, compared: u64) {
        let new = compared - self.told;
        if new > 0 {
            self.hook.keys_compared(new);
            self.told = compared;
        }
    }

    /// Tells the rest and that the table is done.
    pub(crate) fn finish(mut self, compared: u64) {
        self.tell(compared);
        self.hook.table_finished(compared);
    }
}
