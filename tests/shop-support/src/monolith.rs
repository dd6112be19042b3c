//! The real monolith, seeded small: the upstream of the extracted services'
//! tests.

use legacy_monolith::seed::{seed_if_empty, SeedReport, SeedSize};
use legacy_monolith::{Application, Config};
use service_runtime::Database;
use test_harness::Engine;

use crate::{any_port, SpawnedApp, GRACE_PERIOD};

/// The real monolith on a fresh, empty database (migrated, not seeded),
/// serving on a free port; `None` when the engine's server is unavailable.
pub async fn spawn_empty_monolith(engine: Engine) -> Option<SpawnedApp> {
    SpawnedApp::spawn(engine, |database_url| {
        Application::build(Config {
            listen: any_port(),
            database_url,
            seed: false,
            grace_period: GRACE_PERIOD,
        })
    })
    .await
}

/// The real monolith on a fresh database, seeded, serving on a free port.
pub struct Monolith {
    /// Its base URL, without a trailing slash.
    pub url: String,
    /// A pool of the test's own on the monolith's database: it stays usable
    /// after [`Monolith::stop`], which closes the app's pool.
    pub db: Database,
    app: SpawnedApp,
}

impl Monolith {
    /// Starts the monolith on a fresh database of `engine` and seeds it with
    /// `size` (the seed is deterministic); `None` when the engine's server
    /// is unavailable (the test then skips).
    pub async fn spawn(engine: Engine, size: SeedSize) -> Option<Self> {
        let app = spawn_empty_monolith(engine).await?;
        let report = seed_if_empty(&app.db, size).await.expect("seeding the monolith");
        assert_eq!(
            report,
            SeedReport::Loaded {
                products: size.products,
                customers: size.customers,
                orders: size.orders,
            },
            "a fresh database is seeded in full"
        );
        let db = Database::open(app.database_url())
            .await
            .expect("opening the monolith's database for the test");
        Some(Self {
            url: app.url.clone(),
            db,
            app,
        })
    }

    /// Shuts the monolith down and waits until it no longer listens.
    pub async fn stop(&mut self) {
        self.app.stop().await;
    }
}
