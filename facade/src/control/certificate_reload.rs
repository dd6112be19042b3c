//! Reloading the TLS listener's certificates while it serves: on SIGHUP,
//! and when a certificate or key file changes (checked every second, so a
//! renewal by certbot or a Kubernetes secret update needs no signal).
//!
//! A reload loads and checks every certificate again and swaps the whole
//! set in at once ([`SniResolver::replace`]); connections already open keep
//! theirs, so nothing is dropped. A reload that fails (a key written before
//! its certificate, an expired renewal) changes nothing: the set in use
//! stays, the failure is logged with the file at fault and counted, and the
//! next change of the files tries again.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::flow::metrics::Metrics;
use crate::wire::tls::certificates::{self, CertificateError, CertificateFiles, CertificateSet, SniResolver};

/// How often the files are looked at.
const POLL_EVERY: Duration = Duration::from_secs(1);

/// What a file looked like when last read: changed when either differs.
type Stamp = Option<(SystemTime, u64)>;

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
/// `resolver`.
pub(crate) async fn run(
    resolver: Arc<SniResolver>,
    files: Vec<CertificateFiles>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGHUP; certificates reload only when their files change");
            None
        }
    };
    let mut stamps = stamps(&files);
    let mut poll = tokio::time::interval(POLL_EVERY);
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
                let now = stamps_off_thread(&files).await;
                if now == stamps {
                    continue;
                }
                stamps = now;
                "a certificate file changed"
            }
        };
        reload(&resolver, &files, &metrics, why).await;
    }
}

async fn reload(resolver: &SniResolver, files: &[CertificateFiles], metrics: &Metrics, why: &str) {
    let owned = files.to_vec();
    let loaded = tokio::task::spawn_blocking(move || load_set(&owned)).await;
    match loaded {
        Ok(Ok((set, serials))) => {
            resolver.replace(set);
            metrics.tls_reload("ok");
            tracing::info!(reason = why, serials = %serials.join(","), "TLS certificates reloaded");
        }
        Ok(Err(error)) => {
            metrics.tls_reload("failed");
            tracing::error!(reason = why, %error, "TLS certificates not reloaded; the ones in use stay");
        }
        Err(error) => {
            metrics.tls_reload("failed");
            tracing::error!(reason = why, %error, "TLS certificate reload stopped unexpectedly; the ones in use stay");
        }
    }
}

fn stamps(files: &[CertificateFiles]) -> Vec<Stamp> {
    files
        .iter()
        .flat_map(|f| [&f.cert, &f.key])
        .map(|path| {
            let meta = std::fs::metadata(path).ok()?;
            Some((meta.modified().ok()?, meta.len()))
        })
        .collect()
}

async fn stamps_off_thread(files: &[CertificateFiles]) -> Vec<Stamp> {
    let owned = files.to_vec();
    tokio::task::spawn_blocking(move || stamps(&owned))
        .await
        .unwrap_or_default()
}
