-- Idempotency-Key: one row per endpoint and key (service-runtime's
-- `idempotency` module). POST /orders inserts its key in the transaction
-- that records the order as pending and stores the answer in the one that
-- marks it placed; a failed (compensated) order releases its key. A row
-- without a response is a saga in progress: a request with the key gets a
-- 409 and retries. Rows older than 24 hours are expired: taken over by the
-- next request with the key, and purged by the recovery loop.
CREATE TABLE idempotency_keys (
    scope           TEXT    NOT NULL,   -- the endpoint, 'POST /orders'
    idempotency_key TEXT    NOT NULL,   -- the client's key, 1 to 255 characters
    request_hash    TEXT    NOT NULL,   -- SHA-256 of the canonical request body
    resource_id     BIGINT,             -- the order created under the key
    response_status BIGINT,             -- NULL while the saga runs
    response_body   TEXT,               -- the answer's JSON, replayed as is
    created_at      TEXT    NOT NULL,   -- first use; expiry counts from here
    PRIMARY KEY (scope, idempotency_key)
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
CREATE INDEX idempotency_keys_by_resource ON idempotency_keys (scope, resource_id);
