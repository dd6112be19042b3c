//! The strangler facade: a reverse proxy in front of the monolith that sends
//! each capability's routes to the monolith or to its extracted service.
//!
//! The crate is four layers, each a folder, bottom to top: `wire`,
//! `decision`, `flow`, `control`; with [`config`] between the decisions and
//! the flow. A file imports only from its own layer and those below, and no
//! files import each other in a circle; the unit test in `layering.rs`
//! checks both on the source. This file is the top and wires the layers
//! together ([`Facade::build`], [`Facade::run_until_stopped`]). What a lower
//! layer needs of a higher one at run time it is handed, never imports: the
//! wire serves requests with the flow's `Handler`, given to it here, and
//! the flow asks control for a rollback over a channel.
//!
//! - `wire`: connections and HTTP/1.1 on both sides. `server` binds the
//!   listener, accepts on the listener's task and deals each connection to
//!   the proxy thread with the fewest open (`proxy_threads`: one
//!   single-threaded event loop per thread, which serves the connections
//!   it is dealt to their end), and drains on shutdown (`shutdown`).
//!   `http1` is the facade's own HTTP/1.1 server connection for plain
//!   requests, handing everything else to hyper; `upstream` is its own
//!   pooled HTTP/1.1 client. Also the one body type (`body`), the client's
//!   request body (`client_body`), header rules (`headers`,
//!   `header_names`, `correlation`, and `content_length`, the one
//!   `Content-Length` parser), the facade's error answer
//!   (`error_response`), the upgrade tunnel (`tunnel`), and what the wire
//!   asks of the layer above (`service`: `Peer` and `Handler`).
//! - `decision`: pure functions of the request and the settings, no I/O.
//!   [`path`] normalizes the request path; [`routing`] is the route
//!   decision over an ordered table; [`stage`] a capability's migration
//!   stage; `canary` the sticky split; `policy` the safe-cutover settings.
//! - [`config`]: `strangler.toml`, validated once with line numbers, in the
//!   decisions' vocabulary; read at start-up by the flow and control.
//! - `flow`: one request's way through. `handle` refuses, routes, forwards
//!   and finishes it; `dispatch` makes the attempts, retries and the
//!   fallback against a `backend` (instances, balancing, breaker, retry
//!   budget, bulkhead); `answer` maps a failure to an answer that says
//!   which side failed; `upgrade` forwards WebSocket upgrades; `shadow`
//!   copies requests to the service and compares the answers; `rollback`
//!   counts the error budget; `state` is what every request reads, with
//!   `capability_state` and `metrics` (Prometheus); `trace` records a
//!   sampled request's OpenTelemetry spans, given a `SpanSink` by
//!   [`Facade::build_traced`].
//! - `control`: [`route_store`] (stages and their audit log in the toolkit
//!   store), `route_watch` (following the store, swapping tables
//!   atomically), `auto_rollback` (acting on a breached budget), `gate`
//!   (evidence for moving forward), `health_check`, and [`admin`], the
//!   token-protected admin API.

pub mod config;
mod control;
mod decision;
mod flow;
mod wire;

#[cfg(test)]
mod layering;

// The public API, at the paths other crates have always used.
pub use control::{admin, route_store};
pub use decision::{path, routing, stage};

/// The headers the facade marks its answers with (see `flow::answer`).
pub mod proxy {
    pub use crate::flow::answer::{FALLBACK, SERVED_BY};
}

/// Binding a listener the way the facade does, for tools that serve
/// beside it.
pub mod server {
    pub use crate::wire::server::bind;
}

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use toolkit_telemetry::SpanSink;

use crate::config::{ConfigError, FacadeConfig};
use crate::control::admin::AdminState;
use crate::control::route_store::{RouteStore, StoreError};
use crate::control::route_watch::TableUpdater;
use crate::control::{auto_rollback, certificate_reload, health_check};
use crate::decision::routing::{Matcher, RouteTable};
use crate::decision::stage::Stage;
use crate::flow::backend::Backend;
use crate::flow::capability_state::CapabilityState;
use crate::flow::metrics::Metrics;
use crate::flow::rollback::RollbackRequest;
use crate::flow::shadow::recorder::Recorder;
use crate::flow::shadow::{self, ShadowJob, Shadower};
use crate::flow::state::ProxyState;
use crate::wire::tls::certificates::SniResolver;
use crate::wire::tls::server::TlsAccept;

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
    /// The TLS listener's certificates could not be loaded (a file changed
    /// since the configuration was checked).
    #[error("the TLS listener cannot start: {0}")]
    Tls(String),
}

/// A facade with its listeners bound and its table loaded.
pub struct Facade {
    listeners: wire::server::Listeners,
    /// What the TLS listener reloads: its certificates and client authorities.
    certificates: Option<certificate_reload::Watched>,
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
    /// No request is traced.
    pub async fn build(config: FacadeConfig) -> Result<Self, StartError> {
        Self::build_traced(config, None).await
    }

    /// [`Facade::build`], with sampled requests' spans going to `tracing`
    /// (see `flow::trace`); `None` leaves tracing off and the request path
    /// as it is without it.
    pub async fn build_traced(config: FacadeConfig, tracing: Option<SpanSink>) -> Result<Self, StartError> {
        let token = config.admin_token()?;
        let store_error = |source| StartError::Store {
            url: config.store_url.to_string(),
            source,
        };
        let store = RouteStore::open(&config.store_url, &config.replica_id)
            .await
            .map_err(store_error)?;
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
        let table = RouteTable::new(matcher, stages.clone(), snapshot.revision);
        let metrics = Arc::new(Metrics::for_replica(&config.replica_id));
        let backends: Vec<Arc<Backend>> = config
            .backends
            .iter()
            .map(|b| {
                Arc::new(Backend::new(
                    b,
                    metrics.name(&b.name),
                    config.connections.proxy_threads,
                ))
            })
            .collect();
        metrics.reloaded(snapshot.revision);
        metrics.store_reachable(true);
        let mut capabilities = Vec::with_capacity(config.capabilities.len());
        for (capability, stage) in config.capabilities.iter().zip(&stages) {
            let name = metrics.name(&capability.def.name);
            metrics.stage(name, *stage);
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
            trusted_proxies: config.connections.trusted_proxies.clone(),
            shadower,
            rollbacks,
            tracing,
            idempotency_keys: flow::idempotency_keys::KeyAffinity::default(),
        });
        let updater = Arc::new(TableUpdater::new(store, Arc::clone(&state)));
        for backend in &config.backends {
            if backend
                .tls
                .as_ref()
                .is_some_and(|tls| tls.settings.insecure_skip_verify)
            {
                tracing::warn!(
                    backend = %backend.name,
                    "insecure_skip_verify is on: the backend's certificate is not verified, so anyone on the path can impersonate it"
                );
            }
        }
        let (tls, certificates) = match &config.tls {
            None => (None, None),
            Some(tls) => {
                let (set, serials) = certificate_reload::load_set(&tls.certificates)
                    .map_err(|error| StartError::Tls(error.to_string()))?;
                let resolver = SniResolver::new(set);
                let shape = wire::tls::server::Shape {
                    resolver: Arc::clone(&resolver),
                    tickets: tls.session_ticket_keys.clone(),
                    minimum: tls.min_version,
                    client_certificate_required: tls.require_client_certificate,
                };
                let accept = TlsAccept::new(shape, tls.handshake_timeout, tls.client_authorities.as_ref())
                    .map_err(|error| StartError::Tls(error.to_string()))?;
                let listener = wire::server::bind(tls.listen).await?;
                tracing::info!(serials = %serials.join(","), "TLS certificates loaded");
                if let Some(authorities) = &tls.client_authorities {
                    authorities.warn_unchecked();
                }
                let watched = certificate_reload::Watched {
                    resolver,
                    files: tls.certificates.clone(),
                    client_authorities: tls
                        .client_authorities
                        .as_ref()
                        .map(|authorities| (accept.clone(), authorities.files.clone())),
                    ticket_keys: tls.session_ticket_keys.clone(),
                };
                (Some((listener, accept)), Some(watched))
            }
        };
        let plain = match config.listen {
            Some(address) => Some(wire::server::bind(address).await?),
            None => None,
        };
        let redirect_to = match (&config.tls, &tls) {
            (Some(settings), Some((listener, _))) if settings.redirect_http => Some(local(listener).port()),
            _ => None,
        };
        let listeners = wire::server::Listeners {
            plain,
            tls,
            redirect_to,
        };
        let admin_listener = wire::server::bind(config.admin_listen).await?;
        Ok(Self {
            admin: AdminState {
                proxy: Arc::clone(&state),
                updater: Arc::clone(&updater),
                token,
                brake: Arc::new(control::admin::brake::AuthBrake::new(
                    config.admin_failures_per_minute,
                )),
                panel: Arc::default(),
            },
            listeners,
            certificates,
            admin_listener,
            state,
            updater,
            backends,
            config,
            shadow_jobs,
            rollback_requests,
        })
    }

    /// The proxy's bound address: the plain listener's, or the TLS
    /// listener's when there is no plain one.
    pub fn proxy_addr(&self) -> SocketAddr {
        match (&self.listeners.plain, &self.listeners.tls) {
            (Some(plain), _) => local(plain),
            (None, Some((tls, _))) => local(tls),
            (None, None) => SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }

    /// The TLS listener's bound address, if there is one.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.listeners.tls.as_ref().map(|(listener, _)| local(listener))
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
        tokio::spawn(auto_rollback::run(
            self.rollback_requests,
            Arc::clone(&self.updater),
            stop.clone(),
        ));
        tokio::spawn(control::idle_sweep::run(Arc::clone(&self.state), stop.clone()));
        let admin = tokio::spawn(admin::serve(
            self.admin_listener,
            self.admin,
            stop.clone().cancelled_owned(),
            self.config.grace_period,
        ));
        if let Some(watched) = self.certificates {
            tokio::spawn(certificate_reload::run(
                watched,
                Arc::clone(&self.state.metrics),
                stop.clone(),
            ));
        }
        let trigger = stop.clone();
        tokio::spawn(async move {
            shutdown.await;
            trigger.cancel();
        });
        let served = wire::server::serve(
            self.listeners,
            self.state,
            wire::server::Settings {
                max_header_bytes: self.config.limits.max_header_bytes,
                max_requests_per_connection: self.config.connections.max_requests_per_connection,
                header_read_timeout: self.config.connections.header_read_timeout,
                proxy_protocol: self.config.connections.proxy_protocol,
                http2_idle_timeout: self.config.connections.http2_idle_timeout,
                threads: self.config.connections.proxy_threads,
                grace: self.config.grace_period,
                max_connections: wire::descriptors::fit_connections(self.config.connections.max_connections),
                asks_client_certificates: self
                    .config
                    .tls
                    .as_ref()
                    .is_some_and(|tls| tls.client_authorities.is_some()),
                strict_transport_security: self
                    .config
                    .tls
                    .as_ref()
                    .and_then(|tls| tls.strict_transport_security.clone()),
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
