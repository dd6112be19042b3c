//! A bound JSON HTTP app: what each sample application's `build` returns.
//!
//! Every app binds its listener before serving (so tests can use port 0 and
//! read the real port back), answers unknown paths and methods with JSON,
//! carries a correlation id on every request, serves `/health`, and closes
//! its database pool after draining.
//!
//! An app may also run background work beside its server
//! ([`BoundApp::with_background`]: the orders service's saga recovery, the
//! purge of expired idempotency keys). It starts when serving starts, runs
//! in the server's own task, and ends when the server has drained: whatever
//! stops the app (a signal, a test dropping its task) stops it too.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::FromRef;
use axum::Router;
use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::net::TcpListener;

use crate::api_error::{method_not_allowed_fallback, not_found_fallback};
use crate::request_id::with_request_tracing;
use crate::{health, server, Database};

/// Finishes an app's routes: `/health`, JSON 404 and 405, request ids and
/// request tracing.
pub fn json_api<S>(routes: Router<S>, state: S) -> Router
where
    S: Clone + Send + Sync + 'static,
    Database: FromRef<S>,
{
    let router = routes
        .merge(health::routes())
        .fallback(not_found_fallback)
        .method_not_allowed_fallback(method_not_allowed_fallback)
        .with_state(state);
    with_request_tracing(router)
}

/// An app with its listener bound and its database open, ready to serve.
pub struct BoundApp {
    listener: TcpListener,
    router: Router,
    db: Database,
    grace_period: Duration,
    background: Vec<BoxFuture<'static, ()>>,
}

impl std::fmt::Debug for BoundApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundApp")
            .field("addr", &self.local_addr())
            .finish()
    }
}

impl BoundApp {
    /// Binds `listen` for `router`, which serves from `db`.
    pub async fn bind(
        listen: SocketAddr,
        router: Router,
        db: Database,
        grace_period: Duration,
    ) -> std::io::Result<Self> {
        Ok(Self {
            listener: server::bind(listen).await?,
            router,
            db,
            grace_period,
            background: Vec::new(),
        })
    }

    /// Runs `task` beside the server once it serves, until the server has
    /// drained. A task that ends early just ends; the server goes on.
    pub fn with_background(mut self, task: impl Future<Output = ()> + Send + 'static) -> Self {
        self.background.push(task.boxed());
        self
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// The database the app serves from.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Serves (and runs the background tasks) until `shutdown` resolves,
    /// drains, then closes the pool.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let serve = server::serve(self.listener, self.router, shutdown, self.grace_period);
        let background = async {
            futures::future::join_all(self.background).await;
            std::future::pending::<()>().await;
        };
        let result = tokio::select! {
            result = serve => result,
            () = background => Ok(()),
        };
        self.db.close().await;
        result
    }
}
