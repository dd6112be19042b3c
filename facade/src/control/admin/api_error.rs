//! The admin API's JSON errors and the extractors that reject with them.
//!
//! Every admin answer that is not a success is `{ "error": …, "detail":
//! null }` with a status that says whose fault it was, so that the CLI can
//! show the message as it is. axum's own extractors answer bad input with
//! plain text; the wrappers here turn those rejections into the same JSON.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// Why an admin request failed, each with the message the user reads.
#[derive(Debug)]
pub enum ApiError {
    /// 400: the request is malformed.
    BadRequest(String),
    /// 404: the named capability or endpoint does not exist.
    NotFound(String),
    /// 409: the request conflicts with the current stage.
    Conflict(String),
    /// 422: well-formed, but the values are not acceptable.
    Unprocessable(String),
    /// 503: the store is not available right now; retrying may help.
    Unavailable(String),
    /// Any other status.
    Other(StatusCode, String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            Self::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            Self::NotFound(m) => (StatusCode::NOT_FOUND, m),
            Self::Conflict(m) => (StatusCode::CONFLICT, m),
            Self::Unprocessable(m) => (StatusCode::UNPROCESSABLE_ENTITY, m),
            Self::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, m),
            Self::Other(status, m) => (status, m),
        };
        let body = serde_json::json!({ "error": message, "detail": null });
        (status, Json(body)).into_response()
    }
}

/// A JSON request body. Malformed JSON is a 400, a well-formed body of the
/// wrong shape a 422, a missing `Content-Type: application/json` a 415.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct JsonBody<T>(pub T);

/// Path parameters; a value of the wrong type is a 400.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct PathParams<T>(pub T);

/// Query parameters; a malformed query string is a 400.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct QueryParams<T>(pub T);

/// axum's rejection, with its text, as a JSON error: a JSON body keeps the
/// status axum chose (400, 415 or 422); path and query problems are 400s.
macro_rules! rejected_as {
    ($($rejection:ty => $status:expr),* $(,)?) => {$(
        impl From<$rejection> for ApiError {
            fn from(rejection: $rejection) -> Self {
                let status: fn(&$rejection) -> StatusCode = $status;
                ApiError::Other(status(&rejection), rejection.body_text())
            }
        }
    )*};
}

rejected_as! {
    JsonRejection => JsonRejection::status,
    PathRejection => |_| StatusCode::BAD_REQUEST,
    QueryRejection => |_| StatusCode::BAD_REQUEST,
}

/// Answers any path no admin route matches.
pub async fn not_found_fallback() -> ApiError {
    ApiError::NotFound("no such endpoint".to_owned())
}

/// Answers a known path asked with a method it does not support.
pub async fn method_not_allowed_fallback() -> ApiError {
    ApiError::Other(
        StatusCode::METHOD_NOT_ALLOWED,
        "this endpoint does not support that method".to_owned(),
    )
}
