//! A capability's migration stage: legacy → shadow → canary N% → service →
//! retired. The stage decides where the capability's requests go and what
//! safety net applies; moving forward may be gated, moving back never is.
//!
//! | stage    | answers the client              | also                                  |
//! |----------|---------------------------------|---------------------------------------|
//! | legacy   | the monolith                    |                                       |
//! | shadow   | the monolith                    | a copy goes to the service, compared  |
//! | canary   | the service for N‰ of keys      | the monolith is the fallback          |
//! | service  | the service                     | the monolith is the fallback          |
//! | retired  | the service                     | no fallback: the monolith is done     |

use std::cmp::Ordering;
use std::fmt;

/// A share of traffic in tenths of a percent (0 to 1000), the canary's unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Permille(u16);

impl Permille {
    /// The whole traffic.
    pub const ALL: Permille = Permille(1000);

    /// A share in tenths of a percent; `None` above 1000.
    pub fn new(permille: u16) -> Option<Self> {
        (permille <= 1000).then_some(Self(permille))
    }

    /// A percentage given by a user (`10`, `0.5`), which must be a whole
    /// number of tenths between 0.1 and 100.
    pub fn from_percent(percent: f64) -> Result<Self, String> {
        let tenths = percent * 10.0;
        if !(0.1..=100.0).contains(&percent) || !percent.is_finite() {
            return Err(format!(
                "canary percent must be between 0.1 and 100, got {percent}"
            ));
        }
        if (tenths - tenths.round()).abs() > 1e-6 {
            return Err(format!(
                "canary percent goes in steps of 0.1, got {percent}; use for example {:.1}",
                tenths.round() / 10.0
            ));
        }
        Ok(Self(tenths.round() as u16))
    }

    /// Tenths of a percent.
    pub fn get(self) -> u16 {
        self.0
    }

    /// As a percentage.
    pub fn percent(self) -> f64 {
        f64::from(self.0) / 10.0
    }
}

impl fmt::Display for Permille {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 % 10 == 0 {
            write!(f, "{}%", self.0 / 10)
        } else {
            write!(f, "{}.{}%", self.0 / 10, self.0 % 10)
        }
    }
}

/// Where a capability stands in its migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Everything on the monolith.
    Legacy,
    /// The monolith answers; the service gets a copy to compare.
    Shadow,
    /// The service answers this share of sticky keys.
    Canary(Permille),
    /// The service answers everything; the monolith is the fallback.
    Service,
    /// The service answers everything; no fallback.
    Retired,
}

impl Stage {
    /// Every stage name, in migration order.
    pub const NAMES: [&'static str; 5] = ["legacy", "shadow", "canary", "service", "retired"];

    /// The stage's name, as stored (`canary` without its share).
    pub fn name(self) -> &'static str {
        match self {
            Stage::Legacy => "legacy",
            Stage::Shadow => "shadow",
            Stage::Canary(_) => "canary",
            Stage::Service => "service",
            Stage::Retired => "retired",
        }
    }

    /// The canary share, if a canary.
    pub fn permille(self) -> Option<Permille> {
        match self {
            Stage::Canary(share) => Some(share),
            _ => None,
        }
    }

    /// Builds a stage from its stored name and share; `None` for an unknown
    /// name or a canary without a valid share.
    pub fn from_parts(name: &str, permille: Option<i64>) -> Option<Self> {
        Some(match name {
            "legacy" => Stage::Legacy,
            "shadow" => Stage::Shadow,
            "canary" => {
                let share = permille
                    .and_then(|p| u16::try_from(p).ok())
                    .and_then(Permille::new)?;
                Stage::Canary(share)
            }
            "service" => Stage::Service,
            "retired" => Stage::Retired,
            _ => return None,
        })
    }

    /// Parses what a user types: a stage name, and `percent` for a canary.
    pub fn from_user(name: &str, percent: Option<f64>) -> Result<Self, String> {
        let known = || Stage::NAMES.join(", ");
        match (name, percent) {
            ("canary", None) => Err("a canary needs a share: add `--percent N` (0.1 to 100)".to_owned()),
            ("canary", Some(percent)) => Ok(Stage::Canary(Permille::from_percent(percent)?)),
            (other, Some(_)) if Stage::NAMES.contains(&other) => {
                Err(format!("`--percent` only goes with `canary`, not `{other}`"))
            }
            (other, _) => Stage::from_parts(other, None)
                .ok_or_else(|| format!("unknown stage `{other}`; use one of {}", known())),
        }
    }

    /// Position in the migration, for telling forward from backward moves.
    /// Canaries order by share among themselves.
    fn rank(self) -> (u8, u16) {
        match self {
            Stage::Legacy => (0, 0),
            Stage::Shadow => (1, 0),
            Stage::Canary(share) => (2, share.get()),
            Stage::Service => (3, 0),
            Stage::Retired => (4, 0),
        }
    }

    /// Whether moving from `self` to `to` goes toward the service (and may
    /// therefore be gated). Moves back are always allowed.
    pub fn is_forward_to(self, to: Stage) -> bool {
        self.rank().cmp(&to.rank()) == Ordering::Less
    }

    /// Whether the service answers any of this capability's requests.
    pub fn serves_from_service(self) -> bool {
        matches!(self, Stage::Canary(_) | Stage::Service | Stage::Retired)
    }

    /// Whether the monolith is the fallback when the service fails.
    pub fn has_fallback(self) -> bool {
        matches!(self, Stage::Canary(_) | Stage::Service)
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stage::Canary(share) => write!(f, "canary {share}"),
            other => f.write_str(other.name()),
        }
    }
}

impl std::str::FromStr for Stage {
    type Err = String;

    /// Parses the display form: `legacy`, `canary 12.5%`, …
    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim().split_once(' ') {
            Some((name, share)) => {
                let percent: f64 = share
                    .trim()
                    .trim_end_matches('%')
                    .parse()
                    .map_err(|_| format!("`{text}` is not a stage; a canary reads like `canary 10%`"))?;
                Stage::from_user(name, Some(percent))
            }
            None => Stage::from_user(text.trim(), None),
        }
    }
}

impl serde::Serialize for Stage {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Stage {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_print_and_parse_back() {
        for stage in [
            Stage::Legacy,
            Stage::Shadow,
            Stage::Canary(Permille(5)),
            Stage::Canary(Permille(100)),
            Stage::Canary(Permille::ALL),
            Stage::Service,
            Stage::Retired,
        ] {
            assert_eq!(stage.to_string().parse::<Stage>(), Ok(stage), "{stage}");
        }
        assert_eq!(Stage::Canary(Permille(5)).to_string(), "canary 0.5%");
    }

    #[test]
    fn user_input_is_checked() {
        assert_eq!(
            Stage::from_user("canary", Some(10.0)),
            Ok(Stage::Canary(Permille(100)))
        );
        assert!(Stage::from_user("canary", None)
            .unwrap_err()
            .contains("--percent"));
        assert!(Stage::from_user("canary", Some(0.05)).is_err());
        assert!(Stage::from_user("canary", Some(12.34))
            .unwrap_err()
            .contains("steps of 0.1"));
        assert!(Stage::from_user("canary", Some(101.0)).is_err());
        assert!(Stage::from_user("service", Some(5.0)).is_err());
        assert!(Stage::from_user("servce", None)
            .unwrap_err()
            .contains("legacy, shadow"));
    }

    #[test]
    fn forward_and_backward() {
        let ten = Stage::Canary(Permille(100));
        let fifty = Stage::Canary(Permille(500));
        assert!(Stage::Legacy.is_forward_to(Stage::Shadow));
        assert!(Stage::Shadow.is_forward_to(ten));
        assert!(ten.is_forward_to(fifty));
        assert!(!fifty.is_forward_to(ten));
        assert!(fifty.is_forward_to(Stage::Service));
        assert!(!Stage::Retired.is_forward_to(Stage::Legacy));
        assert!(!Stage::Service.is_forward_to(Stage::Service));
    }
}
