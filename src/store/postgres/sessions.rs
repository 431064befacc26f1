//! Users' passwords and dashboard sessions in PostgreSQL, as in SQLite: one row per
//! session, keyed by the SHA-256 of its token. Always on the primary: a session must
//! be found right after the sign-in that made it, whichever node is asked.

use super::{PgStore, user_from_row};
use crate::domain::link::{UnixMillis, UserId};
use crate::store::{Session, SessionStore, StoreError, User};
use async_trait::async_trait;

#[async_trait]
impl SessionStore for PgStore {
    async fn set_password(&self, name: &str, hash: Option<String>) -> Result<bool, StoreError> {
        // One statement: the new hash and the end of the old sessions commit together.
        let row = self
            .query_opt(
                "WITH changed AS ( \
                   UPDATE users SET password_hash = $2 \
                   WHERE name = $1 AND removed_at IS NULL RETURNING id), \
                 ended AS (DELETE FROM sessions WHERE user_id IN (SELECT id FROM changed)) \
                 SELECT id FROM changed",
                &[&name, &hash],
            )
            .await?;
        Ok(row.is_some())
    }

    async fn user_for_sign_in(
        &self,
        name: &str,
    ) -> Result<Option<(User, Option<String>)>, StoreError> {
        let row = self
            .query_opt(
                "SELECT id, name, is_admin, created_at, password_hash FROM users \
                 WHERE name = $1 AND removed_at IS NULL",
                &[&name],
            )
            .await?;
        match row {
            Some(row) => Ok(Some((user_from_row(&row)?, row.try_get(4)?))),
            None => Ok(None),
        }
    }

    async fn insert_session(
        &self,
        token_hash: [u8; 32],
        user: UserId,
        csrf_token: &str,
        now: UnixMillis,
    ) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, last_seen_at) \
             VALUES ($1, $2, $3, $4, $4)",
            &[&&token_hash[..], &user.0, &csrf_token, &now],
        )
        .await?;
        Ok(())
    }

    async fn session(&self, token_hash: &[u8; 32]) -> Result<Option<Session>, StoreError> {
        let row = self
            .query_opt(
                "SELECT u.id, u.name, u.is_admin, u.created_at, \
                 s.csrf_token, s.created_at, s.last_seen_at \
                 FROM sessions s JOIN users u ON u.id = s.user_id \
                 WHERE s.token_hash = $1 AND u.removed_at IS NULL",
                &[&&token_hash[..]],
            )
            .await?;
        match row {
            Some(row) => Ok(Some(Session {
                user: user_from_row(&row)?,
                csrf_token: row.try_get(4)?,
                created_at: row.try_get(5)?,
                last_seen_at: row.try_get(6)?,
            })),
            None => Ok(None),
        }
    }

    async fn touch_session(
        &self,
        token_hash: &[u8; 32],
        now: UnixMillis,
    ) -> Result<(), StoreError> {
        self.execute(
            "UPDATE sessions SET last_seen_at = $2 WHERE token_hash = $1",
            &[&&token_hash[..], &now],
        )
        .await?;
        Ok(())
    }

    async fn delete_session(&self, token_hash: &[u8; 32]) -> Result<(), StoreError> {
        self.execute(
            "DELETE FROM sessions WHERE token_hash = $1",
            &[&&token_hash[..]],
        )
        .await?;
        Ok(())
    }

    async fn delete_idle_sessions(&self, before: UnixMillis) -> Result<u64, StoreError> {
        self.execute(
            "DELETE FROM password_links WHERE expires_at <= $1",
            &[&before],
        )
        .await?;
        self.execute("DELETE FROM sessions WHERE last_seen_at < $1", &[&before])
            .await
    }

    async fn insert_password_link(
        &self,
        token_hash: [u8; 32],
        user: UserId,
        expires_at: UnixMillis,
    ) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO password_links (token_hash, user_id, expires_at) VALUES ($1, $2, $3)",
            &[&&token_hash[..], &user.0, &expires_at],
        )
        .await?;
        Ok(())
    }

    async fn password_link(
        &self,
        token_hash: &[u8; 32],
        now: UnixMillis,
    ) -> Result<Option<User>, StoreError> {
        let row = self
            .query_opt(
                "SELECT u.id, u.name, u.is_admin, u.created_at \
                 FROM password_links p JOIN users u ON u.id = p.user_id \
                 WHERE p.token_hash = $1 AND p.expires_at > $2 AND u.removed_at IS NULL",
                &[&&token_hash[..], &now],
            )
            .await?;
        Ok(row.map(|row| user_from_row(&row)).transpose()?)
    }

    async fn use_password_link(
        &self,
        token_hash: &[u8; 32],
        password_hash: String,
        now: UnixMillis,
    ) -> Result<Option<User>, StoreError> {
        // One statement: the link is taken (deleted) by exactly one use, and the new
        // hash, the end of the sessions and of the user's other links commit with it.
        let row = self
            .query_opt(
                "WITH taken AS ( \
                   DELETE FROM password_links WHERE token_hash = $1 AND expires_at > $2 \
                   RETURNING user_id), \
                 changed AS ( \
                   UPDATE users SET password_hash = $3 \
                   WHERE id IN (SELECT user_id FROM taken) AND removed_at IS NULL \
                   RETURNING id, name, is_admin, created_at), \
                 ended AS (DELETE FROM sessions WHERE user_id IN (SELECT id FROM changed)), \
                 others AS (DELETE FROM password_links \
                   WHERE user_id IN (SELECT id FROM changed) AND token_hash <> $1) \
                 SELECT id, name, is_admin, created_at FROM changed",
                &[&&token_hash[..], &now, &password_hash],
            )
            .await?;
        Ok(row.map(|row| user_from_row(&row)).transpose()?)
    }
}
