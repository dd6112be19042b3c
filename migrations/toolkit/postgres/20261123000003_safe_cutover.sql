-- Safe cutover. A capability's target is now a migration stage (legacy,
-- shadow, canary with its share, service, retired); a transition also keeps
-- the canary share it left, so a rollback returns to exactly that stage.
ALTER TABLE route_transitions ADD COLUMN from_canary_permille BIGINT;

-- The evidence the shadow stage gathers, counted per capability in
-- ten-second buckets (bucket = unix seconds / 10) so that several facade
-- replicas add into the same rows and a gate can sum any recent window.
CREATE TABLE shadow_windows (
    capability TEXT   NOT NULL,
    bucket     BIGINT NOT NULL,
    -- copies whose two answers were compared
    compared   BIGINT NOT NULL DEFAULT 0,
    -- of those, how many differed (after ignore rules and learned noise)
    mismatched BIGINT NOT NULL DEFAULT 0,
    -- copies dropped because the shadow queue was full
    dropped    BIGINT NOT NULL DEFAULT 0,
    -- requests not shadowed: body over the cap, unsafe method, service error
    skipped    BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (capability, bucket)
);

-- Which fields differed, per bucket: "the fields that differ most often".
CREATE TABLE shadow_fields (
    capability TEXT   NOT NULL,
    bucket     BIGINT NOT NULL,
    field      TEXT   NOT NULL,
    mismatches BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (capability, bucket, field)
);

-- A bounded sample of mismatches with their readable diffs.
CREATE TABLE shadow_samples (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    capability     TEXT   NOT NULL,
    at             TEXT   NOT NULL,
    request_id     TEXT   NOT NULL,
    method         TEXT   NOT NULL,
    -- the normalized path, without the query string
    path           TEXT   NOT NULL,
    legacy_status  BIGINT NOT NULL,
    service_status BIGINT NOT NULL,
    -- JSON array of the differing fields
    fields         TEXT   NOT NULL,
    diff           TEXT   NOT NULL
);
CREATE INDEX shadow_samples_by_capability ON shadow_samples (capability, id);

-- Fields learned as noise: they differ between two answers of the monolith
-- itself, so a difference there says nothing about the service.
CREATE TABLE shadow_noise (
    capability TEXT NOT NULL,
    field      TEXT NOT NULL,
    learned_at TEXT NOT NULL,
    PRIMARY KEY (capability, field)
);
