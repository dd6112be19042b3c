//! Counting shadow outcomes in memory and flushing them to the store once a
//! second, so that the hot path never writes to a database and several
//! facade replicas add into the same ten-second buckets.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;
use toolkit_db::timestamp;

use super::store::{self, Bucket, Sample};
use toolkit_db::Database;

/// Mismatch samples kept per capability per flush; the store keeps the
/// latest few hundred.
const SAMPLES_PER_FLUSH: usize = 10;

/// How often counts go to the store.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// The ten-second bucket of now.
pub fn current_bucket() -> i64 {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    i64::try_from(seconds / 10).unwrap_or(i64::MAX)
}

#[derive(Debug, Default)]
struct Pending {
    buckets: HashMap<(&'static str, i64), Bucket>,
    samples: HashMap<&'static str, Vec<Sample>>,
    noise: Vec<(&'static str, String)>,
}

/// Outcomes waiting to be flushed.
#[derive(Debug, Default)]
pub struct Recorder {
    pending: Mutex<Pending>,
    // Serializes flushes, so a flush asked for by a gate check sees
    // everything recorded before it.
    flushing: tokio::sync::Mutex<()>,
}

impl Recorder {
    fn with_bucket(&self, name: &'static str, update: impl FnOnce(&mut Bucket)) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        update(pending.buckets.entry((name, current_bucket())).or_default());
    }

    /// A copy dropped because the queue was full.
    pub fn dropped(&self, name: &'static str) {
        self.with_bucket(name, |b| b.dropped += 1);
    }

    /// A request not shadowed.
    pub fn skipped(&self, name: &'static str) {
        self.with_bucket(name, |b| b.skipped += 1);
    }

    /// A comparison; `sample` is kept (within the per-flush limit) for a
    /// mismatch.
    pub fn compared(&self, name: &'static str, fields: &[String], sample: Option<Sample>) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = pending.buckets.entry((name, current_bucket())).or_default();
        bucket.compared += 1;
        if !fields.is_empty() {
            bucket.mismatched += 1;
            for field in fields {
                *bucket.fields.entry(field.clone()).or_default() += 1;
            }
        }
        if let Some(sample) = sample {
            let samples = pending.samples.entry(name).or_default();
            if samples.len() < SAMPLES_PER_FLUSH {
                samples.push(sample);
            }
        }
    }

    /// Fields newly learned as noise.
    pub fn learned(&self, name: &'static str, fields: &BTreeSet<String>) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.noise.extend(fields.iter().map(|f| (name, f.clone())));
    }

    /// Writes what is pending. On failure the counts are kept for the next
    /// try (the store may be briefly away).
    pub async fn flush(&self, db: &Database) -> Result<(), sqlx::Error> {
        let _one_at_a_time = self.flushing.lock().await;
        let taken = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        if taken.buckets.is_empty() && taken.samples.is_empty() && taken.noise.is_empty() {
            return Ok(());
        }
        let now = timestamp::now();
        match store::write(db, &taken.buckets, &taken.samples, &taken.noise, &now).await {
            Ok(()) => Ok(()),
            Err(error) => {
                let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                for (key, bucket) in taken.buckets {
                    pending.buckets.entry(key).or_default().add(&bucket);
                }
                pending.noise.extend(taken.noise);
                // Samples are illustrations, not counts: dropping them on a
                // failed write keeps memory bounded.
                Err(error)
            }
        }
    }

    /// Flushes every second until `stop`, then once more.
    pub async fn run(&self, db: Database, stop: CancellationToken) {
        loop {
            let stopped = tokio::select! {
                () = stop.cancelled() => true,
                () = tokio::time::sleep(FLUSH_INTERVAL) => false,
            };
            if let Err(error) = self.flush(&db).await {
                tracing::warn!(error = %crate::flow::error_chain::error_chain(&error), "shadow results not written to the store yet");
            }
            if stopped {
                return;
            }
        }
    }
}
