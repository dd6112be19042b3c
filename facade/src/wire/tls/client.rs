//! TLS to upstreams: one rustls client configuration per backend, built
//! at start-up from its settings.
//!
//! One configuration per backend, not per connection: its session cache
//! is then shared by every connection to the backend, so a new pooled
//! connection resumes the last session instead of a full handshake.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use super::certificates::{self, CertificateError, CertificateFiles};

/// How a backend's TLS connections are verified and authenticated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamTlsSettings {
    /// PEM file of the certificate authorities to trust instead of the
    /// system's roots.
    pub ca_file: Option<PathBuf>,
    /// The name to verify (and send as SNI) when it differs from the URL's
    /// host.
    pub server_name: Option<String>,
    /// A client certificate, for upstreams that require mutual TLS.
    pub client_certificate: Option<CertificateFiles>,
    /// Accept any certificate. Only for tests against self-signed
    /// upstreams; logged as a warning at every start.
    pub insecure_skip_verify: bool,
}

/// Why a backend's TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamTlsError {
    /// The CA bundle or the client certificate is unusable.
    #[error(transparent)]
    Certificate(#[from] CertificateError),
    /// The CA bundle has no certificate rustls accepts.
    #[error("{} holds no usable CA certificate; give a PEM bundle of the CAs that issued the backend's certificate", path.display())]
    EmptyBundle {
        /// The bundle.
        path: PathBuf,
    },
    /// The system's root store could not be read.
    #[error("no CA certificates found on this system ({detail}); set `ca_file` on the backend")]
    NoSystemRoots {
        /// What was tried.
        detail: String,
    },
    /// `tls_server_name` is not a DNS name or an IP address.
    #[error("`{0}` is not a DNS name or IP address")]
    BadServerName(String),
    /// rustls refused the configuration.
    #[error("the TLS configuration is not accepted: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The client configuration for one backend, offering `alpn` (empty for
/// none).
pub fn client_config(
    settings: &UpstreamTlsSettings,
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, UpstreamTlsError> {
    let provider = super::provider();
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = if settings.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider.clone())))
    } else {
        builder.with_root_certificates(roots(settings.ca_file.as_deref())?)
    };
    let mut config = match &settings.client_certificate {
        None => builder.with_no_client_auth(),
        Some(files) => {
            let loaded = certificates::load(files, &provider)?;
            let chain = loaded.key.cert.clone();
            let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|error| CertificateError::NoPem {
                path: files.key.clone(),
                what: "private key",
                detail: error.to_string(),
            })?;
            builder.with_client_auth_cert(chain, key)?
        }
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// Checks that `name` can be verified and sent as SNI.
pub fn server_name(name: &str) -> Result<ServerName<'static>, UpstreamTlsError> {
    ServerName::try_from(name.to_owned()).map_err(|_| UpstreamTlsError::BadServerName(name.to_owned()))
}

fn roots(ca_file: Option<&Path>) -> Result<RootCertStore, UpstreamTlsError> {
    let mut store = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = certificates::read_certificates(path)?;
            let (added, _) = store.add_parsable_certificates(certs);
            if added == 0 {
                return Err(UpstreamTlsError::EmptyBundle {
                    path: path.to_owned(),
                });
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                let detail = found
                    .errors
                    .first()
                    .map_or_else(|| "the system's store is empty".to_owned(), ToString::to_string);
                return Err(UpstreamTlsError::NoSystemRoots { detail });
            }
        }
    }
    Ok(store)
}

/// `insecure_skip_verify`: any certificate passes, though the handshake's
/// signatures are still checked (the connection is encrypted, not
/// authenticated).
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
