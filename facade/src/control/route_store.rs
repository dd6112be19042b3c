//! The persistent route store: each capability's current target and the
//! audit log of every change, in the toolkit's database.
//!
//! A change of target and its audit record are written in ONE transaction,
//! together with a bump of the store-wide revision. Running facades watch
//! that revision (polled; on PostgreSQL also notified) and reload their
//! table when it moves.

use std::collections::HashMap;

use serde::Serialize;
use sqlx::FromRow;
use toolkit_db::{timestamp, Database, DatabaseError, DatabaseUrl, Engine};

use crate::config::CapabilityConfig;
use crate::decision::stage::Stage;

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
    /// The capability moved between the moment a change was checked (its
    /// gates evaluated against one stage) and the moment it was written:
    /// another change, often through another replica, won the race.
    #[error(
        "capability `{capability}` moved from {expected} to {actual} while this change was being checked{by}; nothing changed. Look at `strangler routes list` and decide again"
    )]
    Moved {
        /// The capability.
        capability: String,
        /// The stage the change was checked against.
        expected: Stage,
        /// The stage it is at now.
        actual: Stage,
        /// Who moved it, as ` (by <actor> through replica <id>)`, or empty.
        by: String,
    },
    /// The capability is already at the requested stage.
    #[error("capability `{capability}` is already at {stage}; nothing changed")]
    AlreadyAt {
        /// The capability.
        capability: String,
        /// Its stage.
        stage: Stage,
    },
    /// Rollback asked for a capability that never changed.
    #[error("capability `{0}` has no earlier stage to roll back to")]
    NothingToRollBack(String),
    /// The store holds a stage this version does not know.
    #[error(
        "the route store holds unknown stage `{target}` for `{capability}`; is a newer facade writing to it?"
    )]
    Corrupt {
        /// The capability.
        capability: String,
        /// What the store holds.
        target: String,
    },
}

/// One audited change of a capability's stage.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Transition {
    /// Position in the audit log.
    pub id: i64,
    /// The capability.
    pub capability: String,
    /// Stage before (none for the initial seeding).
    pub from: Option<Stage>,
    /// Stage after.
    pub to: Stage,
    /// Who made the change (`auto-rollback` when the facade did).
    pub actor: String,
    /// Why.
    pub reason: String,
    /// Whether a gate was overridden with `--force`.
    #[serde(default)]
    pub forced: bool,
    /// Measurements behind the change: gate results, the error rate that
    /// triggered an automatic rollback.
    #[serde(default)]
    pub detail: Option<serde_json::Value>,
    /// When (RFC 3339, UTC).
    pub at: String,
    /// The facade replica that recorded it (none for records older than
    /// replica names).
    #[serde(default)]
    pub replica: Option<String>,
}

/// A requested change, before it is made.
#[derive(Debug, Clone)]
pub struct ChangeRequest {
    /// The capability.
    pub capability: String,
    /// The new stage.
    pub to: Stage,
    /// Who asks.
    pub actor: String,
    /// Why.
    pub reason: String,
    /// Whether a gate was overridden.
    pub forced: bool,
    /// Measurements to keep with the record.
    pub detail: Option<serde_json::Value>,
    /// The stage the change was judged against (its gates, its error
    /// budget). When set and the capability is elsewhere by the time the
    /// change is written, it is refused with [`StoreError::Moved`]:
    /// concurrent changes are serialized, and none is applied on a stale
    /// judgement.
    pub expected_from: Option<Stage>,
}

/// Every capability's stage at one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The store-wide revision.
    pub revision: i64,
    /// Stage by capability.
    pub stages: HashMap<String, Stage>,
}

/// Access to the route tables of the toolkit store.
#[derive(Clone, Debug)]
pub struct RouteStore {
    db: Database,
    replica: String,
}

#[derive(FromRow)]
struct TransitionRow {
    id: i64,
    capability: String,
    from_target: Option<String>,
    from_canary_permille: Option<i64>,
    to_target: String,
    canary_permille: Option<i64>,
    actor: String,
    reason: String,
    forced: i64,
    detail: Option<String>,
    at: String,
    replica: Option<String>,
}

const TRANSITION_COLUMNS: &str = "id, capability, from_target, from_canary_permille, to_target, \
     canary_permille, actor, reason, forced, detail, at, replica";

impl RouteStore {
    /// Opens (creating and migrating) the store; changes made through it
    /// are recorded as made by `replica`.
    pub async fn open(url: &DatabaseUrl, replica: &str) -> Result<Self, StoreError> {
        let store = toolkit_store::StateStore::open(url).await?;
        Ok(Self {
            db: store.database().clone(),
            replica: replica.to_owned(),
        })
    }

    /// The replica this store records changes as.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// The underlying database.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Adds capabilities the store does not know yet, at their initial
    /// stage, each with an audit record. Known ones keep their stage: the
    /// store, not the config file, is the truth once a facade has run.
    pub async fn seed(&self, capabilities: &[CapabilityConfig]) -> Result<Vec<Transition>, StoreError> {
        let mut tx = self.db.pool().begin().await?;
        // Replicas starting together seed together: the revision row's
        // lock, taken first, makes them seed one after the other, and each
        // then sees what the one before it added.
        sqlx::query("UPDATE route_revision SET revision = revision WHERE id = 1")
            .execute(&mut *tx)
            .await?;
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
            let inserted = sqlx::query(
                "INSERT INTO route_state (capability, target, canary_permille, revision, updated_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (capability) DO NOTHING",
            )
            .bind(name)
            .bind(capability.initial.name())
            .bind(permille_of(capability.initial))
            .bind(revision)
            .bind(&now)
            .execute(&mut *tx)
            .await?;
            // Already there (a store the lock above does not cover): the
            // other writer recorded it.
            if inserted.rows_affected() == 0 {
                continue;
            }
            let seeded = ChangeRequest {
                capability: name.clone(),
                to: capability.initial,
                actor: "config".to_owned(),
                reason: "first seen in the configuration".to_owned(),
                forced: false,
                detail: None,
                expected_from: None,
            };
            added.push(record(&mut tx, &seeded, None, &now, &self.replica).await?);
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

    /// Every capability's stage and the revision they belong to, read in
    /// one transaction so they agree.
    pub async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let mut tx = self.db.pool().begin().await?;
        let (revision,): (i64,) = sqlx::query_as("SELECT revision FROM route_revision WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?;
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT capability, target, canary_permille FROM route_state")
                .fetch_all(&mut *tx)
                .await?;
        tx.commit().await?;
        let mut stages = HashMap::with_capacity(rows.len());
        for (capability, target, permille) in rows {
            let stage = stage_of(&capability, &target, Some(permille))?;
            stages.insert(capability, stage);
        }
        Ok(Snapshot { revision, stages })
    }

    /// Checks a change without making it: the transition it would record.
    pub async fn preview(&self, change: &ChangeRequest) -> Result<Transition, StoreError> {
        let mut conn = self.db.pool().acquire().await?;
        let from = current_stage(&mut conn, &change.capability).await?;
        if from == change.to {
            return Err(StoreError::AlreadyAt {
                capability: change.capability.clone(),
                stage: from,
            });
        }
        Ok(transition_of(
            0,
            change,
            Some(from),
            timestamp::now(),
            &self.replica,
        ))
    }

    /// The current stage of one capability.
    pub async fn stage(&self, capability: &str) -> Result<Stage, StoreError> {
        let mut conn = self.db.pool().acquire().await?;
        current_stage(&mut conn, capability).await
    }

    /// Moves a capability to another stage and records it, atomically.
    pub async fn change(&self, change: &ChangeRequest) -> Result<Transition, StoreError> {
        let mut tx = self.db.pool().begin().await?;
        // Bumping first takes the revision row's lock: concurrent changes
        // queue here, and each sees the target the previous one left.
        let revision = bump_revision(&mut tx).await?;
        let from = current_stage(&mut tx, &change.capability).await?;
        if let Some(expected) = change.expected_from.filter(|expected| *expected != from) {
            let last = last_change(&mut tx, &change.capability).await?;
            return Err(StoreError::Moved {
                capability: change.capability.clone(),
                expected,
                actual: from,
                by: last.map_or_else(String::new, |(actor, replica)| match replica {
                    Some(replica) => format!(" (by {actor} through replica {replica})"),
                    None => format!(" (by {actor})"),
                }),
            });
        }
        if from == change.to {
            return Err(StoreError::AlreadyAt {
                capability: change.capability.clone(),
                stage: from,
            });
        }
        let now = timestamp::now();
        sqlx::query(
            "UPDATE route_state SET target = $1, canary_permille = $2, revision = $3, updated_at = $4 \
             WHERE capability = $5",
        )
        .bind(change.to.name())
        .bind(permille_of(change.to))
        .bind(revision)
        .bind(&now)
        .bind(&change.capability)
        .execute(&mut *tx)
        .await?;
        let transition = record(&mut tx, change, Some(from), &now, &self.replica).await?;
        self.notify(&mut tx).await?;
        tx.commit().await?;
        Ok(transition)
    }

    /// The stage a capability had before its latest change.
    pub async fn previous_stage(&self, capability: &str) -> Result<Stage, StoreError> {
        let mut conn = self.db.pool().acquire().await?;
        current_stage(&mut conn, capability).await?;
        let row: Option<(Option<String>, Option<i64>)> = sqlx::query_as(
            "SELECT from_target, from_canary_permille FROM route_transitions \
             WHERE capability = $1 ORDER BY id DESC LIMIT 1",
        )
        .bind(capability)
        .fetch_optional(&mut *conn)
        .await?;
        match row {
            Some((Some(from), permille)) => stage_of(capability, &from, permille),
            _ => Err(StoreError::NothingToRollBack(capability.to_owned())),
        }
    }

    /// The audit log, newest first, optionally for one capability.
    pub async fn history(&self, capability: Option<&str>, limit: i64) -> Result<Vec<Transition>, StoreError> {
        let rows: Vec<TransitionRow> = match capability {
            Some(name) => {
                let mut conn = self.db.pool().acquire().await?;
                current_stage(&mut conn, name).await?;
                sqlx::query_as(&format!(
                    "SELECT {TRANSITION_COLUMNS} FROM route_transitions \
                     WHERE capability = $1 ORDER BY id DESC LIMIT $2"
                ))
                .bind(name)
                .bind(limit)
                .fetch_all(&mut *conn)
                .await?
            }
            None => {
                sqlx::query_as(&format!(
                    "SELECT {TRANSITION_COLUMNS} FROM route_transitions ORDER BY id DESC LIMIT $1"
                ))
                .bind(limit)
                .fetch_all(self.db.pool())
                .await?
            }
        };
        rows.into_iter()
            .map(|row| {
                let to = stage_of(&row.capability, &row.to_target, row.canary_permille)?;
                let from = match &row.from_target {
                    Some(from) => Some(stage_of(&row.capability, from, row.from_canary_permille)?),
                    None => None,
                };
                Ok(Transition {
                    id: row.id,
                    from,
                    to,
                    capability: row.capability,
                    actor: row.actor,
                    reason: row.reason,
                    forced: row.forced != 0,
                    detail: row.detail.as_deref().and_then(|d| serde_json::from_str(d).ok()),
                    at: row.at,
                    replica: row.replica,
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

fn permille_of(stage: Stage) -> i64 {
    stage.permille().map_or(0, |p| i64::from(p.get()))
}

fn stage_of(capability: &str, name: &str, permille: Option<i64>) -> Result<Stage, StoreError> {
    Stage::from_parts(name, permille).ok_or_else(|| StoreError::Corrupt {
        capability: capability.to_owned(),
        target: name.to_owned(),
    })
}

fn transition_of(
    id: i64,
    change: &ChangeRequest,
    from: Option<Stage>,
    at: String,
    replica: &str,
) -> Transition {
    Transition {
        id,
        capability: change.capability.clone(),
        from,
        to: change.to,
        actor: change.actor.clone(),
        reason: change.reason.clone(),
        forced: change.forced,
        detail: change.detail.clone(),
        at,
        replica: Some(replica.to_owned()),
    }
}

/// The actor and replica of a capability's latest change.
async fn last_change(
    conn: &mut sqlx::AnyConnection,
    capability: &str,
) -> Result<Option<(String, Option<String>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT actor, replica FROM route_transitions WHERE capability = $1 ORDER BY id DESC LIMIT 1",
    )
    .bind(capability)
    .fetch_optional(&mut *conn)
    .await
}

async fn current_stage(conn: &mut sqlx::AnyConnection, capability: &str) -> Result<Stage, StoreError> {
    let row: Option<(String, i64)> =
        sqlx::query_as("SELECT target, canary_permille FROM route_state WHERE capability = $1")
            .bind(capability)
            .fetch_optional(&mut *conn)
            .await?;
    let Some((target, permille)) = row else {
        let known: Vec<(String,)> = sqlx::query_as("SELECT capability FROM route_state ORDER BY capability")
            .fetch_all(&mut *conn)
            .await?;
        return Err(StoreError::UnknownCapability {
            name: capability.to_owned(),
            known: known.into_iter().map(|(n,)| n).collect::<Vec<_>>().join(", "),
        });
    };
    stage_of(capability, &target, Some(permille))
}

async fn record(
    conn: &mut sqlx::AnyConnection,
    change: &ChangeRequest,
    from: Option<Stage>,
    at: &str,
    replica: &str,
) -> Result<Transition, sqlx::Error> {
    let detail = change.detail.as_ref().map(|d| d.to_string());
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO route_transitions (capability, from_target, from_canary_permille, to_target, \
         canary_permille, actor, reason, forced, detail, at, replica) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
    )
    .bind(&change.capability)
    .bind(from.map(Stage::name))
    .bind(from.and_then(Stage::permille).map(|p| i64::from(p.get())))
    .bind(change.to.name())
    .bind(change.to.permille().map(|p| i64::from(p.get())))
    .bind(&change.actor)
    .bind(&change.reason)
    .bind(i64::from(change.forced))
    .bind(detail)
    .bind(at)
    .bind(replica)
    .fetch_one(&mut *conn)
    .await?;
    Ok(transition_of(id, change, from, at.to_owned(), replica))
}
