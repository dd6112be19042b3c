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
    watch(resolver, files, metrics, stop, POLL_EVERY).await;
}

/// [`run`], looking at the files every `poll_every`.
async fn watch(
    resolver: Arc<SniResolver>,
    files: Vec<CertificateFiles>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    poll_every: Duration,
) {
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGHUP; certificates reload only when their files change");
            None
        }
    };
    let mut stamps = stamps(&files);
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
            Arc::clone(&resolver),
            vec![live.clone()],
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
