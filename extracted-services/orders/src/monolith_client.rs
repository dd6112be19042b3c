//! The orders service's client for the monolith's API: customers, stock
//! reservations, payments and the dual-write endpoint.
//!
//! Every call has a connect timeout and a total timeout and passes the
//! caller's correlation id on. Errors say which side failed, because the
//! saga treats "the monolith said no" (a definite answer) differently from
//! "no answer" (the step may or may not have happened).

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode};
use reqwest::{Client, Method, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use service_runtime::request_id::REQUEST_ID_HEADER;
use service_runtime::telemetry::propagation;
use service_runtime::ApiError;
use shop_api::{Customer, Order, OrderReplica, Payment, PaymentRequest, Reservation, ReservationRequest};

/// Why a call to the monolith did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum MonolithError {
    /// No connection could be made.
    #[error("the monolith at {url} is unreachable")]
    Unreachable {
        /// The endpoint called.
        url: String,
        /// The transport's reason.
        #[source]
        source: reqwest::Error,
    },
    /// The call did not finish within the timeout: it may or may not have
    /// taken effect.
    #[error("the monolith at {url} did not answer within {timeout:?}")]
    TimedOut {
        /// The endpoint called.
        url: String,
        /// The limit that expired.
        timeout: Duration,
    },
    /// The monolith answered with a 4xx: a definite "no".
    #[error("the monolith refused {url} with {status}: {message}")]
    Rejected {
        /// The endpoint called.
        url: String,
        /// Its status.
        status: StatusCode,
        /// Its `error` message.
        message: String,
        /// Its `detail`.
        detail: Value,
    },
    /// The monolith failed (5xx) or answered something unreadable.
    #[error("the monolith failed on {url} with {status}: {body}")]
    Failed {
        /// The endpoint called.
        url: String,
        /// Its status.
        status: StatusCode,
        /// The start of its body.
        body: String,
    },
}

impl MonolithError {
    /// Whether the monolith definitely did not carry the call out.
    pub fn is_definite_refusal(&self) -> bool {
        matches!(self, MonolithError::Rejected { .. })
    }
}

impl From<MonolithError> for ApiError {
    fn from(error: MonolithError) -> Self {
        match error {
            // The monolith's refusal is the shop's answer: same status, same
            // message, as if the monolith had served the request itself.
            MonolithError::Rejected {
                status,
                message,
                detail,
                ..
            } => ApiError::new(status, message).with_detail(detail),
            other => {
                tracing::warn!(error = %service_runtime::api_error::error_chain(&other), "monolith call failed");
                ApiError::unavailable(format!(
                    "the monolith, which owns stock, payments and customers, is unavailable: {other}"
                ))
            }
        }
    }
}

/// A client for one monolith base URL.
#[derive(Clone, Debug)]
pub struct MonolithClient {
    http: Client,
    base: Url,
    timeout: Duration,
}

impl MonolithClient {
    /// A client whose calls time out after `timeout` (connecting included).
    pub fn new(mut base: Url, timeout: Duration) -> Result<Self, reqwest::Error> {
        // `Url::join` replaces the last segment of a base without a trailing
        // slash; `http://host/shop` must mean `http://host/shop/…`.
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let http = Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(2)))
            .timeout(timeout)
            .build()?;
        Ok(Self { http, base, timeout })
    }

    /// `GET /customers/{id}`; `Ok(None)` when it does not exist.
    pub async fn customer(
        &self,
        id: i64,
        request_id: &HeaderValue,
    ) -> Result<Option<Customer>, MonolithError> {
        match self
            .call::<(), Customer>(Method::GET, &format!("customers/{id}"), None, request_id)
            .await
        {
            Ok(customer) => Ok(Some(customer)),
            Err(MonolithError::Rejected {
                status: StatusCode::NOT_FOUND,
                ..
            }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// `POST /inventory/reservations`: holds stock (idempotent by reference).
    pub async fn reserve(
        &self,
        request: &ReservationRequest,
        request_id: &HeaderValue,
    ) -> Result<Reservation, MonolithError> {
        self.call(Method::POST, "inventory/reservations", Some(request), request_id)
            .await
    }

    /// `POST /inventory/reservations/{reference}/release`; a reservation the
    /// monolith never made counts as released.
    pub async fn release(&self, reference: &str, request_id: &HeaderValue) -> Result<(), MonolithError> {
        let path = format!("inventory/reservations/{}/release", encode_segment(reference));
        match self
            .call::<(), Reservation>(Method::POST, &path, None, request_id)
            .await
        {
            Ok(_)
            | Err(MonolithError::Rejected {
                status: StatusCode::NOT_FOUND,
                ..
            }) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// `POST /payments`: captures (idempotent by reference).
    pub async fn pay(
        &self,
        request: &PaymentRequest,
        request_id: &HeaderValue,
    ) -> Result<Payment, MonolithError> {
        self.call(Method::POST, "payments", Some(request), request_id)
            .await
    }

    /// `POST /payments/{reference}/refund`; a payment the monolith never
    /// took counts as refunded.
    pub async fn refund(&self, reference: &str, request_id: &HeaderValue) -> Result<(), MonolithError> {
        let path = format!("payments/{}/refund", encode_segment(reference));
        match self
            .call::<(), Payment>(Method::POST, &path, None, request_id)
            .await
        {
            Ok(_)
            | Err(MonolithError::Rejected {
                status: StatusCode::NOT_FOUND,
                ..
            }) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// `POST /orders/{id}/cancel` for an order the monolith placed itself
    /// (it holds that order's stock and payment).
    pub async fn cancel_legacy_order(
        &self,
        id: i64,
        request_id: &HeaderValue,
    ) -> Result<Order, MonolithError> {
        self.call::<(), Order>(Method::POST, &format!("orders/{id}/cancel"), None, request_id)
            .await
    }

    /// `PUT /internal/orders/{id}`: the dual write.
    pub async fn write_replica(
        &self,
        id: i64,
        replica: &OrderReplica,
        request_id: &HeaderValue,
    ) -> Result<(), MonolithError> {
        self.call::<_, Value>(
            Method::PUT,
            &format!("internal/orders/{id}"),
            Some(replica),
            request_id,
        )
        .await
        .map(drop)
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        request_id: &HeaderValue,
    ) -> Result<T, MonolithError> {
        let url = self.base.join(path).map_err(|error| MonolithError::Failed {
            url: format!("{}{path}", self.base),
            status: StatusCode::INTERNAL_SERVER_ERROR,
            body: format!("cannot build the URL: {error}"),
        })?;
        let mut request = self
            .http
            .request(method, url.clone())
            .header(REQUEST_ID_HEADER, request_id.clone())
            // The monolith's span continues the request's trace.
            .headers(propagation::trace_headers());
        if let Some(body) = body {
            request = request.json(body);
        }
        let transport_error = |source: reqwest::Error| {
            if source.is_timeout() {
                MonolithError::TimedOut {
                    url: url.to_string(),
                    timeout: self.timeout,
                }
            } else {
                MonolithError::Unreachable {
                    url: url.to_string(),
                    source,
                }
            }
        };
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(transport_error)?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|error| MonolithError::Failed {
                url: url.to_string(),
                status,
                body: format!("unreadable answer ({error})"),
            });
        }
        let parsed: Option<Value> = serde_json::from_slice(&bytes).ok();
        match parsed {
            Some(body) if status.is_client_error() => Err(MonolithError::Rejected {
                url: url.to_string(),
                status,
                message: body["error"].as_str().unwrap_or("refused").to_owned(),
                detail: body["detail"].clone(),
            }),
            _ => Err(MonolithError::Failed {
                url: url.to_string(),
                status,
                body: String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned(),
            }),
        }
    }
}

/// Percent-encodes a path segment (references contain `:`).
fn encode_segment(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}
