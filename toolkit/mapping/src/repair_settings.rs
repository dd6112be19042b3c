//! The parts of a mapping file that only `strangler reconcile repair` reads:
//! how a repair may write to the follower (the side that is not the
//! `source_of_truth`).
//!
//! ```toml
//! [capabilities.orders]
//! source_of_truth = "service"
//!
//! [[capabilities.orders.tables]]
//! # … legacy, service, key, columns as for backfill …
//! follower_defaults = { origin = "orders-service" }  # unmapped follower columns of inserted rows
//! repair_filter = "origin = 'orders-service'"        # follower rows a repair may update or delete
//! ```
//!
//! `follower_defaults` gives values to follower columns that `columns` does
//! not map, for the rows a repair inserts: a column the source of truth
//! cannot supply, such as the monolith's `origin` marker, which a plain
//! insert would leave at its database default (`'monolith'`, a lie).
//! `repair_filter` is an SQL predicate on the follower's rows: a row outside
//! it is never updated or deleted by a repair, only reported, so that rows
//! the follower owns itself (orders the monolith placed) are left alone.
//! Both are optional and backfill ignores them.

use std::collections::BTreeMap;

use toml::Spanned;

use crate::compare::{predicate, SourceOfTruth};
use crate::error::MappingError;
use crate::identifier::{ColumnPair, Identifier};

/// A value in `follower_defaults`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DefaultValue {
    /// A text value.
    Text(String),
    /// An integer value.
    Integer(i64),
}

/// How a repair writes to the follower; empty by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairSettings {
    /// Unmapped follower columns and the value each inserted row gets.
    pub follower_defaults: Vec<(Identifier, DefaultValue)>,
    /// SQL predicate on the follower's rows: those a repair may change.
    pub filter: Option<String>,
}

/// The raw repair fields of one table.
pub(crate) struct RawRepair {
    pub follower_defaults: Option<Spanned<BTreeMap<String, toml::Value>>>,
    pub repair_filter: Option<Spanned<String>>,
}

/// Checks the repair fields of a table whose `columns` are already checked;
/// `truth` says which side the follower is.
pub(crate) fn check_repair(
    raw: RawRepair,
    table: &Identifier,
    columns: &[ColumnPair],
    truth: SourceOfTruth,
    invalid: &impl Fn(usize, String) -> MappingError,
) -> Result<RepairSettings, MappingError> {
    let mut settings = RepairSettings::default();
    if let Some(defaults) = raw.follower_defaults {
        let start = defaults.span().start;
        let (follower, mapped): (&str, Vec<&Identifier>) = match truth {
            SourceOfTruth::Legacy => ("service", columns.iter().map(|c| &c.service).collect()),
            SourceOfTruth::Service => ("legacy", columns.iter().map(|c| &c.legacy).collect()),
        };
        for (name, value) in defaults.into_inner() {
            let column = Identifier::parse(&name).map_err(|m| invalid(start, m))?;
            if mapped.contains(&&column) {
                return Err(invalid(
                    start,
                    format!(
                        "follower_defaults names `{name}`, a mapped {follower} column of table `{table}`; \
                         a repair copies it from the source of truth, so remove it here"
                    ),
                ));
            }
            let value = match value {
                toml::Value::String(text) => DefaultValue::Text(text),
                toml::Value::Integer(number) => DefaultValue::Integer(number),
                other => {
                    return Err(invalid(
                        start,
                        format!(
                            "follower_defaults.{name} is a {}; it must be a string or an integer",
                            other.type_str()
                        ),
                    ))
                }
            };
            settings.follower_defaults.push((column, value));
        }
    }
    settings.filter = predicate(raw.repair_filter, "repair_filter", invalid)?;
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::test_text::catalog;
    use crate::{DefaultValue, Mapping};

    /// The catalog, the service its source of truth, with `fields`.
    fn text(fields: &str) -> String {
        catalog("source_of_truth = \"service\"", fields)
    }

    fn error(fields: &str) -> String {
        Mapping::parse(Path::new("m.toml"), &text(fields))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn parses_defaults_and_filter() {
        let text = text("follower_defaults = { origin = \"orders-service\", rank = 3 }\nrepair_filter = \"origin = 'orders-service'\"");
        let mapping = Mapping::parse(Path::new("m.toml"), &text).unwrap();
        let repair = &mapping.capability("catalog").unwrap().tables[0].repair;
        let defaults: Vec<(&str, &DefaultValue)> = repair
            .follower_defaults
            .iter()
            .map(|(c, v)| (c.as_str(), v))
            .collect();
        assert_eq!(
            defaults,
            [
                ("origin", &DefaultValue::Text("orders-service".to_owned())),
                ("rank", &DefaultValue::Integer(3))
            ]
        );
        assert_eq!(repair.filter.as_deref(), Some("origin = 'orders-service'"));
    }

    #[test]
    fn refuses_mapped_columns_wrong_types_and_empty_filters_with_the_line() {
        // The follower is the legacy side here: `name` is mapped there.
        assert_eq!(
            error("follower_defaults = { name = \"placed\" }"),
            "m.toml:8: follower_defaults names `name`, a mapped legacy column of table `products`; \
             a repair copies it from the source of truth, so remove it here"
        );
        assert_eq!(
            error("follower_defaults = { origin = true }"),
            "m.toml:8: follower_defaults.origin is a boolean; it must be a string or an integer"
        );
        assert_eq!(
            error("repair_filter = \" \""),
            "m.toml:8: repair_filter is empty; remove it or write a predicate"
        );
        assert!(error("repair_filtre = \"x\"").contains("unknown field `repair_filtre`"));
    }
}
