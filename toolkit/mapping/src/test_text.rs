//! Mapping text for the unit tests: one capability of one table, to which
//! each test adds the fields it is about.

/// `catalog`: `products` on both sides, keyed on `id`, `name` and
/// `price_cents` renamed on the service's side. `capability` is added to
/// the capability (from line 2), `table` to the table (from line 8 when
/// `capability` is one line).
pub(crate) fn catalog(capability: &str, table: &str) -> String {
    format!(
        "[capabilities.catalog]\n{capability}\n[[capabilities.catalog.tables]]\n\
         legacy = \"products\"\nservice = \"products\"\nkey = [\"id\"]\n\
         columns = {{ name = \"title\", id = \"id\", price_cents = \"unit_price_cents\" }}\n{table}"
    )
}
