//! Minting join tokens through the API: `POST /api/v1/tokens/join`.

use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tongxin_common::grant::GrantError;
use tongxin_common::{Identity, JoinGrant, RoomName, RoomRole, unix_millis};
use utoipa::ToSchema;

use crate::auth::{CurrentUser, Policy};
use crate::error::{ApiError, ApiJson, ErrorBody};
use crate::state::AppState;

/// The routes under `/api/v1`.
pub fn router() -> Router<AppState> {
    Router::new().route("/tokens/join", post(mint_join_token))
}

impl From<GrantError> for ApiError {
    fn from(e: GrantError) -> Self {
        match e {
            GrantError::Invalid { field, reason } => ApiError::validation(field, reason),
            GrantError::BadTtl => ApiError::validation("ttl_seconds", e.to_string()),
            other => ApiError::Unauthorized(other.to_string()),
        }
    }
}

/// What a join token should allow.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinTokenRequest {
    /// The room: 1-64 characters of A-Z, a-z, 0-9, '.', '_' or '-'.
    pub room: String,
    /// The participant's identity, unique in the room.
    pub identity: String,
    /// The name others see.
    #[serde(default)]
    pub name: Option<String>,
    /// The role in the room.
    #[schema(value_type = String, example = "student")]
    pub role: RoomRole,
    /// May publish audio and video.
    #[serde(default)]
    pub can_publish: bool,
    /// May receive others' tracks (default true).
    #[serde(default = "yes")]
    pub can_subscribe: bool,
    /// May send chat and data (default true).
    #[serde(default = "yes")]
    pub can_publish_data: bool,
    /// Not shown to others.
    #[serde(default)]
    pub hidden: bool,
    /// Lifetime in seconds (default `auth.join_token_ttl`, at most 86400).
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
}

fn yes() -> bool {
    true
}

/// A minted join token.
#[derive(Debug, Serialize, ToSchema)]
pub struct JoinTokenResponse {
    /// The token, for the room page or `Authorization: Bearer` on WHIP/WHEP.
    pub token: String,
    /// When it stops being accepted, Unix ms.
    pub expires_at: i64,
    /// STUN/TURN servers for the connection (TURN credentials expire on their own).
    #[schema(value_type = Vec<Object>)]
    pub ice_servers: Vec<crate::turn::IceServer>,
}

/// Mints a join token.
#[utoipa::path(post, path = "/api/v1/tokens/join", tag = "tokens", request_body = JoinTokenRequest,
    responses((status = 200, body = JoinTokenResponse), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn mint_join_token(
    State(state): State<AppState>,
    me: CurrentUser,
    ApiJson(req): ApiJson<JoinTokenRequest>,
) -> Result<Json<JoinTokenResponse>, ApiError> {
    me.require(Policy::MintAnyJoinToken)?;
    let grant = JoinGrant {
        room: RoomName::parse(&req.room)?,
        identity: Identity::parse(&req.identity)?,
        name: req.name,
        role: req.role,
        can_publish: req.can_publish,
        can_subscribe: req.can_subscribe,
        can_publish_data: req.can_publish_data,
        hidden: req.hidden,
    };
    let ttl = req.ttl_seconds.map_or(state.config.auth.join_token_ttl, Duration::from_secs);
    let now = state.clock.now();
    let token = state.token_key.mint(&grant, now, ttl)?;
    state.metrics.join_token_minted();
    tracing::info!(by = %me.user.id, room = %grant.room, role = %grant.role, "join token minted");
    let ice = crate::turn::ice_servers(&state.config.turn, &crate::turn::label(grant.room.as_str(), grant.identity.as_str()), now);
    Ok(Json(JoinTokenResponse { token, expires_at: unix_millis(now + ttl), ice_servers: ice.ice_servers }))
}
