//! Runtime switches of the monolith, at `GET`/`PUT /internal/settings`, for
//! chaos tests (`bench/soak.sh`): a monolith that turns slow for a while is
//! one of the faults a migration must live through.
//!
//! - `latency_ms`: every request but `GET /health` and `/internal/settings`
//!   waits this long before it is handled, as on a monolith whose database
//!   is overloaded. `/health` stays quick, so that slowness is not mistaken
//!   for a dead process, and the switch itself stays quick so that it can be
//!   turned off again. Zero (no delay) to [`MAX_LATENCY_MS`].
//!
//! **Off by default, and absent unless asked for.** The monolith is the
//! facade's default backend, so any client could reach this endpoint
//! through it: only [`crate::Application::build_with_settings`] (the
//! binary's `--fault-switches`) mounts it, and [`crate::Application::build`]
//! answers `/internal/settings` with a 404 as before.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use service_runtime::extract::JsonBody;
use service_runtime::ApiError;

/// The longest delay `latency_ms` may ask for: a minute.
pub const MAX_LATENCY_MS: u64 = 60_000;

/// The settings in force, as `GET /internal/settings` answers them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Milliseconds every request waits before it is handled.
    pub latency_ms: u64,
}

/// The body of `PUT /internal/settings`: the fields to change; those left
/// out keep their value. Unknown fields and a latency above
/// [`MAX_LATENCY_MS`] are refused with a 422, and then nothing changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsUpdate {
    /// New value of [`Settings::latency_ms`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
}

/// The settings shared by every handler; cheap to clone, changed in place.
#[derive(Debug, Clone, Default)]
pub struct SharedSettings {
    latency_ms: Arc<AtomicU64>,
}

impl SharedSettings {
    /// Shared settings starting as `initial`.
    pub fn new(initial: Settings) -> Self {
        let shared = Self::default();
        shared.latency_ms.store(initial.latency_ms, Ordering::Relaxed);
        shared
    }

    /// The settings in force now.
    pub fn current(&self) -> Settings {
        Settings {
            latency_ms: self.latency_ms.load(Ordering::Relaxed),
        }
    }

    /// Checks every field of `update`, then applies them all, and returns
    /// the settings now in force; a refused update changes nothing.
    pub fn apply(&self, update: SettingsUpdate) -> Result<Settings, String> {
        if let Some(latency) = update.latency_ms {
            if latency > MAX_LATENCY_MS {
                return Err(format!(
                    "latency_ms must be between 0 and {MAX_LATENCY_MS}, got {latency}"
                ));
            }
        }
        if let Some(latency) = update.latency_ms {
            self.latency_ms.store(latency, Ordering::Relaxed);
        }
        Ok(self.current())
    }

    /// The delay to add to a request now, if any.
    fn delay(&self) -> Option<Duration> {
        match self.latency_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }
}

/// `GET`/`PUT /internal/settings`, serving `settings`.
pub(crate) fn routes<S>(settings: SharedSettings) -> Router<S> {
    Router::new()
        .route("/internal/settings", get(show).put(change))
        .with_state(settings)
}

async fn show(State(settings): State<SharedSettings>) -> Json<Settings> {
    Json(settings.current())
}

async fn change(
    State(settings): State<SharedSettings>,
    JsonBody(update): JsonBody<SettingsUpdate>,
) -> Result<Json<Settings>, ApiError> {
    if update == SettingsUpdate::default() {
        return Err(ApiError::unprocessable(
            "nothing to change: give latency_ms (milliseconds, 0 for none)",
        ));
    }
    let now = settings
        .apply(update)
        .map_err(|message| ApiError::unprocessable(message).with_detail(json!({ "field": "latency_ms" })))?;
    tracing::warn!(latency_ms = now.latency_ms, "monolith settings changed");
    Ok(Json(now))
}

/// Holds each request for the configured latency before handling it. It
/// wraps the shop's routes only: `/health` and `/internal/settings` are
/// added outside it.
pub(crate) async fn slow_down(
    State(settings): State<SharedSettings>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(delay) = settings.delay() {
        tokio::time::sleep(delay).await;
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_delay_unless_a_latency_is_set() {
        let settings = SharedSettings::default();
        assert_eq!(settings.current(), Settings { latency_ms: 0 });
        assert_eq!(settings.delay(), None);
        let now = settings.apply(SettingsUpdate {
            latency_ms: Some(250),
        });
        assert_eq!(now, Ok(Settings { latency_ms: 250 }));
        assert_eq!(settings.delay(), Some(Duration::from_millis(250)));
        // A partial update leaves the other fields alone.
        assert_eq!(settings.apply(SettingsUpdate::default()), Ok(settings.current()));
    }

    #[test]
    fn a_latency_above_the_limit_changes_nothing() {
        let settings = SharedSettings::new(Settings { latency_ms: 10 });
        let refused = settings.apply(SettingsUpdate {
            latency_ms: Some(MAX_LATENCY_MS + 1),
        });
        assert!(refused.is_err(), "{refused:?}");
        assert_eq!(settings.current(), Settings { latency_ms: 10 });
    }
}
