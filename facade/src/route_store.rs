//! The persistent route store: each capability's current target and the
//! audit log of every change, in the toolkit's database.
//!
//! A change of target and its audit record are written in ONE transaction,
//! together with a bump of the store-wide revision. Running facades watch
//! that revision (polled; on PostgreSQL also notified) and reload their
//! table when it moves.

use std::collections::HashMap;

use serde::Serialize;
use service_runtime::{timestamp, Database, DatabaseError, DatabaseUrl, Engine};
use sqlx::FromRow;

use crate::config::CapabilityConfig;
use crate::routing::Target;

/// The PostgreSQL channel on which changes are announced.
pub const NOTIFY_CHANNEL: &str = "strangler_routes";

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be opened or migrated.
    #[error(transparent)]
    Open(#[from] DatabaseError),
    /// A query failed (the store is down, or refused the change).
    #[error("the route store failed")]
    Query(#[from] sqlx::Error),
    /// The capability is not in the store.
    #[error("unknown capability `{name}`; known capabilities: {known}")]
    UnknownCapability {
        /// The name asked for.
        name: String,
        /// The names known.
        known: String,
    },
    /// The capability is already at the requested target.
    #[error("capability `{capability}` is already on {target}; nothing changed")]
    AlreadyAt {
        /// The capability.
        capability: String,
        /// Its target.
        target: Target,
    },
    /// Rollback asked for a capability that never changed.
    #[error("capability `{0}` has no earlier target to roll back to")]
    NothingToRollBack(String),
    /// The store holds a target this version does not know.
    #[error("the route store holds unknown target `{target}` for `{capability}`")]
    Corrupt {
        /// The capability.
        capability: String,
        /// What the store holds.
        target: String,
    },
}

/// One audited change of a capability's target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Transition {
    /// Position in the audit log.
    pub id: i64,
    /// The capability.
    pub capability: String,
    /// Target before (none for the initial seeding).
    pub from: Option<Target>,
    /// Target after.
    pub to: Target,
    /// Who made the change.
    pub actor: String,
    /// Why.
    pub reason: String,
    /// When (RFC 3339, UTC).
    pub at: String,
}

/// A requested change, before it is made.
#[derive(Debug, Clone)]
pub struct ChangeRequest {
    /// The capability.
    pub capability: String,
    /// The new target.
    pub to: Target,
    /// Who asks.
    pub actor: String,
    /// Why.
    pub reason: String,
}

/// Every capability's target at one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The store-wide revision.
    pub revision: i64,
    /// Target by capability.
    pub targets: HashMap<String, Target>,
}

/// Access to the route tables of the toolkit store.
#[derive(Clone, Debug)]
pub struct RouteStore {
    db: Database,
}

#[derive(FromRow)]
struct TransitionRow {
    id: i64,
    capability: String,
    from_target: Option<String>,
    to_target: String,
    actor: String,
    reason: String,
    at: String,
}

impl RouteStore {
    /// Opens (creating and migrating) the store.
    pub async fn open(url: &DatabaseUrl) -> Result<Self, StoreError> {
        let store = toolkit_store::StateStore::open(url).await?;
        Ok(Self {
            db: store.database().clone(),
        })
    }

    /// The underlying database.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Adds capabilities the store does not know yet, at their initial
    /// target, each with an audit record. Known ones keep their target: the
    /// store, not the config file, is the truth once a facade has run.
    pub async fn seed(&self, capabilities: &[CapabilityConfig]) -> Result<Vec<Transition>, StoreError> {
        let mut tx = self.db.pool().begin().await?;
        let mut added = Vec::new();
        for capability in capabilities {
            let name = &capability.def.name;
            let known: Option<(String,)> =
                sqlx::query_as("SELECT target FROM route_state WHERE capability = $1")
                    .bind(name)
                    .fetch_optional(&mut *tx)
                    .await?;
            if known.is_some() {
                continue;
            }
            let revision = bump_revision(&mut tx).await?;
            let now = timestamp::now();
            sqlx::query(
                "INSERT INTO route_state (capability, target, revision, updated_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(name)
            .bind(capability.initial.as_str())
            .bind(revision)
            .bind(&now)
            .execute(&mut *tx)
            .await?;
            added.push(
                record(
                    &mut tx,
                    name,
                    None,
                    capability.initial,
                    "config",
                    "first seen in the configuration",
                    &now,
                )
                .await?,
            );
        }
        if !added.is_empty() {
            self.notify(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(added)
    }

    /// The current revision (cheap: one row).
    pub async fn revision(&self) -> Result<i64, StoreError> {
        let (revision,): (i64,) = sqlx::query_as("SELECT revision FROM route_revision WHERE id = 1")
            .fetch_one(self.db.pool())
            .await?;
        Ok(revision)
    }

    /// Every capability's target and the revision they belong to, read in
    /// one transaction so they agree.
    pub async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let mut tx = self.db.pool().begin().await?;
        let (revision,): (i64,) = sqlx::query_as("SELECT revision FROM route_revision WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?;
        let rows: Vec<(String, String)> = sqlx::query_as("SELECT capability, target FROM route_state")
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        let mut targets = HashMap::with_capacity(rows.len());
        for (capability, target) in rows {
            let parsed = Target::parse(&target).ok_or_else(|| StoreError::Corrupt {
                capability: capability.clone(),
                target,
            })?;
            targets.insert(capability, parsed);
        }
        Ok(Snapshot { revision, targets })
    }

    /// Checks a change without making it: the transition it would record.
    pub async fn preview(&self, change: &ChangeRequest) -> Result<Transition, StoreError> {
        let mut conn = self.db.pool().acquire().await?;
        let from = current_target(&mut conn, &change.capability).await?;
        if from == change.to {
            return Err(StoreError::AlreadyAt {
                capability: change.capability.clone(),
                target: from,
            });
        }
        Ok(Transition {
            id: 0,
            capability: change.capability.clone(),
            from: Some(from),
            to: change.to,
            actor: change.actor.clone(),
            reason: change.reason.clone(),
            at: timestamp::now(),
        })
    }

    /// Moves a capability to another target and records it, atomically.
    pub async fn change(&self, change: &ChangeRequest) -> Result<Transition, StoreError> {
        let mut tx = self.db.pool().begin().await?;
        // Bumping first takes the revision row's lock: concurrent changes
        // queue here, and each sees the target the previous one left.
        let revision = bump_revision(&mut tx).await?;
        let from = current_target(&mut tx, &change.capability).await?;
        if from == change.to {
            return Err(StoreError::AlreadyAt {
                capability: change.capability.clone(),
                target: from,
            });
        }
        let now = timestamp::now();
        sqlx::query(
            "UPDATE route_state SET target = $1, revision = $2, updated_at = $3 WHERE capability = $4",
        )
        .bind(change.to.as_str())
        .bind(revision)
        .bind(&now)
        .bind(&change.capability)
        .execute(&mut *tx)
        .await?;
        let transition = record(
            &mut tx,
            &change.capability,
            Some(from),
            change.to,
            &change.actor,
            &change.reason,
            &now,
        )
        .await?;
        self.notify(&mut tx).await?;
        tx.commit().await?;
        Ok(transition)
    }

    /// The target a capability had before its latest change.
    pub async fn previous_target(&self, capability: &str) -> Result<Target, StoreError> {
        let mut conn = self.db.pool().acquire().await?;
        current_target(&mut conn, capability).await?;
        let row: Option<(Option<String>,)> = sqlx::query_as(
            "SELECT from_target FROM route_transitions WHERE capability = $1 ORDER BY id DESC LIMIT 1",
        )
        .bind(capability)
        .fetch_optional(&mut *conn)
        .await?;
        row.and_then(|(from,)| from)
            .and_then(|from| Target::parse(&from))
            .ok_or_else(|| StoreError::NothingToRollBack(capability.to_owned()))
    }

    /// The audit log, newest first, optionally for one capability.
    pub async fn history(&self, capability: Option<&str>, limit: i64) -> Result<Vec<Transition>, StoreError> {
        let rows: Vec<TransitionRow> = match capability {
            Some(name) => {
                let mut conn = self.db.pool().acquire().await?;
                current_target(&mut conn, name).await?;
                sqlx::query_as(
                    "SELECT id, capability, from_target, to_target, actor, reason, at FROM route_transitions \
                     WHERE capability = $1 ORDER BY id DESC LIMIT $2",
                )
                .bind(name)
                .bind(limit)
                .fetch_all(&mut *conn)
                .await?
            }
            None => sqlx::query_as(
                "SELECT id, capability, from_target, to_target, actor, reason, at FROM route_transitions \
                     ORDER BY id DESC LIMIT $1",
            )
            .bind(limit)
            .fetch_all(self.db.pool())
            .await?,
        };
        rows.into_iter()
            .map(|row| {
                let to = Target::parse(&row.to_target).ok_or_else(|| StoreError::Corrupt {
                    capability: row.capability.clone(),
                    target: row.to_target.clone(),
                })?;
                Ok(Transition {
                    id: row.id,
                    from: row.from_target.as_deref().and_then(Target::parse),
                    to,
                    capability: row.capability,
                    actor: row.actor,
                    reason: row.reason,
                    at: row.at,
                })
            })
            .collect()
    }

    async fn notify(&self, conn: &mut sqlx::AnyConnection) -> Result<(), sqlx::Error> {
        if self.db.engine() == Engine::Postgres {
            sqlx::query(&format!("NOTIFY {NOTIFY_CHANNEL}"))
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }
}

async fn bump_revision(conn: &mut sqlx::AnyConnection) -> Result<i64, sqlx::Error> {
    let (revision,): (i64,) =
        sqlx::query_as("UPDATE route_revision SET revision = revision + 1 WHERE id = 1 RETURNING revision")
            .fetch_one(&mut *conn)
            .await?;
    Ok(revision)
}

async fn current_target(conn: &mut sqlx::AnyConnection, capability: &str) -> Result<Target, StoreError> {
    let row: Option<(String,)> = sqlx::query_as("SELECT target FROM route_state WHERE capability = $1")
        .bind(capability)
        .fetch_optional(&mut *conn)
        .await?;
    let Some((target,)) = row else {
        let known: Vec<(String,)> = sqlx::query_as("SELECT capability FROM route_state ORDER BY capability")
            .fetch_all(&mut *conn)
            .await?;
        return Err(StoreError::UnknownCapability {
            name: capability.to_owned(),
            known: known.into_iter().map(|(n,)| n).collect::<Vec<_>>().join(", "),
        });
    };
    Target::parse(&target).ok_or_else(|| StoreError::Corrupt {
        capability: capability.to_owned(),
        target,
    })
}

async fn record(
    conn: &mut sqlx::AnyConnection,
    capability: &str,
    from: Option<Target>,
    to: Target,
    actor: &str,
    reason: &str,
    at: &str,
) -> Result<Transition, sqlx::Error> {
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO route_transitions (capability, from_target, to_target, actor, reason, at) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(capability)
    .bind(from.map(Target::as_str))
    .bind(to.as_str())
    .bind(actor)
    .bind(reason)
    .bind(at)
    .fetch_one(&mut *conn)
    .await?;
    Ok(Transition {
        id,
        capability: capability.to_owned(),
        from,
        to,
        actor: actor.to_owned(),
        reason: reason.to_owned(),
        at: at.to_owned(),
    })
}
