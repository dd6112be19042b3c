-- The sample shop: one database for every capability, as legacy monoliths have.
-- Money is integer cents; timestamps are RFC 3339 UTC text.

CREATE TABLE customers (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    email              TEXT    NOT NULL UNIQUE,
    name               TEXT    NOT NULL,
    -- The largest single payment the customer's card accepts.
    credit_limit_cents INTEGER NOT NULL CHECK (credit_limit_cents >= 0),
    created_at         TEXT    NOT NULL
);

CREATE TABLE products (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    sku         TEXT    NOT NULL UNIQUE,
    name        TEXT    NOT NULL,
    description TEXT    NOT NULL DEFAULT '',
    price_cents INTEGER NOT NULL CHECK (price_cents >= 0),
    updated_at  TEXT    NOT NULL
);

CREATE TABLE inventory (
    product_id INTEGER PRIMARY KEY REFERENCES products (id),
    stock      INTEGER NOT NULL CHECK (stock >= 0),
    updated_at TEXT    NOT NULL
);

-- Order ids are allocated here rather than by AUTOINCREMENT: orders written
-- by the orders service during dual writes carry ids from its own range, and
-- SQLite's AUTOINCREMENT would jump past them and collide with that range.
CREATE TABLE id_allocations (
    name    TEXT    PRIMARY KEY,
    next_id INTEGER NOT NULL
);
INSERT INTO id_allocations (name, next_id) VALUES ('orders', 1);

CREATE TABLE orders (
    id          INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers (id),
    status      TEXT    NOT NULL CHECK (status IN ('placed', 'cancelled')),
    total_cents INTEGER NOT NULL CHECK (total_cents >= 0),
    -- 'monolith' for orders placed here, 'orders-service' for dual-written ones.
    origin      TEXT    NOT NULL DEFAULT 'monolith' CHECK (origin IN ('monolith', 'orders-service')),
    created_at  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL
);
CREATE INDEX orders_by_customer ON orders (customer_id, id);

CREATE TABLE order_lines (
    order_id         INTEGER NOT NULL REFERENCES orders (id),
    line_no          INTEGER NOT NULL,
    product_id       INTEGER NOT NULL REFERENCES products (id),
    quantity         INTEGER NOT NULL CHECK (quantity > 0),
    unit_price_cents INTEGER NOT NULL CHECK (unit_price_cents >= 0),
    PRIMARY KEY (order_id, line_no)
);

-- order_id has no foreign key: orders placed by the orders service pay here
-- before (or without) their dual-written copy existing in this database.
CREATE TABLE payments (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    reference    TEXT    NOT NULL UNIQUE,
    order_id     INTEGER NOT NULL,
    customer_id  INTEGER NOT NULL REFERENCES customers (id),
    amount_cents INTEGER NOT NULL CHECK (amount_cents >= 0),
    status       TEXT    NOT NULL CHECK (status IN ('captured', 'refunded')),
    created_at   TEXT    NOT NULL,
    updated_at   TEXT    NOT NULL
);
CREATE INDEX payments_by_order ON payments (order_id);

-- Stock held for a caller (the orders service) under its idempotency reference.
CREATE TABLE stock_reservations (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    reference  TEXT    NOT NULL UNIQUE,
    status     TEXT    NOT NULL CHECK (status IN ('held', 'released')),
    created_at TEXT    NOT NULL,
    updated_at TEXT    NOT NULL
);

CREATE TABLE stock_reservation_lines (
    reservation_id   INTEGER NOT NULL REFERENCES stock_reservations (id),
    line_no          INTEGER NOT NULL,
    product_id       INTEGER NOT NULL REFERENCES products (id),
    quantity         INTEGER NOT NULL CHECK (quantity > 0),
    unit_price_cents INTEGER NOT NULL CHECK (unit_price_cents >= 0),
    PRIMARY KEY (reservation_id, line_no)
);
