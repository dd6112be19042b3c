//! What a side's catalog proves about a mapped key: whether a primary key
//! or a unique index makes a repeated key impossible, and whether the
//! column definitions make a NULL in the key impossible.
//!
//! A repeated key must never pass as clean, and the checks that catch one
//! in the data cost something: the merge re-reads one row per keyset batch,
//! and each checksum counts distinct keys too (see [`crate::read`] and
//! [`crate::checksum`]). When the catalog proves the key unique, those
//! checks are skipped and the comparison costs what it always did; no
//! full-table query is ever added.
//!
//! Likewise a NULL key must never pass as clean, and no comparison would
//! see one: keyset batches (`key > last`) and bounded ranges exclude NULL,
//! and PostgreSQL sorts it last. Where the column definitions do not prove
//! every key column NOT NULL, the plan asks each side once for a row with a
//! NULL key before anything is compared ([`crate::plan`]).

use std::collections::BTreeMap;

use mapping::Identifier;
use toolkit_db::sql_value::SqlValue;
use toolkit_db::Engine;

use crate::source::Source;
use crate::sql::ColumnClass;

/// Whether a primary key or a unique index of `table` makes the `key`
/// columns unique on this side. Only plain indexes count: a partial index,
/// or one over an expression, proves nothing about the whole table. An
/// index on some of the key columns proves the whole key unique.
///
/// A catalog that cannot be read proves nothing: the run goes on with the
/// checks in the data, so a refusal costs time, never exactness.
pub async fn key_is_unique(source: &mut Source, table: &Identifier, key: &[Identifier]) -> bool {
    let sql = match source.dialect().engine() {
        // `indkey` lists the INCLUDE columns after the `indnkeyatts` key
        // columns; an expression's column number is 0, which finds no name.
        Engine::Postgres => {
            "SELECT CAST(ic.relname AS TEXT), CAST(a.attname AS TEXT) FROM pg_index i \
             JOIN pg_class c ON c.oid = i.indrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_class ic ON ic.oid = i.indexrelid \
             CROSS JOIN LATERAL unnest(CAST(i.indkey AS int2[])) WITH ORDINALITY AS k(attnum, position) \
             LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum AND k.attnum > 0 \
             WHERE n.nspname = current_schema() AND c.relname = $1 \
             AND i.indisunique AND i.indisvalid AND i.indpred IS NULL AND k.position <= i.indnkeyatts"
        }
        // A functional key part (MySQL 8) has no column name. A unique
        // prefix index makes the whole values unique too.
        Engine::MySql => {
            "SELECT CAST(index_name AS CHAR), CAST(column_name AS CHAR) FROM information_schema.statistics \
             WHERE table_schema = DATABASE() AND table_name = ? AND non_unique = 0"
        }
        // An INTEGER PRIMARY KEY is the rowid and has no index, hence the
        // primary key from `table_info`; an expression has no name.
        Engine::Sqlite => {
            "SELECT il.name, ii.name FROM pragma_index_list($1) AS il \
             JOIN pragma_index_info(il.name) AS ii WHERE il.\"unique\" = 1 AND il.partial = 0 \
             UNION ALL SELECT '(primary key)', name FROM pragma_table_info($2) WHERE pk > 0"
        }
    };
    let name = SqlValue::Text(table.as_str().to_owned());
    let binds: Vec<&SqlValue> = match source.dialect().engine() {
        Engine::Sqlite => vec![&name, &name],
        Engine::Postgres | Engine::MySql => vec![&name],
    };
    let doing = format!("reading the unique indexes of table `{table}`");
    let rows = match source
        .fetch(sql, &binds, &[ColumnClass::Text, ColumnClass::Text], &doing)
        .await
    {
        Ok(rows) => rows,
        Err(error) => {
            tracing::warn!(side = %source.side(), %table, error = %error.chain(),
                "cannot read the catalog's unique indexes; checking the key's uniqueness in the data instead");
            return false;
        }
    };
    let entries = rows.into_iter().filter_map(|row| {
        let mut values = row.into_iter();
        let index = match values.next() {
            Some(SqlValue::Text(index)) => index,
            _ => return None,
        };
        let column = match values.next() {
            Some(SqlValue::Text(column)) => Some(column),
            _ => None,
        };
        Some((index, column))
    });
    let case_insensitive = source.dialect().engine() == Engine::MySql;
    proves_unique(entries, key, case_insensitive)
}

/// Whether the column definitions of `table` make every `key` column NOT
/// NULL on this side: declared `NOT NULL`, or in a primary key where that
/// implies it (always on PostgreSQL and MySQL; on SQLite only for an
/// `INTEGER PRIMARY KEY`, the rowid, since SQLite lets other primary key
/// columns hold NULL unless they are declared NOT NULL).
///
/// A catalog that cannot be read proves nothing: the plan then looks for a
/// NULL key in the data.
pub async fn key_is_not_null(source: &mut Source, table: &Identifier, key: &[Identifier]) -> bool {
    let sql = match source.dialect().engine() {
        Engine::Postgres => {
            "SELECT CAST(a.attname AS TEXT) FROM pg_attribute a \
             JOIN pg_class c ON c.oid = a.attrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = current_schema() AND c.relname = $1 \
             AND a.attnum > 0 AND NOT a.attisdropped AND a.attnotnull"
        }
        // Primary key columns are NOT NULL (`is_nullable = 'NO'`) here.
        Engine::MySql => {
            "SELECT CAST(column_name AS CHAR) FROM information_schema.columns \
             WHERE table_schema = DATABASE() AND table_name = ? AND is_nullable = 'NO'"
        }
        // The rowid: the only primary key column, declared `INTEGER`, and
        // no index behind the primary key (`INTEGER PRIMARY KEY DESC` and
        // WITHOUT ROWID tables have one; the latter's columns are NOT NULL
        // anyway).
        Engine::Sqlite => {
            "SELECT name FROM pragma_table_info($1) WHERE \"notnull\" = 1 \
             OR (pk = 1 AND upper(type) = 'INTEGER' \
                 AND (SELECT count(*) FROM pragma_table_info($2) WHERE pk > 0) = 1 \
                 AND NOT EXISTS (SELECT 1 FROM pragma_index_list($3) WHERE origin = 'pk'))"
        }
    };
    let name = SqlValue::Text(table.as_str().to_owned());
    let binds: Vec<&SqlValue> = match source.dialect().engine() {
        Engine::Sqlite => vec![&name, &name, &name],
        Engine::Postgres | Engine::MySql => vec![&name],
    };
    let doing = format!("reading the NOT NULL columns of table `{table}`");
    let rows = match source.fetch(sql, &binds, &[ColumnClass::Text], &doing).await {
        Ok(rows) => rows,
        Err(error) => {
            tracing::warn!(side = %source.side(), %table, error = %error.chain(),
                "cannot read the catalog's NOT NULL columns; looking for a NULL key in the data instead");
            return false;
        }
    };
    let not_null = rows.into_iter().filter_map(|row| match row.into_iter().next() {
        Some(SqlValue::Text(column)) => Some(column),
        _ => None,
    });
    let case_insensitive = source.dialect().engine() == Engine::MySql;
    proves_not_null(not_null, key, case_insensitive)
}

/// The catalog's estimate of the rows in `table`, for a progress display's
/// ETA: PostgreSQL's `reltuples` (none before the first `ANALYZE` or
/// vacuum), MySQL's `table_rows`, SQLite's largest rowid (none for a
/// `WITHOUT ROWID` table). Each is one cheap catalog or index lookup, never
/// a count; a refusal is no estimate.
pub async fn estimated_rows(source: &mut Source, table: &Identifier) -> Option<u64> {
    let dialect = source.dialect();
    let name = SqlValue::Text(table.as_str().to_owned());
    let (sql, binds): (String, Vec<&SqlValue>) = match dialect.engine() {
        Engine::Postgres => (
            "SELECT CAST(c.reltuples AS BIGINT) FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = current_schema() AND c.relname = $1"
                .to_owned(),
            vec![&name],
        ),
        Engine::MySql => (
            "SELECT CAST(table_rows AS SIGNED) FROM information_schema.tables \
             WHERE table_schema = DATABASE() AND table_name = ?"
                .to_owned(),
            vec![&name],
        ),
        Engine::Sqlite => (
            format!("SELECT MAX(rowid) FROM {}", dialect.quote(table)),
            Vec::new(),
        ),
    };
    let doing = format!("estimating the rows of table `{table}`");
    let rows = match source.fetch(&sql, &binds, &[ColumnClass::Integer], &doing).await {
        Ok(rows) => rows,
        Err(error) => {
            tracing::debug!(side = %source.side(), %table, error = %error.chain(), "no row estimate");
            return None;
        }
    };
    match rows.first().and_then(|row| row.first()) {
        Some(SqlValue::Int(n)) => u64::try_from(*n).ok().filter(|n| *n > 0),
        _ => None,
    }
}

/// Whether every `key` column is among the `not_null` columns.
fn proves_not_null(
    not_null: impl IntoIterator<Item = String>,
    key: &[Identifier],
    case_insensitive: bool,
) -> bool {
    let not_null: Vec<String> = not_null.into_iter().collect();
    key.iter().all(|k| {
        not_null.iter().any(|column| {
            k.as_str() == column || (case_insensitive && k.as_str().eq_ignore_ascii_case(column))
        })
    })
}

/// Whether one of the indexes, given as (index, column) pairs with `None`
/// for an expression, lies within the `key` columns.
fn proves_unique(
    entries: impl IntoIterator<Item = (String, Option<String>)>,
    key: &[Identifier],
    case_insensitive: bool,
) -> bool {
    let mut indexes: BTreeMap<String, Vec<Option<String>>> = BTreeMap::new();
    for (index, column) in entries {
        indexes.entry(index).or_default().push(column);
    }
    let in_key = |column: &str| {
        key.iter()
            .any(|k| k.as_str() == column || (case_insensitive && k.as_str().eq_ignore_ascii_case(column)))
    };
    indexes.values().any(|columns| {
        !columns.is_empty() && columns.iter().all(|column| column.as_deref().is_some_and(in_key))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(names: &[&str]) -> Vec<Identifier> {
        names.iter().map(|n| Identifier::parse(n).unwrap()).collect()
    }

    fn entry(index: &str, column: Option<&str>) -> (String, Option<String>) {
        (index.to_owned(), column.map(str::to_owned))
    }

    #[test]
    fn an_index_within_the_key_proves_it_unique() {
        let pk = [entry("pk", Some("order_id")), entry("pk", Some("line_no"))];
        assert!(proves_unique(pk.clone(), &ids(&["order_id", "line_no"]), false));
        assert!(proves_unique(pk.clone(), &ids(&["line_no", "order_id"]), false));
        // Unique on fewer columns than the key: the key is unique too.
        assert!(proves_unique(
            [entry("u", Some("code"))],
            &ids(&["code", "region"]),
            false
        ));
        // Unique on more columns than the key proves nothing about the key.
        assert!(!proves_unique(pk, &ids(&["order_id"]), false));
    }

    #[test]
    fn expressions_and_other_columns_prove_nothing() {
        assert!(!proves_unique([entry("lower", None)], &ids(&["code"]), false));
        assert!(!proves_unique(
            [entry("u", Some("code")), entry("u", None)],
            &ids(&["code"]),
            false
        ));
        assert!(!proves_unique(
            [entry("u", Some("email"))],
            &ids(&["code"]),
            false
        ));
        assert!(!proves_unique([], &ids(&["code"]), false));
    }

    #[test]
    fn every_key_column_must_be_proved_not_null() {
        let not_null = || ["order_id".to_owned(), "line_no".to_owned(), "qty".to_owned()];
        assert!(proves_not_null(not_null(), &ids(&["line_no", "order_id"]), false));
        assert!(!proves_not_null(not_null(), &ids(&["order_id", "note"]), false));
        assert!(!proves_not_null([], &ids(&["code"]), false));
        assert!(proves_not_null(["Code".to_owned()], &ids(&["code"]), true));
        assert!(!proves_not_null(["Code".to_owned()], &ids(&["code"]), false));
    }

    #[test]
    fn mysql_column_names_match_whatever_their_case() {
        let index = [entry("PRIMARY", Some("Code"))];
        assert!(proves_unique(index.clone(), &ids(&["code"]), true));
        assert!(!proves_unique(index, &ids(&["code"]), false));
    }
}
