//! The client for the monolith's inventory endpoints, where stock still lives.
//!
//! `GET {monolith}/inventory?product_ids=1,2,3` reads many products' stock in
//! one call; `PUT {monolith}/inventory/{id}` sets one product's stock. Every
//! call carries the caller's `X-Request-Id`, so one id follows a request from
//! the client through the service into the monolith's logs, and every call is
//! bounded by a connect timeout and a total timeout, so a hung monolith can
//! never hang the service.
//!
//! Failures say which side failed: the monolith could not be reached, did not
//! answer in time, or answered something unexpected. [`InventoryError`] maps
//! to the service's JSON errors: 503 (naming the inventory dependency) when
//! retrying may help, 502 when the monolith's answer itself is wrong.

use std::collections::HashMap;
use std::time::Duration;

use axum::http::StatusCode;
use reqwest::{RequestBuilder, Url};
use serde::de::DeserializeOwned;
use serde_json::json;
use service_runtime::api_error::error_chain;
use service_runtime::request_id::{RequestId, REQUEST_ID_HEADER};
use service_runtime::telemetry::propagation;
use service_runtime::ApiError;
use shop_api::{StockLevel, StockUpdate};

/// How much of an unexpected answer's body is kept for the log.
const MAX_BODY_EXCERPT: usize = 300;

/// Why the inventory client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientBuildError {
    /// The monolith URL cannot serve as the base of the inventory endpoints.
    #[error(
        "monolith URL `{url}` is not usable: give an http(s) base URL without query or fragment, \
         such as `http://127.0.0.1:8081`"
    )]
    UnsupportedUrl {
        /// The URL as given.
        url: String,
    },
    /// The HTTP client could not be set up (for example, no TLS backend).
    #[error("cannot build the HTTP client for the monolith")]
    Http(#[source] reqwest::Error),
}

/// A failed call to the monolith's inventory, by the side that failed.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// No connection could be made, or it broke before an answer arrived.
    #[error("cannot reach the monolith's inventory at {url}")]
    Unreachable {
        /// The endpoint called.
        url: Url,
        /// The transport's reason.
        #[source]
        source: reqwest::Error,
    },
    /// Connecting or answering took longer than the configured timeout.
    #[error("the monolith's inventory at {url} did not answer within {} ms", .timeout.as_millis())]
    TimedOut {
        /// The endpoint called.
        url: Url,
        /// The timeout that expired.
        timeout: Duration,
        /// The transport's report of it.
        #[source]
        source: reqwest::Error,
    },
    /// The monolith answered with a status the contract does not expect.
    #[error("the monolith's inventory at {url} answered {status}: {body}")]
    UnexpectedStatus {
        /// The endpoint called.
        url: Url,
        /// The status it answered.
        status: StatusCode,
        /// The start of its body, for the log.
        body: String,
    },
    /// The monolith answered 2xx with a body that is not the contract's JSON.
    #[error("the monolith's inventory at {url} answered a body that is not the expected JSON")]
    InvalidBody {
        /// The endpoint called.
        url: Url,
        /// The decoder's reason.
        #[source]
        source: reqwest::Error,
    },
}

impl From<InventoryError> for ApiError {
    /// Logs the whole cause chain, and answers without the monolith's
    /// address or body: those are internal topology, not the client's business.
    fn from(error: InventoryError) -> Self {
        tracing::warn!(error = %error_chain(&error), "inventory call to the monolith failed");
        let (api_error, failure) = match &error {
            InventoryError::Unreachable { .. } => (
                ApiError::unavailable(
                    "the inventory dependency (the monolith) is unreachable; retry shortly",
                ),
                "unreachable",
            ),
            InventoryError::TimedOut { .. } => (
                ApiError::unavailable(
                    "the inventory dependency (the monolith) did not answer in time; retry shortly",
                ),
                "timed_out",
            ),
            // The monolith itself says "busy, retry": pass that on.
            InventoryError::UnexpectedStatus {
                status: StatusCode::SERVICE_UNAVAILABLE,
                ..
            } => (
                ApiError::unavailable(
                    "the inventory dependency (the monolith) is unavailable; retry shortly",
                ),
                "unavailable",
            ),
            InventoryError::UnexpectedStatus { .. } | InventoryError::InvalidBody { .. } => (
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "the inventory dependency (the monolith) gave an unexpected answer",
                ),
                "unexpected_answer",
            ),
        };
        let upstream_status = match &error {
            InventoryError::UnexpectedStatus { status, .. } => Some(status.as_u16()),
            _ => None,
        };
        api_error.with_detail(json!({
            "dependency": "inventory",
            "failure": failure,
            "upstream_status": upstream_status,
        }))
    }
}

/// Calls the monolith's inventory endpoints. Cheap to clone: clones share
/// one connection pool.
#[derive(Debug, Clone)]
pub struct InventoryClient {
    http: reqwest::Client,
    base: Url,
    timeout: Duration,
}

impl InventoryClient {
    /// A client for the monolith at `base` (for example
    /// `http://127.0.0.1:8081`, or `http://gateway/monolith/` behind a path
    /// prefix) whose every call, connecting included, gives up after `timeout`.
    pub fn new(base: Url, timeout: Duration) -> Result<Self, ClientBuildError> {
        let usable = matches!(base.scheme(), "http" | "https")
            && base.has_host()
            && !base.cannot_be_a_base()
            && base.query().is_none()
            && base.fragment().is_none();
        if !usable {
            return Err(ClientBuildError::UnsupportedUrl {
                url: base.to_string(),
            });
        }
        // The total timeout bounds the whole call, connecting included. The
        // connect timeout adds nothing to the bound, but a connect that
        // expires is then reported as such, so the logged cause says whether
        // the monolith's address or the monolith itself was slow.
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout)
            .build()
            .map_err(ClientBuildError::Http)?;
        Ok(Self { http, base, timeout })
    }

    /// The stock of each of `product_ids` the monolith knows, by product id,
    /// in one call. Products the monolith does not know are absent.
    #[tracing::instrument(skip(self, request_id), fields(request_id = ?request_id.0))]
    pub async fn stock_levels(
        &self,
        product_ids: &[i64],
        request_id: &RequestId,
    ) -> Result<HashMap<i64, i64>, InventoryError> {
        if product_ids.is_empty() {
            return Ok(HashMap::new());
        }
        let ids: Vec<String> = product_ids.iter().map(i64::to_string).collect();
        let mut url = self.endpoint(&["inventory"]);
        // Digits, `-` and `,` need no escaping; keeping the commas literal
        // keeps the URL readable in both services' logs.
        url.set_query(Some(&format!("product_ids={}", ids.join(","))));
        let levels: Vec<StockLevel> = self.send(self.http.get(url.clone()), url, request_id).await?;
        Ok(levels
            .into_iter()
            .map(|level| (level.product_id, level.stock))
            .collect())
    }

    /// Sets one product's stock; answers the level the monolith stored.
    #[tracing::instrument(skip(self, request_id), fields(request_id = ?request_id.0))]
    pub async fn set_stock(
        &self,
        product_id: i64,
        stock: i64,
        request_id: &RequestId,
    ) -> Result<StockLevel, InventoryError> {
        let url = self.endpoint(&["inventory", &product_id.to_string()]);
        let request = self.http.put(url.clone()).json(&StockUpdate { stock });
        self.send(request, url, request_id).await
    }

    /// Sends `request` with the correlation id and decodes a 2xx JSON answer.
    async fn send<T: DeserializeOwned>(
        &self,
        request: RequestBuilder,
        url: Url,
        request_id: &RequestId,
    ) -> Result<T, InventoryError> {
        let response = request
            .header(REQUEST_ID_HEADER, request_id.header_value())
            // The monolith's span continues the request's trace.
            .headers(propagation::trace_headers())
            .send()
            .await
            .map_err(|source| self.transport_error(&url, source))?;
        let status = response.status();
        if !status.is_success() {
            // The body only feeds the log; failing to read it changes nothing.
            let body = response.text().await.unwrap_or_default();
            return Err(InventoryError::UnexpectedStatus {
                url,
                status,
                body: body.chars().take(MAX_BODY_EXCERPT).collect(),
            });
        }
        response
            .json()
            .await
            .map_err(|source| self.transport_error(&url, source))
    }

    fn transport_error(&self, url: &Url, source: reqwest::Error) -> InventoryError {
        let url = url.clone();
        if source.is_timeout() {
            InventoryError::TimedOut {
                url,
                timeout: self.timeout,
                source,
            }
        } else if source.is_decode() {
            InventoryError::InvalidBody { url, source }
        } else {
            InventoryError::Unreachable { url, source }
        }
    }

    /// `base` with `segments` appended to its path.
    fn endpoint(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        // `new` refused cannot-be-a-base URLs, the only ones without segments.
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: &str) -> Result<InventoryClient, ClientBuildError> {
        InventoryClient::new(Url::parse(base).unwrap(), Duration::from_secs(1))
    }

    #[test]
    fn endpoints_extend_the_base_path() {
        let plain = client("http://127.0.0.1:8081").unwrap();
        assert_eq!(
            plain.endpoint(&["inventory", "7"]).as_str(),
            "http://127.0.0.1:8081/inventory/7"
        );
        for base in ["http://gateway/monolith", "http://gateway/monolith/"] {
            assert_eq!(
                client(base).unwrap().endpoint(&["inventory"]).as_str(),
                "http://gateway/monolith/inventory",
                "{base}"
            );
        }
    }

    #[test]
    fn unusable_base_urls_are_refused_with_an_example() {
        for base in [
            "mailto:ops@example.com",
            "ftp://host/",
            "http://host/?a=1",
            "http://host/#x",
        ] {
            let error = client(base).unwrap_err().to_string();
            assert!(error.contains("http://127.0.0.1:8081"), "{base}: {error}");
        }
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_503_naming_the_dependency() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        let request_id = RequestId(axum::http::HeaderValue::from_static("unit"));
        let error = client(&base)
            .unwrap()
            .stock_levels(&[1], &request_id)
            .await
            .unwrap_err();
        assert!(matches!(error, InventoryError::Unreachable { .. }), "{error:?}");
        let api_error = ApiError::from(error);
        assert_eq!(api_error.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            api_error.message().contains("inventory"),
            "{}",
            api_error.message()
        );
    }
}
