//! The SQL the reconciler generates, per engine: identifier quoting,
//! placeholders, how each column is selected so that sqlx's `Any` driver can
//! read it, key ordering that matches the comparison in Rust, and the range
//! checksums of the bisection.
//!
//! Every name is quoted (backticks on MySQL, double quotes elsewhere) and
//! every column qualified (`t."col"`): SQLite reads an unknown bare `"col"`
//! as a string literal. Values are always bound, never spliced; the only
//! spliced SQL is the user's own `legacy_filter`/`service_filter`.

use std::fmt::Write as _;

use mapping::Identifier;
use toolkit_db::sql_value::SqlValue;
use toolkit_db::Engine;

/// What kind of values a column holds, from its declared type; decides how
/// it is selected and decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnClass {
    /// Integers of any width (and MySQL's `TINYINT(1)` booleans).
    Integer,
    /// Floating point.
    Float,
    /// Character data.
    Text,
    /// Booleans (read as 0/1): PostgreSQL's, and SQLite columns declared
    /// `BOOLEAN`.
    Bool,
    /// Binary data.
    Bytes,
    /// Anything else (decimals, timestamps, enums, uuids, …): read as text.
    Other,
}

impl ColumnClass {
    /// Whether two key columns can be compared: integers with integers,
    /// textual with textual, bytes with bytes.
    pub fn key_compatible(self, other: ColumnClass) -> bool {
        let group = |c| match c {
            ColumnClass::Integer | ColumnClass::Bool => 0,
            ColumnClass::Text | ColumnClass::Other => 1,
            ColumnClass::Bytes => 2,
            ColumnClass::Float => 3,
        };
        group(self) == group(other) && group(self) != 3
    }
}

/// One engine's spelling of the SQL.
#[derive(Debug, Clone, Copy)]
pub struct Dialect {
    engine: Engine,
}

/// `>` (after a keyset position), `>=` (from one) or `<=` (up to a range's
/// upper bound).
#[derive(Debug, Clone, Copy)]
pub enum Bound {
    /// Keys strictly after the given key.
    After,
    /// The given key and those after it.
    From,
    /// Keys up to and including the given key.
    UpTo,
}

impl Dialect {
    /// The dialect of `engine`.
    pub fn new(engine: Engine) -> Self {
        Self { engine }
    }

    /// The engine.
    pub fn engine(self) -> Engine {
        self.engine
    }

    /// `name` quoted for this engine, inner quotes doubled.
    pub fn quote(self, name: &Identifier) -> String {
        match self.engine {
            Engine::MySql => format!("`{}`", name.as_str().replace('`', "``")),
            Engine::Sqlite | Engine::Postgres => name.quoted(),
        }
    }

    /// The column qualified with the table alias `t`.
    pub fn column(self, name: &Identifier) -> String {
        format!("t.{}", self.quote(name))
    }

    /// The `n`th (1-based) placeholder.
    pub fn placeholder(self, n: usize) -> String {
        match self.engine {
            Engine::MySql => "?".to_owned(),
            Engine::Sqlite | Engine::Postgres => format!("${n}"),
        }
    }

    /// The class of a column from the type the catalog declares.
    pub fn classify(self, declared: &str) -> ColumnClass {
        let t = declared.to_ascii_lowercase();
        match self.engine {
            Engine::Postgres => match t.as_str() {
                "smallint" | "integer" | "bigint" => ColumnClass::Integer,
                "real" | "double precision" => ColumnClass::Float,
                "text" | "character varying" => ColumnClass::Text,
                "boolean" => ColumnClass::Bool,
                "bytea" => ColumnClass::Bytes,
                _ => ColumnClass::Other,
            },
            Engine::MySql => match t.as_str() {
                "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "bit" | "year" => {
                    ColumnClass::Integer
                }
                "float" | "double" | "real" => ColumnClass::Float,
                "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" => ColumnClass::Text,
                "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => {
                    ColumnClass::Bytes
                }
                _ => ColumnClass::Other,
            },
            // SQLite's type affinity rules (https://sqlite.org/datatype3.html).
            Engine::Sqlite => {
                if t == "boolean" || t == "bool" {
                    ColumnClass::Bool
                } else if t.contains("int") {
                    ColumnClass::Integer
                } else if t.contains("char") || t.contains("clob") || t.contains("text") {
                    ColumnClass::Text
                } else if t.contains("real") || t.contains("floa") || t.contains("doub") {
                    ColumnClass::Float
                } else if t.contains("blob") {
                    ColumnClass::Bytes
                } else {
                    ColumnClass::Other
                }
            }
        }
    }

    /// How a column is selected: as stored where the `Any` driver reads the
    /// type, otherwise converted to something it reads.
    pub fn select_expr(self, name: &Identifier, class: ColumnClass) -> String {
        let column = self.column(name);
        match (self.engine, class) {
            (Engine::Postgres, ColumnClass::Other) => format!("CAST({column} AS TEXT)"),
            // `real` widened on the server: the `Any` driver refuses to read
            // a `real` as `f64`, and `COPY` would print the shortest text
            // of the 32-bit value (`1.1`), which parses to another `f64`
            // than the widened value every other reader sees. A no-op for
            // `double precision`.
            (Engine::Postgres, ColumnClass::Float) => format!("CAST({column} AS float8)"),
            (Engine::MySql, ColumnClass::Integer) => format!("CAST({column} AS SIGNED)"),
            (Engine::MySql, ColumnClass::Other) => format!("CAST({column} AS CHAR)"),
            // sqlx types a SQLite column by its declared type, and the `Any`
            // driver refuses `BOOLEAN`, `DATE`, `TIME`, `DATETIME` and
            // `TIMESTAMP` outright. An expression has no declared type, so
            // unary `+` (a no-op in SQLite, which keeps the value and its
            // storage class) has it read as stored: integers, reals or text.
            (Engine::Sqlite, ColumnClass::Bool | ColumnClass::Other) => format!("+{column}"),
            _ => column,
        }
    }

    /// A key column as ordered and compared: integers as they are, anything
    /// textual by its bytes, which is the order Rust compares strings in.
    pub fn key_expr(self, name: &Identifier, class: ColumnClass) -> String {
        let column = self.column(name);
        match (self.engine, class) {
            (_, ColumnClass::Integer | ColumnClass::Bool | ColumnClass::Bytes | ColumnClass::Float) => column,
            (Engine::Postgres, ColumnClass::Text) => format!("{column} COLLATE \"C\""),
            (Engine::Postgres, _) => format!("CAST({column} AS TEXT) COLLATE \"C\""),
            (Engine::MySql, _) => format!("CAST({column} AS BINARY)"),
            (Engine::Sqlite, ColumnClass::Text) => format!("{column} COLLATE BINARY"),
            (Engine::Sqlite, _) => format!("CAST({column} AS TEXT) COLLATE BINARY"),
        }
    }

    /// `keys` compared with a bound key tuple, spelled out as
    /// `k1 > ? OR (k1 = ? AND k2 > ?) …` (portable, and it keeps each
    /// column's collation). Returns the SQL and, per placeholder in order,
    /// which key value to bind; placeholders are numbered from `*next`.
    pub fn key_bound(self, keys: &[String], bound: Bound, next: &mut usize) -> (String, Vec<usize>) {
        let mut binds = Vec::new();
        let sql = Self::key_bound_with(keys, bound, &mut |j| {
            binds.push(j);
            let placeholder = self.placeholder(*next);
            *next += 1;
            placeholder
        });
        (sql, binds)
    }

    /// [`Self::key_bound`] with the `key` values spelled in as literals, for
    /// statements that take no parameters (PostgreSQL's `COPY`). `None` when
    /// a value has no literal here.
    pub fn key_bound_literal(self, keys: &[String], bound: Bound, key: &[SqlValue]) -> Option<String> {
        let mut ok = true;
        let sql = Self::key_bound_with(
            keys,
            bound,
            &mut |j| match key.get(j).and_then(|v| self.literal(v)) {
                Some(literal) => literal,
                None => {
                    ok = false;
                    String::new()
                }
            },
        );
        ok.then_some(sql)
    }

    fn key_bound_with(keys: &[String], bound: Bound, value: &mut dyn FnMut(usize) -> String) -> String {
        let (strict, last) = match bound {
            Bound::After => (">", ">"),
            Bound::From => (">", ">="),
            Bound::UpTo => ("<", "<="),
        };
        let mut alternatives = Vec::with_capacity(keys.len());
        for i in 0..keys.len() {
            let mut terms = Vec::with_capacity(i + 1);
            for (j, key) in keys.iter().enumerate().take(i) {
                terms.push(format!("{key} = {}", value(j)));
            }
            let op = if i + 1 == keys.len() { last } else { strict };
            terms.push(format!("{} {op} {}", keys[i], value(i)));
            alternatives.push(format!("({})", terms.join(" AND ")));
        }
        format!("({})", alternatives.join(" OR "))
    }

    /// `value` as a PostgreSQL literal, for a session with
    /// `standard_conforming_strings` on (backslashes are plain characters,
    /// quotes are doubled). `None` on other engines, which are always
    /// given parameters, and for text with a NUL, which PostgreSQL cannot
    /// store anyway.
    pub fn literal(self, value: &SqlValue) -> Option<String> {
        if self.engine != Engine::Postgres {
            return None;
        }
        Some(match value {
            SqlValue::Null => "NULL".to_owned(),
            SqlValue::Int(v) => v.to_string(),
            SqlValue::Float(v) if v.is_finite() => format!("CAST('{v:?}' AS float8)"),
            SqlValue::Float(_) => return None,
            SqlValue::Text(t) if t.contains('\0') => return None,
            SqlValue::Text(t) => format!("'{}'", t.replace('\'', "''")),
            SqlValue::Bytes(b) => {
                let mut hex = String::with_capacity(2 * b.len() + 20);
                hex.push_str("CAST('\\x");
                for byte in b {
                    let _ = write!(hex, "{byte:02x}");
                }
                hex.push_str("' AS bytea)");
                hex
            }
        })
    }

    /// An order-independent checksum of the rows that `COUNT(*)` counts:
    /// the sum of a 64-bit hash of each row's column texts, as text
    /// (PostgreSQL's `hashtextextended` of each column, or
    /// `hashint8extended` where `integers` says both sides hold integers,
    /// combined; a 64-bit slice of MD5 of the row on MySQL). `None` for
    /// SQLite, which has no hash function.
    pub fn checksum_expr(self, columns: &[Identifier], integers: &[bool]) -> Option<String> {
        match self.engine {
            Engine::Postgres => {
                // Each column's text is hashed with its own seed (its
                // position) and the hashes are combined by XOR: equal
                // texts column by column, and equal NULLs, give equal row
                // hashes, as the row's text form would, at half the cost of
                // spelling out the row (record output quotes and escapes
                // every field). hashtextextended (PostgreSQL 11) is several
                // times cheaper than md5. SUM of bigint cannot overflow: it
                // is numeric.
                let parts: Vec<String> = columns
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        let seed = i + 1;
                        let column = self.column(c);
                        // An integer's text is its value: hashing the value
                        // equates the same rows, and spares the spelling.
                        let hash = if integers.get(i).copied().unwrap_or(false) {
                            format!("hashint8extended(CAST({column} AS BIGINT), {seed})")
                        } else {
                            format!("hashtextextended(CAST({column} AS TEXT), {seed})")
                        };
                        format!("COALESCE({hash}, {seed})")
                    })
                    .collect();
                Some(format!("CAST(COALESCE(SUM({}), 0) AS TEXT)", parts.join(" # ")))
            }
            Engine::MySql => {
                let parts: Vec<String> = columns
                    .iter()
                    .map(|c| {
                        let text = format!("CAST({} AS CHAR)", self.column(c));
                        format!("COALESCE(CONCAT(CHAR_LENGTH({text}), ':', {text}), 'N')")
                    })
                    .collect();
                Some(format!(
                    "CAST(COALESCE(SUM(CAST(CONV(SUBSTRING(MD5(CONCAT_WS('|', {})), 1, 16), 16, 10) AS UNSIGNED)), 0) AS CHAR)",
                    parts.join(", ")
                ))
            }
            Engine::Sqlite => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted_per_engine_never_spliced() {
        let evil = Identifier::parse("x`\"; DROP TABLE t; --").unwrap();
        assert_eq!(
            Dialect::new(Engine::MySql).quote(&evil),
            "`x``\"; DROP TABLE t; --`"
        );
        assert_eq!(
            Dialect::new(Engine::Postgres).quote(&evil),
            "\"x`\"\"; DROP TABLE t; --\""
        );
    }

    #[test]
    fn composite_keyset_bounds_bind_in_order() {
        let keys = vec!["t.a".to_owned(), "t.b".to_owned()];
        let mut next = 1;
        let (sql, binds) = Dialect::new(Engine::Postgres).key_bound(&keys, Bound::After, &mut next);
        assert_eq!(sql, "((t.a > $1) OR (t.a = $2 AND t.b > $3))");
        assert_eq!(binds, vec![0, 0, 1]);
        assert_eq!(next, 4);
        let (sql, _) = Dialect::new(Engine::MySql).key_bound(&keys, Bound::UpTo, &mut next);
        assert_eq!(sql, "((t.a < ?) OR (t.a = ? AND t.b <= ?))");
    }

    #[test]
    fn a_batch_that_rereads_its_lower_bound_starts_at_it() {
        let keys = vec!["t.a".to_owned(), "t.b".to_owned()];
        let mut next = 1;
        let (sql, binds) = Dialect::new(Engine::Sqlite).key_bound(&keys, Bound::From, &mut next);
        assert_eq!(sql, "((t.a > $1) OR (t.a = $2 AND t.b >= $3))");
        assert_eq!(binds, vec![0, 0, 1]);
    }

    #[test]
    fn sqlite_types_the_any_driver_refuses_are_read_as_stored() {
        let sqlite = Dialect::new(Engine::Sqlite);
        let name = Identifier::parse("at").unwrap();
        for declared in ["BOOLEAN", "bool", "DATETIME", "DATE", "TIMESTAMP", "TIME"] {
            let class = sqlite.classify(declared);
            assert_eq!(sqlite.select_expr(&name, class), "+t.\"at\"", "{declared}");
        }
        assert_eq!(sqlite.classify("BOOLEAN"), ColumnClass::Bool);
        assert_eq!(sqlite.classify("DATETIME"), ColumnClass::Other);
        assert_eq!(sqlite.select_expr(&name, ColumnClass::Text), "t.\"at\"");
    }

    #[test]
    fn postgresql_floats_are_read_widened_to_double_precision() {
        // A `real` read as `f64` by the `Any` driver fails, and its `COPY`
        // text (`1.1`) is not the widened value (found by the COPY
        // differential test, `copy_text/differential.rs`).
        let pg = Dialect::new(Engine::Postgres);
        let name = Identifier::parse("f").unwrap();
        assert_eq!(pg.classify("real"), ColumnClass::Float);
        assert_eq!(
            pg.select_expr(&name, ColumnClass::Float),
            "CAST(t.\"f\" AS float8)"
        );
    }

    #[test]
    fn copy_bounds_spell_literals_that_cannot_break_out() {
        let keys = vec!["t.a".to_owned(), "t.b".to_owned()];
        let key = [SqlValue::Int(7), SqlValue::Text("it's \\ x".to_owned())];
        let pg = Dialect::new(Engine::Postgres);
        assert_eq!(
            pg.key_bound_literal(&keys, Bound::After, &key).unwrap(),
            "((t.a > 7) OR (t.a = 7 AND t.b > 'it''s \\ x'))"
        );
        assert_eq!(
            pg.literal(&SqlValue::Bytes(vec![0, 255])).unwrap(),
            "CAST('\\x00ff' AS bytea)"
        );
        assert!(pg.literal(&SqlValue::Text("a\0b".to_owned())).is_none());
        assert!(Dialect::new(Engine::MySql).literal(&SqlValue::Int(1)).is_none());
    }
}
