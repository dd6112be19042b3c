//! Names of tables and columns, and a column's name on each side.

use std::fmt;

use crate::side::Side;

/// A table or column name; always quoted when put into SQL.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identifier(String);

impl Identifier {
    /// Accepts any non-empty name without NUL characters, at most 63 bytes
    /// (PostgreSQL's limit).
    pub fn parse(name: &str) -> Result<Self, String> {
        if name.is_empty() {
            return Err("a table or column name cannot be empty".to_owned());
        }
        if name.contains('\0') {
            return Err(format!("the name {name:?} contains a NUL character"));
        }
        if name.len() > 63 {
            return Err(format!("the name `{name}` is longer than 63 bytes"));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name quoted for SQL (`"name"`, inner quotes doubled), so that
    /// names with spaces, capitals or SQL in them are only ever names.
    pub fn quoted(&self) -> String {
        format!("\"{}\"", self.0.replace('"', "\"\""))
    }

    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A column and its name on each side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnPair {
    /// Name in the monolith's table.
    pub legacy: Identifier,
    /// Name in the service's table.
    pub service: Identifier,
}

impl ColumnPair {
    /// The column's name on `side`.
    pub fn on(&self, side: Side) -> &Identifier {
        match side {
            Side::Legacy => &self.legacy,
            Side::Service => &self.service,
        }
    }
}
