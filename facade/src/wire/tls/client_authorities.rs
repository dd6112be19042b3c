//! Whom the facade's TLS listener serves when it asks for client
//! certificates: the authorities in `client_ca_file`, less what the
//! revocation lists in `client_crl_file` revoke.
//!
//! Each certificate of a client's chain is checked against the list its
//! issuer published, if the file holds one; a certificate whose issuer has
//! no list there is judged by the authorities alone. Refusing those instead
//! would lock out every client of an authority the operator has no list
//! for; so the facade warns, at start and on each reload, about every
//! authority in the bundle without one.
//!
//! A list past its `nextUpdate` is refused at load and on reload, as an
//! expired certificate is; one that expires while in use stays in use,
//! since refusing every client then would be an outage the operator did
//! not ask for.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateRevocationListDer;

use super::certificates::{self, CertificateError};

/// The files a listener's client authorities come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAuthorityFiles {
    /// `client_ca_file`: a PEM bundle of the authorities.
    pub ca_file: PathBuf,
    /// `client_crl_file`: PEM revocation lists from those authorities.
    pub crl_file: Option<PathBuf>,
}

/// The client authorities, loaded and checked.
#[derive(Debug, Clone)]
pub struct ClientAuthorities {
    /// Where they were read from (and are read again on reload).
    pub files: ClientAuthorityFiles,
    /// The authorities.
    pub roots: Arc<RootCertStore>,
    /// Their revocation lists (none without `client_crl_file`).
    pub crls: Vec<CertificateRevocationListDer<'static>>,
    /// With `client_crl_file`: the authorities in the bundle that have no
    /// list in it, by subject; what they issued is not checked for
    /// revocation.
    pub unchecked: Vec<String>,
}

/// Why the client authorities cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ClientAuthorityError {
    /// A file could not be read or holds no PEM of its kind.
    #[error(transparent)]
    File(#[from] CertificateError),
    /// `client_ca_file` has no certificate rustls accepts.
    #[error("{} holds no usable CA certificate; give a PEM bundle of the CAs that issue your clients' certificates", path.display())]
    EmptyBundle {
        /// The bundle.
        path: PathBuf,
    },
    /// `client_crl_file` holds no `X509 CRL` block.
    #[error("{} holds no certificate revocation list; give the PEM (`-----BEGIN X509 CRL-----`) lists your client CAs publish", path.display())]
    NoList {
        /// The file.
        path: PathBuf,
    },
    /// A list does not parse.
    #[error("{}: revocation list {index} is not a valid CRL ({detail}); download it again from its CA", path.display())]
    MalformedList {
        /// The file.
        path: PathBuf,
        /// Which list in the file, from 1.
        index: usize,
        /// What the parser said.
        detail: String,
    },
    /// A list is past its `nextUpdate`.
    #[error("{}: the revocation list from {issuer} expired at {next_update}; fetch the current one from its CA", path.display())]
    ExpiredList {
        /// The file.
        path: PathBuf,
        /// The list's issuer.
        issuer: String,
        /// When a newer list was due.
        next_update: String,
    },
}

impl ClientAuthorities {
    /// Reads and checks both files.
    pub fn load(files: &ClientAuthorityFiles) -> Result<Self, ClientAuthorityError> {
        let authorities = read_authorities(&files.ca_file)?;
        let lists = match &files.crl_file {
            Some(path) => read_lists(path)?,
            None => Vec::new(),
        };
        Ok(Self::new(files.clone(), authorities, lists))
    }

    /// Puts checked parts together (configuration reads each file on its
    /// own, to name the line of the one at fault).
    pub fn new(files: ClientAuthorityFiles, authorities: Authorities, lists: Vec<RevocationList>) -> Self {
        let unchecked = if files.crl_file.is_some() {
            authorities
                .subjects
                .iter()
                .filter(|(raw, _)| !lists.iter().any(|list| &list.issuer == raw))
                .map(|(_, name)| name.clone())
                .collect()
        } else {
            Vec::new()
        };
        Self {
            files,
            roots: Arc::new(authorities.roots),
            crls: lists.into_iter().map(|list| list.der).collect(),
            unchecked,
        }
    }

    /// Logs the authorities whose certificates are not checked for
    /// revocation.
    pub fn warn_unchecked(&self) {
        for subject in &self.unchecked {
            tracing::warn!(
                authority = %subject,
                "client_crl_file has no revocation list from this client CA: certificates it issued are not checked for revocation"
            );
        }
    }
}

/// `client_ca_file`, read.
#[derive(Debug)]
pub struct Authorities {
    roots: RootCertStore,
    /// Each authority's subject, as DER and as text.
    subjects: Vec<(Vec<u8>, String)>,
}

/// One list of `client_crl_file`, read.
#[derive(Debug)]
pub struct RevocationList {
    der: CertificateRevocationListDer<'static>,
    /// Its issuer's name, as DER.
    issuer: Vec<u8>,
}

/// Reads `client_ca_file`: a PEM bundle with at least one certificate.
pub fn read_authorities(path: &Path) -> Result<Authorities, ClientAuthorityError> {
    let certs = certificates::read_certificates(path)?;
    let subjects = certs
        .iter()
        .filter_map(|der| x509_parser::parse_x509_certificate(der).ok())
        .map(|(_, cert)| (cert.subject().as_raw().to_vec(), cert.subject().to_string()))
        .collect();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(ClientAuthorityError::EmptyBundle {
            path: path.to_owned(),
        });
    }
    Ok(Authorities { roots, subjects })
}

/// Reads `client_crl_file`: PEM revocation lists, each well formed and in
/// date.
pub fn read_lists(path: &Path) -> Result<Vec<RevocationList>, ClientAuthorityError> {
    let text = certificates::read(path)?;
    let ders: Vec<CertificateRevocationListDer<'static>> =
        CertificateRevocationListDer::pem_slice_iter(&text)
            .collect::<Result<_, _>>()
            .map_err(|error| CertificateError::NoPem {
                path: path.to_owned(),
                what: "certificate revocation list",
                detail: error.to_string(),
            })?;
    if ders.is_empty() {
        return Err(ClientAuthorityError::NoList {
            path: path.to_owned(),
        });
    }
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| i64::try_from(since.as_secs()).unwrap_or(i64::MAX));
    let mut lists = Vec::with_capacity(ders.len());
    for (index, der) in ders.into_iter().enumerate() {
        let malformed = |detail: String| ClientAuthorityError::MalformedList {
            path: path.to_owned(),
            index: index + 1,
            detail,
        };
        let (_, crl) = x509_parser::parse_x509_crl(&der).map_err(|error| malformed(error.to_string()))?;
        // What rustls will check it with, too, so that a list that loads
        // here cannot fail later in a handshake.
        webpki::OwnedCertRevocationList::from_der(&der).map_err(|error| malformed(format!("{error:?}")))?;
        if let Some(next) = crl.next_update() {
            if next.timestamp() < now {
                return Err(ClientAuthorityError::ExpiredList {
                    path: path.to_owned(),
                    issuer: crl.issuer().to_string(),
                    next_update: chrono::DateTime::from_timestamp(next.timestamp(), 0)
                        .map_or_else(|| next.to_string(), |t| t.to_rfc3339()),
                });
            }
        }
        let issuer = crl.issuer().as_raw().to_vec();
        lists.push(RevocationList { der, issuer });
    }
    Ok(lists)
}
