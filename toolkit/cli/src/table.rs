//! Aligned text tables for people, drawn by `comfy-table` with no borders
//! and no colour.
//!
//! Each column has a least width, the fixed width the commands have always
//! printed, so that ordinary output keeps its familiar layout; a longer
//! value widens its whole column instead of pushing its own row out of line.

use comfy_table::presets::NOTHING;
use comfy_table::{CellAlignment, ColumnConstraint, Table, Width};

use crate::output::say;

/// How one column is laid out.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    header: &'static str,
    min_width: u16,
    gap: u16,
    right: bool,
}

impl Column {
    /// A left-aligned column at least `min_width` characters wide,
    /// followed by one space.
    pub const fn left(header: &'static str, min_width: u16) -> Self {
        Self {
            header,
            min_width,
            gap: 1,
            right: false,
        }
    }

    /// A right-aligned column (numbers) at least `min_width` characters
    /// wide, followed by one space.
    pub const fn right(header: &'static str, min_width: u16) -> Self {
        Self {
            right: true,
            ..Self::left(header, min_width)
        }
    }

    /// The same column followed by `gap` spaces.
    pub const fn gap(self, gap: u16) -> Self {
        Self { gap, ..self }
    }
}

/// A table being filled, row by row.
pub struct TextTable {
    table: Table,
    columns: Vec<Column>,
    indent: &'static str,
}

impl TextTable {
    /// A table whose first line holds the columns' headers.
    pub fn new(columns: &[Column]) -> Self {
        let mut table = Self::without_header(columns);
        table
            .table
            .set_header(columns.iter().map(|c| c.header).collect::<Vec<_>>());
        table
    }

    /// A table of rows only.
    pub fn without_header(columns: &[Column]) -> Self {
        let mut table = Table::new();
        table.load_preset(NOTHING);
        Self {
            table,
            columns: columns.to_vec(),
            indent: "",
        }
    }

    /// Every line starts with `indent`.
    pub fn indent(mut self, indent: &'static str) -> Self {
        self.indent = indent;
        self
    }

    /// Adds a row, one cell per column.
    pub fn row<I>(&mut self, cells: I)
    where
        I: IntoIterator,
        I::Item: ToString,
    {
        self.table
            .add_row(cells.into_iter().map(|cell| cell.to_string()).collect::<Vec<_>>());
    }

    /// Adds a row per item, its cells made by `cells`.
    pub fn rows<T, C>(mut self, items: impl IntoIterator<Item = T>, cells: impl Fn(T) -> C) -> Self
    where
        C: IntoIterator,
        C::Item: ToString,
    {
        for item in items {
            self.row(cells(item));
        }
        self
    }

    /// Prints the table's lines.
    pub fn print(self) {
        for line in self.lines() {
            say!("{line}");
        }
    }

    /// The table's lines, without trailing spaces; none for a table with
    /// neither header nor rows.
    pub fn lines(mut self) -> Vec<String> {
        if self.table.header().is_none() && self.table.row_count() == 0 {
            return Vec::new();
        }
        for (column, layout) in self.table.column_iter_mut().zip(&self.columns) {
            column.set_padding((0, layout.gap));
            column.set_constraint(ColumnConstraint::LowerBoundary(Width::Fixed(
                layout.min_width + layout.gap,
            )));
            if layout.right {
                column.set_cell_alignment(CellAlignment::Right);
            }
        }
        self.table
            .lines()
            .map(|line| format!("{}{}", self.indent, line.trim_end()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLUMNS: [Column; 3] = [
        Column::left("NAME", 6),
        Column::right("COUNT", 5).gap(2),
        Column::left("NOTE", 0),
    ];

    fn render(rows: &[[&str; 3]]) -> Vec<String> {
        TextTable::new(&COLUMNS)
            .indent("  ")
            .rows(rows, |row| *row)
            .lines()
    }

    #[test]
    fn short_values_keep_the_least_widths() {
        assert_eq!(
            render(&[["a", "1", "x"], ["bb", "22", ""]]),
            ["  NAME   COUNT  NOTE", "  a          1  x", "  bb        22"]
        );
    }

    #[test]
    fn a_long_value_widens_its_column_for_every_row() {
        let lines = render(&[["a-much-longer-name", "1", "x"], ["b", "12345678", "y"]]);
        assert_eq!(
            lines,
            [
                "  NAME                  COUNT  NOTE",
                "  a-much-longer-name        1  x",
                "  b                  12345678  y",
            ]
        );
    }

    #[test]
    fn an_empty_table_without_header_has_no_lines() {
        assert!(TextTable::without_header(&COLUMNS).lines().is_empty());
    }
}
