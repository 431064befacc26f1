-- hop schema version 8 (PostgreSQL): passwords for users and sessions of the web
-- dashboard (/app), as in SQLite's schema 10. Released migrations are never edited;
-- add a new file.
--
-- A user signs in with a password (Argon2id, PHC string; NULL: no password, the
-- user cannot sign in). A session is known by the SHA-256 of its cookie's token, so
-- a copy of this table lets no one in; it carries its CSRF token (sent back with
-- every form) and when it was last used, for `session_idle_minutes`.
--
-- A password link is a one-time address (`/app/setup/<token>`) where a user sets
-- their password: printed by the first `hop serve` for the admin, and by
-- `hop users passwd NAME --link`. Also known by its token's SHA-256 only.

ALTER TABLE users ADD COLUMN password_hash text;

CREATE TABLE sessions (
    token_hash   bytea PRIMARY KEY,
    user_id      bigint NOT NULL REFERENCES users (id),
    csrf_token   text NOT NULL,
    created_at   bigint NOT NULL, -- Unix milliseconds
    last_seen_at bigint NOT NULL  -- Unix milliseconds
);
CREATE INDEX sessions_by_user ON sessions (user_id);

CREATE TABLE password_links (
    token_hash bytea PRIMARY KEY,
    user_id    bigint NOT NULL REFERENCES users (id),
    expires_at bigint NOT NULL -- Unix milliseconds
);
