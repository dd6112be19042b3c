//! Runtime switches of the catalog service, at `GET`/`PUT /internal/settings`.
//!
//! The demo needs a *real* difference between the service and the monolith
//! for shadow traffic to find, one that can be turned on and off while the
//! stack runs. `price_rounding_bug` is that difference: when on, every
//! product the service serves reports its price rounded to whole dollars
//! (`price_cents` 1999 → 2000), the kind of slip a rewrite makes when it
//! moves money between types. The database always keeps the exact price;
//! only the answers are wrong, so turning the switch off heals every answer
//! at once and nothing needs repairing.
//!
//! Off unless someone turns it on: [`crate::Application::build`] starts with
//! [`Settings::default`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use service_runtime::extract::JsonBody;
use service_runtime::ApiError;

use crate::AppState;

/// The settings in force, as `GET /internal/settings` answers them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Serve prices rounded to whole dollars (the planted bug).
    pub price_rounding_bug: bool,
}

/// The body of `PUT /internal/settings`: the fields to change; those left
/// out keep their value. Unknown fields are refused with a 422.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsUpdate {
    /// New value of [`Settings::price_rounding_bug`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_rounding_bug: Option<bool>,
}

/// The settings shared by every handler; cheap to clone, changed in place.
#[derive(Debug, Clone, Default)]
pub struct SharedSettings {
    // One flag today: an atomic is enough, and reading it never blocks a
    // request.
    price_rounding_bug: Arc<AtomicBool>,
}

impl SharedSettings {
    /// Shared settings starting as `initial`.
    pub fn new(initial: Settings) -> Self {
        let shared = Self::default();
        shared.apply(SettingsUpdate {
            price_rounding_bug: Some(initial.price_rounding_bug),
        });
        shared
    }

    /// The settings in force now.
    pub fn current(&self) -> Settings {
        Settings {
            price_rounding_bug: self.price_rounding_bug.load(Ordering::Relaxed),
        }
    }

    /// Applies the fields `update` gives and returns the settings now in force.
    pub fn apply(&self, update: SettingsUpdate) -> Settings {
        if let Some(on) = update.price_rounding_bug {
            self.price_rounding_bug.store(on, Ordering::Relaxed);
        }
        self.current()
    }

    /// The price to serve for `price_cents` as stored.
    pub fn served_price(&self, price_cents: i64) -> i64 {
        if self.current().price_rounding_bug {
            round_to_whole_dollars(price_cents)
        } else {
            price_cents
        }
    }
}

/// Rounds cents to the nearest whole dollar, halves up: 1999 → 2000,
/// 1949 → 1900, 1950 → 2000.
pub fn round_to_whole_dollars(cents: i64) -> i64 {
    cents.saturating_add(50).div_euclid(100).saturating_mul(100)
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/internal/settings", get(show).put(change))
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
            "nothing to change: give price_rounding_bug (true or false)",
        ));
    }
    let now = settings.apply(update);
    tracing::warn!(
        price_rounding_bug = now.price_rounding_bug,
        "catalog settings changed"
    );
    Ok(Json(now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_to_the_nearest_whole_dollar() {
        assert_eq!(round_to_whole_dollars(1999), 2000);
        assert_eq!(round_to_whole_dollars(1949), 1900);
        assert_eq!(round_to_whole_dollars(1950), 2000);
        assert_eq!(round_to_whole_dollars(2000), 2000);
        assert_eq!(round_to_whole_dollars(0), 0);
        assert_eq!(round_to_whole_dollars(49), 0);
    }

    #[test]
    fn serves_exact_prices_unless_the_bug_is_on() {
        let settings = SharedSettings::default();
        assert_eq!(settings.served_price(1999), 1999);
        settings.apply(SettingsUpdate {
            price_rounding_bug: Some(true),
        });
        assert_eq!(settings.served_price(1999), 2000);
        // A partial update leaves the other fields alone.
        assert_eq!(settings.apply(SettingsUpdate::default()), settings.current());
    }
}
