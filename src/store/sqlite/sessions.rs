//! Users' passwords and dashboard sessions in SQLite: one row per session, keyed by
//! the SHA-256 of its token. Sign-ins, sign-outs and touches go through the writer
//! like any write; reading a session is a read connection's primary-key lookup.

use super::{SqliteStore, in_savepoint, user_from_row};
use crate::domain::link::{UnixMillis, UserId};
use crate::store::{Session, SessionStore, StoreError, User};
use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

#[async_trait]
impl SessionStore for SqliteStore {
    async fn set_password(&self, name: &str, hash: Option<String>) -> Result<bool, StoreError> {
        let name = name.to_owned();
        self.write(move |conn| {
            in_savepoint(conn, |conn| {
                let id: Option<i64> = conn
                    .prepare_cached(
                        "UPDATE users SET password_hash = ?2 \
                         WHERE name = ?1 AND removed_at IS NULL RETURNING id",
                    )?
                    .query_row(params![name, hash], |row| row.get(0))
                    .optional()?;
                let Some(id) = id else { return Ok(false) };
                conn.prepare_cached("DELETE FROM sessions WHERE user_id = ?1")?
                    .execute([id])?;
                Ok(true)
            })
        })
        .await
    }

    async fn user_for_sign_in(
        &self,
        name: &str,
    ) -> Result<Option<(User, Option<String>)>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT id, name, is_admin, created_at, password_hash FROM users \
                 WHERE name = ?1 AND removed_at IS NULL",
            )?
            .query_row([name], |row| Ok((user_from_row(row)?, row.get(4)?)))
            .optional()
        })
    }

    async fn insert_session(
        &self,
        token_hash: [u8; 32],
        user: UserId,
        csrf_token: &str,
        now: UnixMillis,
    ) -> Result<(), StoreError> {
        let csrf_token = csrf_token.to_owned();
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, last_seen_at) \
                 VALUES (?1, ?2, ?3, ?4, ?4)",
            )?
            .execute(params![token_hash, user.0, csrf_token, now])?;
            Ok(())
        })
        .await
    }

    async fn session(&self, token_hash: &[u8; 32]) -> Result<Option<Session>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT u.id, u.name, u.is_admin, u.created_at, \
                 s.csrf_token, s.created_at, s.last_seen_at \
                 FROM sessions s JOIN users u ON u.id = s.user_id \
                 WHERE s.token_hash = ?1 AND u.removed_at IS NULL",
            )?
            .query_row([token_hash], |row| {
                Ok(Session {
                    user: user_from_row(row)?,
                    csrf_token: row.get(4)?,
                    created_at: row.get(5)?,
                    last_seen_at: row.get(6)?,
                })
            })
            .optional()
        })
    }

    async fn touch_session(
        &self,
        token_hash: &[u8; 32],
        now: UnixMillis,
    ) -> Result<(), StoreError> {
        let token_hash = *token_hash;
        self.write(move |conn| {
            conn.prepare_cached("UPDATE sessions SET last_seen_at = ?2 WHERE token_hash = ?1")?
                .execute(params![token_hash, now])?;
            Ok(())
        })
        .await
    }

    async fn delete_session(&self, token_hash: &[u8; 32]) -> Result<(), StoreError> {
        let token_hash = *token_hash;
        self.write(move |conn| {
            conn.prepare_cached("DELETE FROM sessions WHERE token_hash = ?1")?
                .execute([token_hash])?;
            Ok(())
        })
        .await
    }

    async fn delete_idle_sessions(&self, before: UnixMillis) -> Result<u64, StoreError> {
        self.write(move |conn| {
            in_savepoint(conn, |conn| {
                let deleted = conn
                    .prepare_cached("DELETE FROM sessions WHERE last_seen_at < ?1")?
                    .execute([before])?;
                conn.prepare_cached("DELETE FROM password_links WHERE expires_at <= ?1")?
                    .execute([before])?;
                Ok(deleted as u64)
            })
        })
        .await
    }

    async fn insert_password_link(
        &self,
        token_hash: [u8; 32],
        user: UserId,
        expires_at: UnixMillis,
    ) -> Result<(), StoreError> {
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO password_links (token_hash, user_id, expires_at) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![token_hash, user.0, expires_at])?;
            Ok(())
        })
        .await
    }

    async fn password_link(
        &self,
        token_hash: &[u8; 32],
        now: UnixMillis,
    ) -> Result<Option<User>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT u.id, u.name, u.is_admin, u.created_at \
                 FROM password_links p JOIN users u ON u.id = p.user_id \
                 WHERE p.token_hash = ?1 AND p.expires_at > ?2 AND u.removed_at IS NULL",
            )?
            .query_row(params![token_hash, now], user_from_row)
            .optional()
        })
    }

    async fn use_password_link(
        &self,
        token_hash: &[u8; 32],
        password_hash: String,
        now: UnixMillis,
    ) -> Result<Option<User>, StoreError> {
        let token_hash = *token_hash;
        self.write(move |conn| {
            in_savepoint(conn, |conn| {
                let user = conn
                    .prepare_cached(
                        "SELECT u.id, u.name, u.is_admin, u.created_at \
                         FROM password_links p JOIN users u ON u.id = p.user_id \
                         WHERE p.token_hash = ?1 AND p.expires_at > ?2 \
                         AND u.removed_at IS NULL",
                    )?
                    .query_row(params![token_hash, now], user_from_row)
                    .optional()?;
                let Some(user) = user else { return Ok(None) };
                conn.prepare_cached("UPDATE users SET password_hash = ?2 WHERE id = ?1")?
                    .execute(params![user.id.0, password_hash])?;
                conn.prepare_cached("DELETE FROM sessions WHERE user_id = ?1")?
                    .execute([user.id.0])?;
                conn.prepare_cached("DELETE FROM password_links WHERE user_id = ?1")?
                    .execute([user.id.0])?;
                Ok(Some(user))
            })
        })
        .await
    }
}
