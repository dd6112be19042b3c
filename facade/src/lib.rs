//! The strangler facade: a reverse proxy in front of the monolith that sends
//! each capability's routes to the monolith or to its extracted service.
//!
//! - [`config`]: `strangler.toml`, validated with line numbers.
//! - [`path`]: request-path normalization before matching.
//! - [`routing`]: the pure route decision over an ordered route table;
//!   [`stage`]: a capability's migration stage; [`canary`]: the sticky split.
//! - [`backend`]: instances, balancing, the pooled upstream client, and the
//!   resilience state (breaker, retry budget, bulkhead).
//! - [`proxy`]: forwarding one request; [`dispatch`]: attempts, retries and
//!   fallback; [`upgrade`]: WebSocket pass-through; [`server`]: the listener
//!   and graceful drain; [`proxy_threads`]: one event loop per thread, each
//!   accepting its own connections; [`http1`]: the HTTP/1.1 connection
//!   plain requests are served on (hyper serves the rest).
//! - [`shadow`]: copies to the service and their comparison; [`rollback`]:
//!   the error budget's automatic move back; [`gate`]: evidence for moving
//!   forward; [`policy`]: their settings.
//! - [`route_store`]: stages and their audit log in the toolkit store;
//!   [`route_watch`]: following the store, swapping tables atomically.
//! - [`admin`]: the token-protected admin API; [`metrics`]: Prometheus.

pub mod admin;
pub mod backend;
pub mod canary;
pub mod capability_state;
pub mod client_body;
pub mod config;
pub mod correlation;
pub mod dispatch;
mod error_chain;
pub mod gate;
mod header_names;
pub mod headers;
pub mod health_check;
pub mod http1;
pub mod metrics;
pub mod path;
pub mod policy;
pub mod proxy;
pub mod proxy_threads;
pub mod rollback;
pub mod route_store;
pub mod route_watch;
pub mod routing;
pub mod server;
pub mod shadow;
mod shutdown;
pub mod stage;
pub mod upgrade;
pub mod upstream;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::admin::AdminState;
use crate::backend::Backend;
use crate::capability_state::CapabilityState;
use crate::config::{ConfigError, FacadeConfig};
use crate::metrics::Metrics;
use crate::proxy::ProxyState;
use crate::rollback::RollbackRequest;
use crate::route_store::{RouteStore, StoreError};
use crate::route_watch::TableUpdater;
use crate::routing::{Matcher, RouteTable};
use crate::shadow::recorder::Recorder;
use crate::shadow::{ShadowJob, Shadower};
use crate::stage::Stage;

/// Why the facade could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The route store could not be opened or read.
    #[error("cannot use the route store at {url}")]
    Store {
        /// The store URL (password masked).
        url: String,
        /// Why.
        #[source]
        source: StoreError,
    },
    /// A listener could not be bound.
    #[error(transparent)]
    Bind(#[from] std::io::Error),
}

/// A facade with its listeners bound and its table loaded.
pub struct Facade {
    proxy_listener: TcpListener,
    admin_listener: TcpListener,
    state: Arc<ProxyState>,
    updater: Arc<TableUpdater>,
    backends: Vec<Arc<Backend>>,
    admin: AdminState,
    config: FacadeConfig,
    shadow_jobs: tokio::sync::mpsc::Receiver<ShadowJob>,
    rollback_requests: tokio::sync::mpsc::Receiver<RollbackRequest>,
}

impl Facade {
    /// Reads the admin token, opens and seeds the store, loads the table and
    /// binds both listeners. Nothing is served until [`Facade::run_until_stopped`].
    pub async fn build(config: FacadeConfig) -> Result<Self, StartError> {
        let token = config.admin_token()?;
        let store_error = |source| StartError::Store {
            url: config.store_url.to_string(),
            source,
        };
        let store = RouteStore::open(&config.store_url).await.map_err(store_error)?;
        let seeded = store.seed(&config.capabilities).await.map_err(store_error)?;
        for transition in &seeded {
            tracing::info!(capability = %transition.capability, stage = %transition.to, "capability added to the route store");
        }
        let snapshot = store.snapshot().await.map_err(store_error)?;
        let matcher = Arc::new(Matcher::new(
            config.routes.clone(),
            config.capabilities.iter().map(|c| c.def.clone()).collect(),
            config.default_backend.clone(),
        ));
        let stages: Vec<Stage> = config
            .capabilities
            .iter()
            .map(|c| snapshot.stages.get(&c.def.name).copied().unwrap_or(c.initial))
            .collect();
        let table = RouteTable::new(matcher, stages, snapshot.revision);
        let metrics = Arc::new(Metrics::new());
        let backends: Vec<Arc<Backend>> = config
            .backends
            .iter()
            .map(|b| Arc::new(Backend::new(b, metrics.name(&b.name), config.proxy_threads)))
            .collect();
        metrics.reloaded(snapshot.revision);
        metrics.store_reachable(true);
        let mut capabilities = Vec::with_capacity(config.capabilities.len());
        for capability in &config.capabilities {
            let name = metrics.name(&capability.def.name);
            let noise = shadow::store::noise(store.database(), name)
                .await
                .map_err(|e| store_error(StoreError::Query(e)))?;
            capabilities.push(CapabilityState::new(
                name,
                capability,
                noise.into_iter().collect(),
            ));
        }
        let (shadower, shadow_jobs) = Shadower::new(
            config.shadow_queue,
            config.shadow_max_per_second,
            Arc::new(Recorder::default()),
            Arc::clone(&metrics),
        );
        let (rollbacks, rollback_requests) = tokio::sync::mpsc::channel(64);
        let state = Arc::new(ProxyState {
            table: ArcSwap::from_pointee(table),
            backends: backends
                .iter()
                .map(|b| (b.name.clone(), Arc::clone(b)))
                .collect::<foldhash::HashMap<_, _>>(),
            capabilities,
            limits: config.limits,
            metrics,
            access_log: config.access_log,
            shadower,
            rollbacks,
        });
        let updater = Arc::new(TableUpdater::new(store, Arc::clone(&state)));
        let proxy_listener = server::bind(config.listen).await?;
        let admin_listener = server::bind(config.admin_listen).await?;
        Ok(Self {
            admin: AdminState {
                proxy: Arc::clone(&state),
                updater: Arc::clone(&updater),
                token,
            },
            proxy_listener,
            admin_listener,
            state,
            updater,
            backends,
            config,
            shadow_jobs,
            rollback_requests,
        })
    }

    /// The proxy's bound address.
    pub fn proxy_addr(&self) -> SocketAddr {
        local(&self.proxy_listener)
    }

    /// The admin API's bound address.
    pub fn admin_addr(&self) -> SocketAddr {
        local(&self.admin_listener)
    }

    /// Serves proxy and admin API until `shutdown`, then drains both.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let stop = CancellationToken::new();
        health_check::spawn(&self.backends, &self.state.metrics, &stop);
        tokio::spawn(Arc::clone(&self.updater).run(self.config.store_url.clone(), stop.clone()));
        tokio::spawn(shadow::worker::run(
            self.shadow_jobs,
            Arc::clone(&self.state),
            self.config.shadow_concurrency,
            stop.clone(),
        ));
        let recorder = Arc::clone(&self.state.shadower.recorder);
        let db = self.updater.store().database().clone();
        let flush_stop = CancellationToken::new();
        let flusher = tokio::spawn({
            let flush_stop = flush_stop.clone();
            async move { recorder.run(db, flush_stop).await }
        });
        tokio::spawn(rollback::run(
            self.rollback_requests,
            Arc::clone(&self.updater),
            stop.clone(),
        ));
        let admin = tokio::spawn(admin::serve(
            self.admin_listener,
            self.admin,
            stop.clone().cancelled_owned(),
            self.config.grace_period,
        ));
        let trigger = stop.clone();
        tokio::spawn(async move {
            shutdown.await;
            trigger.cancel();
        });
        let served = server::serve(
            self.proxy_listener,
            self.state,
            server::Settings {
                max_header_bytes: self.config.limits.max_header_bytes,
                threads: self.config.proxy_threads,
                grace: self.config.grace_period,
            },
            stop.clone(),
        )
        .await;
        stop.cancel();
        let admin_result = admin.await;
        // Shadow results counted during the drain are written once more.
        flush_stop.cancel();
        let _ = flusher.await;
        served?;
        match admin_result {
            Ok(result) => result,
            Err(error) => Err(std::io::Error::other(error)),
        }
    }
}

fn local(listener: &TcpListener) -> SocketAddr {
    listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
}
