//! Choosing, opening and migrating an application's database.
//!
//! Every app runs on SQLite by default (a file, no server needed) and on
//! PostgreSQL when given a `postgres://` URL. Tools that only read other
//! systems' databases (the reconciler) also open MySQL/MariaDB
//! (`mysql://`, `mariadb://`), which needs `?` placeholders instead. Both go through sqlx's `Any`
//! driver so that one set of queries serves both; queries use numbered
//! placeholders (`$1`), which SQLite and PostgreSQL both understand.
//! Schemas differ per engine, so each app ships one migration folder per
//! engine and [`Migrations`] picks the right one at start-up.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, ConnectOptions};

/// How long acquiring a pooled connection may take before the request fails.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// The database engines an app can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// An embedded SQLite file: the default, needs nothing installed.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
    /// A MySQL or MariaDB server (`mysql://` or `mariadb://`); only tools
    /// that read other systems' databases use it, and no app migrates it.
    MySql,
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Engine::Sqlite => "sqlite",
            Engine::Postgres => "postgres",
            Engine::MySql => "mysql",
        })
    }
}

/// Errors from opening or migrating a database.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    /// The URL names no engine the toolkit supports.
    #[error(
        "database URL `{url}` is not supported: use `sqlite://PATH`, `postgres://USER@HOST/DB` or `mysql://USER@HOST/DB`"
    )]
    UnsupportedUrl {
        /// The URL with any password masked.
        url: String,
    },
    /// The folder that should hold a SQLite file could not be created.
    #[error("cannot create the folder {path} for the SQLite database")]
    CreateFolder {
        /// The folder.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The server could not be reached or refused the connection.
    #[error("cannot connect to {url}")]
    Connect {
        /// The URL with any password masked.
        url: String,
        /// The driver's reason.
        #[source]
        source: sqlx::Error,
    },
    /// The app ships no migrations for this engine.
    #[error("{url}: the {engine} engine is not supported here (no schema migrations for it)")]
    NoMigrations {
        /// The URL with any password masked.
        url: String,
        /// The engine.
        engine: Engine,
    },
    /// A migration failed; the database is left at the last applied one.
    #[error("cannot apply the schema migrations to {url}")]
    Migrate {
        /// The URL with any password masked.
        url: String,
        /// The migrator's reason.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
}

/// A database URL. Its `Debug` and `Display` mask the password so that it
/// can be logged and put in error messages safely.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    raw: String,
    engine: Engine,
}

impl DatabaseUrl {
    /// Parses a `sqlite://…`, `sqlite:…`, `postgres://…`, `postgresql://…`,
    /// `mysql://…` or `mariadb://…` URL (the last is handed to the driver as
    /// `mysql://…`, the protocol being the same).
    ///
    /// A bare path (no scheme) is taken as a SQLite file, which is what a user
    /// typing `--database-url data/shop.db` means.
    pub fn parse(raw: &str) -> Result<Self, DatabaseError> {
        let raw = raw.trim();
        if let Some(rest) = raw.strip_prefix("mariadb://") {
            return Ok(Self {
                raw: format!("mysql://{rest}"),
                engine: Engine::MySql,
            });
        }
        let engine = if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            Engine::Postgres
        } else if raw.starts_with("mysql://") {
            Engine::MySql
        } else if raw.starts_with("sqlite:") {
            Engine::Sqlite
        } else if !raw.is_empty() && !raw.contains("://") {
            return Ok(Self::sqlite_file(Path::new(raw)));
        } else {
            return Err(DatabaseError::UnsupportedUrl {
                url: mask_password(raw),
            });
        };
        Ok(Self {
            raw: raw.to_owned(),
            engine,
        })
    }

    /// The URL of a SQLite file, created on first use.
    pub fn sqlite_file(path: &Path) -> Self {
        Self {
            raw: format!("sqlite://{}?mode=rwc", path.display()),
            engine: Engine::Sqlite,
        }
    }

    /// Which engine the URL names.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// The URL including its password: only for handing to a driver.
    pub fn expose(&self) -> &str {
        &self.raw
    }

    /// The path of a SQLite file URL, `None` for in-memory and server URLs.
    pub fn sqlite_path(&self) -> Option<&Path> {
        let rest = self
            .raw
            .strip_prefix("sqlite://")
            .or_else(|| self.raw.strip_prefix("sqlite:"))?;
        let path = rest.split('?').next().unwrap_or(rest);
        (!path.is_empty() && path != ":memory:").then(|| Path::new(path))
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&mask_password(&self.raw))
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

impl FromStr for DatabaseUrl {
    type Err = DatabaseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Replaces the password of `scheme://user:password@host` with `***`.
pub fn mask_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let after = &url[scheme_end + 3..];
    let authority_end = after.find(['/', '?']).unwrap_or(after.len());
    let authority = &after[..authority_end];
    match (authority.rfind('@'), authority.find(':')) {
        (Some(at), Some(colon)) if colon < at => format!(
            "{}{}:***{}",
            &url[..scheme_end + 3],
            &authority[..colon],
            &url[scheme_end + 3 + at..]
        ),
        _ => url.to_owned(),
    }
}

/// The migration folders of one app, one per engine.
pub struct Migrations {
    /// Applied when the app runs on SQLite.
    pub sqlite: &'static Migrator,
    /// Applied when the app runs on PostgreSQL.
    pub postgres: &'static Migrator,
}

/// An open, migrated connection pool and the engine behind it.
#[derive(Clone, Debug)]
pub struct Database {
    pool: AnyPool,
    engine: Engine,
}

impl Database {
    /// Opens the database at `url` and brings its schema up to date.
    ///
    /// A SQLite file (and its folder) is created when missing.
    pub async fn connect(url: &DatabaseUrl, migrations: &Migrations) -> Result<Self, DatabaseError> {
        let db = Self::open(url).await?;
        let migrator = match url.engine() {
            Engine::Sqlite => migrations.sqlite,
            Engine::Postgres => migrations.postgres,
            Engine::MySql => {
                db.close().await;
                return Err(DatabaseError::NoMigrations {
                    url: url.to_string(),
                    engine: Engine::MySql,
                });
            }
        };
        migrator
            .run(&db.pool)
            .await
            .map_err(|source| DatabaseError::Migrate {
                url: url.to_string(),
                source,
            })?;
        Ok(db)
    }

    /// Opens the database at `url` without touching its schema, for tools
    /// that read or write an app's tables but do not own them (the backfill).
    ///
    /// SQLite runs in WAL mode with a single pooled connection: writers
    /// never meet a `database is locked` error, and the embedded default
    /// stays simple. PostgreSQL gets a real pool.
    pub async fn open(url: &DatabaseUrl) -> Result<Self, DatabaseError> {
        sqlx::any::install_default_drivers();
        if let Some(parent) = url.sqlite_path().and_then(Path::parent) {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent).map_err(|source| DatabaseError::CreateFolder {
                    path: parent.display().to_string(),
                    source,
                })?;
            }
        }
        let connect_error = |source| DatabaseError::Connect {
            url: url.to_string(),
            source,
        };
        let options = AnyConnectOptions::from_str(url.expose())
            .map_err(connect_error)?
            // Statements are logged by our own spans; sqlx's per-statement
            // INFO lines would drown the request logs.
            .disable_statement_logging();
        let pool_options = AnyPoolOptions::new().acquire_timeout(ACQUIRE_TIMEOUT);
        let pool = match url.engine() {
            Engine::Sqlite => {
                pool_options
                    .max_connections(1)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            sqlx::query("PRAGMA journal_mode = WAL")
                                .execute(&mut *conn)
                                .await?;
                            sqlx::query("PRAGMA foreign_keys = ON")
                                .execute(&mut *conn)
                                .await?;
                            sqlx::query("PRAGMA busy_timeout = 5000")
                                .execute(&mut *conn)
                                .await?;
                            Ok(())
                        })
                    })
                    .connect_with(options)
                    .await
            }
            Engine::Postgres | Engine::MySql => pool_options.max_connections(16).connect_with(options).await,
        }
        .map_err(connect_error)?;
        Ok(Self {
            pool,
            engine: url.engine(),
        })
    }

    /// The connection pool.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The engine behind the pool, for the few statements whose SQL differs.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Whether the database answers a trivial query, for health checks.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    /// Closes every pooled connection, waiting for those in use.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_the_password_of_a_server_url() {
        assert_eq!(
            mask_password("postgres://app:s3cret@db.internal:5432/shop"),
            "postgres://app:***@db.internal:5432/shop"
        );
        assert_eq!(mask_password("postgres://app@db/shop"), "postgres://app@db/shop");
        let url = DatabaseUrl::parse("postgres://app:s3cret@db/shop").unwrap();
        assert!(!format!("{url} {url:?}").contains("s3cret"));
    }

    #[test]
    fn a_bare_path_is_a_sqlite_file() {
        let url = DatabaseUrl::parse("data/shop.db").unwrap();
        assert_eq!(url.engine(), Engine::Sqlite);
        assert_eq!(url.sqlite_path(), Some(Path::new("data/shop.db")));
    }

    #[test]
    fn mysql_and_mariadb_urls_are_mysql_for_the_driver() {
        let url = DatabaseUrl::parse("mariadb://app:s3cret@db:3306/shop").unwrap();
        assert_eq!(url.engine(), Engine::MySql);
        assert_eq!(url.expose(), "mysql://app:s3cret@db:3306/shop");
        assert!(!format!("{url} {url:?}").contains("s3cret"));
        let url = DatabaseUrl::parse("mysql://root@127.0.0.1/x").unwrap();
        assert_eq!(url.engine(), Engine::MySql);
        assert_eq!(url.sqlite_path(), None);
    }

    #[test]
    fn an_unknown_scheme_is_refused_with_the_supported_forms() {
        let err = DatabaseUrl::parse("mongodb://u:pw@h/db").unwrap_err().to_string();
        assert!(err.contains("sqlite://") && err.contains("postgres://"), "{err}");
        assert!(!err.contains("pw@"), "{err}");
    }
}
