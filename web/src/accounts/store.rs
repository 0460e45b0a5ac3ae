//! The account store: users and their login sessions, in portable SQL.

use std::time::SystemTime;

use sqlx::Row;
use sqlx::any::AnyRow;
use tongxin_common::db::is_unique_violation;
use tongxin_common::{Db, unix_millis};

use super::{AccountRole, Locale, User, UserId, Username};

/// The migrations of the accounts schema.
pub fn migrator() -> sqlx::migrate::Migrator {
    sqlx::migrate!("./migrations")
}

/// The history table of this crate's migrations.
pub const MIGRATIONS_TABLE: &str = "_tongxin_web_migrations";

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The username is taken.
    #[error("username already taken")]
    UsernameTaken,
    /// The database failed.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    /// A row holds a value this version does not understand.
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

/// A new account.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// The login name.
    pub username: Username,
    /// The shown name.
    pub display_name: String,
    /// The role.
    pub role: AccountRole,
    /// The argon2id PHC string.
    pub password_hash: String,
    /// The UI language.
    pub locale: Locale,
}

/// Changes to an account; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserChanges {
    /// A new shown name.
    pub display_name: Option<String>,
    /// A new role.
    pub role: Option<AccountRole>,
    /// Disable (true) or enable (false).
    pub disabled: Option<bool>,
    /// A new password hash.
    pub password_hash: Option<String>,
    /// A new UI language.
    pub locale: Option<Locale>,
}

/// Users and sessions over a [`Db`].
#[derive(Debug, Clone)]
pub struct AccountStore {
    db: Db,
}

const USER_COLUMNS: &str = "id, username, display_name, role, locale, created_at, disabled_at";

fn user_from_row(row: &AnyRow) -> Result<User, StoreError> {
    let role: String = row.try_get("role")?;
    let locale: String = row.try_get("locale")?;
    let username: String = row.try_get("username")?;
    Ok(User {
        id: UserId(row.try_get("id")?),
        username: Username::parse(&username).map_err(|_| StoreError::Corrupt(format!("username {username:?}")))?,
        display_name: row.try_get("display_name")?,
        role: role.parse().map_err(StoreError::Corrupt)?,
        locale: Locale::parse(&locale).ok_or_else(|| StoreError::Corrupt(format!("locale {locale:?}")))?,
        disabled: row.try_get::<Option<i64>, _>("disabled_at")?.is_some(),
        created_at: row.try_get("created_at")?,
    })
}

impl AccountStore {
    /// A store over `db` (already migrated).
    pub fn new(db: Db) -> Self {
        AccountStore { db }
    }

    /// Creates an account.
    pub async fn create_user(&self, new: NewUser, now: SystemTime) -> Result<User, StoreError> {
        let id = UserId::generate();
        let t = unix_millis(now);
        let r = sqlx::query(
            "INSERT INTO users (id, username, display_name, role, password_hash, locale, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(id.0.clone())
        .bind(new.username.as_str().to_owned())
        .bind(new.display_name.clone())
        .bind(new.role.as_str())
        .bind(new.password_hash)
        .bind(new.locale.as_str())
        .bind(t)
        .bind(t)
        .execute(self.db.pool())
        .await;
        match r {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => return Err(StoreError::UsernameTaken),
            Err(e) => return Err(e.into()),
        }
        Ok(User {
            id,
            username: new.username,
            display_name: new.display_name,
            role: new.role,
            locale: new.locale,
            disabled: false,
            created_at: t,
        })
    }

    /// An account by id.
    pub async fn user(&self, id: &UserId) -> Result<Option<User>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id.0.clone()).fetch_optional(self.db.pool()).await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// An account and its password hash by username, for login.
    pub async fn credentials(&self, username: &Username) -> Result<Option<(User, String)>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS}, password_hash FROM users WHERE username = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(username.as_str().to_owned()).fetch_optional(self.db.pool()).await?;
        match row {
            Some(row) => Ok(Some((user_from_row(&row)?, row.try_get("password_hash")?))),
            None => Ok(None),
        }
    }

    /// Every account, by username.
    pub async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY username");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(self.db.pool()).await?;
        rows.iter().map(user_from_row).collect()
    }

    /// How many accounts exist.
    pub async fn count_users(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM users").fetch_one(self.db.pool()).await?.try_get("n")?)
    }

    /// Applies `changes` in one transaction. Disabling an account or changing its password or role
    /// ends its sessions. Returns `None` if there is no such account.
    pub async fn update_user(&self, id: &UserId, changes: UserChanges, now: SystemTime) -> Result<Option<User>, StoreError> {
        let t = unix_millis(now);
        let mut tx = self.db.pool().begin().await?;
        let exists = sqlx::query("SELECT id FROM users WHERE id = $1").bind(id.0.clone()).fetch_optional(&mut *tx).await?;
        if exists.is_none() {
            return Ok(None);
        }
        // One statement: absent changes bind NULL and keep the column as it is.
        sqlx::query(
            "UPDATE users SET display_name = COALESCE($1, display_name), role = COALESCE($2, role), \
             locale = COALESCE($3, locale), password_hash = COALESCE($4, password_hash), \
             disabled_at = CASE WHEN $5 = 1 THEN COALESCE(disabled_at, $6) WHEN $5 = 0 THEN NULL ELSE disabled_at END, \
             updated_at = $6 WHERE id = $7",
        )
        .bind(changes.display_name.clone())
        .bind(changes.role.map(AccountRole::as_str))
        .bind(changes.locale.map(Locale::as_str))
        .bind(changes.password_hash.clone())
        .bind(changes.disabled.map(i64::from))
        .bind(t)
        .bind(id.0.clone())
        .execute(&mut *tx)
        .await?;
        if changes.disabled == Some(true) || changes.password_hash.is_some() || changes.role.is_some() {
            sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(id.0.clone()).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        self.user(id).await
    }

    /// Records a session for `user`, stored by the hash of its token.
    pub async fn create_session(&self, user: &UserId, token_hash: &str, now: SystemTime, expires: SystemTime) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(token_hash.to_owned())
            .bind(user.0.clone())
            .bind(unix_millis(now))
            .bind(unix_millis(expires))
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// The enabled account behind a live session, and when the session expires (Unix ms).
    pub async fn session_user(&self, token_hash: &str, now: SystemTime) -> Result<Option<(User, i64)>, StoreError> {
        let sql = format!(
            "SELECT {cols}, s.expires_at AS session_expires_at FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.token_hash = $1 AND s.expires_at > $2 AND u.disabled_at IS NULL",
            cols = USER_COLUMNS.split(", ").map(|c| format!("u.{c}")).collect::<Vec<_>>().join(", ")
        );
        let row =
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(token_hash.to_owned()).bind(unix_millis(now)).fetch_optional(self.db.pool()).await?;
        match row {
            Some(row) => Ok(Some((user_from_row(&row)?, row.try_get("session_expires_at")?))),
            None => Ok(None),
        }
    }

    /// Ends one session. Returns whether it existed.
    pub async fn delete_session(&self, token_hash: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM sessions WHERE token_hash = $1").bind(token_hash.to_owned()).execute(self.db.pool()).await?;
        Ok(r.rows_affected() > 0)
    }

    /// Deletes sessions that expired before `now`. Returns how many.
    pub async fn purge_expired_sessions(&self, now: SystemTime) -> Result<u64, StoreError> {
        let r = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1").bind(unix_millis(now)).execute(self.db.pool()).await?;
        Ok(r.rows_affected())
    }

    /// Live sessions (for `/metrics`).
    pub async fn count_live_sessions(&self, now: SystemTime) -> Result<i64, StoreError> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM sessions WHERE expires_at > $1")
            .bind(unix_millis(now))
            .fetch_one(self.db.pool())
            .await?
            .try_get("n")?)
    }
}
