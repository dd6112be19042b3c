-- Incremental runs: each run says which kind it was and, if incremental,
-- from when it read changed rows; the watermark is where the last clean
-- run left off (rows changed before it were equal then) and when the last
-- clean full run was.
ALTER TABLE reconciliation_runs ADD COLUMN kind TEXT NOT NULL DEFAULT 'full';
ALTER TABLE reconciliation_runs ADD COLUMN since TEXT;
-- Sharded runs: N processes comparing disjoint key ranges share a group.
ALTER TABLE reconciliation_runs ADD COLUMN run_group TEXT;
ALTER TABLE reconciliation_runs ADD COLUMN shard_index BIGINT;
ALTER TABLE reconciliation_runs ADD COLUMN shard_count BIGINT;

CREATE TABLE reconciliation_watermarks (
    capability TEXT PRIMARY KEY,
    -- the start of the last clean run (RFC 3339, UTC)
    clean_from TEXT NOT NULL,
    -- the start of the last clean full run
    full_at    TEXT,
    run_id     BIGINT NOT NULL
);

-- The key ranges of a sharded run, fixed by its first process so that
-- every shard cuts the tables at the same keys.
CREATE TABLE reconciliation_shard_bounds (
    run_group   TEXT NOT NULL,
    capability  TEXT NOT NULL,
    table_name  TEXT NOT NULL,
    shard_count BIGINT NOT NULL,
    -- JSON: the N-1 cut keys, each a list of typed values
    bounds      TEXT NOT NULL,
    PRIMARY KEY (run_group, capability, table_name)
);
