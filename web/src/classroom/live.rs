//! Joining a lesson: `POST /api/v1/lessons/{id}/join` for accounts (the teacher, a classroom
//! terminal, a school head or an admin as a hidden observer) and `POST /api/v1/lesson-links/join`
//! for a student's personal link. Each answers with a short-lived join token and what the page
//! needs to catch up: the live state and the decks. `POST /api/v1/lesson-links/lookup` is what the
//! link's page shows between lessons: the student's name, the course and its lessons;
//! `POST /api/v1/lesson-links/state` is the live state again for a page already in the lesson
//! (a join again would mint a token and count as another attempt in the attendance log).
//!
//! A link's secret travels only in request bodies (the page reads it from the URL fragment,
//! `/l#<secret>`), never in a path, so it stays out of access logs, proxies and `Referer`.
//!
//! The lesson's room is created on the first join inside the window, and every classroom of the
//! lesson is kept for the teacher (and observers) unless it is on stage, enforced by the media
//! server's audiences.

use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tongxin_classroom::model::{AttendanceEvent, Attendee, Deck, EventKind, Lesson, LiveState, Student, StudentLink};
use tongxin_classroom::rules::{self, Caller, Phase, Refusal, Window};
use tongxin_common::rooms::{Audience, RoomControl as _};
use tongxin_common::{Identity, RoomRole, unix_millis};
use utoipa::ToSchema;

use super::manage::link_secret_hash;
use crate::accounts::AccountRole;
use crate::auth::CurrentUser;
use crate::error::{ApiError, ApiJson, ErrorBody};
use crate::state::AppState;

/// The routes under `/api/v1`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/lessons/{id}/join", post(join_lesson))
        .route("/lesson-links/join", post(join_by_link))
        .route("/lesson-links/lookup", post(look_up_link))
        .route("/lesson-links/state", post(link_state))
}

/// `POST /api/v1/lesson-links/join`, `/lookup` and `/state` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkSecret {
    /// The secret of the student's link: the text after `/l#`.
    pub secret: String,
}

/// What a student's link page shows: who it is for, the course and its lessons.
#[derive(Debug, Serialize, ToSchema)]
pub struct LinkLobby {
    /// The student the link was made for.
    pub student: LinkStudent,
    /// The course the link joins.
    pub course: LinkCourse,
    /// The course's lessons from the last 12 hours on (cancelled and ended ones too), by start.
    pub lessons: Vec<LinkLesson>,
}

/// A link's student, as the page greets them.
#[derive(Debug, Serialize, ToSchema)]
pub struct LinkStudent {
    /// The name the school entered.
    pub name: String,
}

/// A link's course.
#[derive(Debug, Serialize, ToSchema)]
pub struct LinkCourse {
    /// The course id.
    pub id: String,
    /// E.g. "Mathematics, grade 4".
    pub title: String,
}

/// One lesson on a link's page.
#[derive(Debug, Serialize, ToSchema)]
pub struct LinkLesson {
    /// The lesson id.
    pub id: String,
    /// E.g. "Fractions (2)".
    pub title: String,
    /// Scheduled start, Unix ms.
    pub starts_at: i64,
    /// Scheduled length in minutes.
    pub duration_min: u32,
    /// `scheduled`, `open`, `over` or `cancelled`.
    #[schema(value_type = String)]
    pub phase: Phase,
    /// When it opens, starts, ends and closes, Unix ms.
    #[schema(value_type = Object)]
    pub window: Window,
}

/// The most lessons a link's page lists.
const LOBBY_LESSONS: usize = 20;

/// What a page needs to take part in a lesson.
#[derive(Debug, Serialize, ToSchema)]
pub struct LessonJoin {
    /// The join token for the room page's connection (10 minutes; fetch again to rejoin).
    pub token: String,
    /// When the token stops being accepted, Unix ms.
    pub expires_at: i64,
    /// STUN/TURN servers for the connection (TURN credentials expire on their own).
    #[schema(value_type = Vec<Object>)]
    pub ice_servers: Vec<crate::turn::IceServer>,
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

/// A refused join: 403 for who may never join, 409 for when; the code names the rule.
impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        let status = match r {
            Refusal::NotInvited | Refusal::LinkRevoked => axum::http::StatusCode::FORBIDDEN,
            _ => axum::http::StatusCode::CONFLICT,
        };
        ApiError::Refused { status, code: r.code(), message: r.to_string() }
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

/// A live link of an enrolled student, by its secret: 404 if there is none, 403 if it was
/// revoked or the student is no longer enrolled.
async fn live_link(state: &AppState, secret: &str) -> Result<(StudentLink, Student), ApiError> {
    let link = state.classroom.link_by_hash(&link_secret_hash(secret)).await?;
    let link = link.ok_or_else(|| ApiError::NotFound("no such lesson link".into()))?;
    let student = state.classroom.student(&link.student_id).await?.ok_or_else(|| ApiError::NotFound("no such student".into()))?;
    if link.revoked_at.is_some() {
        return Err(Refusal::LinkRevoked.into());
    }
    if !state.classroom.is_enrolled(&link.course_id, &link.student_id).await? {
        return Err(Refusal::NotInvited.into());
    }
    Ok((link, student))
}

/// What a student's link page shows between lessons: their name, the course and its lessons.
#[utoipa::path(post, path = "/api/v1/lesson-links/lookup", tag = "classroom", request_body = LinkSecret,
    responses((status = 200, body = LinkLobby), (status = 403, body = ErrorBody, description = "revoked, or no longer enrolled"),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn look_up_link(State(state): State<AppState>, ApiJson(req): ApiJson<LinkSecret>) -> Result<Json<LinkLobby>, ApiError> {
    let (link, student) = live_link(&state, &req.secret).await?;
    let course = state.classroom.course(&link.course_id).await?.ok_or_else(|| ApiError::NotFound("no such course".into()))?;
    let now = unix_millis(state.clock.now());
    let filter = tongxin_classroom::store::LessonFilter {
        course_id: Some(course.id.clone()),
        from: Some(now - 12 * 3_600_000),
        ..Default::default()
    };
    let timing = state.config.classroom.timing();
    let mut lessons = state.classroom.list_lessons(&filter).await?;
    lessons.sort_by_key(|l| l.starts_at);
    let lessons = lessons
        .into_iter()
        .take(LOBBY_LESSONS)
        .map(|l| LinkLesson {
            phase: rules::phase(&l, &timing, now),
            window: rules::window(&l, &timing),
            id: l.id,
            title: l.title,
            starts_at: l.starts_at,
            duration_min: l.duration_min,
        })
        .collect();
    Ok(Json(LinkLobby { student: LinkStudent { name: student.name }, course: LinkCourse { id: course.id, title: course.title }, lessons }))
}

/// The lesson of a course that is open now, or a 409.
async fn open_lesson(state: &AppState, course_id: &str) -> Result<Lesson, ApiError> {
    let now = unix_millis(state.clock.now());
    let filter = tongxin_classroom::store::LessonFilter { course_id: Some(course_id.to_owned()), ..Default::default() };
    let lessons = state.classroom.list_lessons(&filter).await?;
    let timing = state.config.classroom.timing();
    let open = lessons.into_iter().find(|l| rules::phase(l, &timing, now) == Phase::Open);
    open.ok_or_else(|| ApiError::Conflict("no lesson of this course is open now".into()))
}

/// Joins the open lesson of a student's course with the student's personal link.
#[utoipa::path(post, path = "/api/v1/lesson-links/join", tag = "classroom", request_body = LinkSecret,
    responses((status = 200, body = LessonJoin), (status = 403, body = ErrorBody, description = "revoked, or no longer enrolled"),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "no lesson of the course is open"),
        (status = 422, body = ErrorBody)))]
pub async fn join_by_link(State(state): State<AppState>, ApiJson(req): ApiJson<LinkSecret>) -> Result<Json<LessonJoin>, ApiError> {
    let (link, student) = live_link(&state, &req.secret).await?;
    let lesson = open_lesson(&state, &link.course_id).await?;
    let caller = Caller::StudentLink { student_id: &student.id, enrolled: true, revoked: false };
    admit_and_join(&state, lesson, &caller, student.name).await
}

/// The live state and decks of the open lesson of a student's course, for a link's page that is
/// in the lesson already (its data channel opened after a page turn, say). Unlike joining again
/// it mints no token and records nothing in the attendance log.
#[utoipa::path(post, path = "/api/v1/lesson-links/state", tag = "classroom", request_body = LinkSecret,
    responses((status = 200, body = LessonStateView), (status = 403, body = ErrorBody, description = "revoked, or no longer enrolled"),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "no lesson of the course is open"),
        (status = 422, body = ErrorBody)))]
pub async fn link_state(State(state): State<AppState>, ApiJson(req): ApiJson<LinkSecret>) -> Result<Json<LessonStateView>, ApiError> {
    let (link, _student) = live_link(&state, &req.secret).await?;
    let lesson = open_lesson(&state, &link.course_id).await?;
    Ok(Json(LessonStateView::of(&state, &lesson.id).await?))
}

/// A lesson's shared state as a page catches up with it (`GET /lessons/{id}/state` and
/// `POST /lesson-links/state`).
#[derive(Debug, Serialize, ToSchema)]
pub struct LessonStateView {
    /// The lesson it is of.
    pub lesson_id: String,
    /// Stage, raised hands, chat lock and the slide shown.
    #[schema(value_type = Object)]
    pub state: LiveState,
    /// The lesson's slide decks.
    #[schema(value_type = Vec<Object>)]
    pub decks: Vec<Deck>,
}

impl LessonStateView {
    /// The saved state (the default before the first change) and decks of a lesson.
    pub(super) async fn of(state: &AppState, lesson_id: &str) -> Result<LessonStateView, ApiError> {
        Ok(LessonStateView {
            lesson_id: lesson_id.to_owned(),
            state: state.classroom.live(lesson_id).await?.unwrap_or_default(),
            decks: state.classroom.decks(lesson_id).await?,
        })
    }
}

async fn admit_and_join(state: &AppState, lesson: Lesson, caller: &Caller<'_>, name: String) -> Result<Json<LessonJoin>, ApiError> {
    let timing = state.config.classroom.timing();
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
        ice_servers: crate::turn::ice_servers(
            &state.config.turn,
            &crate::turn::label(grant.room.as_str(), grant.identity.as_str()),
            now_time,
        )
        .ice_servers,
        lesson,
    }))
}

/// Creates the lesson's room (again, after a restart) and keeps every classroom off stage for the
/// teacher and observers only.
pub(super) async fn open_room(state: &AppState, lesson: &Lesson, live: &LiveState) -> Result<(), ApiError> {
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
