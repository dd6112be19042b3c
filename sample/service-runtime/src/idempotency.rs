//! `Idempotency-Key`: a client's word that requests carrying the same key
//! are one request, so that a retry after a lost answer (a timeout, a killed
//! connection, the facade re-sending a POST) never acts twice.
//!
//! Each app keeps its keys in its own database, in `idempotency_keys`
//! (`migrations/<app>/<engine>/…_idempotency_keys.sql`): one row per endpoint
//! (`scope`) and key, with the request's fingerprint, the id of what it
//! created and the answer it got. The rules are the same in every app:
//!
//! - A key is 1 to [`MAX_KEY_LEN`] visible ASCII characters; the quoted form
//!   of the IETF draft (`"abc"`) is the same key as `abc`. Anything else,
//!   or the header twice, is a 400.
//! - A request is identified by the [`Fingerprint`] of its parsed body
//!   (SHA-256 of its canonical JSON), so whitespace and key order do not
//!   make two bodies differ.
//! - The first request with a key inserts the key's row in the same
//!   transaction as what it creates ([`KeyClaim::claim`]). The primary key
//!   makes a concurrent request with the same key wait for that transaction
//!   (PostgreSQL's unique index; SQLite's one connection) and then lose.
//! - Its answer is stored in the transaction that finishes the work
//!   ([`KeyClaim::remember`]; [`KeyClaim::assign`] then [`remember_for`]
//!   when the work outlives the first transaction). A later request with the
//!   key and the same body gets that answer again, status and body byte for
//!   byte, marked `Idempotent-Replayed: true`, and changes nothing.
//! - The same key with another body is a 422 naming the key.
//! - A key whose work is still under way (the orders service's saga) is a
//!   409 with `Retry-After: 1`: the client retries, it never waits on a
//!   held connection.
//! - Only what was created is remembered. A refused or failed request drops
//!   its claim with its rollback (or with its compensation, [`release_for`]),
//!   so a retry is judged afresh: it never acted.
//! - A key is kept for [`KEY_RETENTION`] (24 hours) from its first use, as
//!   Stripe does. After that it is forgotten: the next request with it
//!   takes its row over, and [`purge_expired`] deletes old rows.

use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::AnyConnection;

use crate::timestamp::{self, DateTime, Utc};
use crate::{ApiError, Database};

/// The request header that carries the key.
pub const IDEMPOTENCY_KEY_HEADER: HeaderName = HeaderName::from_static("idempotency-key");
/// The answer header that marks a replayed answer.
pub const REPLAYED_HEADER: HeaderName = HeaderName::from_static("idempotent-replayed");
/// The longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 255;
/// How long a key is remembered after its first use.
pub const KEY_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);
/// What a request whose key is still in progress is told to wait, in seconds.
pub const RETRY_AFTER_SECONDS: u64 = 1;

/// A valid `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Checks a header value: 1 to [`MAX_KEY_LEN`] visible ASCII characters,
    /// optionally in double quotes (the IETF draft's structured-field string).
    pub fn parse(value: &HeaderValue) -> Result<Self, ApiError> {
        let invalid = || {
            ApiError::bad_request(format!(
                "Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters"
            ))
            .with_detail(json!({ "header": "Idempotency-Key" }))
        };
        let text = value.to_str().map_err(|_| invalid())?.trim();
        let text = text
            .strip_prefix('"')
            .and_then(|rest| rest.strip_suffix('"'))
            .unwrap_or(text);
        if text.is_empty() || text.len() > MAX_KEY_LEN || !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid());
        }
        Ok(Self(text.to_owned()))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The `Idempotency-Key` header of a request, if it has one: an extractor
/// that rejects a malformed or repeated key with a JSON 400.
#[derive(Debug, Clone, Default)]
pub struct MaybeIdempotencyKey(pub Option<IdempotencyKey>);

impl<S: Send + Sync> FromRequestParts<S> for MaybeIdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let mut values = parts.headers.get_all(IDEMPOTENCY_KEY_HEADER).iter();
        let Some(value) = values.next() else {
            return Ok(Self(None));
        };
        if values.next().is_some() {
            return Err(
                ApiError::bad_request("a request may carry one Idempotency-Key, not several")
                    .with_detail(json!({ "header": "Idempotency-Key" })),
            );
        }
        IdempotencyKey::parse(value).map(|key| Self(Some(key)))
    }
}

/// What identifies a request's body: the SHA-256 of its canonical JSON, as
/// 64 hexadecimal digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint(String);

impl Fingerprint {
    /// The fingerprint of a parsed request body.
    pub fn of<T: Serialize>(request: &T) -> Self {
        // A derived `Serialize` of plain data cannot fail; were it to, every
        // body would share the empty body's fingerprint and a second body
        // with the key would be replayed the first one's answer, so fail
        // loudly in the hash instead: an error string never equals JSON.
        let canonical = serde_json::to_vec(request).unwrap_or_else(|error| format!("{error}").into_bytes());
        let digest = Sha256::digest(&canonical);
        Self(digest.iter().map(|byte| format!("{byte:02x}")).collect())
    }

    /// The hexadecimal digest.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A key's row as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// The fingerprint of the request that first used the key.
    pub request_hash: String,
    /// What that request created (an order id), once known.
    pub resource_id: Option<i64>,
    /// Its answer's status, `None` while its work is in progress.
    pub response_status: Option<i64>,
    /// Its answer's JSON body.
    pub response_body: Option<String>,
    /// When the key was first used.
    pub created_at: String,
}

/// Whether a request won its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is this request's: go on, in the same transaction.
    Claimed,
    /// Another request holds the key (it committed first): answer with
    /// [`KeyClaim::answer`] and roll back.
    Taken(StoredKey),
}

/// One request's key: the endpoint, the key and the body's fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyClaim {
    /// The endpoint, for example `POST /orders`: keys of different
    /// endpoints never meet.
    pub scope: &'static str,
    /// The client's key.
    pub key: IdempotencyKey,
    /// The request body's fingerprint.
    pub fingerprint: Fingerprint,
}

const STORED_COLUMNS: &str = "request_hash, resource_id, response_status, response_body, created_at";

type StoredRow = (String, Option<i64>, Option<i64>, Option<String>, String);

fn stored((request_hash, resource_id, response_status, response_body, created_at): StoredRow) -> StoredKey {
    StoredKey {
        request_hash,
        resource_id,
        response_status,
        response_body,
        created_at,
    }
}

impl KeyClaim {
    /// A claim on `key` for the request whose parsed body is `request`.
    pub fn new<T: Serialize>(scope: &'static str, key: IdempotencyKey, request: &T) -> Self {
        Self {
            scope,
            key,
            fingerprint: Fingerprint::of(request),
        }
    }

    /// Claims the key inside the caller's transaction, which must go on to
    /// create the resource and commit both together. A row older than
    /// [`KEY_RETENTION`] is taken over. When another request holds the key,
    /// its row is read in the same transaction: the insert waited for that
    /// request's transaction, so the row is committed.
    pub async fn claim(&self, conn: &mut AnyConnection, now: DateTime<Utc>) -> Result<Claim, sqlx::Error> {
        let claimed: Option<(String,)> = sqlx::query_as(
            "INSERT INTO idempotency_keys \
             (scope, idempotency_key, request_hash, resource_id, response_status, response_body, created_at) \
             VALUES ($1, $2, $3, NULL, NULL, NULL, $4) \
             ON CONFLICT (scope, idempotency_key) DO UPDATE SET request_hash = excluded.request_hash, \
             resource_id = NULL, response_status = NULL, response_body = NULL, created_at = excluded.created_at \
             WHERE idempotency_keys.created_at < $5 \
             RETURNING idempotency_key",
        )
        .bind(self.scope)
        .bind(self.key.as_str())
        .bind(self.fingerprint.as_str())
        .bind(timestamp::format(now))
        .bind(timestamp::before(now, KEY_RETENTION))
        .fetch_optional(&mut *conn)
        .await?;
        if claimed.is_some() {
            return Ok(Claim::Claimed);
        }
        match self.find(conn, now).await? {
            Some(stored) => Ok(Claim::Taken(stored)),
            // Only a purge between the two statements gets here: the row
            // was expired, so the key is free.
            None => Err(sqlx::Error::Protocol(format!(
                "Idempotency-Key `{}` expired while it was claimed; retry",
                self.key
            ))),
        }
    }

    /// The key's row, unless there is none or it has expired.
    pub async fn find(
        &self,
        conn: &mut AnyConnection,
        now: DateTime<Utc>,
    ) -> Result<Option<StoredKey>, sqlx::Error> {
        let row: Option<StoredRow> = sqlx::query_as(&format!(
            "SELECT {STORED_COLUMNS} FROM idempotency_keys \
             WHERE scope = $1 AND idempotency_key = $2 AND created_at >= $3"
        ))
        .bind(self.scope)
        .bind(self.key.as_str())
        .bind(timestamp::before(now, KEY_RETENTION))
        .fetch_optional(&mut *conn)
        .await?;
        Ok(row.map(stored))
    }

    /// Records, in the caller's transaction, what the request is creating,
    /// before its answer is known (work that outlives the transaction, as
    /// the orders service's saga does; [`remember_for`] adds the answer).
    pub async fn assign(&self, conn: &mut AnyConnection, resource_id: i64) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE idempotency_keys SET resource_id = $1 WHERE scope = $2 AND idempotency_key = $3")
            .bind(resource_id)
            .bind(self.scope)
            .bind(self.key.as_str())
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// Records, in the caller's transaction, what the request created and
    /// the answer it gets.
    pub async fn remember<T: Serialize>(
        &self,
        conn: &mut AnyConnection,
        resource_id: i64,
        status: StatusCode,
        body: &T,
    ) -> Result<(), sqlx::Error> {
        let body = serde_json::to_string(body).map_err(|error| sqlx::Error::Encode(Box::new(error)))?;
        sqlx::query(
            "UPDATE idempotency_keys SET resource_id = $1, response_status = $2, response_body = $3 \
             WHERE scope = $4 AND idempotency_key = $5",
        )
        .bind(resource_id)
        .bind(i64::from(status.as_u16()))
        .bind(body)
        .bind(self.scope)
        .bind(self.key.as_str())
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// The answer to a request whose key another request holds: the stored
    /// answer for the same body, a 422 for another body, a 409 while the
    /// first request is still at work.
    pub fn answer(&self, stored: &StoredKey) -> Response {
        let key = self.key.as_str();
        if stored.request_hash != self.fingerprint.as_str() {
            return ApiError::unprocessable(format!(
                "Idempotency-Key `{key}` was already used with a different request body; \
                 a new request needs a new key"
            ))
            .with_detail(json!({ "idempotency_key": key }))
            .into_response();
        }
        let (Some(status), Some(body)) = (stored.response_status, &stored.response_body) else {
            let mut response = ApiError::conflict(format!(
                "a request with Idempotency-Key `{key}` is still in progress; retry in a moment"
            ))
            .with_detail(json!({ "idempotency_key": key, "in_progress": true }))
            .into_response();
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
            return response;
        };
        let status = u16::try_from(status)
            .ok()
            .and_then(|status| StatusCode::from_u16(status).ok())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (
            status,
            [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            body.clone(),
        )
            .into_response();
        response
            .headers_mut()
            .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
        tracing::info!(idempotency_key = key, status = status.as_u16(), "answer replayed");
        response
    }
}

/// Records, in the caller's transaction, the answer of the request that
/// holds a key in `scope` for `resource_id` (for code that finishes the work
/// without the request at hand, as the orders service's saga does).
pub async fn remember_for<T: Serialize>(
    conn: &mut AnyConnection,
    scope: &str,
    resource_id: i64,
    status: StatusCode,
    body: &T,
) -> Result<(), sqlx::Error> {
    let body = serde_json::to_string(body).map_err(|error| sqlx::Error::Encode(Box::new(error)))?;
    sqlx::query(
        "UPDATE idempotency_keys SET response_status = $1, response_body = $2 \
         WHERE scope = $3 AND resource_id = $4",
    )
    .bind(i64::from(status.as_u16()))
    .bind(body)
    .bind(scope)
    .bind(resource_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Frees, in the caller's transaction, the key held for `resource_id` in
/// `scope` (its work failed and was undone), so that a retry runs afresh.
pub async fn release_for(
    conn: &mut AnyConnection,
    scope: &str,
    resource_id: i64,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM idempotency_keys WHERE scope = $1 AND resource_id = $2")
        .bind(scope)
        .bind(resource_id)
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected())
}

/// Deletes the keys older than [`KEY_RETENTION`]; returns how many.
pub async fn purge_expired(db: &Database, now: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
        .bind(timestamp::before(now, KEY_RETENTION))
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected())
}

/// Purges expired keys now and then every `every`, forever: a background
/// task for [`crate::app::BoundApp::with_background`]. Failures are logged
/// and retried at the next turn.
pub async fn purge_periodically(db: Database, every: Duration) {
    let mut ticker = tokio::time::interval(every.max(Duration::from_millis(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match purge_expired(&db, Utc::now()).await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "expired idempotency keys purged"),
            Err(error) => tracing::warn!(
                error = %crate::api_error::error_chain(&error),
                "cannot purge expired idempotency keys; trying again later"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<IdempotencyKey, ApiError> {
        IdempotencyKey::parse(&HeaderValue::from_str(text).map_err(|_| ApiError::bad_request("x"))?)
    }

    #[test]
    fn keys_are_visible_ascii_and_may_be_quoted() {
        assert_eq!(
            parse("order-7f3a").map(|k| k.0).ok(),
            Some("order-7f3a".to_owned())
        );
        assert_eq!(
            parse("\"order-7f3a\"").map(|k| k.0).ok(),
            Some("order-7f3a".to_owned())
        );
        assert_eq!(
            parse(&"k".repeat(MAX_KEY_LEN)).map(|k| k.0.len()).ok(),
            Some(MAX_KEY_LEN)
        );
        for bad in ["", "\"\"", "two words", &"k".repeat(MAX_KEY_LEN + 1)] {
            let error = parse(bad).err().map(|e| e.status());
            assert_eq!(error, Some(StatusCode::BAD_REQUEST), "{bad:?}");
        }
    }

    #[derive(Serialize, serde::Deserialize)]
    struct Body {
        a: i64,
        b: Vec<i64>,
    }

    fn fingerprint(json: &str) -> Option<Fingerprint> {
        serde_json::from_str::<Body>(json)
            .ok()
            .map(|body| Fingerprint::of(&body))
    }

    #[test]
    fn fingerprints_depend_on_content_only() {
        let a = fingerprint(r#"{"a": 1, "b": [1, 2]}"#);
        assert!(a.is_some());
        assert_eq!(a, fingerprint(r#"{"b":[1,2],"a":1}"#));
        assert_ne!(a, fingerprint(r#"{"b":[2,1],"a":1}"#));
        assert_eq!(a.map(|f| f.as_str().len()), Some(64));
    }
}
