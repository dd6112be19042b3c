//! Keeping every running facade's table in step with the route store.
//!
//! The watcher polls the store's one-row revision four times a second (and
//! on PostgreSQL also wakes on `NOTIFY`), so a change made through any
//! facade or the CLI is in force everywhere within a second. A new table is
//! built off to the side and swapped in whole: requests in flight finish on
//! the table they started with. When the store is unreachable the last good
//! table stays in force and the health output says so.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use toolkit_db::{DatabaseUrl, Engine};

use crate::control::route_store::{RouteStore, StoreError, NOTIFY_CHANNEL};
use crate::decision::routing::RouteTable;
use crate::decision::stage::Stage;
use crate::flow::state::ProxyState;

/// How often the revision is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Builds and swaps route tables from the store.
#[derive(Debug)]
pub struct TableUpdater {
    store: RouteStore,
    state: Arc<ProxyState>,
    store_reachable: AtomicBool,
    last_error: Mutex<Option<String>>,
    // One reload at a time, so an older snapshot can never replace a newer
    // table (a background poll racing a flip's own reload).
    reloading: tokio::sync::Mutex<()>,
}

impl TableUpdater {
    /// An updater for `state`'s table.
    pub fn new(store: RouteStore, state: Arc<ProxyState>) -> Self {
        Self {
            store,
            state,
            store_reachable: AtomicBool::new(true),
            last_error: Mutex::new(None),
            reloading: tokio::sync::Mutex::new(()),
        }
    }

    /// The store.
    pub fn store(&self) -> &RouteStore {
        &self.store
    }

    /// The proxy state whose table this updater swaps.
    pub fn state(&self) -> &Arc<ProxyState> {
        &self.state
    }

    /// Whether the last look at the store succeeded, and its error if not.
    pub fn store_status(&self) -> (bool, Option<String>) {
        let error = self.last_error.lock().map(|e| e.clone()).unwrap_or(None);
        (self.store_reachable.load(Ordering::Relaxed), error)
    }

    /// Reloads the table if the store's revision moved. Returns whether a
    /// new table was swapped in.
    pub async fn reload_if_changed(&self) -> Result<bool, StoreError> {
        let result = self.try_reload().await;
        match &result {
            Ok(_) => {
                if !self.store_reachable.swap(true, Ordering::Relaxed) {
                    tracing::info!("route store reachable again");
                }
                if let Ok(mut error) = self.last_error.lock() {
                    *error = None;
                }
            }
            Err(error) => {
                if self.store_reachable.swap(false, Ordering::Relaxed) {
                    tracing::error!(
                        error = %crate::flow::error_chain::error_chain(error),
                        "route store unreachable; serving the last good route table"
                    );
                }
                if let Ok(mut last) = self.last_error.lock() {
                    *last = Some(crate::flow::error_chain::error_chain(error));
                }
            }
        }
        self.state.metrics.store_reachable(result.is_ok());
        result
    }

    async fn try_reload(&self) -> Result<bool, StoreError> {
        let _one_at_a_time = self.reloading.lock().await;
        let current = self.state.table.load();
        if self.store.revision().await? == current.revision() {
            return Ok(false);
        }
        let snapshot = self.store.snapshot().await?;
        if snapshot.revision <= current.revision() {
            return Ok(false);
        }
        let stages: Vec<Stage> = current
            .matcher()
            .capabilities()
            .iter()
            .map(|c| snapshot.stages.get(&c.name).copied().unwrap_or(Stage::Legacy))
            .collect();
        let defs = current.matcher().capabilities();
        for (index, stage) in stages.iter().enumerate() {
            let before = current.stage(index);
            if before == *stage {
                continue;
            }
            if let Some(capability) = self.state.capabilities.get(index) {
                capability.stage_changed();
            }
            // A capability moved onto its service starts with the service's
            // breaker ready to probe: a breaker left open by an earlier
            // outage would otherwise refuse the first requests of the new
            // stage, and they would count against its fresh error budget.
            if stage.serves_from_service() && !before.serves_from_service() {
                let backend = defs
                    .get(index)
                    .and_then(|def| self.state.backends.get(&def.service_backend));
                if let Some(backend) = backend {
                    backend.breaker.expire_open(std::time::Instant::now());
                }
            }
        }
        let changed: Vec<(usize, Stage)> = stages
            .iter()
            .enumerate()
            .filter(|&(index, stage)| current.stage(index) != *stage)
            .map(|(index, stage)| (index, *stage))
            .collect();
        let table: RouteTable = current.with_stages(stages, snapshot.revision);
        self.state.table.store(Arc::new(table));
        self.state.metrics.reloaded(snapshot.revision);
        for (index, stage) in changed {
            if let Some(capability) = self.state.capabilities.get(index) {
                self.state.metrics.stage(capability.name, stage);
                self.state.metrics.stage_changed(capability.name);
            }
        }
        tracing::info!(revision = snapshot.revision, "route table reloaded");
        Ok(true)
    }

    /// Watches the store until `stop`.
    pub async fn run(self: Arc<Self>, store_url: DatabaseUrl, stop: CancellationToken) {
        let notified = Arc::new(tokio::sync::Notify::new());
        if store_url.engine() == Engine::Postgres {
            tokio::spawn(listen(store_url, Arc::clone(&notified), stop.clone()));
        }
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(POLL_INTERVAL) => {},
                () = notified.notified() => {},
            }
            // Errors are recorded by `reload_if_changed` itself.
            let _ = self.reload_if_changed().await;
        }
    }
}

/// Wakes the watcher on every `NOTIFY strangler_routes`; reconnects on its
/// own after a lost connection (the poll covers the gap).
async fn listen(url: DatabaseUrl, notified: Arc<tokio::sync::Notify>, stop: CancellationToken) {
    loop {
        let connected = tokio::time::timeout(
            Duration::from_secs(5),
            sqlx::postgres::PgListener::connect(url.expose()),
        )
        .await;
        let mut listener = match connected {
            Ok(Ok(listener)) => listener,
            _ => {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        if listener.listen(NOTIFY_CHANNEL).await.is_err() {
            continue;
        }
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                received = listener.recv() => match received {
                    Ok(_) => notified.notify_one(),
                    Err(_) => break,
                },
            }
        }
    }
}
