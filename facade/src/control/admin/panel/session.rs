//! The control panel's sessions: logging in with the admin token (from the
//! address, as Jupyter does, or from the login form) trades it for an
//! HttpOnly, SameSite=Strict cookie; every action also carries the
//! session's CSRF token in a header.
//!
//! Sessions live in this replica's memory: a panel is opened on one
//! replica's admin listener, and a restart logs everyone out, which is the
//! safe direction.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap, HeaderValue};
use rand::RngCore as _;
use subtle::ConstantTimeEq;

use crate::control::admin::AdminState;

/// The session cookie's name.
pub(super) const COOKIE: &str = "strangler_panel";

/// The header that carries the CSRF token on every action.
pub(super) const CSRF_HEADER: &str = "x-csrf-token";

/// How long a session lasts without a new login.
const LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// Sessions kept at most; beyond, the one closest to expiry goes. A token
/// holder can only log themselves out by opening too many.
const MAX_SESSIONS: usize = 1_000;

/// This replica's panel sessions.
#[derive(Debug, Default)]
pub struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
}

#[derive(Debug, Clone)]
struct Session {
    csrf: String,
    expires: Instant,
}

/// What a request's cookie unlocks.
#[derive(Debug, Clone)]
pub(super) struct LoggedIn {
    /// The session's CSRF token, to embed in the page and compare on actions.
    pub(super) csrf: String,
}

impl Sessions {
    /// Opens a session: its id (for the cookie) and CSRF token.
    pub(super) fn open(&self, now: Instant) -> (String, String) {
        let (id, csrf) = (random_token(), random_token());
        let mut sessions = self.by_id.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        sessions.retain(|_, session| session.expires > now);
        if sessions.len() >= MAX_SESSIONS {
            let oldest = sessions
                .iter()
                .min_by_key(|(_, session)| session.expires)
                .map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(
            id.clone(),
            Session {
                csrf: csrf.clone(),
                expires: now + LIFETIME,
            },
        );
        (id, csrf)
    }

    /// The session the request's cookie names, if it is open.
    pub(super) fn find(&self, headers: &HeaderMap, now: Instant) -> Option<LoggedIn> {
        let id = cookie(headers)?;
        let sessions = self.by_id.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let session = sessions.get(id).filter(|session| session.expires > now)?;
        Some(LoggedIn {
            csrf: session.csrf.clone(),
        })
    }

    /// Ends the session the request's cookie names.
    pub(super) fn close(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers) {
            let mut sessions = self.by_id.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            sessions.remove(id);
        }
    }
}

/// The value of the panel's cookie in the request, if any.
fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// 32 random bytes, hex: unguessable, and safe in a cookie and a header.
fn random_token() -> String {
    let mut bytes = [0_u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `Set-Cookie` value that opens session `id`. No `Secure` flag: the
/// admin listener speaks plain HTTP (keep it on a private network or behind
/// `kubectl port-forward`), and a browser would not send a Secure cookie
/// back over it.
pub(super) fn set_cookie(id: &str) -> HeaderValue {
    let value = format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        LIFETIME.as_secs()
    );
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The `Set-Cookie` value that ends a session in the browser.
pub(super) fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static("strangler_panel=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}

/// Whether `presented` is the CSRF token of `session` (constant-time).
pub(super) fn csrf_matches(session: &LoggedIn, presented: Option<&str>) -> bool {
    presented.is_some_and(|p| {
        p.len() == session.csrf.len() && bool::from(p.as_bytes().ct_eq(session.csrf.as_bytes()))
    })
}

/// Why a login was refused.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refused {
    /// Wrong token.
    Wrong,
    /// Too many wrong tokens from this address; wait this long.
    Braked(Duration),
}

/// Checks a token presented to log in, through the admin API's brake on
/// wrong tokens (counted in `/metrics` the same way).
pub(super) fn check_token(
    state: &AdminState,
    address: Option<IpAddr>,
    presented: &str,
    now: Instant,
) -> Result<(), Refused> {
    if let Some(wait) = address.and_then(|address| state.brake.braked(address, now)) {
        state.proxy.metrics.admin_auth_failure("braked");
        return Err(Refused::Braked(wait));
    }
    let presented = presented.trim().as_bytes();
    let expected = state.token.as_bytes();
    if presented.len() == expected.len() && bool::from(presented.ct_eq(expected)) {
        return Ok(());
    }
    state.proxy.metrics.admin_auth_failure("wrong");
    if let Some(address) = address {
        state.brake.failed(address, now);
    }
    Err(Refused::Wrong)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cookie(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn a_session_is_found_by_its_cookie_until_it_expires_or_closes() {
        let sessions = Sessions::default();
        let now = Instant::now();
        let (id, csrf) = sessions.open(now);
        assert_ne!(id, csrf);
        assert_eq!(id.len(), 64);
        let headers = with_cookie(&format!("other=1; {COOKIE}={id}; x=y"));
        let found = sessions.find(&headers, now).unwrap();
        assert!(csrf_matches(&found, Some(&csrf)));
        assert!(!csrf_matches(&found, Some(&id)));
        assert!(!csrf_matches(&found, None));
        assert!(sessions
            .find(&with_cookie(&format!("{COOKIE}=nope")), now)
            .is_none());
        assert!(sessions.find(&HeaderMap::new(), now).is_none());
        assert!(sessions.find(&headers, now + LIFETIME).is_none());
        sessions.close(&headers);
        assert!(sessions.find(&headers, now).is_none());
    }

    #[test]
    fn sessions_are_bounded() {
        let sessions = Sessions::default();
        let now = Instant::now();
        for n in 0..MAX_SESSIONS + 10 {
            sessions.open(now + Duration::from_millis(n as u64));
        }
        assert_eq!(sessions.by_id.lock().unwrap().len(), MAX_SESSIONS);
    }
}
