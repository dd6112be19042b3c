-- The orders service's own database: orders and their lines. Stock and
-- payments stay in the monolith and are reached through its API.

-- Ids of orders placed here start at 1,000,000 so that they never collide
-- with the monolith's ids while both sides place orders (canary) and the
-- service dual-writes into the monolith's orders table. Orders copied from
-- the monolith by the backfill keep their (smaller) ids.
CREATE TABLE id_allocations (
    name    TEXT    PRIMARY KEY,
    next_id INTEGER NOT NULL
);
INSERT INTO id_allocations (name, next_id) VALUES ('orders', 1000000);

CREATE TABLE orders (
    id             INTEGER PRIMARY KEY,
    customer_id    INTEGER NOT NULL,
    -- pending while the saga runs; failed when it was compensated. Only
    -- placed and cancelled orders are visible through the API.
    state          TEXT    NOT NULL CHECK (state IN ('pending', 'placed', 'cancelled', 'failed')),
    total_cents    INTEGER NOT NULL CHECK (total_cents >= 0),
    failure_reason TEXT,
    created_at     TEXT    NOT NULL,
    updated_at     TEXT    NOT NULL
);
CREATE INDEX orders_by_customer ON orders (customer_id, id);

CREATE TABLE order_lines (
    order_id         INTEGER NOT NULL REFERENCES orders (id),
    line_no          INTEGER NOT NULL,
    product_id       INTEGER NOT NULL,
    quantity         INTEGER NOT NULL CHECK (quantity > 0),
    unit_price_cents INTEGER NOT NULL CHECK (unit_price_cents >= 0),
    PRIMARY KEY (order_id, line_no)
);
