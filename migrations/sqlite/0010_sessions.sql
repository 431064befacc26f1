-- hop schema version 10 (SQLite): passwords for users and sessions of the web
-- dashboard (/app). Released migrations are never edited; add a new file.
--
-- A user signs in with a password (Argon2id, PHC string; NULL: no password, the
-- user cannot sign in). A session is known by the SHA-256 of its cookie's token, so
-- a copy of this table lets no one in; it carries its CSRF token (sent back with
-- every form) and when it was last used, for `session_idle_minutes`.
--
-- A password link is a one-time address (`/app/setup/<token>`) where a user sets
-- their password: printed by the first `hop serve` for the admin, and by
-- `hop users passwd NAME --link`. Also known by its token's SHA-256 only.

ALTER TABLE users ADD COLUMN password_hash TEXT;

CREATE TABLE sessions (
    token_hash   BLOB PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users (id),
    csrf_token   TEXT NOT NULL,
    created_at   INTEGER NOT NULL, -- Unix milliseconds
    last_seen_at INTEGER NOT NULL  -- Unix milliseconds
) WITHOUT ROWID;
CREATE INDEX sessions_by_user ON sessions (user_id);

CREATE TABLE password_links (
    token_hash BLOB PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users (id),
    expires_at INTEGER NOT NULL -- Unix milliseconds
) WITHOUT ROWID;
