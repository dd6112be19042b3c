-- Idempotency-Key: one row per endpoint and key (service-runtime's
-- `idempotency` module). POST /orders inserts its key in the order's own
-- transaction, so a key is remembered exactly when its order exists; a
-- concurrent request with the same key waits on the primary key and then
-- gets the stored answer. Rows older than 24 hours are expired: taken over
-- by the next request with the key, and purged.
CREATE TABLE idempotency_keys (
    scope           TEXT    NOT NULL,   -- the endpoint, 'POST /orders'
    idempotency_key TEXT    NOT NULL,   -- the client's key, 1 to 255 characters
    request_hash    TEXT    NOT NULL,   -- SHA-256 of the canonical request body
    resource_id     INTEGER,            -- the order created under the key
    response_status INTEGER,            -- NULL only inside the creating transaction
    response_body   TEXT,               -- the answer's JSON, replayed as is
    created_at      TEXT    NOT NULL,   -- first use; expiry counts from here
    PRIMARY KEY (scope, idempotency_key)
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
