//! A running lesson's controls, enforced by the media server and not only by the pages: stage,
//! raised hands, chat lock, mute all, slide pages and ending; plus the attendance log fed by room
//! events and the attendance report.
//!
//! Every change to the shared state is saved (a restart loses nothing), versioned, and sent to
//! everyone in the room over the data channel as `{"type": "lesson_state", "state": {...}}`.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Mutex;
use tongxin_classroom::model::{AttendanceEvent, Attendee, Deck, EventKind, Headcount, Lesson, LiveState, new_id};
use tongxin_classroom::slides;
use tongxin_common::rooms::{Audience, Permissions, RoomControl, RoomEvent, TrackSource};
use tongxin_common::{RoomRole, unix_millis};
use utoipa::ToSchema;

use super::live::{LessonStateView, lesson_or_404};
use crate::accounts::AccountRole;
use crate::auth::CurrentUser;
use crate::error::{ApiError, ApiJson, ErrorBody};
use crate::state::AppState;

/// Changes to live state are read-modify-write; one at a time keeps versions in order.
static LIVE_LOCK: Mutex<()> = Mutex::const_new(());

/// The routes under `/api/v1`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/lessons/{id}/state", get(get_state))
        .route("/lessons/{id}/stage", put(set_stage))
        .route("/lessons/{id}/hand", put(set_hand))
        .route("/lessons/{id}/hands/{site_id}", delete(lower_hand))
        .route("/lessons/{id}/chat-lock", put(set_chat_lock))
        .route("/lessons/{id}/page", put(set_page))
        .route("/lessons/{id}/mute-all", post(mute_all))
        .route("/lessons/{id}/end", post(end_lesson))
        .route("/lessons/{id}/headcount", put(set_headcount))
        .route("/lessons/{id}/decks", post(upload_deck).layer(DefaultBodyLimit::max(slides::MAX_UPLOAD)))
        .route("/slides/{file}", get(slide_page))
}

/// `POST /lessons/{id}/decks?title=<file name>` query.
#[derive(Debug, Deserialize)]
pub struct DeckQuery {
    /// The uploaded file's name.
    #[serde(default)]
    pub title: Option<String>,
}

/// Uploads a PDF or an image as a deck: pages of 960 px within 40 KiB each, announced to the room
/// so terminals prefetch them.
#[utoipa::path(post, path = "/api/v1/lessons/{id}/decks", tag = "classroom", params(("id" = String, Path, description = "The lesson"), ("title" = Option<String>, Query, description = "The file name")), request_body(content = Vec<u8>, content_type = "application/pdf", description = "A PDF, PNG or JPEG"), responses((status = 201, description = "done"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("session" = []), ("bearer" = [])))]
pub async fn upload_deck(
    State(state): State<AppState>,
    me: CurrentUser,
    Path(id): Path<String>,
    Query(query): Query<DeckQuery>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let lesson = run_by(&state, &me, &id).await?;
    let pages = state.slides.ingest(&body).await.map_err(|e| {
        if e.is_client_error() { ApiError::validation("body", e.to_string()) } else { ApiError::Internal(anyhow::anyhow!("slides: {e}")) }
    })?;
    let title: String = query.title.unwrap_or_else(|| "slides".into()).chars().filter(|c| !c.is_control()).take(100).collect();
    let deck = Deck { id: new_id(), lesson_id: lesson.id.clone(), title, pages, created_at: unix_millis(state.clock.now()) };
    state.classroom.create_deck(&deck).await?;
    if let Some(media) = &state.media {
        let _ = media.send_data(&lesson.room(), json!({"type": "deck_added", "deck": deck})).await;
    }
    Ok((StatusCode::CREATED, Json(deck)))
}

/// A slide page: content-hashed, so cached for good.
#[utoipa::path(get, path = "/api/v1/slides/{file}", tag = "classroom", params(("file" = String, Path, description = "<sha256>.jpg")), responses((status = 200, description = "done"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn slide_page(State(state): State<AppState>, Path(file): Path<String>) -> Result<impl IntoResponse, ApiError> {
    let path = file.strip_suffix(".jpg").and_then(|hash| state.slides.path(hash));
    let path = path.ok_or_else(|| ApiError::NotFound("no such slide page".into()))?;
    let bytes = tokio::fs::read(&path).await.map_err(|_| ApiError::NotFound("no such slide page".into()))?;
    Ok(([(header::CONTENT_TYPE, "image/jpeg"), (header::CACHE_CONTROL, "public, max-age=31536000, immutable")], bytes))
}

/// `PUT /lessons/{id}/headcount` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeadcountRequest {
    /// The classroom.
    pub site_id: String,
    /// Pupils in the room (0-500).
    pub pupils: u32,
}

/// The assistant (or the terminal, or the teacher) enters how many pupils sit in a classroom.
#[utoipa::path(put, path = "/api/v1/lessons/{id}/headcount", tag = "classroom", params(("id" = String, Path, description = "The lesson")), request_body = HeadcountRequest, responses((status = 200, description = "done"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("session" = []), ("bearer" = [])))]
pub async fn set_headcount(
    State(state): State<AppState>,
    me: CurrentUser,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<HeadcountRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let lesson = lesson_or_404(&state, &id).await?;
    if !lesson.site_ids.contains(&req.site_id) {
        return Err(ApiError::validation("site_id", "this classroom does not take part in the lesson"));
    }
    if req.pupils > 500 {
        return Err(ApiError::validation("pupils", "a headcount is 0-500"));
    }
    let site = state.classroom.site(&req.site_id).await?.ok_or_else(|| ApiError::validation("site_id", "no such classroom"))?;
    let me_id = &me.user.id.0;
    let allowed = site.device_user_id.as_ref() == Some(me_id) || site.assistant_user_ids.contains(me_id) || lesson.teacher_id == *me_id;
    if !allowed {
        return Err(ApiError::Forbidden("only this classroom's assistant, terminal or the teacher may count it".into()));
    }
    let count = Headcount {
        lesson_id: lesson.id,
        site_id: req.site_id,
        pupils: req.pupils,
        entered_by: me_id.clone(),
        at: unix_millis(state.clock.now()),
    };
    state.classroom.set_headcount(&count).await?;
    Ok(Json(count))
}

fn media(state: &AppState) -> Result<&tongxin_sfu::MediaServer, ApiError> {
    state.media.as_ref().ok_or_else(|| ApiError::Internal(anyhow::anyhow!("the media server is not running")))
}

fn room_error(e: tongxin_common::rooms::RoomError) -> ApiError {
    ApiError::Internal(anyhow::anyhow!("the media server refused: {e}"))
}

/// The lesson, if `me` runs it (its teacher, or an admin).
async fn run_by(state: &AppState, me: &CurrentUser, id: &str) -> Result<Lesson, ApiError> {
    let lesson = lesson_or_404(state, id).await?;
    if lesson.teacher_id != me.user.id.0 && me.user.role != AccountRole::Admin {
        return Err(ApiError::Forbidden("only the lesson's teacher may do this".into()));
    }
    Ok(lesson)
}

fn backstage() -> Audience {
    Audience::Roles(vec![RoomRole::Teacher, RoomRole::Observer])
}

/// Loads, changes, saves and announces the live state.
async fn update(state: &AppState, lesson: &Lesson, change: impl FnOnce(&mut LiveState)) -> Result<LiveState, ApiError> {
    let _one_at_a_time = LIVE_LOCK.lock().await;
    let mut live = state.classroom.live(&lesson.id).await?.unwrap_or_default();
    change(&mut live);
    live.version += 1;
    state.classroom.save_live(&lesson.id, &live, unix_millis(state.clock.now())).await?;
    if let Some(media) = &state.media {
        // The room may not be open yet; the state then arrives with the join.
        let _ = media.send_data(&lesson.room(), json!({"type": "lesson_state", "state": live})).await;
    }
    Ok(live)
}

/// `GET /lessons/{id}/state`: the live state and decks (anyone who may see the lesson).
#[utoipa::path(get, path = "/api/v1/lessons/{id}/state", tag = "classroom", params(("id" = String, Path, description = "The lesson")), responses((status = 200, body = LessonStateView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("session" = []), ("bearer" = [])))]
pub async fn get_state(State(state): State<AppState>, _me: CurrentUser, Path(id): Path<String>) -> Result<Json<LessonStateView>, ApiError> {
    let lesson = lesson_or_404(&state, &id).await?;
    Ok(Json(LessonStateView::of(&state, &lesson.id).await?))
}

/// `PUT /lessons/{id}/stage` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StageRequest {
    /// The classroom to bring on stage, or null to clear the stage.
    pub site_id: Option<String>,
}

/// Brings a classroom on stage (its audio and full video reach everyone) or takes it off
/// (forwarding to the others stops at once).
#[utoipa::path(put, path = "/api/v1/lessons/{id}/stage", tag = "classroom", params(("id" = String, Path, description = "The lesson")), request_body = StageRequest, responses((status = 200, description = "done"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("session" = []), ("bearer" = [])))]
pub async fn set_stage(
    State(state): State<AppState>,
    me: CurrentUser,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<StageRequest>,
) -> Result<Json<LiveState>, ApiError> {
    let lesson = run_by(&state, &me, &id).await?;
    if let Some(site) = &req.site_id
        && !lesson.site_ids.contains(site)
    {
        return Err(ApiError::validation("site_id", "this classroom does not take part in the lesson"));
    }
    let media = media(&state)?;
    let before = state.classroom.live(&lesson.id).await?.unwrap_or_default().stage;
    let room = lesson.room();
    if let Some(old) = before.filter(|old| Some(old) != req.site_id.as_ref()) {
        media.set_audience(&room, &Attendee::Classroom(old).identity(), backstage()).await.map_err(room_error)?;
    }
    if let Some(new) = &req.site_id {
        media.set_audience(&room, &Attendee::Classroom(new.clone()).identity(), Audience::Everyone).await.map_err(room_error)?;
    }
    let live = update(&state, &lesson, |live| {
        live.stage = req.site_id.clone();
        live.hands.retain(|h| Some(h) != req.site_id.as_ref());
    })
    .await?;
    Ok(Json(live))
}

/// `PUT /lessons/{id}/hand` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HandRequest {
    /// Raise or lower.
    pub raised: bool,
    /// The classroom (needed only for an assistant of several).
    #[serde(default)]
    pub site_id: Option<String>,
}

/// A classroom raises or lowers its hand (its terminal, or its assistant for a pupil).
#[utoipa::path(put, path = "/api/v1/lessons/{id}/hand", tag = "classroom", params(("id" = String, Path, description = "The lesson")), request_body = HandRequest, responses((status = 200, description = "done"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("session" = []), ("bearer" = [])))]
pub async fn set_hand(
    State(state): State<AppState>,
    me: CurrentUser,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<HandRequest>,
) -> Result<Json<LiveState>, ApiError> {
    let lesson = lesson_or_404(&state, &id).await?;
    let mine: Vec<String> = match me.user.role {
        AccountRole::Device => state.classroom.site_for_device(&me.user.id.0).await?.into_iter().map(|s| s.id).collect(),
        AccountRole::Assistant => state.classroom.sites_for_assistant(&me.user.id.0).await?.into_iter().map(|s| s.id).collect(),
        _ => Vec::new(),
    };
    let mine: Vec<String> = mine.into_iter().filter(|s| lesson.site_ids.contains(s)).collect();
    let site = match (&req.site_id, mine.as_slice()) {
        (Some(s), _) if mine.contains(s) => s.clone(),
        (Some(_), _) => return Err(ApiError::Forbidden("you do not run this classroom".into())),
        (None, [only]) => only.clone(),
        (None, []) => return Err(ApiError::Forbidden("only a classroom of this lesson may raise a hand".into())),
        (None, _) => return Err(ApiError::validation("site_id", "say which of your classrooms")),
    };
    let live = update(&state, &lesson, |live| {
        live.hands.retain(|h| h != &site);
        if req.raised {
            live.hands.push(site.clone());
        }
    })
    .await?;
    Ok(Json(live))
}

/// The teacher lowers a classroom's hand.
#[utoipa::path(delete, path = "/api/v1/lessons/{id}/hands/{site_id}", tag = "classroom", params(("id" = String, Path, description = "The lesson"), ("site_id" = String, Path, description = "The classroom")), responses((status = 200, description = "done"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("session" = []), ("bearer" = [])))]
pub async fn lower_hand(
    State(state): State<AppState>,
    me: CurrentUser,
    Path((id, site_id)): Path<(String, String)>,
) -> Result<Json<LiveState>, ApiError> {
    let lesson = run_by(&state, &me, &id).await?;
    Ok(Json(update(&state, &lesson, |live| live.hands.retain(|h| h != &site_id)).await?))
}

/// `PUT /lessons/{id}/chat-lock` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatLockRequest {
    /// Locked: only the teacher may send.
    pub locked: bool,
}

/// Locks or unlocks chat: everyone but the teacher loses (or gets back) the right to send data.
#[utoipa::path(put, path = "/api/v1/lessons/{id}/chat-lock", tag = "classroom", params(("id" = String, Path, description = "The lesson")), request_body = ChatLockRequest, responses((status = 200, description = "done"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("session" = []), ("bearer" = [])))]
pub async fn set_chat_lock(
    State(state): State<AppState>,
    me: CurrentUser,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ChatLockRequest>,
) -> Result<Json<LiveState>, ApiError> {
    let lesson = run_by(&state, &me, &id).await?;
    let media = media(&state)?;
    let room = lesson.room();
    let live = update(&state, &lesson, |live| live.chat_locked = req.locked).await?;
    let infos = media.rooms().await;
    for p in infos.iter().filter(|r| r.name == room).flat_map(|r| &r.participants) {
        if matches!(p.role, RoomRole::Classroom | RoomRole::Student) {
            let rights = Permissions { publish_data: !req.locked, ..p.permissions };
            // Someone who just left is no error.
            let _ = media.set_permissions(&room, &p.identity, rights).await;
        }
    }
    Ok(Json(live))
}

/// `PUT /lessons/{id}/page` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PageRequest {
    /// The deck.
    pub deck_id: String,
    /// The page, 0-based.
    pub page: u32,
}

/// Shows a slide page to everyone.
#[utoipa::path(put, path = "/api/v1/lessons/{id}/page", tag = "classroom", params(("id" = String, Path, description = "The lesson")), request_body = PageRequest, responses((status = 200, description = "done"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("session" = []), ("bearer" = [])))]
pub async fn set_page(
    State(state): State<AppState>,
    me: CurrentUser,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<PageRequest>,
) -> Result<Json<LiveState>, ApiError> {
    let lesson = run_by(&state, &me, &id).await?;
    let deck = state.classroom.deck(&req.deck_id).await?.filter(|d| d.lesson_id == lesson.id);
    let deck = deck.ok_or_else(|| ApiError::validation("deck_id", "no such deck in this lesson"))?;
    if req.page as usize >= deck.pages.len() {
        return Err(ApiError::validation("page", format!("the deck has {} pages", deck.pages.len())));
    }
    Ok(Json(update(&state, &lesson, |live| (live.deck_id, live.page) = (Some(deck.id.clone()), req.page)).await?))
}

/// Mutes every microphone but the teacher's. It never unmutes anyone.
#[utoipa::path(post, path = "/api/v1/lessons/{id}/mute-all", tag = "classroom", params(("id" = String, Path, description = "The lesson")), responses((status = 200, description = "done"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("session" = []), ("bearer" = [])))]
pub async fn mute_all(State(state): State<AppState>, me: CurrentUser, Path(id): Path<String>) -> Result<impl IntoResponse, ApiError> {
    let lesson = run_by(&state, &me, &id).await?;
    let media = media(&state)?;
    let room = lesson.room();
    let mut muted = 0;
    for p in media.rooms().await.iter().filter(|r| r.name == room).flat_map(|r| &r.participants) {
        let live_mic = p.tracks.iter().any(|t| t.source == TrackSource::Microphone && !t.muted);
        if p.role != RoomRole::Teacher && live_mic && media.mute_track(&room, &p.identity, TrackSource::Microphone, true).await.is_ok() {
            muted += 1;
        }
    }
    Ok(Json(json!({"muted": muted})))
}

/// Ends the lesson: everyone is told, disconnected, and the room closes.
#[utoipa::path(post, path = "/api/v1/lessons/{id}/end", tag = "classroom", params(("id" = String, Path, description = "The lesson")), responses((status = 200, description = "done"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("session" = []), ("bearer" = [])))]
pub async fn end_lesson(State(state): State<AppState>, me: CurrentUser, Path(id): Path<String>) -> Result<impl IntoResponse, ApiError> {
    let lesson = run_by(&state, &me, &id).await?;
    let now = unix_millis(state.clock.now());
    if !state.classroom.set_lesson_ended(&lesson.id, now).await? {
        return Err(ApiError::Conflict("the lesson has already ended".into()));
    }
    super::schedule::close_room(&state, lesson.room().as_str()).await;
    tracing::info!(lesson = %lesson.id, "lesson ended");
    Ok(Json(json!({"ended_at": now})))
}

/// Records joins, leaves and quality changes of lesson rooms in the attendance log, for as long
/// as the media server runs.
pub async fn record_room_events(state: AppState) {
    let Some(media) = state.media.clone() else { return };
    let mut events = RoomControl::events(&media);
    let mut ratings = std::collections::HashMap::new();
    loop {
        let event = match events.recv().await {
            Ok(e) => e,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "the attendance log missed room events");
                continue;
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        let (room, identity, kind, detail) = match &event {
            RoomEvent::ParticipantJoined { room, identity, .. } => (room, identity, EventKind::Joined, None),
            RoomEvent::ParticipantLeft { room, identity, reason } => {
                ratings.remove(&(room.clone(), identity.clone()));
                (room, identity, EventKind::Left, Some(reason.as_str().to_owned()))
            }
            RoomEvent::Quality { room, identity, sample } => {
                let rating = serde_json::to_value(sample.rating).ok().and_then(|v| v.as_str().map(str::to_owned));
                // Only changes: a sample every two seconds would flood the log.
                if ratings.insert((room.clone(), identity.clone()), rating.clone()) == Some(rating.clone()) {
                    continue;
                }
                (room, identity, EventKind::Quality, rating)
            }
            _ => continue,
        };
        let (Some(lesson_id), Some(attendee)) = (room.as_str().strip_prefix("lesson-"), Attendee::from_identity(identity)) else {
            continue;
        };
        let row = AttendanceEvent { lesson_id: lesson_id.to_owned(), attendee, kind, detail, at: unix_millis(state.clock.now()) };
        if let Err(e) = state.classroom.record_event(&row).await {
            tracing::warn!(error = %e, "could not record a room event for attendance");
        }
    }
}
