//! The admin view of live rooms: `GET /api/v1/rooms`.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tongxin_common::rooms::{RoomControl as _, RoomInfo};
use utoipa::ToSchema;

use crate::auth::{CurrentUser, Policy};
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// The routes under `/api/v1`.
pub fn router() -> Router<AppState> {
    Router::new().route("/rooms", get(list_rooms))
}

/// Every live room.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoomList {
    /// Rooms by name, each with its participants (hidden ones included), their tracks and
    /// their latest connection quality (`loss` 0-1, `rtt_ms`, `bitrate_kbps`, `rating`).
    #[schema(value_type = Vec<Object>)]
    pub rooms: Vec<RoomInfo>,
}

/// Lists live rooms, participants, tracks and connection quality.
#[utoipa::path(get, path = "/api/v1/rooms", tag = "admin",
    responses((status = 200, body = RoomList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn list_rooms(State(state): State<AppState>, me: CurrentUser) -> Result<Json<RoomList>, ApiError> {
    me.require(Policy::ViewRooms)?;
    let rooms = match &state.media {
        Some(media) => media.rooms().await,
        None => Vec::new(),
    };
    Ok(Json(RoomList { rooms }))
}
