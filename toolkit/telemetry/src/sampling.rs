//! Which traces are kept: `OTEL_TRACES_SAMPLER` and its argument as a
//! value, with the decision as a plain function.
//!
//! The facade decides once per request, before any span exists, so the
//! decision must be callable without the SDK; the SDK's own sampler is
//! built from the same value for spans recorded through `tracing`. The
//! ratio test is the SDK's (`TraceIdRatioBased`: the trace id's low 63
//! bits against the ratio), so a facade and an SDK-instrumented service at
//! the same ratio keep the same traces.

use opentelemetry::trace::TraceId;
use opentelemetry_sdk::trace::Sampler;

use crate::settings::SettingsError;

/// How a trace with no sampled parent is decided.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Root {
    /// Every one is kept.
    AlwaysOn,
    /// None is kept.
    AlwaysOff,
    /// A share of them, by trace id (0 to 1).
    Ratio(f64),
}

/// The sampler: whether a parent's decision is followed, and how a trace
/// is decided without one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// A trace continued from a caller follows the caller's sampled flag.
    pub parent_based: bool,
    /// How the rest are decided.
    pub root: Root,
}

impl Default for Sampling {
    /// `parentbased_always_on`, the specification's default.
    fn default() -> Self {
        Self {
            parent_based: true,
            root: Root::AlwaysOn,
        }
    }
}

impl Sampling {
    /// `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`, either unset.
    pub fn from_variables(sampler: Option<&str>, argument: Option<&str>) -> Result<Self, SettingsError> {
        let ratio = || -> Result<f64, SettingsError> {
            match argument {
                // The specification's default for the ratio samplers.
                None => Ok(1.0),
                Some(text) => match text.parse::<f64>() {
                    Ok(ratio) if (0.0..=1.0).contains(&ratio) => Ok(ratio),
                    _ => Err(SettingsError::SamplerArgument(text.to_owned())),
                },
            }
        };
        let (parent_based, root) = match sampler.unwrap_or("parentbased_always_on") {
            "always_on" => (false, Root::AlwaysOn),
            "always_off" => (false, Root::AlwaysOff),
            "traceidratio" => (false, Root::Ratio(ratio()?)),
            "parentbased_always_on" => (true, Root::AlwaysOn),
            "parentbased_always_off" => (true, Root::AlwaysOff),
            "parentbased_traceidratio" => (true, Root::Ratio(ratio()?)),
            other => return Err(SettingsError::Sampler(other.to_owned())),
        };
        Ok(Self { parent_based, root })
    }

    /// Whether a trace is kept: `parent_sampled` is the caller's sampled
    /// flag when the trace continues a caller's, `trace_id` its id.
    #[inline]
    pub fn sample(&self, parent_sampled: Option<bool>, trace_id: u128) -> bool {
        match parent_sampled {
            Some(sampled) if self.parent_based => sampled,
            _ => match self.root {
                Root::AlwaysOn => true,
                Root::AlwaysOff => false,
                Root::Ratio(ratio) => ratio_keeps(ratio, trace_id),
            },
        }
    }

    /// The SDK's sampler for the same settings.
    pub fn to_sdk(&self) -> Sampler {
        let root = match self.root {
            Root::AlwaysOn => Sampler::AlwaysOn,
            Root::AlwaysOff => Sampler::AlwaysOff,
            Root::Ratio(ratio) => Sampler::TraceIdRatioBased(ratio),
        };
        if self.parent_based {
            Sampler::ParentBased(Box::new(root))
        } else {
            root
        }
    }
}

/// The SDK's `TraceIdRatioBased` test.
fn ratio_keeps(ratio: f64, trace_id: u128) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    // A float-to-integer `as` saturates, and the ratio is in 0..1 here.
    let bound = (ratio.max(0.0) * (1u64 << 63) as f64) as u64;
    let low = TraceId::from(trace_id).to_bytes();
    let mut bytes = [0; 8];
    bytes.copy_from_slice(&low[8..]);
    (u64::from_be_bytes(bytes) >> 1) < bound
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_based_follows_the_parent_and_decides_roots() {
        let sampling = Sampling::from_variables(Some("parentbased_always_off"), None).unwrap();
        assert!(sampling.sample(Some(true), 1));
        assert!(!sampling.sample(Some(false), 1));
        assert!(!sampling.sample(None, 1));
        let always = Sampling::from_variables(Some("always_on"), None).unwrap();
        assert!(always.sample(Some(false), 1));
    }

    #[test]
    fn the_ratio_keeps_about_its_share() {
        let sampling = Sampling::from_variables(Some("traceidratio"), Some("0.25")).unwrap();
        // Trace ids spread evenly over the low 64 bits.
        let kept = (0..10_000u128)
            .filter(|i| sampling.sample(None, i.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)))
            .count();
        assert!((2_200..2_800).contains(&kept), "{kept}");
        assert!(Sampling::from_variables(Some("traceidratio"), Some("2")).is_err());
        assert!(Sampling::from_variables(Some("jaeger_remote"), None).is_err());
    }
}
