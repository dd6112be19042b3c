//! The last hour of each capability's traffic, for the panel's charts:
//! every ten seconds the sampler reads the facade's own counters (requests
//! by capability, backend and status; upstream latency buckets) and keeps
//! the differences as one point per capability: requests per second and
//! errors per second by side, and each side's p99 latency.
//!
//! It reads the Prometheus exposition the facade already renders rather
//! than the counters themselves: `prometheus_client` does not expose a
//! histogram's buckets, and a render every ten seconds costs less than a
//! millisecond, off the request path.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

/// How often a point is taken.
pub(super) const STEP: Duration = Duration::from_secs(10);

/// Points kept per capability: one hour.
const KEPT: usize = 360;

/// One capability over one step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Point {
    /// End of the step, Unix seconds.
    pub t: i64,
    /// Requests per second answered by the monolith's backend.
    pub legacy_rps: f64,
    /// Requests per second answered by the service's backend.
    pub service_rps: f64,
    /// 5xx answers per second from the monolith's backend.
    pub legacy_errors: f64,
    /// 5xx answers per second from the service's backend.
    pub service_errors: f64,
    /// The monolith's p99 latency (upper bucket bound), milliseconds.
    pub legacy_p99_ms: Option<f64>,
    /// The service's p99 latency (upper bucket bound), milliseconds.
    pub service_p99_ms: Option<f64>,
}

/// Cumulative counts read from one exposition.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct Reading {
    /// (capability, backend) → (requests, 5xx answers).
    requests: HashMap<(String, String), (f64, f64)>,
    /// (capability, backend) → cumulative latency buckets (le, count).
    buckets: HashMap<(String, String), Vec<(f64, f64)>>,
}

/// The panel's series, one per capability.
#[derive(Debug, Default)]
pub struct Series {
    state: Mutex<SeriesState>,
}

#[derive(Debug, Default)]
struct SeriesState {
    last: Option<Reading>,
    points: HashMap<String, VecDeque<Point>>,
}

/// Which backends are a capability's two sides.
#[derive(Debug, Clone)]
pub(super) struct Sides {
    pub(super) capability: String,
    pub(super) legacy: String,
    pub(super) service: String,
}

impl Series {
    /// Adds the step ending at `t` (Unix seconds) from `exposition`.
    pub(super) fn record(&self, exposition: &str, sides: &[Sides], t: i64) {
        let reading = Reading::parse(exposition);
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(last) = &state.last {
            let step = STEP.as_secs_f64();
            let mut points = Vec::with_capacity(sides.len());
            for side in sides {
                let per_second = |backend: &str| {
                    let key = (side.capability.clone(), backend.to_owned());
                    let now = reading.requests.get(&key).copied().unwrap_or_default();
                    let before = last.requests.get(&key).copied().unwrap_or_default();
                    (
                        (now.0 - before.0).max(0.0) / step,
                        (now.1 - before.1).max(0.0) / step,
                    )
                };
                let p99 = |backend: &str| {
                    let key = (side.capability.clone(), backend.to_owned());
                    p99_ms(reading.buckets.get(&key), last.buckets.get(&key))
                };
                let (legacy_rps, legacy_errors) = per_second(&side.legacy);
                let (service_rps, service_errors) = per_second(&side.service);
                points.push((
                    side.capability.clone(),
                    Point {
                        t,
                        legacy_rps,
                        service_rps,
                        legacy_errors,
                        service_errors,
                        legacy_p99_ms: p99(&side.legacy),
                        service_p99_ms: p99(&side.service),
                    },
                ));
            }
            for (capability, point) in points {
                let kept = state.points.entry(capability).or_default();
                if kept.len() == KEPT {
                    kept.pop_front();
                }
                kept.push_back(point);
            }
        }
        state.last = Some(reading);
    }

    /// A capability's points, oldest first.
    pub(super) fn points(&self, capability: &str) -> Vec<Point> {
        let state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        state
            .points
            .get(capability)
            .map(|points| points.iter().copied().collect())
            .unwrap_or_default()
    }

    /// A capability's newest point.
    pub(super) fn latest(&self, capability: &str) -> Option<Point> {
        let state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        state
            .points
            .get(capability)
            .and_then(|points| points.back().copied())
    }
}

/// The p99 over one step, from two cumulative bucket readings: the upper
/// bound of the first bucket that holds 99% of the step's answers.
fn p99_ms(now: Option<&Vec<(f64, f64)>>, before: Option<&Vec<(f64, f64)>>) -> Option<f64> {
    let now = now?;
    let delta: Vec<(f64, f64)> = now
        .iter()
        .map(|(le, count)| {
            let earlier = before
                .and_then(|b| b.iter().find(|(l, _)| l == le))
                .map_or(0.0, |(_, c)| *c);
            (*le, (count - earlier).max(0.0))
        })
        .collect();
    let total = delta.iter().map(|(_, count)| *count).fold(0.0, f64::max);
    if total <= 0.0 {
        return None;
    }
    let target = total * 0.99;
    delta
        .iter()
        .find(|(_, count)| *count >= target)
        .map(|(le, _)| {
            if le.is_finite() {
                le * 1000.0
            } else {
                f64::INFINITY
            }
        })
        .filter(|ms| ms.is_finite())
        .or_else(|| {
            // Beyond the largest bound: say the largest finite one.
            delta
                .iter()
                .rev()
                .find(|(le, _)| le.is_finite())
                .map(|(le, _)| le * 1000.0)
        })
}

impl Reading {
    /// The request counters and latency buckets of an exposition.
    pub(super) fn parse(exposition: &str) -> Self {
        let mut reading = Reading::default();
        for line in exposition.lines() {
            let Some((name, labels, value)) = sample(line) else {
                continue;
            };
            let label = |wanted: &str| {
                labels
                    .iter()
                    .find(|(name, _)| *name == wanted)
                    .map(|(_, value)| (*value).to_owned())
            };
            let (Some(capability), Some(backend)) = (label("capability"), label("backend")) else {
                continue;
            };
            match name {
                "strangler_facade_requests_total" => {
                    let counts = reading.requests.entry((capability, backend)).or_default();
                    counts.0 += value;
                    if label("status").as_deref() == Some("5xx") {
                        counts.1 += value;
                    }
                }
                "strangler_facade_upstream_latency_seconds_bucket" => {
                    let Some(le) = label("le").and_then(|le| parse_number(&le)) else {
                        continue;
                    };
                    reading
                        .buckets
                        .entry((capability, backend))
                        .or_default()
                        .push((le, value));
                }
                _ => {}
            }
        }
        for buckets in reading.buckets.values_mut() {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        reading
    }
}

/// One exposition line: name, labels, value.
type Sample<'a> = (&'a str, Vec<(&'a str, &'a str)>, f64);

/// `name{a="x",b="y"} value` → its parts; `None` for comments and lines
/// this reader does not need.
fn sample(line: &str) -> Option<Sample<'_>> {
    if line.starts_with('#') {
        return None;
    }
    let (series, value) = line.rsplit_once(' ')?;
    let value = parse_number(value)?;
    let Some((name, rest)) = series.split_once('{') else {
        return Some((series, Vec::new(), value));
    };
    let labels = rest
        .strip_suffix('}')?
        .split("\",")
        .filter_map(|pair| {
            let (key, value) = pair.split_once("=\"")?;
            Some((key, value.trim_end_matches('"')))
        })
        .collect();
    Some((name, labels, value))
}

fn parse_number(text: &str) -> Option<f64> {
    match text {
        "+Inf" => Some(f64::INFINITY),
        other => other.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exposition(legacy: u64, legacy_5xx: u64, service: u64, slow: u64) -> String {
        format!(
            "# TYPE strangler_facade_requests counter\n\
             strangler_facade_requests_total{{capability=\"orders\",backend=\"legacy\",status=\"2xx\",replica_id=\"r\"}} {legacy}\n\
             strangler_facade_requests_total{{capability=\"orders\",backend=\"legacy\",status=\"5xx\",replica_id=\"r\"}} {legacy_5xx}\n\
             strangler_facade_requests_total{{capability=\"orders\",backend=\"svc\",status=\"2xx\",replica_id=\"r\"}} {service}\n\
             strangler_facade_upstream_latency_seconds_bucket{{capability=\"orders\",backend=\"svc\",le=\"0.001\",replica_id=\"r\"}} {}\n\
             strangler_facade_upstream_latency_seconds_bucket{{capability=\"orders\",backend=\"svc\",le=\"0.064\",replica_id=\"r\"}} {service}\n\
             strangler_facade_upstream_latency_seconds_bucket{{capability=\"orders\",backend=\"svc\",le=\"+Inf\",replica_id=\"r\"}} {service}\n",
            service - slow
        )
    }

    #[test]
    fn a_point_is_the_difference_between_two_readings_per_second() {
        let series = Series::default();
        let sides = [Sides {
            capability: "orders".to_owned(),
            legacy: "legacy".to_owned(),
            service: "svc".to_owned(),
        }];
        series.record(&exposition(100, 0, 0, 0), &sides, 10);
        assert!(
            series.points("orders").is_empty(),
            "the first reading is a baseline"
        );
        series.record(&exposition(200, 20, 1000, 5), &sides, 20);
        let point = series.latest("orders").unwrap();
        assert_eq!(point.t, 20);
        assert!((point.legacy_rps - 12.0).abs() < 1e-9, "{point:?}");
        assert!((point.legacy_errors - 2.0).abs() < 1e-9, "{point:?}");
        assert!((point.service_rps - 100.0).abs() < 1e-9, "{point:?}");
        assert_eq!(point.service_errors, 0.0);
        // 995 of 1000 within 1 ms: the p99 is the 1 ms bound.
        assert_eq!(point.service_p99_ms, Some(1.0));
        assert_eq!(point.legacy_p99_ms, None, "no latency recorded for legacy");
        // 50 of 1000 slow: the p99 moves to the 64 ms bound.
        series.record(&exposition(200, 20, 2000, 55), &sides, 30);
        assert_eq!(series.latest("orders").unwrap().service_p99_ms, Some(64.0));
        assert_eq!(series.points("orders").len(), 2);
    }

    #[test]
    fn an_hour_is_kept() {
        let series = Series::default();
        let sides = [Sides {
            capability: "orders".to_owned(),
            legacy: "legacy".to_owned(),
            service: "svc".to_owned(),
        }];
        for step in 0..(KEPT as u64 + 20) {
            series.record(&exposition(step, 0, 0, 0), &sides, step as i64);
        }
        let points = series.points("orders");
        assert_eq!(points.len(), KEPT);
        assert_eq!(points[0].t, 20);
    }
}
