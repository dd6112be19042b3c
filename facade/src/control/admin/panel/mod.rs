//! The migration control panel, served by the admin listener at `/`.
//!
//! One page (HTML, JavaScript and CSS embedded in the binary: `cargo build`
//! alone produces it) over a few JSON endpoints under `/panel/api/`. The
//! page builds every element with DOM calls and writes every value as text,
//! never as markup: shadowed answers and reasons are untrusted input. A
//! Content-Security-Policy that allows scripts only from the panel's own
//! files is the second wall.
//!
//! Without a session the page is the login form and every data endpoint
//! answers 401; actions also want the session's CSRF token in a header.
//! Flips and rollbacks go through the admin API's own code, gates,
//! overrides and audit record included (actor `panel`, or `panel:<name>`).

mod data;
mod series;
mod session;

pub use series::Series;
pub use session::Sessions;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use futures::Stream;
use serde::Deserialize;

use super::api_error::{ApiError, JsonBody, PathParams};
use super::capabilities::{self, ChangeBody};
use super::AdminState;
use crate::decision::stage::Stage;

/// The panel's state in the admin API: sessions, the traffic series, and
/// the overview last built.
#[derive(Debug, Default)]
pub struct Panel {
    sessions: Sessions,
    series: Series,
    overview: tokio::sync::Mutex<Option<(Instant, Arc<str>)>>,
}

/// How long one built overview serves every open page: ten panels cost the
/// store the queries of one.
const OVERVIEW_FRESH: Duration = Duration::from_secs(1);

impl Panel {
    /// The overview as JSON, built at most once per [`OVERVIEW_FRESH`]
    /// whatever the number of open pages.
    async fn overview_json(&self, state: &AdminState) -> Arc<str> {
        let mut cached = self.overview.lock().await;
        if let Some((built, json)) = cached.as_ref() {
            if built.elapsed() < OVERVIEW_FRESH {
                return Arc::clone(json);
            }
        }
        let overview = data::overview(state).await;
        let json: Arc<str> = serde_json::to_string(&overview)
            .unwrap_or_else(|_| "null".to_owned())
            .into();
        *cached = Some((Instant::now(), Arc::clone(&json)));
        json
    }
}

const LOGIN_HTML: &str = include_str!("assets/login.html");
const PANEL_HTML: &str = include_str!("assets/panel.html");
const PANEL_JS: &str = include_str!("assets/panel.js");
const PANEL_CSS: &str = include_str!("assets/panel.css");

/// Scripts and styles from the panel's own files only; no inline script,
/// no frame, no form posted elsewhere.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// How often the overview is pushed to an open page.
const PUSH_EVERY: Duration = Duration::from_secs(2);

/// The panel's routes (merged beside the admin API's, outside its bearer
/// check: the panel has its own).
pub(super) fn router(state: AdminState) -> Router<AdminState> {
    let data = Router::new()
        .route("/panel/api/overview", get(overview))
        .route("/panel/api/events", get(events))
        .route("/panel/api/backends", get(data::backends))
        .route("/panel/api/capabilities/{name}", get(data::detail))
        .route("/panel/api/capabilities/{name}/check", post(data::check))
        .route("/panel/api/capabilities/{name}/flip", post(flip))
        .route("/panel/api/capabilities/{name}/rollback", post(rollback))
        .route_layer(middleware::from_fn_with_state(state, require_session));
    Router::new()
        .route("/", get(page))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/panel/panel.js", get(script))
        .route("/panel/panel.css", get(style))
        .merge(data)
}

/// Takes a point of the traffic series every ten seconds until dropped
/// (the admin server aborts it when it stops).
pub(super) async fn sample(state: AdminState) {
    let mut every = tokio::time::interval(series::STEP);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let table = state.proxy.table.load();
        let sides: Vec<series::Sides> = table
            .matcher()
            .capabilities()
            .iter()
            .map(|c| series::Sides {
                capability: c.name.clone(),
                legacy: c.legacy_backend.clone(),
                service: c.service_backend.clone(),
            })
            .collect();
        let exposition = state.proxy.metrics.render();
        state
            .panel
            .series
            .record(&exposition, &sides, chrono::Utc::now().timestamp());
    }
}

/// Headers on every panel answer: the CSP, no caching (the pages carry a
/// CSRF token and live data), and no referrer (a first visit's address
/// holds the token).
fn guarded(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

fn html(status: StatusCode, body: String) -> Response {
    guarded((status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response())
}

/// The login page, with a message (plain text, escaped).
fn login_page(status: StatusCode, message: &str) -> Response {
    html(status, LOGIN_HTML.replace("{{message}}", &escape(message)))
}

/// Escapes text for an HTML text node or a quoted attribute.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    token: Option<String>,
}

/// `GET /`: the panel with a session; the login form without; with
/// `?token=…`, a login that redirects to `/` so the token leaves the
/// address bar and the history.
async fn page(
    State(state): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(query): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    let now = Instant::now();
    if let Some(token) = query.token {
        return log_in(&state, Some(peer.ip()), &token, now);
    }
    match state.panel.sessions.find(&headers, now) {
        Some(session) => html(
            StatusCode::OK,
            PANEL_HTML.replace("{{csrf}}", &escape(&session.csrf)),
        ),
        None => login_page(StatusCode::OK, ""),
    }
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    token: String,
}

/// `POST /login`: the form's way in.
async fn login(
    State(state): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Form(form): Form<LoginForm>,
) -> Response {
    log_in(&state, Some(peer.ip()), &form.token, Instant::now())
}

fn log_in(state: &AdminState, address: Option<std::net::IpAddr>, token: &str, now: Instant) -> Response {
    match session::check_token(state, address, token, now) {
        Ok(()) => {
            let (id, _) = state.panel.sessions.open(now);
            let mut response = Redirect::to("/").into_response();
            response
                .headers_mut()
                .insert(header::SET_COOKIE, session::set_cookie(&id));
            guarded(response)
        }
        Err(session::Refused::Wrong) => login_page(
            StatusCode::UNAUTHORIZED,
            "That is not the admin token. Use the token the facade reads from STRANGLER_ADMIN_TOKEN or admin_token_file.",
        ),
        Err(session::Refused::Braked(wait)) => login_page(
            StatusCode::TOO_MANY_REQUESTS,
            &format!(
                "Too many wrong tokens from this address; try again in {} s.",
                wait.as_secs().max(1)
            ),
        ),
    }
}

/// `POST /logout`.
async fn logout(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    state.panel.sessions.close(&headers);
    let mut response = Redirect::to("/").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session::clear_cookie());
    guarded(response)
}

async fn script() -> Response {
    guarded(
        (
            [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
            PANEL_JS,
        )
            .into_response(),
    )
}

async fn style() -> Response {
    guarded(([(header::CONTENT_TYPE, "text/css; charset=utf-8")], PANEL_CSS).into_response())
}

/// Data and actions need a session; actions (every POST) also its CSRF
/// token in `X-CSRF-Token`.
async fn require_session(State(state): State<AdminState>, request: Request, next: Next) -> Response {
    let Some(session) = state.panel.sessions.find(request.headers(), Instant::now()) else {
        return guarded(
            ApiError::Other(
                StatusCode::UNAUTHORIZED,
                "log in first: open the panel at / with the admin token".to_owned(),
            )
            .into_response(),
        );
    };
    if request.method() == axum::http::Method::POST {
        let presented = request
            .headers()
            .get(session::CSRF_HEADER)
            .and_then(|v| v.to_str().ok());
        if !session::csrf_matches(&session, presented) {
            return guarded(
                ApiError::Other(
                    StatusCode::FORBIDDEN,
                    "missing or wrong CSRF token; reload the panel".to_owned(),
                )
                .into_response(),
            );
        }
    }
    guarded(next.run(request).await)
}

/// `GET /panel/api/events`: the overview now and every two seconds, as
/// server-sent events.
async fn events(State(state): State<AdminState>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = futures::stream::unfold((state, true), |(state, first)| async move {
        if !first {
            tokio::time::sleep(PUSH_EVERY).await;
        }
        let json = state.panel.overview_json(&state).await;
        let event = Event::default().event("overview").data(&*json);
        Some((Ok(event), (state, false)))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// `GET /panel/api/overview`.
async fn overview(State(state): State<AdminState>) -> Response {
    let json = state.panel.overview_json(&state).await;
    ([(header::CONTENT_TYPE, "application/json")], json.to_string()).into_response()
}

/// A move asked from the panel.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MoveBody {
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    percent: Option<f64>,
    reason: String,
    #[serde(default)]
    force: bool,
    #[serde(default)]
    from: Option<Stage>,
    /// Who moves it, for the audit log (`panel:<who>`).
    #[serde(default)]
    who: Option<String>,
}

impl MoveBody {
    fn into_change(self) -> Result<ChangeBody, ApiError> {
        if self.reason.trim().is_empty() {
            return Err(ApiError::Unprocessable(
                "a reason is required: it goes into the audit log".to_owned(),
            ));
        }
        let actor = match self.who.as_deref().map(str::trim) {
            Some(who) if !who.is_empty() => format!("panel:{who}"),
            _ => "panel".to_owned(),
        };
        Ok(ChangeBody {
            to: self.to,
            percent: self.percent,
            reason: Some(self.reason),
            actor: Some(actor),
            dry_run: false,
            force: self.force,
            from: self.from,
        })
    }
}

/// `POST /panel/api/capabilities/{name}/flip`: through the admin API's flip.
async fn flip(
    State(state): State<AdminState>,
    PathParams(name): PathParams<String>,
    JsonBody(body): JsonBody<MoveBody>,
) -> Result<Response, ApiError> {
    let change = body.into_change()?;
    let outcome = capabilities::flip(State(state), PathParams(name), JsonBody(change)).await?;
    Ok(outcome.into_response())
}

/// `POST /panel/api/capabilities/{name}/rollback`: never gated.
async fn rollback(
    State(state): State<AdminState>,
    PathParams(name): PathParams<String>,
    JsonBody(body): JsonBody<MoveBody>,
) -> Result<Response, ApiError> {
    let mut change = body.into_change()?;
    change.to = None;
    change.percent = None;
    let outcome = capabilities::rollback(State(state), PathParams(name), JsonBody(change)).await?;
    Ok(outcome.into_response())
}
