//! `strangler reconcile run` without the rest of the CLI, for
//! `bench/reconcile.sh`: compares one capability and prints the JSON report.
//! It builds in a fraction of the CLI's time and does not depend on the
//! facade.
//!
//! ```sh
//! cargo run --release -p reconciler --example reconcile -- \
//!     <mapping.toml> <capability> <legacy-url> <service-url> [auto|merge|bisect]
//! ```
//! Exit code 0 clean, 1 diverged, 2 error, as the CLI's.
//!
//! With `RECONCILE_SINCE=<RFC 3339 time>` the run is incremental, as if
//! the last clean run had started then (the capability's
//! `incremental_overlap` applies); `bench/reconcile-incremental.sh` uses it.
//!
//! `RECONCILE_PARALLEL`, `RECONCILE_SEGMENT_ROWS` and `RECONCILE_LEAF_ROWS`
//! override those options, for experiments.
//!
//! With `RECONCILE_PROGRESS=count` a progress hook counts the keys it is
//! told (atomically, as a progress bar's counter would) and prints the
//! total on standard error: what the hook costs a comparison, measured.

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use mapping::Mapping;
use reconciler::{reconcile, Mode, Options, Progress, ProgressHook, Status};
use toolkit_db::DatabaseUrl;

/// A hook that only counts, as a progress bar's `inc` does.
#[derive(Default)]
struct Counter(AtomicU64);

impl Progress for Counter {
    fn table_started(&self, _table: &str, _estimated_keys: Option<u64>) {}
    fn keys_compared(&self, keys: u64) {
        self.0.fetch_add(keys, Ordering::Relaxed);
    }
    fn table_finished(&self, _keys: u64) {}
}

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run()) {
        Ok(Status::Clean) => ExitCode::from(0),
        Ok(Status::Diverged) => ExitCode::from(1),
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}

async fn run() -> Result<Status, Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mapping, capability, legacy, service, rest @ ..] = args.as_slice() else {
        return Err(
            "usage: reconcile <mapping.toml> <capability> <legacy-url> <service-url> [auto|merge|bisect]"
                .into(),
        );
    };
    let mapping = Mapping::load(Path::new(mapping))?;
    let capability = mapping.capability(capability)?;
    let counter =
        (std::env::var("RECONCILE_PROGRESS").as_deref() == Ok("count")).then(|| Arc::new(Counter::default()));
    let mode = match std::env::var("RECONCILE_SINCE") {
        Ok(since) => Mode::Since {
            clean_from: chrono::DateTime::parse_from_rfc3339(&since)
                .map_err(|e| format!("RECONCILE_SINCE `{since}` is not an RFC 3339 time: {e}"))?
                .with_timezone(&chrono::Utc),
            overlap: capability.incremental.overlap,
            count_deletes: capability.incremental.deletes == mapping::DeleteCheck::Counts,
        },
        Err(_) => Mode::Full,
    };
    let defaults = Options::default();
    let number = |name: &str, default: u64| -> Result<u64, String> {
        match std::env::var(name) {
            Ok(text) => text.parse().map_err(|e| format!("{name} `{text}`: {e}")),
            Err(_) => Ok(default),
        }
    };
    let options = Options {
        strategy: rest.first().map_or(Ok(Default::default()), |s| s.parse())?,
        mode,
        parallel: number("RECONCILE_PARALLEL", defaults.parallel as u64)? as usize,
        segment_rows: number("RECONCILE_SEGMENT_ROWS", defaults.segment_rows)?,
        bisect_leaf_rows: number("RECONCILE_LEAF_ROWS", defaults.bisect_leaf_rows)?,
        progress: counter.clone().map(|c| ProgressHook::new(c)),
        ..Options::default()
    };
    let legacy: DatabaseUrl = legacy.parse()?;
    let service: DatabaseUrl = service.parse()?;
    let report = reconcile(capability, &legacy, &service, &options).await?;
    if let Some(counter) = counter {
        eprintln!("progress: {} keys", counter.0.load(Ordering::Relaxed));
    }
    println!("{}", serde_json::to_string(&report)?);
    Ok(report.status)
}
