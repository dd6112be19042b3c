//! The SQL of one repair statement, built twice at once: for the follower's
//! engine, with placeholders and the values to bind, and as text with the
//! values spelled in, for people to read. And the conditions that make a
//! statement compare-and-set: a key matched exactly, a column that still
//! holds what the plan read, NULL-safe on each engine.
//!
//! NULL is always spelled `NULL` (and compared with `IS NULL`) rather than
//! bound: the `Any` driver binds a NULL as text, which PostgreSQL refuses to
//! compare with, or insert through `INSERT … SELECT` into, a column of
//! another type.

use serde_json::Value;
use toolkit_db::sql_value::SqlValue;
use toolkit_db::Engine;

use super::{Action, Statement};
use crate::sql::{ColumnClass, Dialect};

/// A statement being built: the SQL to run and the text to show grow
/// together.
pub(super) struct Builder {
    dialect: Dialect,
    sql: String,
    display: String,
    binds: Vec<SqlValue>,
}

impl Builder {
    /// An empty statement for `dialect`.
    pub(super) fn new(dialect: Dialect) -> Self {
        Self {
            dialect,
            sql: String::new(),
            display: String::new(),
            binds: Vec::new(),
        }
    }

    /// SQL text, the same in both forms.
    pub(super) fn text(&mut self, text: &str) -> &mut Self {
        self.sql.push_str(text);
        self.display.push_str(text);
        self
    }

    /// A value: a placeholder to run, its literal to show.
    pub(super) fn value(&mut self, value: &SqlValue) -> &mut Self {
        if *value == SqlValue::Null {
            return self.text("NULL");
        }
        self.binds.push(value.clone());
        self.sql.push_str(&self.dialect.placeholder(self.binds.len()));
        self.display.push_str(&literal(value));
        self
    }

    /// `values`, separated by commas.
    pub(super) fn values<'v>(&mut self, values: impl IntoIterator<Item = &'v SqlValue>) -> &mut Self {
        for (i, value) in values.into_iter().enumerate() {
            if i > 0 {
                self.text(", ");
            }
            self.value(value);
        }
        self
    }

    /// `column = value AND …` for a key: integer and text keys only (the
    /// planner refuses others). On MySQL a text key is also compared by its
    /// bytes, since the column's collation may call `'a'` and `'A '` equal
    /// (the plain `=` stays, so that the key's index still finds the row).
    pub(super) fn key_equals(
        &mut self,
        columns: &[String],
        classes: &[ColumnClass],
        key: &[SqlValue],
    ) -> &mut Self {
        for (i, ((column, class), value)) in columns.iter().zip(classes).zip(key).enumerate() {
            if i > 0 {
                self.text(" AND ");
            }
            self.text(&format!("{column} = ")).value(value);
            if self.dialect.engine() == Engine::MySql && *class != ColumnClass::Integer {
                self.text(" AND ").mysql_same_bytes(column, value);
            }
        }
        self
    }

    /// ` AND column <still holds> value` for each guarded column: the
    /// compare of compare-and-set. Exact, and NULL-safe: PostgreSQL's
    /// `IS NOT DISTINCT FROM`, MySQL's `<=>` (on the bytes of text, whatever
    /// the collation), SQLite's `IS` (text under `BINARY` collation). A
    /// column read as text (PostgreSQL and MySQL `Other`: timestamps,
    /// decimals) is compared as the same text, in the same UTC session.
    pub(super) fn still_holds(&mut self, guards: &[Guard<'_>]) -> &mut Self {
        for guard in guards {
            let column = guard.column.as_str();
            self.text(" AND ");
            if *guard.value == SqlValue::Null {
                self.text(&format!("{column} IS NULL"));
                continue;
            }
            match (self.dialect.engine(), guard.class) {
                (Engine::Postgres, ColumnClass::Other) => {
                    self.text(&format!("CAST({column} AS TEXT) IS NOT DISTINCT FROM "))
                        .value(guard.value);
                }
                (Engine::Postgres, _) => {
                    self.text(&format!("{column} IS NOT DISTINCT FROM "))
                        .value(guard.value);
                }
                (Engine::MySql, ColumnClass::Integer) => {
                    self.text(&format!("{column} <=> ")).value(guard.value);
                }
                (Engine::MySql, _) => {
                    self.mysql_same_bytes(column, guard.value);
                }
                (Engine::Sqlite, ColumnClass::Text) => {
                    self.text(&format!("{column} IS "))
                        .value(guard.value)
                        .text(" COLLATE BINARY");
                }
                (Engine::Sqlite, _) => {
                    self.text(&format!("{column} IS ")).value(guard.value);
                }
            }
        }
        self
    }

    /// MySQL: `column`'s text and `value` have the same UTF-8 bytes.
    fn mysql_same_bytes(&mut self, column: &str, value: &SqlValue) -> &mut Self {
        self.text(&format!(
            "CAST(CONVERT({column} USING utf8mb4) AS BINARY) <=> CAST("
        ))
        .value(value)
        .text(" AS BINARY)")
    }

    /// The SQL to run and the values to bind.
    pub(super) fn into_query(self) -> (String, Vec<SqlValue>) {
        (self.sql, self.binds)
    }

    /// The finished statement on `table`'s row with `key`.
    pub(super) fn finish(self, table: String, action: Action, key: Vec<Value>) -> Statement {
        Statement {
            table,
            action,
            key,
            display: self.display,
            sql: self.sql,
            binds: self.binds,
            probe: None,
        }
    }
}

/// A column a compare-and-set statement checks, and the value it must
/// still hold.
pub(super) struct Guard<'a> {
    /// The column, quoted (unqualified: the statement's own table).
    pub column: String,
    /// How it is read and compared.
    pub class: ColumnClass,
    /// What the plan read.
    pub value: &'a SqlValue,
}

/// Whether a column of `class` can be guarded: compared exactly as the
/// plan read it.
pub(super) fn guardable(class: ColumnClass) -> bool {
    matches!(
        class,
        ColumnClass::Integer | ColumnClass::Text | ColumnClass::Other
    )
}

/// `value` as it reads in the displayed SQL.
fn literal(value: &SqlValue) -> String {
    match value {
        SqlValue::Null => "NULL".to_owned(),
        SqlValue::Int(v) => v.to_string(),
        SqlValue::Float(v) => v.to_string(),
        SqlValue::Text(v) => format!("'{}'", v.replace('\'', "''")),
        SqlValue::Bytes(v) => format!("<{} bytes>", v.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delete(engine: Engine, values: &[SqlValue]) -> (String, String, usize) {
        let dialect = Dialect::new(engine);
        let column = |name: &str| {
            if engine == Engine::MySql {
                format!("`{name}`")
            } else {
                format!("\"{name}\"")
            }
        };
        let guards: Vec<Guard<'_>> = [ColumnClass::Integer, ColumnClass::Text, ColumnClass::Other]
            .into_iter()
            .zip(values)
            .zip(["n", "s", "at"])
            .map(|((class, value), name)| Guard {
                column: column(name),
                class,
                value,
            })
            .collect();
        let mut b = Builder::new(dialect);
        b.text("DELETE FROM t WHERE ")
            .key_equals(
                &[column("k")],
                &[ColumnClass::Text],
                &[SqlValue::Text("it's".to_owned())],
            )
            .still_holds(&guards);
        let display = b.display.clone();
        let (sql, binds) = b.into_query();
        (sql, display, binds.len())
    }

    #[test]
    fn guards_are_null_safe_and_exact_on_each_engine() {
        let values = [
            SqlValue::Int(7),
            SqlValue::Null,
            SqlValue::Text("2026-01-02 10:00:00+00".to_owned()),
        ];
        let (sql, display, binds) = delete(Engine::Postgres, &values);
        assert_eq!(
            sql,
            "DELETE FROM t WHERE \"k\" = $1 AND \"n\" IS NOT DISTINCT FROM $2 AND \"s\" IS NULL \
             AND CAST(\"at\" AS TEXT) IS NOT DISTINCT FROM $3"
        );
        assert_eq!(
            display,
            "DELETE FROM t WHERE \"k\" = 'it''s' AND \"n\" IS NOT DISTINCT FROM 7 AND \"s\" IS NULL \
             AND CAST(\"at\" AS TEXT) IS NOT DISTINCT FROM '2026-01-02 10:00:00+00'"
        );
        assert_eq!(binds, 3, "NULL is spelled, never bound");

        let (sql, _, binds) = delete(Engine::MySql, &values);
        assert_eq!(
            sql,
            "DELETE FROM t WHERE `k` = ? AND CAST(CONVERT(`k` USING utf8mb4) AS BINARY) <=> CAST(? AS BINARY) \
             AND `n` <=> ? AND `s` IS NULL AND CAST(CONVERT(`at` USING utf8mb4) AS BINARY) <=> CAST(? AS BINARY)"
        );
        assert_eq!(binds, 4);

        let text = [SqlValue::Int(7), SqlValue::Text("x".to_owned()), SqlValue::Int(1)];
        let (sql, _, _) = delete(Engine::Sqlite, &text);
        assert_eq!(
            sql,
            "DELETE FROM t WHERE \"k\" = $1 AND \"n\" IS $2 AND \"s\" IS $3 COLLATE BINARY AND \"at\" IS $4"
        );
    }
}
