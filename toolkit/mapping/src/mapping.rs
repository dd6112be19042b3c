//! The mapping file: which tables make up a capability on each side, their
//! keys, and how columns are named on each side.
//!
//! ```toml
//! [[capabilities.catalog.tables]]
//! legacy = "products"          # table in the monolith's database
//! service = "products"         # table in the service's database
//! key = ["id"]                 # legacy column names; unique on both sides
//! columns = { id = "id", name = "title", price_cents = "unit_price_cents" }
//! legacy_filter = "deleted_at IS NULL"    # optional SQL predicate: the capability's rows
//! backfill_filter = "origin = 'monolith'" # optional, backfill only: rows not to copy
//! ```
//!
//! `columns` maps each legacy column to copy to its service column; key
//! columns must be among them. Tables are copied in the order listed, so list
//! parents before children. The file is the user's own, trusted like a
//! migration: `legacy_filter` is SQL and is used as written.
//!
//! Everything is checked at load, with the file's line in every error.
//! The reconciler's optional per-table fields (`ignore`, `normalize`,
//! `values`, `service_filter`, `settle_seconds`, `updated_at_column`) and the
//! per-capability `source_of_truth` are described in [`crate::compare`]; the
//! repair's (`follower_defaults`, `repair_filter`) in [`crate::repair_settings`].
//! Incremental runs read two per-capability durations
//! ([`IncrementalSettings`]): `incremental_overlap = "5m"`,
//! `full_every = "24h"` and `incremental_deletes = "counts"` (or
//! `"full_runs"`).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use toolkit_db::DatabaseUrl;

use crate::compare::{check_compare, predicate, CompareSettings, RawCompare, RawNormalize, SourceOfTruth};
use crate::error::MappingError;
use crate::identifier::{ColumnPair, Identifier};
use crate::repair_settings::{check_repair, RawRepair, RepairSettings};
use crate::schedule::Schedule;

/// One table of a capability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableMapping {
    /// Table in the monolith's database.
    pub legacy_table: Identifier,
    /// Table in the service's database.
    pub service_table: Identifier,
    /// Key columns, in key order.
    pub key: Vec<ColumnPair>,
    /// Every copied column, key columns first.
    pub columns: Vec<ColumnPair>,
    /// Optional SQL predicate on the monolith's rows: which of them belong
    /// to the capability (both backfill and reconciler apply it).
    pub legacy_filter: Option<String>,
    /// Optional SQL predicate only the backfill applies, for legacy rows
    /// that must not be copied (for example rows the service itself
    /// dual-wrote into the monolith) but must still be compared.
    pub backfill_filter: Option<String>,
    /// How the reconciler compares the rows (unused by backfill).
    pub compare: CompareSettings,
    /// How a repair writes to the follower (unused by backfill).
    pub repair: RepairSettings,
}

/// The tables of one capability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapabilityMapping {
    /// The capability's name (`catalog`, `orders`, …).
    pub name: String,
    /// Its tables, parents first.
    pub tables: Vec<TableMapping>,
    /// Which side is right when they disagree (unused by backfill).
    pub source_of_truth: SourceOfTruth,
    /// When `strangler reconcile schedule` compares it: a cron expression
    /// with seconds (`0 */5 * * * *`), parsed.
    pub schedule: Option<Schedule>,
    /// Where the scheduled comparison finds the monolith's database.
    pub legacy_database: Option<DatabaseSource>,
    /// Where the scheduled comparison finds the service's database.
    pub service_database: Option<DatabaseSource>,
    /// How incremental runs look back and when they give way to a full one.
    pub incremental: IncrementalSettings,
}

/// A capability's `incremental_overlap` and `full_every`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IncrementalSettings {
    /// How far before the last clean run an incremental run starts reading
    /// changed rows: application servers whose clocks run behind write
    /// change times in the past. Default 5 minutes.
    pub overlap: Duration,
    /// An incremental run is a full one when the last clean full run is
    /// older than this: rows deleted on one side only while the counts
    /// stayed equal leave no change time behind. Default 24 hours.
    pub full_every: Duration,
    /// How incremental runs look for rows deleted on one side only.
    pub deletes: DeleteCheck,
}

/// How incremental runs look for rows deleted on one side only, which
/// leave no change time behind (`incremental_deletes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeleteCheck {
    /// Every incremental run counts each side's rows (and sums integer
    /// keys), and reads the key ranges whose counts differ: a pass over
    /// each table's keys per run. The default.
    #[default]
    Counts,
    /// Only the full runs that `full_every` schedules find them: an
    /// incremental run costs what changed and nothing more.
    FullRuns,
}

impl DeleteCheck {
    fn parse(text: &str) -> Result<Self, String> {
        match text {
            "counts" => Ok(Self::Counts),
            "full_runs" => Ok(Self::FullRuns),
            other => Err(format!(
                "incremental_deletes must be \"counts\" or \"full_runs\", not {other:?}"
            )),
        }
    }
}

impl Default for IncrementalSettings {
    fn default() -> Self {
        Self {
            overlap: Duration::from_secs(5 * 60),
            full_every: Duration::from_secs(24 * 3600),
            deletes: DeleteCheck::Counts,
        }
    }
}

/// A duration written like `90s`, `5m`, `24h` or `1h 30m`, not zero.
fn parse_duration(field: &str, text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(duration) if !duration.is_zero() => Ok(duration),
        Ok(_) => Err(format!("{field} must be longer than zero")),
        Err(error) => Err(format!(
            "{field} `{text}` is not a duration like `90s`, `5m` or `24h`: {error}"
        )),
    }
}

/// A database URL written in the mapping file, or the name of the
/// environment variable that holds it (`env:NAME`), so that passwords need
/// not be written into files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseSource {
    /// The URL itself.
    Url(DatabaseUrl),
    /// The environment variable holding it.
    Env(String),
}

impl DatabaseSource {
    fn parse(text: &str) -> Result<Self, String> {
        match text.strip_prefix("env:") {
            Some(name) if !name.trim().is_empty() => Ok(Self::Env(name.trim().to_owned())),
            Some(_) => Err(
                "`env:` needs the name of an environment variable, like `env:MONOLITH_DATABASE_URL`"
                    .to_owned(),
            ),
            None => DatabaseUrl::parse(text).map(Self::Url).map_err(|e| e.to_string()),
        }
    }

    /// The URL, reading the environment if needed.
    pub fn resolve(&self) -> Result<DatabaseUrl, String> {
        match self {
            Self::Url(url) => Ok(url.clone()),
            Self::Env(name) => {
                let value = std::env::var(name).map_err(|_| {
                    format!("the environment variable {name} is not set; it should hold a database URL")
                })?;
                DatabaseUrl::parse(&value).map_err(|e| format!("{name}: {e}"))
            }
        }
    }
}

/// A whole mapping file.
#[derive(Debug, Clone)]
pub struct Mapping {
    path: PathBuf,
    capabilities: BTreeMap<String, CapabilityMapping>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    capabilities: BTreeMap<String, RawCapability>,
}

// A missing `Option` field is `None`: serde needs no `default` for it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCapability {
    tables: Spanned<Vec<RawTable>>,
    source_of_truth: Option<Spanned<String>>,
    schedule: Option<Spanned<String>>,
    legacy_database_url: Option<Spanned<String>>,
    service_database_url: Option<Spanned<String>>,
    incremental_overlap: Option<Spanned<String>>,
    full_every: Option<Spanned<String>>,
    incremental_deletes: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    legacy: Spanned<String>,
    service: Spanned<String>,
    key: Spanned<Vec<String>>,
    columns: Spanned<BTreeMap<String, String>>,
    legacy_filter: Option<Spanned<String>>,
    backfill_filter: Option<Spanned<String>>,
    ignore: Option<Spanned<Vec<String>>>,
    normalize: Option<Spanned<BTreeMap<String, RawNormalize>>>,
    values: Option<Spanned<BTreeMap<String, BTreeMap<String, String>>>>,
    service_filter: Option<Spanned<String>>,
    settle_seconds: Option<Spanned<u64>>,
    updated_at_column: Option<Spanned<String>>,
    follower_defaults: Option<Spanned<BTreeMap<String, toml::Value>>>,
    repair_filter: Option<Spanned<String>>,
}

impl Mapping {
    /// Reads and checks a mapping file.
    pub fn load(path: &Path) -> Result<Self, MappingError> {
        let text = std::fs::read_to_string(path).map_err(|source| MappingError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses and checks mapping text; `path` is only used in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, MappingError> {
        let invalid = |offset: usize, message: String| MappingError::Invalid {
            path: path.to_owned(),
            line: line_of(text, offset),
            message,
        };
        let raw: RawFile = toml::from_str(text).map_err(|error| {
            let offset = error.span().map_or(0, |span| span.start);
            invalid(offset, toml_message(&error))
        })?;
        let mut capabilities = BTreeMap::new();
        for (name, capability) in raw.capabilities {
            let source_of_truth =
                parse_field(capability.source_of_truth, SourceOfTruth::parse, &invalid)?.unwrap_or_default();
            let schedule = parse_field(capability.schedule, Schedule::parse, &invalid)?;
            let legacy_database =
                parse_field(capability.legacy_database_url, DatabaseSource::parse, &invalid)?;
            let service_database =
                parse_field(capability.service_database_url, DatabaseSource::parse, &invalid)?;
            let defaults = IncrementalSettings::default();
            let incremental = IncrementalSettings {
                overlap: parse_field(
                    capability.incremental_overlap,
                    |text| parse_duration("incremental_overlap", text),
                    &invalid,
                )?
                .unwrap_or(defaults.overlap),
                full_every: parse_field(
                    capability.full_every,
                    |text| parse_duration("full_every", text),
                    &invalid,
                )?
                .unwrap_or(defaults.full_every),
                deletes: parse_field(capability.incremental_deletes, DeleteCheck::parse, &invalid)?
                    .unwrap_or(defaults.deletes),
            };
            let span = capability.tables.span();
            let raw_tables = capability.tables.into_inner();
            if raw_tables.is_empty() {
                return Err(invalid(
                    span.start,
                    format!("capability `{name}` lists no tables"),
                ));
            }
            let mut seen_service = HashSet::new();
            let mut tables = Vec::with_capacity(raw_tables.len());
            for table in raw_tables {
                let table = check_table(table, source_of_truth, &invalid)?;
                if !seen_service.insert(table.service_table.clone()) {
                    return Err(invalid(
                        span.start,
                        format!(
                            "capability `{name}` maps service table `{}` twice",
                            table.service_table
                        ),
                    ));
                }
                tables.push(table);
            }
            capabilities.insert(
                name.clone(),
                CapabilityMapping {
                    name,
                    tables,
                    source_of_truth,
                    schedule,
                    legacy_database,
                    service_database,
                    incremental,
                },
            );
        }
        Ok(Self {
            path: path.to_owned(),
            capabilities,
        })
    }

    /// The named capability, or an error listing the known ones.
    pub fn capability(&self, name: &str) -> Result<&CapabilityMapping, MappingError> {
        self.capabilities
            .get(name)
            .ok_or_else(|| MappingError::UnknownCapability {
                path: self.path.clone(),
                name: name.to_owned(),
                known: self.capabilities.keys().cloned().collect::<Vec<_>>().join(", "),
            })
    }

    /// Every capability, by name.
    pub fn capabilities(&self) -> impl Iterator<Item = &CapabilityMapping> {
        self.capabilities.values()
    }

    /// The named capability, to change before use (for example its
    /// databases, when a tool knows better than the file where they are).
    pub fn capability_mut(&mut self, name: &str) -> Result<&mut CapabilityMapping, MappingError> {
        let known = self.capabilities.keys().cloned().collect::<Vec<_>>().join(", ");
        self.capabilities
            .get_mut(name)
            .ok_or_else(|| MappingError::UnknownCapability {
                path: self.path.clone(),
                name: name.to_owned(),
                known,
            })
    }
}

/// The optional field `field` parsed by `parse`, its error placed at the
/// field's line.
fn parse_field<T>(
    field: Option<Spanned<String>>,
    parse: impl FnOnce(&str) -> Result<T, String>,
    invalid: &impl Fn(usize, String) -> MappingError,
) -> Result<Option<T>, MappingError> {
    field
        .map(|field| parse(field.get_ref()).map_err(|message| invalid(field.span().start, message)))
        .transpose()
}

fn check_table(
    raw: RawTable,
    truth: SourceOfTruth,
    invalid: &impl Fn(usize, String) -> MappingError,
) -> Result<TableMapping, MappingError> {
    let ident = |spanned: &Spanned<String>| {
        Identifier::parse(spanned.get_ref()).map_err(|message| invalid(spanned.span().start, message))
    };
    let legacy_table = ident(&raw.legacy)?;
    let service_table = ident(&raw.service)?;
    let columns_start = raw.columns.span().start;
    let mut columns = Vec::new();
    for (legacy, service) in raw.columns.get_ref() {
        columns.push(ColumnPair {
            legacy: Identifier::parse(legacy).map_err(|m| invalid(columns_start, m))?,
            service: Identifier::parse(service).map_err(|m| invalid(columns_start, m))?,
        });
    }
    if columns.is_empty() {
        return Err(invalid(
            columns_start,
            format!("table `{legacy_table}` maps no columns"),
        ));
    }
    let mut service_names = HashSet::new();
    if let Some(twice) = columns.iter().find(|c| !service_names.insert(c.service.clone())) {
        return Err(invalid(
            columns_start,
            format!(
                "service column `{}` is the target of two legacy columns",
                twice.service
            ),
        ));
    }
    let key_start = raw.key.span().start;
    if raw.key.get_ref().is_empty() {
        return Err(invalid(
            key_start,
            format!("table `{legacy_table}` needs at least one key column"),
        ));
    }
    let mut key = Vec::new();
    for name in raw.key.get_ref() {
        let Some(pair) = columns.iter().find(|c| c.legacy.as_str() == name) else {
            return Err(invalid(
                key_start,
                format!(
                    "key column `{name}` of table `{legacy_table}` is not in its `columns`; add it there"
                ),
            ));
        };
        if key.contains(pair) {
            return Err(invalid(key_start, format!("key column `{name}` is listed twice")));
        }
        key.push(pair.clone());
    }
    // Key columns first: the copy reads keys off the front of each row.
    columns.sort_by_key(|c| key.iter().position(|k| k == c).unwrap_or(usize::MAX));
    let legacy_filter = predicate(raw.legacy_filter, "legacy_filter", invalid)?;
    let backfill_filter = predicate(raw.backfill_filter, "backfill_filter", invalid)?;
    let compare = check_compare(
        RawCompare {
            ignore: raw.ignore,
            normalize: raw.normalize,
            values: raw.values,
            service_filter: raw.service_filter,
            settle_seconds: raw.settle_seconds,
            updated_at_column: raw.updated_at_column,
        },
        &legacy_table,
        &columns,
        &key,
        invalid,
    )?;
    let repair = check_repair(
        RawRepair {
            follower_defaults: raw.follower_defaults,
            repair_filter: raw.repair_filter,
        },
        &legacy_table,
        &columns,
        truth,
        invalid,
    )?;
    Ok(TableMapping {
        legacy_table,
        service_table,
        key,
        columns,
        legacy_filter,
        backfill_filter,
        compare,
        repair,
    })
}

/// The 1-based line that byte `offset` of `text` is on (the last line when
/// `offset` is past the end).
/// What toml says is wrong, or a plain word where it says nothing (as for
/// a stray carriage return), so that no error is a bare `file:line:`.
fn toml_message(error: &toml::de::Error) -> String {
    match error.message().trim() {
        "" => "this is not valid TOML: an unexpected character".to_owned(),
        message => message.to_owned(),
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    memchr::memchr_iter(b'\n', &text.as_bytes()[..offset.min(text.len())]).count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_text::catalog;

    /// The catalog with `fields` added to its table, parsed.
    fn parse(fields: &str) -> Result<Mapping, MappingError> {
        Mapping::parse(Path::new("m.toml"), &catalog("", fields))
    }

    #[test]
    fn parses_and_puts_key_columns_first() {
        let mapping = parse("").unwrap();
        let table = &mapping.capability("catalog").unwrap().tables[0];
        assert_eq!(table.columns[0].legacy.as_str(), "id");
        assert_eq!(table.columns.len(), 3);
        assert_eq!(table.key.len(), 1);
    }

    #[test]
    fn a_key_outside_columns_is_refused_with_its_line() {
        let text = catalog("", "").replace(r#"key = ["id"]"#, r#"key = ["sku"]"#);
        let error = Mapping::parse(Path::new("m.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("m.toml:6: key column `sku`"), "{error}");
    }

    #[test]
    fn unknown_fields_and_bad_toml_are_refused_with_their_line() {
        let error = parse("keys = 1").unwrap_err().to_string();
        assert!(
            error.starts_with("m.toml:8:") && error.contains("keys"),
            "{error}"
        );
        let error = Mapping::parse(Path::new("m.toml"), "[[capabilities.x.tables]\n").unwrap_err();
        assert!(error.to_string().starts_with("m.toml:1:"), "{error}");
    }

    #[test]
    fn unknown_capability_lists_the_known_ones() {
        let mapping = parse("").unwrap();
        let error = mapping.capability("billing").unwrap_err().to_string();
        assert!(error.contains("billing") && error.contains("catalog"), "{error}");
    }

    #[test]
    fn reconciler_fields_parse_and_are_checked() {
        let text = catalog(
            "source_of_truth = \"service\"",
            "ignore = [\"name\"]\n\
             normalize = { price_cents = \"cents_from_decimal\", name = [\"trim\", \"lower\"] }\n\
             values = { name = { a = \"A\" } }\nservice_filter = \"1 = 1\"\n\
             settle_seconds = 30\nupdated_at_column = \"name\"\n",
        );
        let mapping = Mapping::parse(Path::new("m.toml"), &text).unwrap();
        let capability = mapping.capability("catalog").unwrap();
        assert_eq!(capability.source_of_truth, SourceOfTruth::Service);
        let compare = &capability.tables[0].compare;
        assert_eq!(compare.ignore.len(), 1);
        assert_eq!(compare.normalize.len(), 2);
        assert_eq!(compare.settle.as_ref().unwrap().seconds, 30);
        let error = parse("normalize = { price_cents = \"cents\" }")
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("m.toml:8:") && error.contains("cents_from_decimal"),
            "{error}"
        );
        let error = parse("ignore = [\"id\"]").unwrap_err().to_string();
        assert!(error.contains("key column `id`"), "{error}");
        let error = parse("settle_seconds = 5").unwrap_err().to_string();
        assert!(error.contains("updated_at_column"), "{error}");
        // A change time alone serves incremental runs; nothing settles.
        let mapping = parse("updated_at_column = \"name\"").unwrap();
        let settle = mapping.capability("catalog").unwrap().tables[0]
            .compare
            .settle
            .clone();
        assert_eq!(
            settle.map(|s| (s.seconds, s.column.legacy.to_string())),
            Some((0, "name".into()))
        );
    }

    #[test]
    fn incremental_settings_default_and_are_checked_with_their_line() {
        let parse = |capability: &str| Mapping::parse(Path::new("m.toml"), &catalog(capability, ""));
        let mapping = parse("").unwrap();
        assert_eq!(
            mapping.capability("catalog").unwrap().incremental,
            IncrementalSettings::default()
        );
        let mapping = parse("incremental_overlap = \"90s\"\nfull_every = \"7d\"").unwrap();
        let settings = mapping.capability("catalog").unwrap().incremental;
        assert_eq!(settings.overlap, Duration::from_secs(90));
        assert_eq!(settings.full_every, Duration::from_secs(7 * 86_400));
        let error = parse("full_every = \"daily\"").unwrap_err().to_string();
        assert!(
            error.starts_with("m.toml:2: full_every `daily` is not a duration like"),
            "{error}"
        );
        let error = parse("incremental_overlap = \"0s\"").unwrap_err().to_string();
        assert!(error.contains("longer than zero"), "{error}");
        let mapping = parse("incremental_deletes = \"full_runs\"").unwrap();
        assert_eq!(
            mapping.capability("catalog").unwrap().incremental.deletes,
            DeleteCheck::FullRuns
        );
        let error = parse("incremental_deletes = \"never\"").unwrap_err().to_string();
        assert!(
            error.starts_with("m.toml:2: incremental_deletes must be"),
            "{error}"
        );
    }

    #[test]
    fn names_are_quoted_never_spliced() {
        let id = Identifier::parse(r#"x"; DROP TABLE products; --"#).unwrap();
        assert_eq!(id.quoted(), r#""x""; DROP TABLE products; --""#);
    }

    #[test]
    fn schedules_and_database_sources_are_checked_with_their_line() {
        // `capability` added to the capability, before its table.
        let parse = |capability: &str| Mapping::parse(Path::new("m.toml"), &catalog(capability, ""));
        let mapping = parse(
            "schedule = \"*/30 * * * * *\"\nlegacy_database_url = \"env:MONOLITH_DB\"\n\
             service_database_url = \"data/catalog.db\"",
        )
        .unwrap();
        let scheduled = mapping.capability("catalog").unwrap();
        assert_eq!(
            scheduled.schedule.as_ref().map(Schedule::as_str),
            Some("*/30 * * * * *")
        );
        assert_eq!(
            scheduled.legacy_database,
            Some(DatabaseSource::Env("MONOLITH_DB".into()))
        );
        let error = parse("schedule = \"every minute\"").unwrap_err();
        assert!(
            error.to_string().starts_with("m.toml:2: schedule `every minute`"),
            "{error}"
        );
        let error = parse("legacy_database_url = \"env:\"").unwrap_err();
        assert!(error.to_string().starts_with("m.toml:2:"), "{error}");
        let error = parse("service_database_url = \"mongodb://x\"").unwrap_err();
        assert!(error.to_string().contains("not supported"), "{error}");
    }
}
