//! Reloading the TLS listener's certificates, the authorities it accepts
//! client certificates from (`client_ca_file`, `client_crl_file`) and the
//! keys that seal its session tickets (`session_ticket_key_files`), while
//! it serves:
//! on SIGHUP, and when one of their files changes (checked every second,
//! so a renewal by certbot or a Kubernetes secret update needs no signal).
//!
//! A reload loads and checks every file again and swaps the whole set in at
//! once ([`SniResolver::replace`], [`TlsAccept::install`]); connections
//! already open keep theirs, so nothing is dropped. A reload that fails (a
//! key written before its certificate, an expired renewal, an empty CA
//! bundle) changes nothing: what is in use stays, the failure is logged
//! with the file at fault and counted, and the next change of the files
//! tries again.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::flow::metrics::Metrics;
use crate::wire::tls::certificates::{self, CertificateError, CertificateFiles, CertificateSet, SniResolver};
use crate::wire::tls::client_authorities::{ClientAuthorities, ClientAuthorityError, ClientAuthorityFiles};
use crate::wire::tls::server::{NextClientAuthorities, TlsAccept};
use crate::wire::tls::session_tickets::{SharedTicketKeys, TicketKeyError, TicketKeys};

/// How often the files are looked at.
const POLL_EVERY: Duration = Duration::from_secs(1);

/// What a file looked like when last read: changed when either differs.
type Stamp = Option<(SystemTime, u64)>;

/// What the TLS listener reloads.
pub(crate) struct Watched {
    /// Chooses each handshake's certificate.
    pub resolver: Arc<SniResolver>,
    /// The certificates' files.
    pub files: Vec<CertificateFiles>,
    /// With `client_ca_file`: the listener that asks for client
    /// certificates, and the files of the authorities it accepts.
    pub client_authorities: Option<(TlsAccept, ClientAuthorityFiles)>,
    /// With `session_ticket_key_files`: the keys in use, and their files.
    pub ticket_keys: Option<SharedTicketKeys>,
}

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
enum ReloadError {
    #[error(transparent)]
    Certificates(#[from] CertificateError),
    #[error(transparent)]
    ClientAuthorities(#[from] ClientAuthorityError),
    #[error(transparent)]
    TicketKeys(#[from] TicketKeyError),
    #[error("client_ca_file {}: {error}", path.display())]
    Listener { path: PathBuf, error: rustls::Error },
    #[error("the reload stopped unexpectedly: {0}")]
    Stopped(String),
}

/// Loads every certificate in `files` into a new set.
pub(crate) fn load_set(
    files: &[CertificateFiles],
) -> Result<(CertificateSet, Vec<String>), CertificateError> {
    let provider = crate::wire::tls::provider();
    let loaded = files
        .iter()
        .map(|f| certificates::load(f, &provider))
        .collect::<Result<Vec<_>, _>>()?;
    let serials = loaded.iter().map(|c| c.serial.clone()).collect();
    // Configuration checks there is at least one certificate.
    let set = CertificateSet::new(&loaded).ok_or_else(|| CertificateError::NoPem {
        path: files.first().map(|f| f.cert.clone()).unwrap_or_default(),
        what: "certificate",
        detail: "no certificates are configured".to_owned(),
    })?;
    Ok((set, serials))
}

/// Watches for SIGHUP and file changes until `stop`, reloading into
/// `watched`.
pub(crate) async fn run(watched: Watched, metrics: Arc<Metrics>, stop: CancellationToken) {
    watch(watched, metrics, stop, POLL_EVERY).await;
}

/// [`run`], looking at the files every `poll_every`.
async fn watch(watched: Watched, metrics: Arc<Metrics>, stop: CancellationToken, poll_every: Duration) {
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGHUP; certificates reload only when their files change");
            None
        }
    };
    let paths = watched_paths(&watched);
    let mut stamps = stamps(&paths);
    // The bundle in use, as read: an unchanged one is not installed again,
    // so that a certificate renewal keeps the listener's session cache.
    let mut installed_bundle = match &watched.client_authorities {
        Some((_, files)) => read_off_thread(files.clone()).await,
        None => None,
    };
    let mut poll = tokio::time::interval(poll_every);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let why = tokio::select! {
            () = stop.cancelled() => return,
            Some(()) = async {
                match hangup.as_mut() {
                    Some(signal) => signal.recv().await,
                    None => std::future::pending().await,
                }
            } => "SIGHUP",
            _ = poll.tick() => {
                let now = stamps_off_thread(&paths).await;
                if now == stamps {
                    continue;
                }
                stamps = now;
                "a certificate file changed"
            }
        };
        match reload(&watched, installed_bundle.as_deref()).await {
            Ok((serials, bundle)) => {
                metrics.tls_reload("ok");
                match bundle {
                    Some(bundle) => {
                        installed_bundle = Some(bundle);
                        tracing::info!(reason = why, serials = %serials.join(","), "TLS certificates and client authorities reloaded");
                    }
                    None => {
                        tracing::info!(reason = why, serials = %serials.join(","), "TLS certificates reloaded")
                    }
                }
            }
            Err(error) => {
                metrics.tls_reload("failed");
                tracing::error!(reason = why, %error, "TLS certificates not reloaded; the ones in use stay");
            }
        }
    }
}

/// Loads everything, then swaps it in; returns the serials served and,
/// when the client authorities changed, their files' bytes now in use.
async fn reload(
    watched: &Watched,
    installed_bundle: Option<&[u8]>,
) -> Result<(Vec<String>, Option<Vec<u8>>), ReloadError> {
    let files = watched.files.clone();
    let authority_files = watched
        .client_authorities
        .as_ref()
        .map(|(_, files)| files.clone());
    let installed = installed_bundle.map(<[u8]>::to_vec);
    let key_files = watched.ticket_keys.as_ref().map(SharedTicketKeys::files);
    let loaded = tokio::task::spawn_blocking(move || -> Result<_, ReloadError> {
        let (set, serials) = load_set(&files)?;
        let keys = key_files.map(|files| TicketKeys::read(&files)).transpose()?;
        let authorities = match authority_files {
            Some(files) => {
                let bytes = read_authority_files(&files).map_err(ClientAuthorityError::File)?;
                if installed.as_deref() == Some(&bytes[..]) {
                    None
                } else {
                    Some((ClientAuthorities::load(&files)?, bytes))
                }
            }
            None => None,
        };
        Ok((set, serials, authorities, keys))
    })
    .await;
    let (set, serials, authorities, keys) = match loaded {
        Ok(loaded) => loaded?,
        // The load panicked or was cancelled: nothing was swapped.
        Err(error) => return Err(ReloadError::Stopped(error.to_string())),
    };
    let next: Option<(NextClientAuthorities, ClientAuthorities, Vec<u8>)> =
        match (authorities, &watched.client_authorities) {
            (Some((authorities, bytes)), Some((accept, files))) => Some((
                accept
                    .prepare(&authorities)
                    .map_err(|error| ReloadError::Listener {
                        path: files.ca_file.clone(),
                        error,
                    })?,
                authorities,
                bytes,
            )),
            _ => None,
        };
    watched.resolver.replace(set);
    if let (Some(shared), Some(keys)) = (&watched.ticket_keys, keys) {
        shared.install(keys);
    }
    let bundle = next.map(|(next, authorities, bytes)| {
        if let Some((accept, _)) = &watched.client_authorities {
            accept.install(next);
        }
        authorities.warn_unchecked();
        bytes
    });
    Ok((serials, bundle))
}

/// `client_ca_file` and `client_crl_file` as they are now, one after the
/// other: what a reload compares with what it installed last.
fn read_authority_files(files: &ClientAuthorityFiles) -> Result<Vec<u8>, CertificateError> {
    let mut bytes = certificates::read(&files.ca_file)?;
    if let Some(crl) = &files.crl_file {
        // A separator that no PEM file holds, so that moving a block from
        // one file to the other still counts as a change.
        bytes.push(0);
        bytes.extend(certificates::read(crl)?);
    }
    Ok(bytes)
}

/// Every file a reload reads.
fn watched_paths(watched: &Watched) -> Vec<PathBuf> {
    watched
        .files
        .iter()
        .flat_map(|f| [f.cert.clone(), f.key.clone()])
        .chain(
            watched
                .client_authorities
                .iter()
                .flat_map(|(_, files)| std::iter::once(files.ca_file.clone()).chain(files.crl_file.clone())),
        )
        .chain(watched.ticket_keys.iter().flat_map(SharedTicketKeys::files))
        .collect()
}

fn stamps(paths: &[PathBuf]) -> Vec<Stamp> {
    paths
        .iter()
        .map(|path| {
            let meta = std::fs::metadata(path).ok()?;
            Some((meta.modified().ok()?, meta.len()))
        })
        .collect()
}

async fn stamps_off_thread(paths: &[PathBuf]) -> Vec<Stamp> {
    let owned = paths.to_vec();
    tokio::task::spawn_blocking(move || stamps(&owned))
        .await
        .unwrap_or_default()
}

async fn read_off_thread(files: ClientAuthorityFiles) -> Option<Vec<u8>> {
    tokio::task::spawn_blocking(move || read_authority_files(&files).ok())
        .await
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issue(dir: &std::path::Path, stem: &str) -> (CertificateFiles, Vec<u8>) {
        let issued = rcgen::generate_simple_self_signed(vec!["shop.test".to_owned()]).unwrap();
        let files = CertificateFiles {
            cert: dir.join(format!("{stem}.pem")),
            key: dir.join(format!("{stem}.key")),
        };
        std::fs::write(&files.cert, issued.cert.pem()).unwrap();
        std::fs::write(&files.key, issued.key_pair.serialize_pem()).unwrap();
        (files, issued.cert.der().to_vec())
    }

    fn served(resolver: &SniResolver) -> Vec<u8> {
        let set = resolver.current();
        set.choose(Some("shop.test")).cert[0].to_vec()
    }

    #[tokio::test]
    async fn sighup_reloads_and_a_broken_renewal_keeps_the_set_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let (live, first) = issue(dir.path(), "live");
        let (renewed, second) = issue(dir.path(), "renewed");
        let (set, _) = load_set(std::slice::from_ref(&live)).unwrap();
        let resolver = SniResolver::new(set);
        let metrics = Arc::new(Metrics::new());
        let stop = CancellationToken::new();
        // Installs tokio's handler before any SIGHUP is sent, so the signal
        // can never take the default action (ending the test process).
        let _installed = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).unwrap();
        // The files are looked at only once an hour: a reload here is the
        // signal's doing.
        tokio::spawn(watch(
            Watched {
                resolver: Arc::clone(&resolver),
                files: vec![live.clone()],
                client_authorities: None,
                ticket_keys: None,
            },
            Arc::clone(&metrics),
            stop.clone(),
            Duration::from_secs(3600),
        ));
        assert_eq!(served(&resolver), first);

        std::fs::copy(&renewed.cert, &live.cert).unwrap();
        std::fs::copy(&renewed.key, &live.key).unwrap();
        let pid = std::process::id().to_string();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        // Sent until seen: the watcher may not have subscribed yet.
        while served(&resolver) != second {
            assert!(tokio::time::Instant::now() < deadline, "SIGHUP did not reload");
            let status = std::process::Command::new("kill")
                .args(["-HUP", &pid])
                .status()
                .unwrap();
            assert!(status.success());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // A renewal whose key belongs to another certificate is refused;
        // the set in use stays.
        let (other, _) = issue(dir.path(), "other");
        std::fs::copy(&other.key, &live.key).unwrap();
        let failed_before = metrics.tls_reload_count("failed");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while metrics.tls_reload_count("failed") == failed_before {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the broken renewal was never tried"
            );
            std::process::Command::new("kill")
                .args(["-HUP", &pid])
                .status()
                .unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            served(&resolver),
            second,
            "a failed reload replaced the certificates"
        );
        stop.cancel();
    }
}
