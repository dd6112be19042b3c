//! `strangler.toml`: listen addresses, backends, capabilities and routes.
//!
//! Deserialized with serde into raw structs that keep each value's position,
//! then validated once, so that every mistake is reported as
//! `file:line: what is wrong` before anything starts.
//!
//! ```toml
//! [facade]
//! listen = "127.0.0.1:8080"
//! admin_listen = "127.0.0.1:9080"
//! default_backend = "legacy"        # where unmatched requests go
//!
//! [store]
//! url = "sqlite://.strangler/state.db"
//!
//! [backends.legacy]
//! urls = ["http://127.0.0.1:8081"]
//!
//! [capabilities.catalog]
//! legacy = "legacy"                 # backend while on legacy
//! service = "catalog"               # backend once on service
//!
//! [[routes]]
//! capability = "catalog"
//! path = "/products/{id}"
//! methods = ["GET", "PUT"]
//! ```

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper::header::HeaderName;
use hyper::http::HeaderValue;
use hyper::{Method, Uri};
use serde::Deserialize;
use toml::Spanned;
use toolkit_db::DatabaseUrl;

use crate::decision::canary::StickyKey;
use crate::decision::policy::{CapabilityPolicy, RawPolicy, ResiliencePolicy};
use crate::decision::routing::{CapabilityDef, PathPattern, Route};
use crate::decision::stage::Stage;
use raw::RawFile;

mod backend;
mod connections;
mod raw;
mod replica;
mod tls;

pub use connections::ClientConnections;
pub use tls::{TlsListenerConfig, UpstreamProtocol, UpstreamTls};

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the configuration file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or breaks a rule.
    #[error("{path}:{line}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line of the offending value.
        line: usize,
        /// What is wrong and what to do.
        message: String,
    },
    /// The admin token could not be found.
    #[error(
        "no admin token: set STRANGLER_ADMIN_TOKEN or `admin_token_file` in [facade] (a token on the command line would show in `ps`)"
    )]
    NoAdminToken,
    /// The admin token file could not be read.
    #[error("{at}cannot read the admin token file {path}; create it holding the token, or set STRANGLER_ADMIN_TOKEN")]
    TokenFile {
        /// Where the configuration names the file (`strangler.toml:5: `),
        /// or nothing when that is not known.
        at: String,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The admin token file holds no token.
    #[error("{at}the admin token file {path} is empty; put the token in it, or set STRANGLER_ADMIN_TOKEN")]
    EmptyTokenFile {
        /// Where the configuration names the file, as for [`ConfigError::TokenFile`].
        at: String,
        /// The file.
        path: PathBuf,
    },
}

/// The admin API's bearer token; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

impl AdminToken {
    /// Wraps a token; surrounding whitespace (a file's newline) is dropped.
    pub fn new(token: &str) -> Option<Self> {
        let token = token.trim();
        (!token.is_empty()).then(|| Self(token.to_owned()))
    }

    /// The token's bytes, for the constant-time comparison.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(***)")
    }
}

/// How a backend spreads requests over its instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Balance {
    /// Each healthy instance in turn.
    RoundRobin,
    /// The healthy instance with the fewest requests in flight.
    LeastOutstanding,
}

/// What `Host` header the upstream sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostHeader {
    /// The client's `Host`, unchanged.
    Preserve,
    /// The instance's own `host:port`.
    Rewrite,
}

/// One backend: a named set of instances.
#[derive(Debug, Clone)]
pub struct BackendConfig {
    /// Its name, used by capabilities.
    pub name: String,
    /// Base URLs of its instances (`http://host:port`).
    pub urls: Vec<Uri>,
    /// How requests are spread.
    pub balance: Balance,
    /// Time limit for opening a connection.
    pub connect_timeout: Duration,
    /// Time limit for the response head.
    pub request_timeout: Duration,
    /// `Host` handling.
    pub host_header: HostHeader,
    /// Path probed by active health checks; `None` turns them off.
    pub health_path: Option<String>,
    /// Time between probes.
    pub health_interval: Duration,
    /// Retries, circuit breaker, bulkhead.
    pub resilience: ResiliencePolicy,
    /// HTTP/1.1 or HTTP/2.
    pub protocol: UpstreamProtocol,
    /// TLS, for `https://` URLs.
    pub tls: Option<UpstreamTls>,
    /// Whether the backend deduplicates on `Idempotency-Key`, so that a
    /// non-idempotent request with a key may be sent to it again.
    pub honours_idempotency_key: bool,
}

/// Size limits on requests.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body; beyond it, 413.
    pub max_body_bytes: u64,
    /// Largest request head; beyond it, 431.
    pub max_header_bytes: usize,
}

/// A capability and where it starts.
#[derive(Debug, Clone)]
pub struct CapabilityConfig {
    /// Name, backends, canary key.
    pub def: CapabilityDef,
    /// Stage when the store has none yet.
    pub initial: Stage,
    /// Shadow comparison, rollback budget, gates.
    pub policy: CapabilityPolicy,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct FacadeConfig {
    /// The plain (cleartext) proxy listener; `None` when only the TLS
    /// listener is configured.
    pub listen: Option<SocketAddr>,
    /// The TLS proxy listener and its certificates.
    pub tls: Option<TlsListenerConfig>,
    /// Admin API listener.
    pub admin_listen: SocketAddr,
    /// The route store.
    pub store_url: DatabaseUrl,
    /// Where to read the admin token from, if not the environment.
    pub admin_token_file: Option<PathBuf>,
    /// Where the file names `admin_token_file` (`strangler.toml:5`), for
    /// errors reading it.
    pub admin_token_file_at: Option<String>,
    /// Request size limits.
    pub limits: Limits,
    /// Drain time on shutdown.
    pub grace_period: Duration,
    /// Log one line per request.
    pub access_log: bool,
    /// Client connections: threads, limits, idle times, who the client is.
    pub connections: ClientConnections,
    /// Shadow copies that may wait; beyond, a copy is dropped and counted.
    pub shadow_queue: usize,
    /// Shadow copies in flight to services at once.
    pub shadow_concurrency: usize,
    /// Shadow copies made per second at most, over all capabilities.
    pub shadow_max_per_second: u32,
    /// Wrong admin tokens an address may send in a minute before the
    /// admin API refuses it (429) for the rest of that minute.
    pub admin_failures_per_minute: u32,
    /// Backends, by name.
    pub backends: Vec<BackendConfig>,
    /// Capabilities, in file order.
    pub capabilities: Vec<CapabilityConfig>,
    /// Routes, in priority order.
    pub routes: Vec<Route>,
    /// Backend for unmatched requests.
    pub default_backend: Option<String>,
    /// This facade's name among replicas on one store (`replica_id`; the
    /// host name by default): in the audit log, `/metrics` and `/health`.
    pub replica_id: String,
}

impl FacadeConfig {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses and validates configuration text; `path` is used in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let invalid = |offset: usize, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            line: line_of(text, offset),
            message,
        };
        let mut raw: RawFile = toml::from_str(text)
            .map_err(|error| invalid(error.span().map_or(0, |s| s.start), toml_message(&error)))?;
        let address =
            |value: &Option<Spanned<String>>, default: &str, what: &str| -> Result<SocketAddr, ConfigError> {
                match value {
                    None => Ok(default
                        .parse()
                        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))),
                    Some(v) => v.get_ref().parse().map_err(|_| {
                        invalid(
                            v.span().start,
                            format!("{what} `{}` is not an address like 127.0.0.1:8080", v.get_ref()),
                        )
                    }),
                }
            };
        // With a TLS listener and no `listen`, the facade serves TLS only.
        let listen = match (&raw.facade.listen, &raw.facade.tls_listen) {
            (None, Some(_)) => None,
            (plain, _) => Some(address(plain, "127.0.0.1:8080", "listen")?),
        };
        let tls = tls::check_listener(
            path,
            &tls::RawListenerTls {
                tls_listen: raw.facade.tls_listen.clone(),
                tls_handshake_timeout_ms: raw.facade.tls_handshake_timeout_ms.clone(),
                tls_min_version: raw.facade.tls_min_version.clone(),
                redirect_to_https: raw.facade.redirect_to_https.clone(),
                client_ca_file: raw.facade.client_ca_file.clone(),
                client_crl_file: raw.facade.client_crl_file.clone(),
                require_client_certificate: raw.facade.require_client_certificate.clone(),
                strict_transport_security: raw.facade.strict_transport_security.clone(),
                session_ticket_key_files: raw.facade.session_ticket_key_files.clone(),
                certificates: std::mem::take(&mut raw.facade.certificates),
            },
            listen.is_some(),
        )
        .map_err(|(offset, m)| invalid(offset, m))?;
        let admin_listen = address(&raw.facade.admin_listen, "127.0.0.1:9080", "admin_listen")?;

        let mut backends = Vec::new();
        for (name, spanned) in &raw.backends {
            let start = spanned.span().start;
            backends.push(backend::check(path, name, spanned.get_ref()).map_err(|m| invalid(start, m))?);
        }
        let backend_names: HashSet<&str> = raw.backends.keys().map(String::as_str).collect();
        let known_backend = |value: &Spanned<String>| -> Result<String, ConfigError> {
            if backend_names.contains(value.get_ref().as_str()) {
                Ok(value.get_ref().clone())
            } else {
                Err(invalid(
                    value.span().start,
                    format!(
                        "unknown backend `{}`; defined backends: {}",
                        value.get_ref(),
                        raw.backends.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ))
            }
        };

        let mut capabilities = Vec::new();
        for (name, spanned) in &raw.capabilities {
            let capability = spanned.get_ref();
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(invalid(
                    spanned.span().start,
                    format!("capability name `{name}` may only use letters, digits, `-` and `_`"),
                ));
            }
            let initial = match &capability.initial {
                None => Stage::Legacy,
                Some(v) => v.get_ref().parse::<Stage>().map_err(|m| {
                    invalid(
                        v.span().start,
                        format!("initial stage: {m} (write e.g. \"legacy\" or \"canary 10%\")"),
                    )
                })?,
            };
            let sticky = match &capability.sticky {
                None => StickyKey::ClientAddress,
                Some(v) => StickyKey::parse(v.get_ref()).map_err(|m| invalid(v.span().start, m))?,
            };
            let raw_policy = RawPolicy {
                shadow: capability.shadow.clone(),
                rollback: capability.rollback.clone(),
                gates: capability.gates.clone(),
            };
            let policy = raw_policy
                .check(name)
                .map_err(|m| invalid(spanned.span().start, m))?;
            capabilities.push(CapabilityConfig {
                def: CapabilityDef {
                    name: name.clone(),
                    legacy_backend: known_backend(&capability.legacy)?,
                    service_backend: known_backend(&capability.service)?,
                    sticky,
                    shadow_writes: raw_policy.shadow_writes(),
                },
                initial,
                policy,
            });
        }

        let mut routes = Vec::new();
        for spanned in &raw.routes {
            let route = spanned.get_ref();
            let capability = capabilities
                .iter()
                .position(|c| c.def.name == *route.capability.get_ref())
                .ok_or_else(|| {
                    invalid(
                        route.capability.span().start,
                        format!(
                            "route names unknown capability `{}`; define it under [capabilities]",
                            route.capability.get_ref()
                        ),
                    )
                })?;
            let pattern =
                PathPattern::parse(route.path.get_ref()).map_err(|m| invalid(route.path.span().start, m))?;
            let mut methods = Vec::new();
            for method in &route.methods {
                let upper = method.get_ref().to_ascii_uppercase();
                let parsed: Method = upper.parse().map_err(|_| {
                    invalid(
                        method.span().start,
                        format!("`{}` is not an HTTP method", method.get_ref()),
                    )
                })?;
                methods.push(parsed);
            }
            let mut headers = Vec::new();
            for (name, value) in &route.headers {
                let name = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| invalid(spanned.span().start, format!("`{name}` is not a header name")))?;
                let value = HeaderValue::from_str(value).map_err(|_| {
                    invalid(
                        spanned.span().start,
                        format!("`{value}` is not a valid header value"),
                    )
                })?;
                headers.push((name, value));
            }
            routes.push(Route {
                path: route.path.get_ref().clone(),
                pattern,
                methods,
                host: route.host.as_ref().map(|h| h.to_ascii_lowercase()),
                headers,
                capability,
            });
        }

        let default_backend = raw
            .facade
            .default_backend
            .as_ref()
            .map(known_backend)
            .transpose()?;
        let store_url = match &raw.store {
            None => DatabaseUrl::sqlite_file(Path::new(".strangler/state.db")),
            Some(store) => DatabaseUrl::parse(store.url.get_ref())
                .map_err(|e| invalid(store.url.span().start, e.to_string()))?,
        };
        let max_header_bytes = match &raw.facade.max_header_bytes {
            None => 64 * 1024,
            Some(v) if (8192..=1024 * 1024).contains(v.get_ref()) => *v.get_ref() as usize,
            Some(v) => {
                return Err(invalid(
                    v.span().start,
                    "max_header_bytes must be between 8192 and 1048576".to_owned(),
                ))
            }
        };
        Ok(Self {
            listen,
            tls,
            admin_listen,
            store_url,
            admin_token_file: raw
                .facade
                .admin_token_file
                .as_ref()
                .map(|file| resolve(path, file.get_ref())),
            admin_token_file_at: raw
                .facade
                .admin_token_file
                .as_ref()
                .map(|file| format!("{}:{}", path.display(), line_of(text, file.span().start))),
            limits: Limits {
                max_body_bytes: raw.facade.max_body_bytes.unwrap_or(1024 * 1024 * 1024),
                max_header_bytes,
            },
            grace_period: Duration::from_secs(raw.facade.grace_seconds.unwrap_or(10)),
            access_log: raw.facade.access_log.unwrap_or(true),
            connections: connections::check(&raw.facade).map_err(|(offset, m)| invalid(offset, m))?,
            shadow_queue: bounded(&raw.facade.shadow_queue, 1_000, 1..=1_000_000, "shadow_queue")
                .map_err(|(offset, m)| invalid(offset, m))?,
            shadow_concurrency: bounded(
                &raw.facade.shadow_concurrency,
                32,
                1..=10_000,
                "shadow_concurrency",
            )
            .map_err(|(offset, m)| invalid(offset, m))?,
            shadow_max_per_second: bounded(
                &raw.facade.shadow_max_per_second,
                500,
                1..=1_000_000,
                "shadow_max_per_second",
            )
            .map_err(|(offset, m)| invalid(offset, m))? as u32,
            admin_failures_per_minute: bounded(
                &raw.facade.admin_failures_per_minute,
                10,
                1..=10_000,
                "admin_failures_per_minute",
            )
            .map_err(|(offset, m)| invalid(offset, m))? as u32,
            backends,
            capabilities,
            routes,
            default_backend,
            replica_id: replica::check(raw.facade.replica_id.as_ref())
                .map_err(|(offset, m)| invalid(offset, m))?,
        })
    }

    /// The admin token: `STRANGLER_ADMIN_TOKEN`, else `admin_token_file`.
    pub fn admin_token(&self) -> Result<AdminToken, ConfigError> {
        if let Some(token) = std::env::var("STRANGLER_ADMIN_TOKEN")
            .ok()
            .as_deref()
            .and_then(AdminToken::new)
        {
            return Ok(token);
        }
        let Some(path) = &self.admin_token_file else {
            return Err(ConfigError::NoAdminToken);
        };
        let at = self
            .admin_token_file_at
            .as_ref()
            .map_or_else(String::new, |at| format!("{at}: "));
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::TokenFile {
            at: at.clone(),
            path: path.clone(),
            source,
        })?;
        AdminToken::new(&text).ok_or(ConfigError::EmptyTokenFile {
            at,
            path: path.clone(),
        })
    }
}

/// An optional count within `range`, or the error's offset and message.
fn bounded(
    value: &Option<Spanned<usize>>,
    default: usize,
    range: std::ops::RangeInclusive<usize>,
    what: &str,
) -> Result<usize, (usize, String)> {
    match value {
        None => Ok(default),
        Some(v) if range.contains(v.get_ref()) => Ok(*v.get_ref()),
        Some(v) => Err((
            v.span().start,
            format!(
                "{what} must be between {} and {}, got {}",
                range.start(),
                range.end(),
                v.get_ref()
            ),
        )),
    }
}

/// A path in the config file is relative to the file's folder.
fn resolve(config: &Path, file: &str) -> PathBuf {
    let file = Path::new(file);
    if file.is_absolute() {
        file.to_owned()
    } else {
        config.parent().unwrap_or(Path::new(".")).join(file)
    }
}

/// The 1-based line that byte `offset` of `text` is on (the last line when
/// `offset` is past the end).
/// What toml says is wrong, or a plain word where it says nothing (as for
/// a stray carriage return), so that no error is a bare `file:line:`.
fn toml_message(error: &toml::de::Error) -> String {
    match error.message().trim() {
        "" => "this is not valid TOML: an unexpected character".to_owned(),
        message => message.to_owned(),
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    memchr::memchr_iter(b'\n', &text.as_bytes()[..offset.min(text.len())]).count() + 1
}

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;
