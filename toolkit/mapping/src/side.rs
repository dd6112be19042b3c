//! The two databases of a capability.

/// One of a capability's two databases: the monolith's or its service's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The monolith's database.
    Legacy,
    /// The service's database.
    Service,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Legacy => "monolith",
            Side::Service => "service",
        })
    }
}
