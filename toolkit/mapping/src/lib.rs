//! The mapping file: which tables and columns make up each capability on
//! the monolith's side and on its service's, and how the reconciler compares
//! and repairs them.
//!
//! - [`identifier`]: table and column names ([`Identifier`]) and a
//!   column's name on each side ([`ColumnPair`]).
//! - [`side`]: [`Side`], the monolith's database or the service's.
//! - [`compare`]: the reconciler's per-table settings ([`CompareSettings`])
//!   and the capability's [`SourceOfTruth`].
//! - [`repair_settings`]: what a repair may write ([`RepairSettings`]).
//! - [`mapping`]: the file itself ([`Mapping`]), checked at load with the
//!   line of every error.
//!
//! Modules import only those listed above them, so the crate has no circle.

pub mod identifier;
pub mod side;

pub mod compare;
pub mod repair_settings;

pub mod mapping;

pub use compare::{CompareSettings, Normalization, SettleWindow, SourceOfTruth};
pub use identifier::{ColumnPair, Identifier};
pub use mapping::{CapabilityMapping, DatabaseSource, Mapping, MappingError, TableMapping};
pub use repair_settings::{DefaultValue, RepairSettings};
pub use side::Side;
