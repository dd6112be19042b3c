//! One of the shop's apps on a fresh database of its own, serving on a free
//! port.

use std::fmt::Display;
use std::future::Future;

use service_runtime::app::BoundApp;
use service_runtime::{Database, DatabaseUrl};
use test_harness::{Engine, TestDatabase};

use crate::RunningApp;

/// An app under test: serving, with its database kept for the test.
pub struct SpawnedApp {
    /// Its base URL, without a trailing slash.
    pub url: String,
    /// The app's own pool; closed once [`SpawnedApp::stop`] has run.
    pub db: Database,
    app: RunningApp,
    // Dropped last: the SQLite folder or the PostgreSQL database.
    database: TestDatabase,
}

impl SpawnedApp {
    /// Creates a fresh database of `engine`, builds the app on it with
    /// `build` (which should listen on [`crate::any_port`]) and serves it
    /// until `/health` answers. `None` when the engine's server is
    /// unavailable (the harness has printed why, and the test skips).
    pub async fn spawn<B, F, E>(engine: Engine, build: B) -> Option<Self>
    where
        B: FnOnce(DatabaseUrl) -> F,
        F: Future<Output = Result<BoundApp, E>>,
        E: Display,
    {
        let database = TestDatabase::fresh(engine).await?;
        let app = build(database.url().clone())
            .await
            .unwrap_or_else(|error| panic!("starting an app under test on {engine:?}: {error}"));
        let db = app.database().clone();
        let app = RunningApp::start(app).await;
        Some(Self {
            url: app.url.clone(),
            db,
            app,
            database,
        })
    }

    /// The URL of the app's database, to open another pool on it.
    pub fn database_url(&self) -> &DatabaseUrl {
        self.database.url()
    }

    /// Shuts the app down and waits until it no longer listens. Its pool
    /// ([`SpawnedApp::db`]) is closed with it; the database itself stays
    /// until the value is dropped.
    pub async fn stop(&mut self) {
        self.app.stop().await;
    }
}
