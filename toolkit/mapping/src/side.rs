//! The two databases of a capability.

/// One of a capability's two databases: the monolith's or its service's.
///
/// It is written (by `Display` and in JSON) as `monolith` or `service`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Side {
    /// The monolith's database.
    #[serde(rename = "monolith")]
    Legacy,
    /// The service's database.
    #[serde(rename = "service")]
    Service,
}

impl Side {
    /// The other database.
    pub fn other(self) -> Side {
        match self {
            Side::Legacy => Side::Service,
            Side::Service => Side::Legacy,
        }
    }

    /// The side's name: `monolith` or `service`.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Legacy => "monolith",
            Side::Service => "service",
        }
    }
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_side_is_written_by_its_name() {
        assert_eq!(Side::Legacy.to_string(), "monolith");
        assert_eq!(Side::Service.to_string(), "service");
        assert_eq!(Side::Legacy.other(), Side::Service);
        assert_eq!(Side::Service.other(), Side::Legacy);
        assert_eq!(
            toml::Value::try_from(Side::Service).unwrap().as_str(),
            Some("service")
        );
    }
}
