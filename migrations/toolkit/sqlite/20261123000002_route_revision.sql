-- One row holding the route store's revision. Every change bumps it inside
-- the change's transaction: the row lock serializes concurrent changes, and
-- running facades poll this single row (or, on PostgreSQL, are notified) to
-- know when to reload their table.
CREATE TABLE route_revision (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    revision INTEGER NOT NULL
);
INSERT INTO route_revision (id, revision) VALUES (1, 0);
