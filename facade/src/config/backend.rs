//! One `[backends.<name>]` table, checked: its URLs, timeouts, resilience
//! settings, protocol and TLS, and whether it honours `Idempotency-Key`.

use std::path::Path;
use std::time::Duration;

use hyper::Uri;

use super::raw::RawBackend;
use super::{tls, BackendConfig, Balance, HostHeader};
use crate::decision::policy::RawResilience;

/// The backend `name` as configured by `raw`; errors name the backend and
/// the setting.
pub(super) fn check(config: &Path, name: &str, raw: &RawBackend) -> Result<BackendConfig, String> {
    if raw.urls.get_ref().is_empty() {
        return Err(format!("backend `{name}` needs at least one URL in `urls`"));
    }
    let mut urls = Vec::new();
    for url in raw.urls.get_ref() {
        let uri: Uri = url
            .parse()
            .map_err(|_| format!("backend `{name}`: `{url}` is not a URL"))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.authority().is_none() {
            return Err(format!(
                "backend `{name}`: `{url}` must be an http://host:port or https://host[:port] URL"
            ));
        }
        if uri.path() != "/" && !uri.path().is_empty() {
            return Err(format!(
                "backend `{name}`: `{url}` must not have a path; the facade forwards the request's path"
            ));
        }
        urls.push(uri);
    }
    let millis = |value: Option<u64>, default: u64, what: &str| -> Result<Duration, String> {
        match value.unwrap_or(default) {
            0 => Err(format!("backend `{name}`: {what} must be above zero")),
            ms => Ok(Duration::from_millis(ms)),
        }
    };
    let request_timeout = millis(raw.request_timeout_ms, 30_000, "request_timeout_ms")?;
    let resilience = RawResilience {
        retries: raw.retries,
        retry_budget: raw.retry_budget,
        retry_backoff_ms: raw.retry_backoff_ms,
        total_timeout_ms: raw.total_timeout_ms,
        breaker_failures: raw.breaker_failures,
        breaker_open_ms: raw.breaker_open_ms,
        max_concurrent: raw.max_concurrent,
    }
    .check(name, request_timeout)?;
    let (protocol, tls) = tls::check_backend(
        config,
        name,
        &urls,
        &tls::RawBackendTls {
            protocol: raw.protocol,
            ca_file: raw.ca_file.clone(),
            tls_server_name: raw.tls_server_name.clone(),
            client_cert: raw.client_cert.clone(),
            client_key: raw.client_key.clone(),
            insecure_skip_verify: raw.insecure_skip_verify,
        },
    )?;
    Ok(BackendConfig {
        name: name.to_owned(),
        urls,
        balance: raw.balance.unwrap_or(Balance::RoundRobin),
        connect_timeout: millis(raw.connect_timeout_ms, 1_000, "connect_timeout_ms")?,
        request_timeout,
        host_header: raw.host_header.unwrap_or(HostHeader::Preserve),
        health_path: raw.health_path.clone(),
        health_interval: millis(raw.health_interval_ms, 2_000, "health_interval_ms")?,
        resilience,
        protocol,
        tls,
        honours_idempotency_key: raw.honours_idempotency_key.unwrap_or(false),
    })
}
