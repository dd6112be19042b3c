//! The facade's own answers: a JSON error body naming the side that failed,
//! written by the flow for a request it could not forward and by the
//! HTTP/1.1 connection for a head it cannot read.

use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::json;

use crate::wire::body::{self, ProxyBody};
use crate::wire::correlation;

/// Who caused a failure: decides the status and the error metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The client sent something the facade refuses.
    Client,
    /// The upstream failed.
    Upstream,
    /// The facade itself has no answer (no route).
    Facade,
}

impl Fault {
    /// Its name in answers and logs.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Fault::Client => "client",
            Fault::Upstream => "upstream",
            Fault::Facade => "facade",
        }
    }
}

/// The answer `{ "error", "source", "request_id" }` with `status`; the
/// correlation id goes in the header too, as on every answer.
pub(crate) fn error_response(
    status: StatusCode,
    fault: Fault,
    message: &str,
    request_id: &HeaderValue,
) -> Response<ProxyBody> {
    let body = json!({
        "error": message,
        "source": fault.as_str(),
        "request_id": request_id.to_str().unwrap_or("-"),
    });
    let mut response = Response::new(body::full(body.to_string()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
        .headers_mut()
        .insert(correlation::REQUEST_ID, request_id.clone());
    response
}
