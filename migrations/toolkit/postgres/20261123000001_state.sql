-- The toolkit's own state: where each capability's traffic goes (the route
-- store), every change of that as an audited transition, and the history of
-- reconciliation runs. The facade and the reconciler fill these tables.

CREATE TABLE route_state (
    capability      TEXT    PRIMARY KEY,
    -- legacy | service, and the safe-cutover stages (shadow, canary, retired)
    target          TEXT    NOT NULL,
    -- share of traffic for a canary, in tenths of a percent (0 to 1000)
    canary_permille BIGINT  NOT NULL DEFAULT 0 CHECK (canary_permille BETWEEN 0 AND 1000),
    -- the store-wide revision at this capability's last change; a facade
    -- reloads its table when the highest revision moves
    revision        BIGINT  NOT NULL,
    updated_at      TEXT    NOT NULL
);

CREATE TABLE route_transitions (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    capability      TEXT    NOT NULL,
    from_target     TEXT,
    to_target       TEXT    NOT NULL,
    canary_permille BIGINT,
    actor           TEXT    NOT NULL,
    reason          TEXT    NOT NULL DEFAULT '',
    -- 1 when a gate was overridden with --force
    forced          BIGINT  NOT NULL DEFAULT 0 CHECK (forced IN (0, 1)),
    -- JSON: measurements behind an automatic transition, gate results
    detail          TEXT,
    at              TEXT    NOT NULL
);
CREATE INDEX route_transitions_by_capability ON route_transitions (capability, id);

CREATE TABLE reconciliation_runs (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    capability    TEXT    NOT NULL,
    status        TEXT    NOT NULL CHECK (status IN ('running', 'clean', 'diverged', 'failed')),
    started_at    TEXT    NOT NULL,
    finished_at   TEXT,
    rows_compared BIGINT,
    missing       BIGINT,
    extra         BIGINT,
    changed       BIGINT,
    -- why a failed run failed (never a connection string)
    error         TEXT,
    -- the full JSON report
    report        TEXT
);
CREATE INDEX reconciliation_runs_by_capability ON reconciliation_runs (capability, id);
