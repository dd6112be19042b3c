//! Accepting TLS from clients: the server configuration every handshake
//! uses, and a handshake bounded in time whose failure is named for the
//! metrics, never raised.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::header::HeaderValue;
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::certificates::SniResolver;
use super::client_authorities::ClientAuthorities;
use super::session_tickets::SharedTicketKeys;

/// Why a client's handshake did not complete; a label of
/// `strangler_facade_tls_handshake_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandshakeFailure {
    /// The client sent nothing, or not enough, within the handshake timeout.
    Timeout,
    /// The client closed the connection mid-handshake.
    Closed,
    /// No protocol version, cipher suite or ALPN protocol in common (an old
    /// client, or plain HTTP sent to the TLS port).
    Incompatible,
    /// The client sent something that is not TLS, or broke its rules.
    Malformed,
    /// The client ended the handshake with an alert (it did not trust the
    /// certificate, say).
    Alert,
    /// The listener asks for client certificates (`client_ca_file`) and
    /// the client sent none, or one that does not verify.
    ClientCertificate,
    /// Anything else (an I/O error).
    Other,
}

impl HandshakeFailure {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            HandshakeFailure::Timeout => "timeout",
            HandshakeFailure::Closed => "closed",
            HandshakeFailure::Incompatible => "incompatible",
            HandshakeFailure::Malformed => "malformed",
            HandshakeFailure::Alert => "alert",
            HandshakeFailure::ClientCertificate => "client_certificate",
            HandshakeFailure::Other => "other",
        }
    }

    /// Every kind, for metrics that list them all from the start.
    pub const ALL: [HandshakeFailure; 7] = [
        HandshakeFailure::Timeout,
        HandshakeFailure::Closed,
        HandshakeFailure::Incompatible,
        HandshakeFailure::Malformed,
        HandshakeFailure::Alert,
        HandshakeFailure::ClientCertificate,
        HandshakeFailure::Other,
    ];

    fn of(error: &std::io::Error) -> Self {
        if error.kind() == std::io::ErrorKind::UnexpectedEof {
            return HandshakeFailure::Closed;
        }
        let Some(tls) = error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        else {
            return match error.kind() {
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe => {
                    HandshakeFailure::Closed
                }
                _ => HandshakeFailure::Other,
            };
        };
        match tls {
            rustls::Error::PeerIncompatible(_) | rustls::Error::NoApplicationProtocol => {
                HandshakeFailure::Incompatible
            }
            rustls::Error::AlertReceived(_) => HandshakeFailure::Alert,
            rustls::Error::NoCertificatesPresented | rustls::Error::InvalidCertificate(_) => {
                HandshakeFailure::ClientCertificate
            }
            rustls::Error::InvalidMessage(_)
            | rustls::Error::PeerMisbehaved(_)
            | rustls::Error::InappropriateMessage { .. }
            | rustls::Error::InappropriateHandshakeMessage { .. }
            | rustls::Error::DecryptError => HandshakeFailure::Malformed,
            _ => HandshakeFailure::Other,
        }
    }
}

/// `X-Forwarded-Client-Cert` for a client that presented `leaf` (verified
/// in the handshake), as Envoy writes it: `Hash=` the certificate's SHA-256
/// in hex, then `;Subject="…"` when the subject is printable ASCII. `None`
/// only if even the hash cannot be a header value, which cannot happen.
pub fn client_certificate_header(leaf: &[u8]) -> Option<HeaderValue> {
    use sha2::Digest;
    use std::fmt::Write;
    let digest = sha2::Sha256::digest(leaf);
    let mut text = String::with_capacity(128);
    text.push_str("Hash=");
    for byte in digest {
        let _ = write!(text, "{byte:02x}");
    }
    let hash_only = text.len();
    if let Ok((_, parsed)) = x509_parser::parse_x509_certificate(leaf) {
        let subject = parsed.subject().to_string();
        if subject.bytes().all(|b| (b' '..=b'~').contains(&b)) {
            text.push_str(";Subject=\"");
            text.push_str(&subject.replace('\\', "\\\\").replace('"', "\\\""));
            text.push('"');
        }
    }
    HeaderValue::from_str(&text)
        .or_else(|_| HeaderValue::from_str(&text[..hash_only]))
        .ok()
}

/// The oldest TLS version the listener accepts (`tls_min_version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MinimumVersion {
    /// TLS 1.2 and 1.3: every client of the last ten years.
    #[default]
    Tls12,
    /// TLS 1.3 only, where a policy asks for it; clients older than about
    /// 2018 cannot connect.
    Tls13,
}

impl MinimumVersion {
    /// Reads `"1.2"` or `"1.3"`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "1.2" => Some(MinimumVersion::Tls12),
            "1.3" => Some(MinimumVersion::Tls13),
            _ => None,
        }
    }

    fn versions(self) -> &'static [&'static rustls::SupportedProtocolVersion] {
        static BOTH: [&rustls::SupportedProtocolVersion; 2] =
            [&rustls::version::TLS13, &rustls::version::TLS12];
        static LATEST: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
        match self {
            MinimumVersion::Tls12 => &BOTH,
            MinimumVersion::Tls13 => &LATEST,
        }
    }
}

/// The server side of the facade's TLS listener.
///
/// Clones share the configuration, so a reload of the client authorities
/// ([`TlsAccept::install`]) reaches every proxy thread's listener at once.
#[derive(Clone)]
pub struct TlsAccept {
    config: Arc<ArcSwap<ServerConfig>>,
    shape: Shape,
    handshake_timeout: Duration,
}

/// How the listener is configured, whatever the client authorities.
#[derive(Clone)]
pub struct Shape {
    /// Chooses each handshake's certificate.
    pub resolver: Arc<SniResolver>,
    /// Keys shared with other replicas for session tickets; random ones of
    /// the listener's own without.
    pub tickets: Option<SharedTicketKeys>,
    /// The oldest TLS version accepted.
    pub minimum: MinimumVersion,
    /// With client authorities: whether a client without a certificate is
    /// refused (`require_client_certificate`, the default) or served as
    /// anonymous.
    pub client_certificate_required: bool,
}

/// A listener configuration built for new client authorities and not yet
/// in use: building it can fail, installing it cannot, so a reload checks
/// everything before it changes anything.
pub struct NextClientAuthorities(Arc<ServerConfig>);

impl std::fmt::Debug for TlsAccept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsAccept")
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

impl TlsAccept {
    /// Handshakes as `shape` says, TLS 1.2 or 1.3, offering `h2` then
    /// `http/1.1`; with `authorities`, only with clients whose certificate
    /// one of them issued and did not revoke (and, unless a certificate is
    /// required, with clients that present none).
    pub fn new(
        shape: Shape,
        handshake_timeout: Duration,
        authorities: Option<&ClientAuthorities>,
    ) -> Result<Self, rustls::Error> {
        let config = server_config(&shape, authorities)?;
        Ok(Self {
            config: Arc::new(ArcSwap::from_pointee(config)),
            shape,
            handshake_timeout,
        })
    }

    /// Builds the configuration that accepts client certificates from
    /// `authorities` instead, for [`TlsAccept::install`].
    pub fn prepare(&self, authorities: &ClientAuthorities) -> Result<NextClientAuthorities, rustls::Error> {
        server_config(&self.shape, Some(authorities)).map(|config| NextClientAuthorities(Arc::new(config)))
    }

    /// Uses `next` from the next handshake on. Connections already open
    /// keep the client they verified. The new configuration starts with an
    /// empty session cache and new ticket keys (or, with shared keys,
    /// tickets bound to the new authorities) on purpose: a client verified
    /// under the old authorities cannot resume its session and skip the new
    /// ones' check.
    pub fn install(&self, next: NextClientAuthorities) {
        self.config.store(next.0);
    }

    /// Completes the handshake on `stream` within the handshake timeout.
    pub async fn accept(&self, stream: TcpStream) -> Result<TlsStream<TcpStream>, HandshakeFailure> {
        let acceptor = TlsAcceptor::from(self.config.load_full());
        match tokio::time::timeout(self.handshake_timeout, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(error)) => Err(HandshakeFailure::of(&error)),
            Err(_) => Err(HandshakeFailure::Timeout),
        }
    }
}

/// The listener's rustls configuration as `shape` says; with
/// `authorities`, client certificates verified against them and their
/// revocation lists.
fn server_config(
    shape: &Shape,
    authorities: Option<&ClientAuthorities>,
) -> Result<ServerConfig, rustls::Error> {
    let provider = super::provider();
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(shape.minimum.versions())?;
    let builder = match authorities {
        None => builder.with_no_client_auth(),
        Some(authorities) => {
            // A certificate whose issuer published no list here is judged
            // by the authorities alone (see `client_authorities`).
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::clone(&authorities.roots), provider)
                    .with_crls(authorities.crls.iter().cloned())
                    .allow_unknown_revocation_status();
            // Without a requirement, a client may present no certificate;
            // one it presents is still verified, and refused if it fails.
            let verifier = if shape.client_certificate_required {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            let verifier = verifier
                .build()
                .map_err(|error| rustls::Error::General(format!("client_ca_file: {error}")))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(shape.resolver.clone());
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // Stateless session tickets, so that any number of returning clients
    // resume with an abbreviated handshake; rustls's session cache alone
    // holds 256 sessions, fewer than a front door has clients. The ticket
    // keys are random, kept in memory only and rotated every 6 hours; a
    // new configuration (a reload of the client authorities) has new ones,
    // so no ticket issued under the old configuration resumes under it.
    // Keys shared between replicas (`session_ticket_key_files`) bind each
    // ticket to the authorities instead, to the same end.
    config.ticketer = match &shape.tickets {
        Some(keys) => keys.ticketer(authorities),
        None => ticketer()?,
    };
    Ok(config)
}

#[allow(
    deprecated,
    reason = "the facade's crypto provider is ring (see `tls::provider`)"
)]
fn ticketer() -> Result<Arc<dyn rustls::server::ProducesTickets>, rustls::Error> {
    rustls::crypto::ring::Ticketer::new()
}

#[cfg(test)]
mod tests {
    use super::client_certificate_header;
    use sha2::Digest;

    /// A self-signed certificate whose subject's common name is `name`.
    fn certificate(name: &str) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(vec!["client.test".to_owned()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    fn hash(der: &[u8]) -> String {
        sha2::Sha256::digest(der)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn the_header_carries_the_hash_and_the_subject_with_quotes_escaped() {
        let der = certificate(r#"svc "billing" \ eu"#);
        let header = client_certificate_header(&der).unwrap();
        assert_eq!(
            header.to_str().unwrap(),
            format!(r#"Hash={};Subject="CN=svc \"billing\" \\ eu""#, hash(&der))
        );
    }

    #[test]
    fn a_subject_that_is_not_printable_ascii_is_left_out() {
        let der = certificate("Zürich billing");
        let header = client_certificate_header(&der).unwrap();
        assert_eq!(header.to_str().unwrap(), format!("Hash={}", hash(&der)));
    }
}
