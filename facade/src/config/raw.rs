//! The file as written: serde's view of `strangler.toml`, every value that
//! can be wrong kept with its position ([`Spanned`]), so that validation
//! (in the parent module) can say on which line.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::tls::{RawCertificate, UpstreamProtocol};
use super::{Balance, HostHeader};
use crate::decision::policy::{RawGates, RawRollback, RawShadow};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    #[serde(default)]
    pub(super) facade: RawFacade,
    pub(super) store: Option<RawStore>,
    #[serde(default)]
    pub(super) backends: BTreeMap<String, Spanned<RawBackend>>,
    #[serde(default)]
    pub(super) capabilities: BTreeMap<String, Spanned<RawCapability>>,
    #[serde(default)]
    pub(super) routes: Vec<Spanned<RawRoute>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFacade {
    pub(super) listen: Option<Spanned<String>>,
    pub(super) admin_listen: Option<Spanned<String>>,
    pub(super) default_backend: Option<Spanned<String>>,
    pub(super) admin_token_file: Option<Spanned<String>>,
    pub(super) max_body_bytes: Option<u64>,
    pub(super) max_header_bytes: Option<Spanned<u64>>,
    pub(super) grace_seconds: Option<u64>,
    pub(super) access_log: Option<bool>,
    pub(super) proxy_threads: Option<Spanned<usize>>,
    pub(super) shadow_queue: Option<Spanned<usize>>,
    pub(super) shadow_concurrency: Option<Spanned<usize>>,
    pub(super) admin_failures_per_minute: Option<Spanned<usize>>,
    pub(super) max_connections: Option<Spanned<usize>>,
    pub(super) max_requests_per_connection: Option<Spanned<usize>>,
    pub(super) header_read_timeout_ms: Option<Spanned<usize>>,
    pub(super) proxy_protocol: Option<bool>,
    pub(super) trusted_proxies: Option<Spanned<Vec<String>>>,
    pub(super) http2_idle_timeout_seconds: Option<Spanned<usize>>,
    pub(super) shadow_max_per_second: Option<Spanned<usize>>,
    pub(super) tls_listen: Option<Spanned<String>>,
    pub(super) tls_handshake_timeout_ms: Option<Spanned<u64>>,
    pub(super) tls_min_version: Option<Spanned<String>>,
    pub(super) redirect_to_https: Option<Spanned<bool>>,
    pub(super) client_ca_file: Option<Spanned<String>>,
    pub(super) client_crl_file: Option<Spanned<String>>,
    pub(super) require_client_certificate: Option<Spanned<bool>>,
    pub(super) strict_transport_security: Option<Spanned<String>>,
    pub(super) session_ticket_key_files: Option<Spanned<Vec<String>>>,
    pub(super) replica_id: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) certificates: Vec<Spanned<RawCertificate>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    pub(super) url: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBackend {
    pub(super) urls: Spanned<Vec<String>>,
    pub(super) balance: Option<Balance>,
    pub(super) connect_timeout_ms: Option<u64>,
    pub(super) request_timeout_ms: Option<u64>,
    pub(super) host_header: Option<HostHeader>,
    pub(super) health_path: Option<String>,
    pub(super) health_interval_ms: Option<u64>,
    pub(super) retries: Option<u32>,
    pub(super) retry_budget: Option<f64>,
    pub(super) retry_backoff_ms: Option<u64>,
    pub(super) total_timeout_ms: Option<u64>,
    pub(super) breaker_failures: Option<u32>,
    pub(super) breaker_open_ms: Option<u64>,
    pub(super) max_concurrent: Option<usize>,
    pub(super) protocol: Option<UpstreamProtocol>,
    pub(super) ca_file: Option<String>,
    pub(super) tls_server_name: Option<String>,
    pub(super) client_cert: Option<String>,
    pub(super) client_key: Option<String>,
    pub(super) insecure_skip_verify: Option<bool>,
    pub(super) honours_idempotency_key: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCapability {
    pub(super) legacy: Spanned<String>,
    pub(super) service: Spanned<String>,
    pub(super) initial: Option<Spanned<String>>,
    pub(super) sticky: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) shadow: RawShadow,
    #[serde(default)]
    pub(super) rollback: RawRollback,
    #[serde(default)]
    pub(super) gates: RawGates,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub(super) capability: Spanned<String>,
    pub(super) path: Spanned<String>,
    #[serde(default)]
    pub(super) methods: Vec<Spanned<String>>,
    pub(super) host: Option<String>,
    #[serde(default)]
    pub(super) headers: BTreeMap<String, String>,
}
