-- Orders of Vigie. Items are kept with their order (they never change after creation). An Idempotency-Key is
-- unique per user; request_hash lets a replay with a different body be told apart from a true replay.
CREATE TABLE orders (
    id              uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id         uuid        NOT NULL,
    status          text        NOT NULL DEFAULT 'pending'
                                CHECK (status IN ('pending', 'paid', 'shipped', 'cancelled')),
    items           jsonb       NOT NULL CHECK (jsonb_typeof(items) = 'array'),
    total_cents     bigint      NOT NULL CHECK (total_cents >= 0),
    idempotency_key text        NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    request_hash    text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT orders_idempotency_key UNIQUE (user_id, idempotency_key)
);

-- Listing a user's latest orders (and everyone's, for admins) walks this index newest first.
CREATE INDEX orders_user_recent ON orders (user_id, created_at DESC, id DESC);
CREATE INDEX orders_recent ON orders (created_at DESC, id DESC);

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'orders_app') THEN
        GRANT SELECT, INSERT, UPDATE ON orders TO orders_app;
    END IF;
END
$$;
