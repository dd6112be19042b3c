//! The facade's own certificates: loaded from PEM files, checked (the key
//! signs for its certificate, the certificate is in date), and chosen per
//! connection by the name the client asked for (SNI).
//!
//! The set in use sits behind an [`ArcSwap`]: a reload builds a whole new
//! set and swaps it in, so a handshake sees either the old set or the new
//! one, never half of each, and connections already open keep the
//! certificate they were served with.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Where one certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    /// The certificate chain, leaf first, in PEM.
    pub cert: PathBuf,
    /// Its private key, in PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Why a certificate cannot be used. Each names the file at fault and
/// what to do.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file holds no usable PEM item of the kind expected.
    #[error("{} holds no {what} in PEM form ({detail}); check that the file is the one meant", path.display())]
    NoPem {
        /// The file.
        path: PathBuf,
        /// "certificate" or "private key".
        what: &'static str,
        /// What the PEM reader said.
        detail: String,
    },
    /// The key is of a kind the facade cannot sign with.
    #[error("{} is a private key the facade cannot use ({detail}); use an RSA, ECDSA or Ed25519 key", path.display())]
    UnusableKey {
        /// The key file.
        path: PathBuf,
        /// What rustls said.
        detail: String,
    },
    /// The key does not belong to the certificate.
    #[error("{} does not match the certificate in {}; give the key the certificate was issued for", key.display(), cert.display())]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// The certificate cannot be parsed as X.509.
    #[error("{} is not a valid X.509 certificate ({detail})", path.display())]
    Malformed {
        /// The certificate file.
        path: PathBuf,
        /// What the parser said.
        detail: String,
    },
    /// The certificate is out of date, or not yet valid.
    #[error("{} is {state} (valid from {not_before} to {not_after}); renew it", path.display())]
    OutOfDate {
        /// The certificate file.
        path: PathBuf,
        /// "expired" or "not valid yet".
        state: &'static str,
        /// Start of validity (RFC 3339).
        not_before: String,
        /// End of validity (RFC 3339).
        not_after: String,
    },
}

/// One loaded certificate and the names it serves.
#[derive(Debug, Clone)]
pub struct LoadedCertificate {
    /// The chain and signing key, as rustls serves them.
    pub key: Arc<CertifiedKey>,
    /// The DNS names in its subject alternative names (lowercase; may start
    /// with `*.`).
    pub names: Vec<String>,
    /// Its serial number in hex, for logs.
    pub serial: String,
}

/// Reads and checks one certificate with its key.
pub fn load(
    files: &CertificateFiles,
    provider: &CryptoProvider,
) -> Result<LoadedCertificate, CertificateError> {
    let chain = read_certificates(&files.cert)?;
    let key_pem = read(&files.key)?;
    let Some(leaf) = chain.first() else {
        return Err(no_pem(&files.cert, "certificate", "the file is empty"));
    };
    let key_der =
        PrivateKeyDer::from_pem_slice(&key_pem).map_err(|error| no_pem(&files.key, "private key", error))?;
    let (names, serial) = inspect(&files.cert, leaf)?;
    let signing_key =
        provider
            .key_provider
            .load_private_key(key_der)
            .map_err(|error| CertificateError::UnusableKey {
                path: files.key.clone(),
                detail: error.to_string(),
            })?;
    let key = CertifiedKey::new(chain, signing_key);
    key.keys_match().map_err(|_| CertificateError::KeyMismatch {
        cert: files.cert.clone(),
        key: files.key.clone(),
    })?;
    Ok(LoadedCertificate {
        key: Arc::new(key),
        names,
        serial,
    })
}

/// Every certificate of the PEM file at `path`, in order (none if it holds
/// no `CERTIFICATE` block).
pub(crate) fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertificateError> {
    CertificateDer::pem_slice_iter(&read(path)?)
        .collect::<Result<_, _>>()
        .map_err(|error| no_pem(path, "certificate", error))
}

/// The bytes of `path`; an error names the file.
pub(crate) fn read(path: &Path) -> Result<Vec<u8>, CertificateError> {
    std::fs::read(path).map_err(|source| CertificateError::Read {
        path: path.to_owned(),
        source,
    })
}

fn no_pem(path: &Path, what: &'static str, detail: impl std::fmt::Display) -> CertificateError {
    CertificateError::NoPem {
        path: path.to_owned(),
        what,
        detail: detail.to_string(),
    }
}

/// The leaf's DNS names and serial, after checking it is in date.
fn inspect(path: &Path, leaf: &CertificateDer<'_>) -> Result<(Vec<String>, String), CertificateError> {
    use x509_parser::extensions::GeneralName;
    let malformed = |detail: String| CertificateError::Malformed {
        path: path.to_owned(),
        detail,
    };
    let (_, cert) =
        x509_parser::parse_x509_certificate(leaf).map_err(|error| malformed(error.to_string()))?;
    let validity = cert.validity();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| i64::try_from(since.as_secs()).unwrap_or(i64::MAX));
    let state = if now > validity.not_after.timestamp() {
        Some("expired")
    } else if now < validity.not_before.timestamp() {
        Some("not valid yet")
    } else {
        None
    };
    if let Some(state) = state {
        let format = |t: &x509_parser::time::ASN1Time| {
            chrono::DateTime::from_timestamp(t.timestamp(), 0)
                .map_or_else(|| t.to_string(), |t| t.to_rfc3339())
        };
        return Err(CertificateError::OutOfDate {
            path: path.to_owned(),
            state,
            not_before: format(&validity.not_before),
            not_after: format(&validity.not_after),
        });
    }
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(dns) = name {
                names.push(dns.to_ascii_lowercase());
            }
        }
    }
    Ok((names, cert.raw_serial_as_string()))
}

/// The certificates in use, by the name they serve.
#[derive(Debug)]
pub struct CertificateSet {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` is kept as `example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    /// Served when the client names no host, or one no certificate covers:
    /// the first certificate configured, as a web server's default host.
    default: Arc<CertifiedKey>,
}

impl CertificateSet {
    /// The set of `certificates`, in configuration order; `None` if empty.
    /// Where two certificates cover a name, the first configured wins.
    pub fn new(certificates: &[LoadedCertificate]) -> Option<Self> {
        let default = Arc::clone(&certificates.first()?.key);
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for certificate in certificates {
            for name in &certificate.names {
                let (map, key) = match name.strip_prefix("*.") {
                    Some(parent) => (&mut wildcard, parent.to_owned()),
                    None => (&mut exact, name.clone()),
                };
                map.entry(key).or_insert_with(|| Arc::clone(&certificate.key));
            }
        }
        Some(Self {
            exact,
            wildcard,
            default,
        })
    }

    /// The certificate for `server_name`: an exact name, else a wildcard
    /// one label up, else the default.
    pub fn choose(&self, server_name: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = server_name.map(str::to_ascii_lowercase) else {
            return Arc::clone(&self.default);
        };
        if let Some(key) = self.exact.get(&name) {
            return Arc::clone(key);
        }
        if let Some((_, parent)) = name.split_once('.') {
            if let Some(key) = self.wildcard.get(parent) {
                return Arc::clone(key);
            }
        }
        Arc::clone(&self.default)
    }
}

/// Chooses each handshake's certificate from the set in use; a reload
/// swaps the set.
#[derive(Debug)]
pub struct SniResolver {
    current: ArcSwap<CertificateSet>,
}

impl SniResolver {
    /// A resolver serving `set`.
    pub fn new(set: CertificateSet) -> Arc<Self> {
        Arc::new(Self {
            current: ArcSwap::from_pointee(set),
        })
    }

    /// Serves `set` from the next handshake on.
    pub fn replace(&self, set: CertificateSet) {
        self.current.store(Arc::new(set));
    }

    /// The set in use now.
    #[cfg(test)]
    pub fn current(&self) -> Arc<CertificateSet> {
        self.current.load_full()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load().choose(client_hello.server_name()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> CryptoProvider {
        (*crate::wire::tls::provider()).clone()
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn issue(names: &[&str]) -> rcgen::CertifiedKey {
        rcgen::generate_simple_self_signed(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap()
    }

    fn files(dir: &Path, stem: &str, issued: &rcgen::CertifiedKey) -> CertificateFiles {
        CertificateFiles {
            cert: write(dir, &format!("{stem}.pem"), &issued.cert.pem()),
            key: write(dir, &format!("{stem}.key"), &issued.key_pair.serialize_pem()),
        }
    }

    #[test]
    fn chooses_by_exact_name_then_wildcard_then_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let a = load(&files(dir.path(), "a", &issue(&["a.example"])), &provider()).unwrap();
        let b = load(
            &files(dir.path(), "b", &issue(&["*.b.example", "b.example"])),
            &provider(),
        )
        .unwrap();
        let set = CertificateSet::new(&[a.clone(), b.clone()]).unwrap();
        assert!(Arc::ptr_eq(&set.choose(Some("A.example")), &a.key));
        assert!(Arc::ptr_eq(&set.choose(Some("x.b.example")), &b.key));
        assert!(Arc::ptr_eq(&set.choose(Some("b.example")), &b.key));
        // Two labels down is not covered by a wildcard.
        assert!(Arc::ptr_eq(&set.choose(Some("y.x.b.example")), &a.key));
        assert!(Arc::ptr_eq(&set.choose(None), &a.key));
        assert!(CertificateSet::new(&[]).is_none());
    }

    #[test]
    fn a_key_from_another_certificate_is_refused_naming_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let one = issue(&["one.example"]);
        let other = issue(&["other.example"]);
        let files = CertificateFiles {
            cert: write(dir.path(), "one.pem", &one.cert.pem()),
            key: write(dir.path(), "other.key", &other.key_pair.serialize_pem()),
        };
        let error = load(&files, &provider()).unwrap_err();
        assert!(matches!(error, CertificateError::KeyMismatch { .. }), "{error}");
        let message = error.to_string();
        assert!(
            message.contains("other.key") && message.contains("one.pem"),
            "{message}"
        );
    }

    #[test]
    fn an_expired_certificate_is_refused_with_its_dates() {
        let dir = tempfile::tempdir().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["old.example".to_owned()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        let key_pair = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key_pair).unwrap();
        let files = CertificateFiles {
            cert: write(dir.path(), "old.pem", &cert.pem()),
            key: write(dir.path(), "old.key", &key_pair.serialize_pem()),
        };
        let message = load(&files, &provider()).unwrap_err().to_string();
        assert!(message.contains("old.pem is expired"), "{message}");
        assert!(message.contains("2021-01-01"), "{message}");
    }

    #[test]
    fn missing_and_empty_files_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = CertificateFiles {
            cert: dir.path().join("absent.pem"),
            key: dir.path().join("absent.key"),
        };
        let message = load(&missing, &provider()).unwrap_err().to_string();
        assert!(
            message.contains("cannot read") && message.contains("absent.pem"),
            "{message}"
        );
        let empty = CertificateFiles {
            cert: write(dir.path(), "empty.pem", ""),
            key: write(dir.path(), "empty.key", ""),
        };
        let message = load(&empty, &provider()).unwrap_err().to_string();
        assert!(message.contains("empty.pem holds no certificate"), "{message}");
    }
}
