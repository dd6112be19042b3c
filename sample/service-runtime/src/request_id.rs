//! Correlation ids: every request carries one, every log line of it shows it.
//!
//! An incoming `X-Request-Id` is kept (so an id minted by the facade or a
//! client follows the request through every hop); one is generated when
//! absent, echoed in the response, and attached to the request's tracing span.
//! Outgoing calls made while serving a request pass it on with
//! [`RequestId::header_value`].
//!
//! The request's span is also its OpenTelemetry server span when traces are
//! exported (`crate::telemetry`): named for its route, a child of the
//! caller's `traceparent`, with the answer's status.

use std::time::Duration;

use axum::extract::{FromRequestParts, MatchedPath};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, Request, Response};
use axum::Router;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, OnResponse, TraceLayer};
use tracing::{Level, Span};

use crate::telemetry::propagation;

/// The header that carries the correlation id.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Wraps a router so that every request gets a correlation id, a span
/// carrying it, and a response log line with status and latency.
pub fn with_request_tracing(router: Router) -> Router {
    router.layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::new(REQUEST_ID_HEADER, MakeRequestUuid))
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(|request: &Request<_>| {
                        let request_id = request
                            .headers()
                            .get(REQUEST_ID_HEADER)
                            .and_then(|value| value.to_str().ok())
                            .unwrap_or("-");
                        let route = request
                            .extensions()
                            .get::<MatchedPath>()
                            .map_or_else(|| request.uri().path(), MatchedPath::as_str);
                        let span = tracing::info_span!(
                            "request",
                            request_id,
                            method = %request.method(),
                            path = %request.uri().path(),
                            otel.name = %format_args!("{} {route}", request.method()),
                            otel.kind = "server",
                            http.route = route,
                            http.response.status_code = tracing::field::Empty,
                        );
                        propagation::continue_trace(&span, request.headers());
                        span
                    })
                    .on_response(StatusOnSpan),
            )
            .layer(PropagateRequestIdLayer::new(REQUEST_ID_HEADER)),
    )
}

/// Records the answer's status on the request's span, then logs the
/// answer as [`DefaultOnResponse`] does.
#[derive(Debug, Clone, Copy)]
struct StatusOnSpan;

impl<B> OnResponse<B> for StatusOnSpan {
    fn on_response(self, response: &Response<B>, latency: Duration, span: &Span) {
        span.record("http.response.status_code", response.status().as_u16());
        DefaultOnResponse::new()
            .level(Level::INFO)
            .on_response(response, latency, span);
    }
}

/// The current request's correlation id, for passing on to outgoing calls.
#[derive(Debug, Clone)]
pub struct RequestId(pub HeaderValue);

impl RequestId {
    /// The id as a header value.
    pub fn header_value(&self) -> HeaderValue {
        self.0.clone()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let value = parts
            .headers
            .get(REQUEST_ID_HEADER)
            .cloned()
            // Only a router without `with_request_tracing` lacks the header;
            // mint an id rather than pass a placeholder on.
            .unwrap_or_else(|| {
                HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
                    .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
            });
        Ok(RequestId(value))
    }
}
