//! The mapping file: which tables and columns make up each capability on
//! the monolith's side and on its service's, and how the reconciler compares
//! and repairs them.
//!
//! The modules are private and what they define is exported here; each
//! module's own documentation describes its part of the file (`cargo doc
//! --document-private-items` shows it):
//! - `side`: [`Side`], the monolith's database or the service's.
//! - `identifier`: table and column names ([`Identifier`]) and a column's
//!   name on each side ([`ColumnPair`]).
//! - `compare`: the reconciler's per-table settings ([`CompareSettings`])
//!   and the capability's [`SourceOfTruth`].
//! - `repair_settings`: what a repair may write ([`RepairSettings`]).
//! - `schedule`: a capability's cron [`Schedule`], parsed once.
//! - `mapping`: the file itself ([`Mapping`]), checked at load with the
//!   line of every error.
//!
//! Modules import only those listed above them, so the crate has no circle.

mod identifier;
mod side;

mod compare;
mod repair_settings;
mod schedule;

mod mapping;

#[cfg(test)]
mod test_text;

pub use compare::{CompareSettings, Normalization, SettleWindow, SourceOfTruth};
pub use identifier::{ColumnPair, Identifier};
pub use mapping::{CapabilityMapping, DatabaseSource, Mapping, MappingError, TableMapping};
pub use repair_settings::{DefaultValue, RepairSettings};
pub use schedule::Schedule;
pub use side::Side;
