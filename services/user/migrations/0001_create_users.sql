-- Users of Vigie. The e-mail is unique without regard to case; the password is an argon2id hash (libsodium's
-- encoded form), never the password itself.
CREATE TABLE users (
    id            uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    email         text        NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    name          text        NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    password_hash text        NOT NULL,
    role          text        NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX users_email_key ON users (lower(email));

-- The service's runtime role may read and write rows, nothing more (the owner role runs migrations).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'users_app') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON users TO users_app;
    END IF;
END
$$;
