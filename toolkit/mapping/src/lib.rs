//! The mapping file: which tables and columns make up each capability on
//! the monolith's side and on its service's, and how the reconciler compares
//! and repairs them.
//!
//! The modules are private and what they define is exported here; each
//! module's own documentation describes its part of the file (`cargo doc
//! --document-private-items` shows it):
//! - `error`: [`MappingError`], what can be wrong with a file.
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
//! Modules import only those listed above them, so the crate has no
//! circle; the test at the end of this file checks it on the source.

mod error;
mod identifier;
mod side;

mod compare;
mod repair_settings;
mod schedule;

mod mapping;

#[cfg(test)]
mod properties;
#[cfg(test)]
mod test_text;

pub use compare::{CompareSettings, Normalization, SettleWindow, SourceOfTruth};
pub use error::MappingError;
pub use identifier::{ColumnPair, Identifier};
pub use mapping::{
    CapabilityMapping, DatabaseSource, DeleteCheck, IncrementalSettings, Mapping, TableMapping,
};
pub use repair_settings::{DefaultValue, RepairSettings};
pub use schedule::Schedule;
pub use side::Side;

/// The module order above, checked: a module's code (its tests aside)
/// names no module declared after it.
#[cfg(test)]
mod module_order {
    const SOURCES: &[(&str, &str)] = &[
        ("error", include_str!("error.rs")),
        ("side", include_str!("side.rs")),
        ("identifier", include_str!("identifier.rs")),
        ("compare", include_str!("compare.rs")),
        ("repair_settings", include_str!("repair_settings.rs")),
        ("schedule", include_str!("schedule.rs")),
        ("mapping", include_str!("mapping.rs")),
    ];

    /// The modules `source` names as `crate::name`, its `#[cfg(test)]`
    /// part left out.
    fn named(source: &str) -> Vec<&str> {
        let code = source.split("#[cfg(test)]").next().unwrap_or(source);
        code.match_indices("crate::")
            .filter_map(|(at, found)| {
                let rest = &code[at + found.len()..];
                let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))?;
                Some(&rest[..end])
            })
            .collect()
    }

    /// Every import that names a module declared later, as `from -> to`.
    fn upward(sources: &[(&str, &str)]) -> Vec<String> {
        let order: Vec<&str> = sources.iter().map(|(name, _)| *name).collect();
        let mut found = Vec::new();
        for (index, (module, source)) in sources.iter().enumerate() {
            for name in named(source) {
                if order
                    .iter()
                    .position(|m| *m == name)
                    .is_some_and(|at| at >= index)
                {
                    found.push(format!("{module} -> {name}"));
                }
            }
        }
        found
    }

    #[test]
    fn modules_import_only_those_above_them() {
        let found = upward(SOURCES);
        assert!(found.is_empty(), "imports of modules declared later: {found:?}");
    }

    #[test]
    fn an_import_of_a_later_module_is_caught() {
        let sources = [
            ("side", "use crate::mapping::Mapping;"),
            ("mapping", "use crate::side::Side;"),
        ];
        assert_eq!(upward(&sources), ["side -> mapping"]);
    }
}
