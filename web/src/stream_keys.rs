//! Stream keys: a long-lived, revocable publish credential per room and identity, for OBS and
//! other WHIP encoders that cannot fetch a fresh join token. Usable wherever a join token is
//! accepted as a WHIP bearer; it only ever grants publishing.

use std::time::SystemTime;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::Row;
use tongxin_common::{Db, Identity, JoinGrant, RoomName, RoomRole, unix_millis};
use utoipa::ToSchema;

use crate::accounts::AccountRole;
use crate::auth::{CurrentUser, Policy};
use crate::error::{ApiError, ApiJson, ErrorBody};
use crate::state::AppState;

/// Every stream key starts with this, so a bearer can be told from a join token at a glance.
pub const PREFIX: &str = "sk_";

/// The routes under `/api/v1`.
pub fn router() -> Router<AppState> {
    Router::new().route("/stream-keys", get(list).post(create)).route("/stream-keys/{id}", delete(revoke))
}

/// A stream key as listed (never the key itself).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StreamKey {
    /// The id.
    pub id: String,
    /// The room it publishes to.
    pub room: String,
    /// The identity it publishes as.
    pub identity: String,
    /// A label, e.g. "OBS in room 301".
    pub name: Option<String>,
    /// Who created it (account id).
    pub created_by: String,
    /// When, Unix ms.
    pub created_at: i64,
    /// Last successful use, Unix ms.
    pub last_used_at: Option<i64>,
    /// When it was revoked, Unix ms.
    pub revoked_at: Option<i64>,
}

/// `POST /api/v1/stream-keys` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateStreamKey {
    /// The room.
    pub room: String,
    /// The identity to publish as (a teacher may only use their own username).
    pub identity: String,
    /// A label.
    #[serde(default)]
    pub name: Option<String>,
}

/// A new stream key: the `key` is shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedStreamKey {
    /// Use as `Authorization: Bearer <key>` on `POST /whip/{room}` (OBS: "Bearer Token").
    pub key: String,
    /// The stored record.
    #[serde(flatten)]
    pub stream_key: StreamKey,
}

fn hash(key: &str) -> String {
    Sha256::digest(key.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn from_row(row: &sqlx::any::AnyRow) -> Result<StreamKey, sqlx::Error> {
    Ok(StreamKey {
        id: row.try_get("id")?,
        room: row.try_get("room")?,
        identity: row.try_get("identity")?,
        name: row.try_get("name")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

const COLUMNS: &str = "id, room, identity, name, created_by, created_at, last_used_at, revoked_at";

/// The publish grant behind a live stream key, if `key` is one; records the use.
pub async fn grant_for(db: &Db, key: &str, now: SystemTime) -> Result<Option<JoinGrant>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM stream_keys WHERE key_hash = $1 AND revoked_at IS NULL");
    let Some(row) = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(hash(key)).fetch_optional(db.pool()).await? else {
        return Ok(None);
    };
    let k = from_row(&row)?;
    sqlx::query("UPDATE stream_keys SET last_used_at = $1 WHERE id = $2")
        .bind(unix_millis(now))
        .bind(k.id.clone())
        .execute(db.pool())
        .await?;
    // Both were validated when the key was created.
    let (Ok(room), Ok(identity)) = (RoomName::parse(&k.room), Identity::parse(&k.identity)) else { return Ok(None) };
    Ok(Some(JoinGrant {
        room,
        identity,
        name: k.name,
        role: RoomRole::Teacher,
        can_publish: true,
        can_subscribe: false,
        can_publish_data: false,
        hidden: false,
    }))
}

/// Creates a stream key.
#[utoipa::path(post, path = "/api/v1/stream-keys", tag = "tokens", request_body = CreateStreamKey,
    responses((status = 201, body = CreatedStreamKey), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    me: CurrentUser,
    ApiJson(req): ApiJson<CreateStreamKey>,
) -> Result<(StatusCode, Json<CreatedStreamKey>), ApiError> {
    me.require(Policy::ManageStreamKeys)?;
    let room = RoomName::parse(&req.room)?;
    let identity = Identity::parse(&req.identity)?;
    if me.user.role != AccountRole::Admin && identity.as_str() != me.user.username.as_str() {
        return Err(ApiError::Forbidden("you may create stream keys only for your own identity (your username)".into()));
    }
    let name = match req.name.as_deref().map(str::trim) {
        Some(n) if n.is_empty() || n.chars().count() > 64 => return Err(ApiError::validation("name", "1-64 characters")),
        other => other.map(str::to_owned),
    };
    let id_bytes: [u8; 8] = rand::random();
    let id = format!("sk{}", id_bytes.iter().map(|b| format!("{b:02x}")).collect::<String>());
    let secret: [u8; 32] = rand::random();
    let key = format!("{PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret));
    let now = unix_millis(state.clock.now());
    sqlx::query("INSERT INTO stream_keys (id, key_hash, room, identity, name, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
        .bind(id.clone())
        .bind(hash(&key))
        .bind(room.as_str().to_owned())
        .bind(identity.as_str().to_owned())
        .bind(name.clone())
        .bind(me.user.id.0.clone())
        .bind(now)
        .execute(state.db.pool())
        .await?;
    tracing::info!(by = %me.user.id, key = %id, room = %room, "stream key created");
    let stream_key = StreamKey {
        id,
        room: room.as_str().to_owned(),
        identity: identity.as_str().to_owned(),
        name,
        created_by: me.user.id.0.clone(),
        created_at: now,
        last_used_at: None,
        revoked_at: None,
    };
    Ok((StatusCode::CREATED, Json(CreatedStreamKey { key, stream_key })))
}

/// Lists stream keys: all for an admin, one's own otherwise.
#[utoipa::path(get, path = "/api/v1/stream-keys", tag = "tokens",
    responses((status = 200, body = [StreamKey]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn list(State(state): State<AppState>, me: CurrentUser) -> Result<Json<Vec<StreamKey>>, ApiError> {
    me.require(Policy::ManageStreamKeys)?;
    let rows = if me.user.role == AccountRole::Admin {
        sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM stream_keys ORDER BY created_at, id")))
            .fetch_all(state.db.pool())
            .await?
    } else {
        sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM stream_keys WHERE created_by = $1 ORDER BY created_at, id")))
            .bind(me.user.id.0.clone())
            .fetch_all(state.db.pool())
            .await?
    };
    Ok(Json(rows.iter().map(from_row).collect::<Result<_, _>>()?))
}

/// Revokes a stream key; an encoder using it can no longer start publishing.
#[utoipa::path(delete, path = "/api/v1/stream-keys/{id}", tag = "tokens", params(("id" = String, Path, description = "Stream key id")),
    responses((status = 204, description = "Revoked"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn revoke(State(state): State<AppState>, me: CurrentUser, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    me.require(Policy::ManageStreamKeys)?;
    let row = sqlx::query("SELECT created_by FROM stream_keys WHERE id = $1 AND revoked_at IS NULL")
        .bind(id.clone())
        .fetch_optional(state.db.pool())
        .await?
        .ok_or_else(|| ApiError::NotFound("no such live stream key".into()))?;
    let owner: String = row.try_get("created_by")?;
    if me.user.role != AccountRole::Admin && owner != me.user.id.0 {
        return Err(ApiError::Forbidden("this stream key belongs to someone else".into()));
    }
    sqlx::query("UPDATE stream_keys SET revoked_at = $1 WHERE id = $2")
        .bind(unix_millis(state.clock.now()))
        .bind(id.clone())
        .execute(state.db.pool())
        .await?;
    tracing::info!(by = %me.user.id, key = %id, "stream key revoked");
    Ok(StatusCode::NO_CONTENT)
}
