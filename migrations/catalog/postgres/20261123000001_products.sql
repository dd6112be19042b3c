-- The catalog service's own database: products only, in a modernized schema.
-- Stock is not stored here: inventory stays in the monolith, and the service
-- reads and sets it over HTTP.
--
-- Ids are copied from the monolith's products by the backfill, so `id` is a
-- plain BIGINT PRIMARY KEY without an identity: the service never invents
-- product ids while the monolith still hands them out.
-- Integers are BIGINT because sqlx's Any driver decodes them into i64.
-- Money is integer cents; timestamps are RFC 3339 UTC text.

CREATE TABLE products (
    id               BIGINT  PRIMARY KEY,
    sku              TEXT    NOT NULL UNIQUE,
    -- The monolith's `name`.
    title            TEXT    NOT NULL,
    description      TEXT    NOT NULL DEFAULT '',
    -- The monolith's `price_cents`.
    unit_price_cents BIGINT  NOT NULL CHECK (unit_price_cents >= 0),
    updated_at       TEXT    NOT NULL
);
