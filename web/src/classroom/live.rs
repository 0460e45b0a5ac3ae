//! Joining a lesson: `POST /api/v1/lessons/{id}/join` for accounts (the teacher, a classroom
//! terminal, a school head or an admin as a hidden observer) and
//! `POST /api/v1/lesson-links/{secret}/join` for a student's personal link. Each answers with a
//! short-lived join token and what the page needs to catch up: the live state and the decks.
//!
//! The lesson's room is created on the first join inside the window, and every classroom of the
//! lesson is kept for the teacher (and observers) unless it is on stage, enforced by the media
//! server's audiences.

use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use serde::Serialize;
use tongxin_classroom::model::{AttendanceEvent, Attendee, Deck, EventKind, Lesson, LiveState};
use tongxin_classroom::rules::{self, Caller, Phase, Refusal, Timing, Window};
use tongxin_common::rooms::{Audience, RoomControl as _};
use tongxin_common::{Identity, RoomRole, unix_millis};
use utoipa::ToSchema;

use super::manage::link_secret_hash;
use crate::accounts::AccountRole;
use crate::auth::CurrentUser;
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// The routes under `/api/v1`.
pub fn router() -> Router<AppState> {
    Router::new().route("/lessons/{id}/join", post(join_lesson)).route("/lesson-links/{secret}/join", post(join_by_link))
}

/// What a page needs to take part in a lesson.
#[derive(Debug, Serialize, ToSchema)]
pub struct LessonJoin {
    /// The join token for the room page's connection (10 minutes; fetch again to rejoin).
    pub token: String,
    /// When the token stops being accepted, Unix ms.
    pub expires_at: i64,
    /// The lesson's room.
    pub room: String,
    /// The room identity (`teacher:<id>`, `classroom:<site>`, `student:<id>`, `observer:<id>`).
    pub identity: String,
    /// The room role: teacher, classroom, student or observer.
    pub role: String,
    /// Who this is in the lesson.
    #[schema(value_type = Object)]
    pub attendee: Attendee,
    /// The lesson.
    #[schema(value_type = Object)]
    pub lesson: Lesson,
    /// When it opens, starts, ends and closes, Unix ms.
    #[schema(value_type = Object)]
    pub window: Window,
    /// `open` (only open lessons can be joined).
    #[schema(value_type = String)]
    pub phase: Phase,
    /// Stage, raised hands, chat lock and the slide shown.
    #[schema(value_type = Object)]
    pub state: LiveState,
    /// The lesson's slide decks.
    #[schema(value_type = Vec<Object>)]
    pub decks: Vec<Deck>,
    /// The lesson's classrooms, in order.
    pub sites: Vec<SiteName>,
}

/// A classroom as the lesson page names it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SiteName {
    /// The site id.
    pub id: String,
    /// Its name.
    pub name: String,
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::NotInvited | Refusal::LinkRevoked => ApiError::Forbidden(r.to_string()),
            _ => ApiError::Conflict(r.to_string()),
        }
    }
}

/// The lesson, or a 404.
pub(super) async fn lesson_or_404(state: &AppState, id: &str) -> Result<Lesson, ApiError> {
    state.classroom.lesson(id).await?.ok_or_else(|| ApiError::NotFound("no such lesson".into()))
}

/// Joins a lesson with an account.
#[utoipa::path(post, path = "/api/v1/lessons/{id}/join", tag = "classroom",
    params(("id" = String, Path, description = "The lesson")),
    responses((status = 200, body = LessonJoin), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "not open yet, over or cancelled")),
    security(("session" = []), ("bearer" = [])))]
pub async fn join_lesson(State(state): State<AppState>, me: CurrentUser, Path(id): Path<String>) -> Result<Json<LessonJoin>, ApiError> {
    let lesson = lesson_or_404(&state, &id).await?;
    let course = state.classroom.course(&lesson.course_id).await?.ok_or_else(|| ApiError::NotFound("no such course".into()))?;
    let school = state.classroom.school(&course.school_id).await?;
    let device_site = match me.user.role {
        AccountRole::Device => state.classroom.site_for_device(&me.user.id.0).await?.map(|s| s.id),
        _ => None,
    };
    let caller = Caller::Account {
        user_id: &me.user.id.0,
        is_admin: me.user.role == AccountRole::Admin,
        device_site: device_site.as_deref(),
        heads_school: school.is_some_and(|s| s.head_user_ids.contains(&me.user.id.0)),
    };
    let name = me.user.display_name.clone();
    admit_and_join(&state, lesson, &caller, name).await
}

/// Joins the open lesson of a student's course with the student's personal link.
#[utoipa::path(post, path = "/api/v1/lesson-links/{secret}/join", tag = "classroom",
    params(("secret" = String, Path, description = "The secret of the student's link")),
    responses((status = 200, body = LessonJoin), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "no lesson of the course is open")))]
pub async fn join_by_link(State(state): State<AppState>, Path(secret): Path<String>) -> Result<Json<LessonJoin>, ApiError> {
    let link = state.classroom.link_by_hash(&link_secret_hash(&secret)).await?;
    let link = link.ok_or_else(|| ApiError::NotFound("no such lesson link".into()))?;
    let student = state.classroom.student(&link.student_id).await?.ok_or_else(|| ApiError::NotFound("no such student".into()))?;
    let enrolled = state.classroom.is_enrolled(&link.course_id, &link.student_id).await?;
    let now = unix_millis(state.clock.now());
    let filter = tongxin_classroom::store::LessonFilter { course_id: Some(link.course_id.clone()), ..Default::default() };
    let lessons = state.classroom.list_lessons(&filter).await?;
    let timing = Timing::default();
    let open = lessons.into_iter().find(|l| rules::phase(l, &timing, now) == Phase::Open);
    let lesson = open.ok_or_else(|| ApiError::Conflict("no lesson of this course is open now".into()))?;
    let caller = Caller::StudentLink { student_id: &student.id, enrolled, revoked: link.revoked_at.is_some() };
    admit_and_join(&state, lesson, &caller, student.name).await
}

async fn admit_and_join(state: &AppState, lesson: Lesson, caller: &Caller<'_>, name: String) -> Result<Json<LessonJoin>, ApiError> {
    let timing = Timing::default();
    let now_time = state.clock.now();
    let now = unix_millis(now_time);
    let attendee = rules::admit(&lesson, caller, now, &timing)?;
    let live = state.classroom.live(&lesson.id).await?.unwrap_or_default();
    open_room(state, &lesson, &live).await?;
    let attempt =
        AttendanceEvent { lesson_id: lesson.id.clone(), attendee: attendee.clone(), kind: EventKind::Attempt, detail: None, at: now };
    state.classroom.record_event(&attempt).await?;
    let name: String = name.chars().take(64).collect();
    let grant = rules::grant(&attendee, Some(name), &lesson, live.chat_locked);
    let token = state.token_key.mint(&grant, now_time, rules::TOKEN_TTL)?;
    state.metrics.join_token_minted();
    let mut sites = Vec::new();
    for id in &lesson.site_ids {
        if let Some(site) = state.classroom.site(id).await? {
            sites.push(SiteName { id: site.id, name: site.name });
        }
    }
    Ok(Json(LessonJoin {
        token,
        expires_at: unix_millis(now_time + rules::TOKEN_TTL),
        room: grant.room.to_string(),
        identity: grant.identity.to_string(),
        role: grant.role.to_string(),
        attendee,
        window: rules::window(&lesson, &timing),
        phase: Phase::Open,
        decks: state.classroom.decks(&lesson.id).await?,
        state: live,
        sites,
        lesson,
    }))
}

/// Creates the lesson's room (again, after a restart) and keeps every classroom off stage for the
/// teacher and observers only.
async fn open_room(state: &AppState, lesson: &Lesson, live: &LiveState) -> Result<(), ApiError> {
    let media = state.media.as_ref().ok_or_else(|| ApiError::Internal(anyhow::anyhow!("the media server is not running")))?;
    let room = lesson.room();
    media.create_room(&room).await.map_err(|e| ApiError::Internal(anyhow::anyhow!("cannot open the lesson's room: {e}")))?;
    for site in &lesson.site_ids {
        let audience = if live.stage.as_deref() == Some(site) {
            Audience::Everyone
        } else {
            Audience::Roles(vec![RoomRole::Teacher, RoomRole::Observer])
        };
        let identity: Identity = Attendee::Classroom(site.clone()).identity();
        media.set_audience(&room, &identity, audience).await.map_err(|e| ApiError::Internal(anyhow::anyhow!("{e}")))?;
    }
    Ok(())
}
