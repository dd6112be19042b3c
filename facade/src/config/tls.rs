//! The TLS part of `strangler.toml`: the facade's TLS listener and its
//! certificates, and each backend's protocol and TLS settings. Files are
//! read and checked here, at load, so that a missing file, a key that does
//! not match its certificate or an expired certificate stops the start
//! with the file and the line.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper::header::HeaderValue;
use hyper::Uri;
use rustls::ClientConfig;
use serde::Deserialize;
use toml::Spanned;

use crate::wire::tls::certificates::{self, CertificateFiles};
use crate::wire::tls::client::{self as tls_client, UpstreamTlsSettings};
use crate::wire::tls::client_authorities::{self, ClientAuthorities, ClientAuthorityFiles};
use crate::wire::tls::server::MinimumVersion;
use crate::wire::tls::session_tickets::{SharedTicketKeys, TicketKeys};

/// The facade's TLS listener.
#[derive(Debug, Clone)]
pub struct TlsListenerConfig {
    /// Where it listens.
    pub listen: SocketAddr,
    /// Its certificates; the first is served when SNI names no other.
    pub certificates: Vec<CertificateFiles>,
    /// How long a client has to complete its handshake.
    pub handshake_timeout: Duration,
    /// The oldest TLS version accepted (`tls_min_version`).
    pub min_version: MinimumVersion,
    /// Whether the plain listener answers every request with a redirect
    /// to HTTPS instead of serving it.
    pub redirect_http: bool,
    /// When set, every client must present a certificate issued by one of
    /// these authorities and not revoked (mutual TLS), read from
    /// `client_ca_file` and `client_crl_file` at load, and again on SIGHUP
    /// and when they change.
    pub client_authorities: Option<ClientAuthorities>,
    /// With client authorities: whether a client without a certificate is
    /// refused (the default) or served, anonymous, with no
    /// `X-Forwarded-Client-Cert` (`require_client_certificate = false`).
    pub require_client_certificate: bool,
    /// `Strict-Transport-Security` for every answer over TLS that has none
    /// from its backend (`strict_transport_security`).
    pub strict_transport_security: Option<HeaderValue>,
    /// Keys that seal session tickets (`session_ticket_key_files`), shared
    /// with the other replicas; without them each replica makes its own.
    pub session_ticket_keys: Option<SharedTicketKeys>,
}

/// How the facade speaks to a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    /// HTTP/1.1 (over TLS for `https://` URLs).
    Http1,
    /// HTTP/2: negotiated by ALPN over TLS, prior knowledge (h2c) over
    /// plain TCP.
    H2,
}

/// A backend's TLS: its settings, and the client configuration built
/// from them once (its session cache is the backend's).
#[derive(Debug, Clone)]
pub struct UpstreamTls {
    /// As configured.
    pub settings: UpstreamTlsSettings,
    /// Ready for connections.
    pub client: Arc<ClientConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCertificate {
    pub(super) cert: String,
    pub(super) key: String,
}

/// The `[facade]` keys for TLS (part of the raw `[facade]`, which
/// cannot be flattened and still refuse unknown keys).
pub(super) struct RawListenerTls {
    pub(super) tls_listen: Option<Spanned<String>>,
    pub(super) tls_handshake_timeout_ms: Option<Spanned<u64>>,
    pub(super) tls_min_version: Option<Spanned<String>>,
    pub(super) redirect_to_https: Option<Spanned<bool>>,
    pub(super) client_ca_file: Option<Spanned<String>>,
    pub(super) client_crl_file: Option<Spanned<String>>,
    pub(super) require_client_certificate: Option<Spanned<bool>>,
    pub(super) strict_transport_security: Option<Spanned<String>>,
    pub(super) session_ticket_key_files: Option<Spanned<Vec<String>>>,
    pub(super) certificates: Vec<Spanned<RawCertificate>>,
}

/// A backend's keys for TLS and protocol.
pub(super) struct RawBackendTls {
    pub(super) protocol: Option<UpstreamProtocol>,
    pub(super) ca_file: Option<String>,
    pub(super) tls_server_name: Option<String>,
    pub(super) client_cert: Option<String>,
    pub(super) client_key: Option<String>,
    pub(super) insecure_skip_verify: Option<bool>,
}

/// A problem at a byte offset of the file.
pub(super) type Problem = (usize, String);

/// Checks the TLS listener's keys. `plain` says whether a plain listener
/// is configured (the redirect needs one).
pub(super) fn check_listener(
    config: &Path,
    raw: &RawListenerTls,
    plain: bool,
) -> Result<Option<TlsListenerConfig>, Problem> {
    let Some(listen) = &raw.tls_listen else {
        if let Some(first) = raw.certificates.first() {
            return Err((
                first.span().start,
                "certificates are configured but `tls_listen` is not; set `tls_listen = \"0.0.0.0:8443\"` in [facade]".to_owned(),
            ));
        }
        if let Some(redirect) = raw.redirect_to_https.as_ref().filter(|r| *r.get_ref()) {
            return Err((
                redirect.span().start,
                "`redirect_to_https` needs `tls_listen`".to_owned(),
            ));
        }
        if let Some(ca) = &raw.client_ca_file {
            return Err((
                ca.span().start,
                "`client_ca_file` asks TLS clients for certificates and needs `tls_listen`".to_owned(),
            ));
        }
        if let Some(crl) = &raw.client_crl_file {
            return Err((
                crl.span().start,
                "`client_crl_file` revokes client certificates and needs `tls_listen` and `client_ca_file`"
                    .to_owned(),
            ));
        }
        if let Some(hsts) = &raw.strict_transport_security {
            return Err((
                hsts.span().start,
                "`strict_transport_security` is sent over TLS only and needs `tls_listen`".to_owned(),
            ));
        }
        if let Some(version) = &raw.tls_min_version {
            return Err((
                version.span().start,
                "`tls_min_version` applies to the TLS listener and needs `tls_listen`".to_owned(),
            ));
        }
        if let Some(keys) = &raw.session_ticket_key_files {
            return Err((
                keys.span().start,
                "`session_ticket_key_files` seal TLS session tickets and need `tls_listen`".to_owned(),
            ));
        }
        return Ok(None);
    };
    let address = listen.get_ref().parse::<SocketAddr>().map_err(|_| {
        (
            listen.span().start,
            format!(
                "tls_listen `{}` is not an address like 0.0.0.0:8443",
                listen.get_ref()
            ),
        )
    })?;
    if raw.certificates.is_empty() {
        return Err((
            listen.span().start,
            "`tls_listen` needs at least one certificate: add [[facade.certificates]] with `cert` and `key` (PEM files)".to_owned(),
        ));
    }
    let provider = crate::wire::tls::provider();
    let mut files = Vec::new();
    for spanned in &raw.certificates {
        let entry = spanned.get_ref();
        let certificate = CertificateFiles {
            cert: super::resolve(config, &entry.cert),
            key: super::resolve(config, &entry.key),
        };
        certificates::load(&certificate, &provider)
            .map_err(|error| (spanned.span().start, error.to_string()))?;
        files.push(certificate);
    }
    let handshake_timeout = match &raw.tls_handshake_timeout_ms {
        None => Duration::from_secs(10),
        Some(ms) if (1..=600_000).contains(ms.get_ref()) => Duration::from_millis(*ms.get_ref()),
        Some(ms) => {
            return Err((
                ms.span().start,
                "tls_handshake_timeout_ms must be between 1 and 600000".to_owned(),
            ))
        }
    };
    let min_version = match &raw.tls_min_version {
        None => MinimumVersion::default(),
        Some(version) => MinimumVersion::parse(version.get_ref()).ok_or_else(|| {
            (
                version.span().start,
                format!(
                    "tls_min_version `{}` is not one the facade offers: write \"1.2\" (TLS 1.2 and 1.3, the default) or \"1.3\" (TLS 1.3 only)",
                    version.get_ref()
                ),
            )
        })?,
    };
    let redirect_http = match &raw.redirect_to_https {
        Some(redirect) if *redirect.get_ref() && !plain => {
            return Err((
                redirect.span().start,
                "`redirect_to_https` needs the plain listener: set `listen` too".to_owned(),
            ))
        }
        Some(redirect) => *redirect.get_ref(),
        None => false,
    };
    let client_authorities = check_client_authorities(config, raw)?;
    let require_client_certificate = match (&raw.require_client_certificate, &client_authorities) {
        (Some(required), None) => {
            return Err((
                required.span().start,
                "`require_client_certificate` says whether TLS clients must present a certificate and needs `client_ca_file`, the authorities that issue them".to_owned(),
            ))
        }
        (Some(required), Some(_)) => *required.get_ref(),
        (None, _) => true,
    };
    let strict_transport_security = match &raw.strict_transport_security {
        Some(value) => Some(
            strict_transport_security(value.get_ref()).map_err(|problem| (value.span().start, problem))?,
        ),
        None => None,
    };
    let session_ticket_keys = match &raw.session_ticket_key_files {
        Some(spanned) => {
            Some(ticket_keys(config, spanned.get_ref()).map_err(|problem| (spanned.span().start, problem))?)
        }
        None => None,
    };
    Ok(Some(TlsListenerConfig {
        listen: address,
        certificates: files,
        handshake_timeout,
        min_version,
        redirect_http,
        client_authorities,
        require_client_certificate,
        strict_transport_security,
        session_ticket_keys,
    }))
}

/// Reads `session_ticket_key_files`: at least one, each a key of its own.
fn ticket_keys(config: &Path, files: &[String]) -> Result<SharedTicketKeys, String> {
    if files.is_empty() {
        return Err(
            "`session_ticket_key_files` is empty: list at least one key file (make one with `openssl rand 80 > ticket.key`), or leave the key out for keys of the replica's own"
                .to_owned(),
        );
    }
    let paths = files
        .iter()
        .map(|file| super::resolve(config, file))
        .collect::<Vec<_>>();
    TicketKeys::read(&paths)
        .map(SharedTicketKeys::new)
        .map_err(|error| error.to_string())
}

/// Checks a `Strict-Transport-Security` value (RFC 6797 §6.1): a
/// `max-age` in seconds, and optionally `includeSubDomains` and `preload`.
/// Anything else is refused, since browsers ignore what they do not know
/// and a misspelt directive would silently not apply.
fn strict_transport_security(text: &str) -> Result<HeaderValue, String> {
    let usage = "write it as \"max-age=31536000\", optionally with \"; includeSubDomains\" and \"; preload\"";
    let mut max_age = None;
    for directive in text.split(';').map(str::trim).filter(|d| !d.is_empty()) {
        let (name, value) = match directive.split_once('=') {
            Some((name, value)) => (name.trim(), Some(value.trim().trim_matches('"'))),
            None => (directive, None),
        };
        match (name.to_ascii_lowercase().as_str(), value) {
            ("max-age", Some(seconds)) if max_age.is_none() => {
                max_age = Some(seconds.parse::<u64>().map_err(|_| {
                    format!(
                        "strict_transport_security: max-age `{seconds}` is not a number of seconds; {usage}"
                    )
                })?);
            }
            ("max-age", _) => {
                return Err(format!(
                    "strict_transport_security: `{directive}` repeats max-age or gives it no value; {usage}"
                ))
            }
            ("includesubdomains" | "preload", None) => {}
            _ => {
                return Err(format!(
                    "strict_transport_security: unknown directive `{directive}`; {usage}"
                ))
            }
        }
    }
    if max_age.is_none() {
        return Err(format!("strict_transport_security: max-age is missing; {usage}"));
    }
    HeaderValue::from_str(text.trim())
        .map_err(|_| format!("strict_transport_security: `{text}` is not a valid header value; {usage}"))
}

/// `client_ca_file` and `client_crl_file`, each read and checked with its
/// own line for errors.
fn check_client_authorities(
    config: &Path,
    raw: &RawListenerTls,
) -> Result<Option<ClientAuthorities>, (usize, String)> {
    let Some(ca) = &raw.client_ca_file else {
        return match &raw.client_crl_file {
            Some(crl) => Err((
                crl.span().start,
                "`client_crl_file` revokes client certificates and needs `client_ca_file`, the authorities that issue them"
                    .to_owned(),
            )),
            None => Ok(None),
        };
    };
    let files = ClientAuthorityFiles {
        ca_file: super::resolve(config, ca.get_ref()),
        crl_file: raw
            .client_crl_file
            .as_ref()
            .map(|crl| super::resolve(config, crl.get_ref())),
    };
    let authorities = client_authorities::read_authorities(&files.ca_file)
        .map_err(|error| (ca.span().start, error.to_string()))?;
    let lists = match (&raw.client_crl_file, &files.crl_file) {
        (Some(crl), Some(path)) => {
            client_authorities::read_lists(path).map_err(|error| (crl.span().start, error.to_string()))?
        }
        _ => Vec::new(),
    };
    Ok(Some(ClientAuthorities::new(files, authorities, lists)))
}

/// Checks a backend's URLs' scheme against its TLS keys and builds its
/// TLS client. `urls` are already known to be absolute.
pub(super) fn check_backend(
    config: &Path,
    name: &str,
    urls: &[Uri],
    raw: &RawBackendTls,
) -> Result<(UpstreamProtocol, Option<UpstreamTls>), String> {
    let secure = urls
        .iter()
        .filter(|url| url.scheme_str() == Some("https"))
        .count();
    if secure != 0 && secure != urls.len() {
        return Err(format!(
            "backend `{name}` mixes http:// and https:// URLs; use one scheme for all of a backend's instances"
        ));
    }
    let protocol = raw.protocol.unwrap_or(UpstreamProtocol::Http1);
    let tls_keys = raw.ca_file.is_some()
        || raw.tls_server_name.is_some()
        || raw.client_cert.is_some()
        || raw.client_key.is_some()
        || raw.insecure_skip_verify.is_some();
    if secure == 0 {
        if tls_keys {
            return Err(format!(
                "backend `{name}`: `ca_file`, `tls_server_name`, `client_cert`, `client_key` and `insecure_skip_verify` apply to https:// URLs only"
            ));
        }
        return Ok((protocol, None));
    }
    let client_certificate = match (&raw.client_cert, &raw.client_key) {
        (Some(cert), Some(key)) => Some(CertificateFiles {
            cert: super::resolve(config, cert),
            key: super::resolve(config, key),
        }),
        (None, None) => None,
        _ => {
            return Err(format!(
                "backend `{name}`: `client_cert` and `client_key` go together; set both for mutual TLS"
            ))
        }
    };
    match &raw.tls_server_name {
        Some(server_name) => {
            tls_client::server_name(server_name)
                .map_err(|error| format!("backend `{name}`: tls_server_name {error}"))?;
        }
        None => {
            for url in urls {
                let host = url.host().unwrap_or_default().trim_matches(['[', ']']);
                tls_client::server_name(host).map_err(|_| {
                    format!("backend `{name}`: the host of `{url}` cannot be verified as a TLS name; set `tls_server_name`")
                })?;
            }
        }
    }
    let settings = UpstreamTlsSettings {
        ca_file: raw.ca_file.as_deref().map(|file| super::resolve(config, file)),
        server_name: raw.tls_server_name.clone(),
        client_certificate,
        insecure_skip_verify: raw.insecure_skip_verify.unwrap_or(false),
    };
    let alpn: &[&[u8]] = match protocol {
        UpstreamProtocol::Http1 => &[b"http/1.1"],
        UpstreamProtocol::H2 => &[b"h2"],
    };
    let client =
        tls_client::client_config(&settings, alpn).map_err(|error| format!("backend `{name}`: {error}"))?;
    Ok((protocol, Some(UpstreamTls { settings, client })))
}
