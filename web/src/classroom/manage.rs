//! The management API of live lessons: schools, classroom sites, courses, students with their
//! personal links, and lessons (one-off or weekly), under `/api/v1`.
//!
//! Organizers and admins manage everything. Teachers see their own courses and lessons and make
//! their students' links; terminals and assistants see the lessons of their sites.

use std::collections::{BTreeMap, HashMap, HashSet};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};
use tongxin_classroom::model::{self, Millis, Repeat, new_id};
use tongxin_classroom::rules::{self, RuleError};
use tongxin_classroom::store::{LessonFilter, StoreError};
use tongxin_common::unix_millis;
use utoipa::{IntoParams, ToSchema};

use crate::accounts::{AccountRole, UserId};
use crate::auth::{CurrentUser, Policy};
use crate::error::{ApiError, ApiJson, ErrorBody};
use crate::state::AppState;

/// The routes under `/api/v1`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/schools", get(list_schools).post(create_school))
        .route("/schools/{id}", get(get_school).patch(update_school))
        .route("/sites", get(list_sites).post(create_site))
        .route("/sites/{id}", get(get_site).patch(update_site))
        .route("/courses", get(list_courses).post(create_course))
        .route("/courses/{id}", get(get_course))
        .route("/courses/{id}/students", get(course_students).post(enroll))
        .route("/courses/{id}/students/{student_id}", delete(unenroll))
        .route("/courses/{id}/students/{student_id}/link", post(create_link).delete(revoke_link))
        .route("/students", get(list_students).post(create_student))
        .route("/lessons", get(list_lessons).post(create_lessons))
        .route("/lessons/{id}", get(get_lesson))
        .route("/lessons/{id}/cancel", post(cancel_lesson))
        .route("/classroom/accounts", get(list_accounts))
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(message) => ApiError::Conflict(message),
            other => ApiError::Internal(other.into()),
        }
    }
}

impl From<RuleError> for ApiError {
    fn from(e: RuleError) -> Self {
        ApiError::validation(e.field, e.message)
    }
}

/// The stored form of a student link's secret: lowercase hex SHA-256 of the text after `/l#`.
pub fn link_secret_hash(secret: &str) -> String {
    Sha256::digest(secret.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

// What the API shows.

/// A school that runs lessons.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct School {
    /// The id.
    pub id: String,
    /// The name.
    pub name: String,
    /// IANA time zone, e.g. `Asia/Shanghai`: weekly lessons keep their local time in it.
    pub time_zone: String,
    /// Accounts that head the school (they may watch its lessons unseen).
    pub head_user_ids: Vec<String>,
    /// When it was created, Unix ms.
    pub created_at: i64,
}

impl From<model::School> for School {
    fn from(s: model::School) -> Self {
        School { id: s.id, name: s.name, time_zone: s.time_zone, head_user_ids: s.head_user_ids, created_at: s.created_at }
    }
}

/// A remote classroom: one screen and camera for a room of pupils.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Site {
    /// The id.
    pub id: String,
    /// The school whose lessons it joins.
    pub school_id: String,
    /// E.g. "Lianghe village school, grade 4".
    pub name: String,
    /// The terminal's device account.
    pub device_user_id: Option<String>,
    /// On-site assistants' accounts.
    pub assistant_user_ids: Vec<String>,
    /// When it was created, Unix ms.
    pub created_at: i64,
}

impl From<model::Site> for Site {
    fn from(s: model::Site) -> Self {
        Site {
            id: s.id,
            school_id: s.school_id,
            name: s.name,
            device_user_id: s.device_user_id,
            assistant_user_ids: s.assistant_user_ids,
            created_at: s.created_at,
        }
    }
}

/// A subject taught by one teacher.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Course {
    /// The id.
    pub id: String,
    /// The school.
    pub school_id: String,
    /// E.g. "Mathematics, grade 4".
    pub title: String,
    /// The teacher's account.
    pub teacher_id: String,
    /// When it was created, Unix ms.
    pub created_at: i64,
}

impl From<model::Course> for Course {
    fn from(c: model::Course) -> Self {
        Course { id: c.id, school_id: c.school_id, title: c.title, teacher_id: c.teacher_id, created_at: c.created_at }
    }
}

/// A student who joins from home with a personal link.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Student {
    /// The id.
    pub id: String,
    /// The school.
    pub school_id: String,
    /// The name the teacher sees.
    pub name: String,
    /// When it was created, Unix ms.
    pub created_at: i64,
}

impl From<model::Student> for Student {
    fn from(s: model::Student) -> Self {
        Student { id: s.id, school_id: s.school_id, name: s.name, created_at: s.created_at }
    }
}

/// A student's personal link as listed (never its secret).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LinkInfo {
    /// The id.
    pub id: String,
    /// When it was made, Unix ms.
    pub created_at: i64,
    /// When it was revoked (or replaced), Unix ms.
    pub revoked_at: Option<i64>,
}

impl From<model::StudentLink> for LinkInfo {
    fn from(l: model::StudentLink) -> Self {
        LinkInfo { id: l.id, created_at: l.created_at, revoked_at: l.revoked_at }
    }
}

/// A student of a course and their latest link, if they ever had one.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EnrolledStudent {
    /// The student.
    pub student: Student,
    /// Their newest link for this course (live unless `revoked_at` is set).
    pub link: Option<LinkInfo>,
}

/// A new student link: the `url` is shown this once.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CreatedLink {
    /// The stored record.
    pub link: LinkInfo,
    /// `/l#<secret>` (the secret in the fragment, which browsers never send), to be opened on the student's phone; it joins every lesson of the course.
    pub url: String,
}

/// One lesson.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Lesson {
    /// The id.
    pub id: String,
    /// The course.
    pub course_id: String,
    /// The teacher's account.
    pub teacher_id: String,
    /// E.g. "Fractions (2)".
    pub title: String,
    /// Scheduled start, Unix ms.
    pub starts_at: i64,
    /// Scheduled end, Unix ms.
    pub ends_at: i64,
    /// Scheduled length in minutes.
    pub duration_min: u32,
    /// The classroom sites that join.
    pub site_ids: Vec<String>,
    /// The series it belongs to, if it repeats.
    pub series_id: Option<String>,
    /// The series rule, e.g. `FREQ=WEEKLY;COUNT=8`.
    pub rrule: Option<String>,
    /// When the teacher ended it, Unix ms.
    pub ended_at: Option<i64>,
    /// When it was cancelled, Unix ms.
    pub cancelled_at: Option<i64>,
    /// When it was created, Unix ms.
    pub created_at: i64,
}

impl From<model::Lesson> for Lesson {
    fn from(l: model::Lesson) -> Self {
        Lesson {
            ends_at: l.ends_at(),
            id: l.id,
            course_id: l.course_id,
            teacher_id: l.teacher_id,
            title: l.title,
            starts_at: l.starts_at,
            duration_min: l.duration_min,
            site_ids: l.site_ids,
            series_id: l.series_id,
            rrule: l.rrule,
            ended_at: l.ended_at,
            cancelled_at: l.cancelled_at,
            created_at: l.created_at,
        }
    }
}

fn all<M, T: From<M>>(items: Vec<M>) -> Json<Vec<T>> {
    Json(items.into_iter().map(T::from).collect())
}

// What the API accepts.

/// `POST /api/v1/schools` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSchool {
    /// 1-100 characters.
    pub name: String,
    /// IANA time zone, e.g. `Asia/Shanghai`.
    pub time_zone: String,
    /// Enabled accounts that head the school.
    #[serde(default)]
    pub head_user_ids: Vec<String>,
}

/// `PATCH /api/v1/schools/{id}` body: only the fields present change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSchool {
    /// 1-100 characters.
    pub name: Option<String>,
    /// IANA time zone (lessons already scheduled keep their times).
    pub time_zone: Option<String>,
    /// Replaces the heads.
    pub head_user_ids: Option<Vec<String>>,
}

/// `POST /api/v1/sites` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSite {
    /// The school whose lessons it joins.
    pub school_id: String,
    /// 1-100 characters.
    pub name: String,
    /// A `device` account not yet serving another site.
    #[serde(default)]
    pub device_user_id: Option<String>,
    /// `assistant` accounts.
    #[serde(default)]
    pub assistant_user_ids: Vec<String>,
}

/// `PATCH /api/v1/sites/{id}` body: only the fields present change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSite {
    /// 1-100 characters.
    pub name: Option<String>,
    /// A `device` account, or null to release the terminal.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub device_user_id: Option<Option<String>>,
    /// Replaces the assistants.
    pub assistant_user_ids: Option<Vec<String>>,
}

/// Tells a field given as `null` (`Some(None)`) from an absent one (`None`, by `default`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// `POST /api/v1/courses` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCourse {
    /// The school.
    pub school_id: String,
    /// 1-100 characters.
    pub title: String,
    /// A `teacher` account.
    pub teacher_id: String,
}

/// `POST /api/v1/students` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateStudent {
    /// The school.
    pub school_id: String,
    /// 1-100 characters.
    pub name: String,
}

/// `POST /api/v1/courses/{id}/students` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollStudent {
    /// A student of the course's school.
    pub student_id: String,
}

/// How a new lesson repeats.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RepeatRequest {
    /// Once.
    #[default]
    Once,
    /// Every week at the same local time in the school's time zone.
    Weekly {
        /// Lessons in the series, the first included (2-52).
        count: u32,
    },
}

impl From<RepeatRequest> for Repeat {
    fn from(r: RepeatRequest) -> Self {
        match r {
            RepeatRequest::Once => Repeat::Once,
            RepeatRequest::Weekly { count } => Repeat::Weekly { count },
        }
    }
}

/// `POST /api/v1/lessons` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateLessons {
    /// The course; its teacher teaches the lessons.
    pub course_id: String,
    /// 1-100 characters.
    pub title: String,
    /// The (first) start, RFC 3339 with an offset, e.g. `2026-12-01T09:00:00+08:00`.
    pub starts_at: String,
    /// 5-480 minutes.
    pub duration_min: u32,
    /// Classroom sites of the course's school that join.
    #[serde(default)]
    pub site_ids: Vec<String>,
    /// Once if absent.
    #[serde(default)]
    pub repeat: RepeatRequest,
}

/// `?school_id=`: narrows a list to one school.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SchoolQuery {
    /// Only this school's records.
    pub school_id: Option<String>,
}

/// Filters of `GET /api/v1/lessons`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LessonQuery {
    /// Only this course's lessons.
    pub course_id: Option<String>,
    /// Lessons starting at or after this time (RFC 3339).
    pub from: Option<String>,
    /// Lessons starting before this time (RFC 3339).
    pub to: Option<String>,
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(q)| q).map_err(|e| ApiError::BadRequest(format!("bad query string: {}", e.body_text())))
}

// Checks.

/// A trimmed name or title of 1-`max` printable characters.
fn text(field: &str, value: &str, max: usize) -> Result<String, ApiError> {
    let v = value.trim();
    if v.is_empty() || v.chars().count() > max || v.chars().any(char::is_control) {
        return Err(ApiError::validation(field, format!("1-{max} printable characters")));
    }
    Ok(v.to_owned())
}

fn time_zone(tz: &str) -> Result<String, ApiError> {
    let tz = tz.trim();
    rules::check_time_zone(tz)?;
    Ok(tz.to_owned())
}

/// An RFC 3339 time with an offset, as Unix ms.
fn instant(field: &str, value: &str) -> Result<Millis, ApiError> {
    value
        .trim()
        .parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .map_err(|_| ApiError::validation(field, "an RFC 3339 time with an offset, e.g. 2026-12-01T09:00:00+08:00"))
}

/// Accounts listed in one field, at most this many.
const MAX_LISTED: usize = 50;

/// Checks that `id` is an enabled account, of `role` if one is given.
async fn account(state: &AppState, field: &str, id: &str, role: Option<AccountRole>) -> Result<(), ApiError> {
    let Some(user) = state.accounts.user(&UserId(id.to_owned())).await?.filter(|u| !u.disabled) else {
        return Err(ApiError::validation(field, format!("no enabled account {id:?}")));
    };
    match role {
        Some(role) if user.role != role => Err(ApiError::validation(field, format!("must be a {role} account, not {}", user.role))),
        _ => Ok(()),
    }
}

/// Checks a list of distinct enabled accounts, each of `role` if one is given.
async fn accounts(state: &AppState, field: &str, ids: &[String], role: Option<AccountRole>) -> Result<Vec<String>, ApiError> {
    if ids.len() > MAX_LISTED {
        return Err(ApiError::validation(field, format!("at most {MAX_LISTED} accounts")));
    }
    let mut seen = HashSet::new();
    for (i, id) in ids.iter().enumerate() {
        let item = format!("{field}[{i}]");
        if !seen.insert(id) {
            return Err(ApiError::validation(item, "listed twice"));
        }
        account(state, &item, id, role).await?;
    }
    Ok(ids.to_vec())
}

fn now(state: &AppState) -> Millis {
    unix_millis(state.clock.now())
}

async fn find_school(state: &AppState, id: &str) -> Result<model::School, ApiError> {
    state.classroom.school(id).await?.ok_or_else(|| ApiError::NotFound("no such school".into()))
}

async fn find_site(state: &AppState, id: &str) -> Result<model::Site, ApiError> {
    state.classroom.site(id).await?.ok_or_else(|| ApiError::NotFound("no such classroom site".into()))
}

async fn find_course(state: &AppState, id: &str) -> Result<model::Course, ApiError> {
    state.classroom.course(id).await?.ok_or_else(|| ApiError::NotFound("no such course".into()))
}

async fn find_lesson(state: &AppState, id: &str) -> Result<model::Lesson, ApiError> {
    state.classroom.lesson(id).await?.ok_or_else(|| ApiError::NotFound("no such lesson".into()))
}

/// The school a body's `school_id` names.
async fn body_school(state: &AppState, id: &str) -> Result<model::School, ApiError> {
    state.classroom.school(id).await?.ok_or_else(|| ApiError::validation("school_id", "no such school"))
}

/// Managers see every course; a teacher only their own.
fn check_course(me: &CurrentUser, course: &model::Course) -> Result<(), ApiError> {
    if me.allows(Policy::ManageSchools) || course.teacher_id == me.user.id.0 {
        Ok(())
    } else {
        Err(ApiError::Forbidden("this course is taught by someone else".into()))
    }
}

/// The classroom sites whose lessons `me` serves, as their terminal or an assistant.
async fn my_sites(state: &AppState, me: &CurrentUser) -> Result<Vec<String>, ApiError> {
    let mut ids: Vec<String> = state.classroom.sites_for_assistant(&me.user.id.0).await?.into_iter().map(|s| s.id).collect();
    if let Some(site) = state.classroom.site_for_device(&me.user.id.0).await? {
        ids.push(site.id);
    }
    Ok(ids)
}

// Accounts to choose from.

/// An account as the classroom forms offer it: enough to pick a teacher, a terminal, an
/// assistant or a school head, nothing more.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountChoice {
    /// The account id.
    pub id: String,
    /// The login name.
    pub username: String,
    /// The name shown.
    pub display_name: String,
    /// The role.
    pub role: AccountRole,
}

/// Lists the enabled accounts an organizer may assign (teachers, terminals, assistants, heads).
#[utoipa::path(get, path = "/api/v1/classroom/accounts", tag = "classroom",
    responses((status = 200, body = [AccountChoice]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn list_accounts(State(state): State<AppState>, me: CurrentUser) -> Result<Json<Vec<AccountChoice>>, ApiError> {
    me.require(Policy::ManageSchools)?;
    let users = state.accounts.list_users().await?;
    let choices = users.into_iter().filter(|u| !u.disabled).map(|u| AccountChoice {
        id: u.id.0,
        username: u.username.as_str().to_owned(),
        display_name: u.display_name,
        role: u.role,
    });
    Ok(Json(choices.collect()))
}

// Schools.

/// Lists schools.
#[utoipa::path(get, path = "/api/v1/schools", tag = "classroom",
    responses((status = 200, body = [School]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn list_schools(State(state): State<AppState>, me: CurrentUser) -> Result<Json<Vec<School>>, ApiError> {
    me.require(Policy::ViewSchools)?;
    Ok(all(state.classroom.list_schools().await?))
}

/// Creates a school.
#[utoipa::path(post, path = "/api/v1/schools", tag = "classroom", request_body = CreateSchool,
    responses((status = 201, body = School), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn create_school(
    State(state): State<AppState>,
    me: CurrentUser,
    ApiJson(req): ApiJson<CreateSchool>,
) -> Result<(StatusCode, Json<School>), ApiError> {
    me.require(Policy::ManageSchools)?;
    let school = model::School {
        id: new_id(),
        name: text("name", &req.name, 100)?,
        time_zone: time_zone(&req.time_zone)?,
        head_user_ids: accounts(&state, "head_user_ids", &req.head_user_ids, None).await?,
        created_at: now(&state),
    };
    state.classroom.create_school(&school).await?;
    tracing::info!(by = %me.user.id, school = %school.id, "school created");
    Ok((StatusCode::CREATED, Json(school.into())))
}

/// One school.
#[utoipa::path(get, path = "/api/v1/schools/{id}", tag = "classroom", params(("id" = String, Path, description = "School id")),
    responses((status = 200, body = School), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn get_school(State(state): State<AppState>, me: CurrentUser, Path(id): Path<String>) -> Result<Json<School>, ApiError> {
    me.require(Policy::ViewSchools)?;
    Ok(Json(find_school(&state, &id).await?.into()))
}

/// Changes a school.
#[utoipa::path(patch, path = "/api/v1/schools/{id}", tag = "classroom", params(("id" = String, Path, description = "School id")),
    request_body = UpdateSchool,
    responses((status = 200, body = School), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn update_school(
    State(state): State<AppState>,
    me: CurrentUser,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateSchool>,
) -> Result<Json<School>, ApiError> {
    me.require(Policy::ManageSchools)?;
    let mut school = find_school(&state, &id).await?;
    if let Some(name) = &req.name {
        school.name = text("name", name, 100)?;
    }
    if let Some(tz) = &req.time_zone {
        school.time_zone = time_zone(tz)?;
    }
    if let Some(heads) = &req.head_user_ids {
        school.head_user_ids = accounts(&state, "head_user_ids", heads, None).await?;
    }
    if !state.classroom.update_school(&school).await? {
        return Err(ApiError::NotFound("no such school".into()));
    }
    tracing::info!(by = %me.user.id, school = %school.id, "school changed");
    Ok(Json(school.into()))
}

// Classroom sites.

/// Lists classroom sites, of one school if `school_id` is given.
#[utoipa::path(get, path = "/api/v1/sites", tag = "classroom", params(SchoolQuery),
    responses((status = 200, body = [Site]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn list_sites(
    State(state): State<AppState>,
    me: CurrentUser,
    q: Result<Query<SchoolQuery>, QueryRejection>,
) -> Result<Json<Vec<Site>>, ApiError> {
    me.require(Policy::ViewSchools)?;
    let q = query(q)?;
    Ok(all(state.classroom.list_sites(q.school_id.as_deref()).await?))
}

/// Creates a classroom site.
#[utoipa::path(post, path = "/api/v1/sites", tag = "classroom", request_body = CreateSite,
    responses((status = 201, body = Site), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "The terminal already serves another site", body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn create_site(
    State(state): State<AppState>,
    me: CurrentUser,
    ApiJson(req): ApiJson<CreateSite>,
) -> Result<(StatusCode, Json<Site>), ApiError> {
    me.require(Policy::ManageSchools)?;
    let school = body_school(&state, &req.school_id).await?;
    let name = text("name", &req.name, 100)?;
    if let Some(device) = &req.device_user_id {
        account(&state, "device_user_id", device, Some(AccountRole::Device)).await?;
    }
    let site = model::Site {
        id: new_id(),
        school_id: school.id,
        name,
        device_user_id: req.device_user_id,
        assistant_user_ids: accounts(&state, "assistant_user_ids", &req.assistant_user_ids, Some(AccountRole::Assistant)).await?,
        created_at: now(&state),
    };
    state.classroom.create_site(&site).await.map_err(terminal_taken)?;
    tracing::info!(by = %me.user.id, site = %site.id, school = %site.school_id, "classroom site created");
    Ok((StatusCode::CREATED, Json(site.into())))
}

/// The one conflict a site can cause.
fn terminal_taken(e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict(_) => ApiError::Conflict("this device account is already the terminal of another site".into()),
        other => other.into(),
    }
}

/// One classroom site.
#[utoipa::path(get, path = "/api/v1/sites/{id}", tag = "classroom", params(("id" = String, Path, description = "Site id")),
    responses((status = 200, body = Site), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn get_site(State(state): State<AppState>, me: CurrentUser, Path(id): Path<String>) -> Result<Json<Site>, ApiError> {
    me.require(Policy::ViewSchools)?;
    Ok(Json(find_site(&state, &id).await?.into()))
}

/// Changes a classroom site.
#[utoipa::path(patch, path = "/api/v1/sites/{id}", tag = "classroom", params(("id" = String, Path, description = "Site id")),
    request_body = UpdateSite,
    responses((status = 200, body = Site), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "The terminal already serves another site", body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn update_site(
    State(state): State<AppState>,
    me: CurrentUser,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateSite>,
) -> Result<Json<Site>, ApiError> {
    me.require(Policy::ManageSchools)?;
    let mut site = find_site(&state, &id).await?;
    if let Some(name) = &req.name {
        site.name = text("name", name, 100)?;
    }
    if let Some(device) = req.device_user_id {
        if let Some(d) = &device {
            account(&state, "device_user_id", d, Some(AccountRole::Device)).await?;
        }
        site.device_user_id = device;
    }
    if let Some(assistants) = &req.assistant_user_ids {
        site.assistant_user_ids = accounts(&state, "assistant_user_ids", assistants, Some(AccountRole::Assistant)).await?;
    }
    if !state.classroom.update_site(&site).await.map_err(terminal_taken)? {
        return Err(ApiError::NotFound("no such classroom site".into()));
    }
    tracing::info!(by = %me.user.id, site = %site.id, "classroom site changed");
    Ok(Json(site.into()))
}

// Courses.

/// Lists courses (a teacher's own for a teacher), of one school if `school_id` is given.
#[utoipa::path(get, path = "/api/v1/courses", tag = "classroom", params(SchoolQuery),
    responses((status = 200, body = [Course]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn list_courses(
    State(state): State<AppState>,
    me: CurrentUser,
    q: Result<Query<SchoolQuery>, QueryRejection>,
) -> Result<Json<Vec<Course>>, ApiError> {
    me.require(Policy::ViewCourses)?;
    let q = query(q)?;
    let teacher = (!me.allows(Policy::ManageSchools)).then_some(me.user.id.0.as_str());
    Ok(all(state.classroom.list_courses(q.school_id.as_deref(), teacher).await?))
}

/// Creates a course.
#[utoipa::path(post, path = "/api/v1/courses", tag = "classroom", request_body = CreateCourse,
    responses((status = 201, body = Course), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn create_course(
    State(state): State<AppState>,
    me: CurrentUser,
    ApiJson(req): ApiJson<CreateCourse>,
) -> Result<(StatusCode, Json<Course>), ApiError> {
    me.require(Policy::ManageSchools)?;
    let school = body_school(&state, &req.school_id).await?;
    let title = text("title", &req.title, 100)?;
    account(&state, "teacher_id", &req.teacher_id, Some(AccountRole::Teacher)).await?;
    let course = model::Course { id: new_id(), school_id: school.id, title, teacher_id: req.teacher_id, created_at: now(&state) };
    state.classroom.create_course(&course).await?;
    tracing::info!(by = %me.user.id, course = %course.id, teacher = %course.teacher_id, "course created");
    Ok((StatusCode::CREATED, Json(course.into())))
}

/// One course.
#[utoipa::path(get, path = "/api/v1/courses/{id}", tag = "classroom", params(("id" = String, Path, description = "Course id")),
    responses((status = 200, body = Course), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn get_course(State(state): State<AppState>, me: CurrentUser, Path(id): Path<String>) -> Result<Json<Course>, ApiError> {
    me.require(Policy::ViewCourses)?;
    let course = find_course(&state, &id).await?;
    check_course(&me, &course)?;
    Ok(Json(course.into()))
}

// Students and enrolments.

/// Lists students, of one school if `school_id` is given.
#[utoipa::path(get, path = "/api/v1/students", tag = "classroom", params(SchoolQuery),
    responses((status = 200, body = [Student]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn list_students(
    State(state): State<AppState>,
    me: CurrentUser,
    q: Result<Query<SchoolQuery>, QueryRejection>,
) -> Result<Json<Vec<Student>>, ApiError> {
    me.require(Policy::ManageSchools)?;
    let q = query(q)?;
    Ok(all(state.classroom.list_students(q.school_id.as_deref()).await?))
}

/// Creates a student.
#[utoipa::path(post, path = "/api/v1/students", tag = "classroom", request_body = CreateStudent,
    responses((status = 201, body = Student), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn create_student(
    State(state): State<AppState>,
    me: CurrentUser,
    ApiJson(req): ApiJson<CreateStudent>,
) -> Result<(StatusCode, Json<Student>), ApiError> {
    me.require(Policy::ManageSchools)?;
    let school = body_school(&state, &req.school_id).await?;
    let student = model::Student { id: new_id(), school_id: school.id, name: text("name", &req.name, 100)?, created_at: now(&state) };
    state.classroom.create_student(&student).await?;
    // The name is personal data: only ids are logged.
    tracing::info!(by = %me.user.id, student = %student.id, "student created");
    Ok((StatusCode::CREATED, Json(student.into())))
}

/// A course's students, each with their newest link.
#[utoipa::path(get, path = "/api/v1/courses/{id}/students", tag = "classroom", params(("id" = String, Path, description = "Course id")),
    responses((status = 200, body = [EnrolledStudent]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn course_students(
    State(state): State<AppState>,
    me: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<Vec<EnrolledStudent>>, ApiError> {
    me.require(Policy::ViewCourses)?;
    let course = find_course(&state, &id).await?;
    check_course(&me, &course)?;
    // Oldest first, so each student's newest link is the one left in the map.
    let mut newest: HashMap<String, model::StudentLink> = HashMap::new();
    for link in state.classroom.links_for_course(&course.id).await? {
        newest.insert(link.student_id.clone(), link);
    }
    let students = state.classroom.enrolled(&course.id).await?;
    Ok(Json(students.into_iter().map(|s| EnrolledStudent { link: newest.remove(&s.id).map(LinkInfo::from), student: s.into() }).collect()))
}

/// Enrols a student in a course (201 if new, 200 if they already were).
#[utoipa::path(post, path = "/api/v1/courses/{id}/students", tag = "classroom", params(("id" = String, Path, description = "Course id")),
    request_body = EnrollStudent,
    responses((status = 201, description = "Enrolled", body = Student), (status = 200, description = "Already enrolled", body = Student),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn enroll(
    State(state): State<AppState>,
    me: CurrentUser,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<EnrollStudent>,
) -> Result<(StatusCode, Json<Student>), ApiError> {
    me.require(Policy::ManageSchools)?;
    let course = find_course(&state, &id).await?;
    let student = match state.classroom.student(&req.student_id).await? {
        Some(s) if s.school_id == course.school_id => s,
        Some(_) => return Err(ApiError::validation("student_id", "a student of another school")),
        None => return Err(ApiError::validation("student_id", "no such student")),
    };
    let newly = state.classroom.enroll(&course.id, &student.id, now(&state)).await?;
    if newly {
        tracing::info!(by = %me.user.id, course = %course.id, student = %student.id, "student enrolled");
    }
    Ok((if newly { StatusCode::CREATED } else { StatusCode::OK }, Json(student.into())))
}

/// Takes a student out of a course; their link for it is revoked.
#[utoipa::path(delete, path = "/api/v1/courses/{id}/students/{student_id}", tag = "classroom",
    params(("id" = String, Path, description = "Course id"), ("student_id" = String, Path, description = "Student id")),
    responses((status = 204, description = "Unenrolled"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn unenroll(
    State(state): State<AppState>,
    me: CurrentUser,
    Path((id, student_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    me.require(Policy::ManageSchools)?;
    let course = find_course(&state, &id).await?;
    if !state.classroom.unenroll(&course.id, &student_id).await? {
        return Err(ApiError::NotFound("this student is not enrolled in the course".into()));
    }
    revoke_live_links(&state, &course.id, &student_id).await?;
    tracing::info!(by = %me.user.id, course = %course.id, student = %student_id, "student unenrolled");
    Ok(StatusCode::NO_CONTENT)
}

/// Revokes a student's live links for a course. Returns how many there were.
async fn revoke_live_links(state: &AppState, course_id: &str, student_id: &str) -> Result<usize, ApiError> {
    let at = now(state);
    let mut revoked = 0;
    for link in state.classroom.links_for_course(course_id).await? {
        if link.student_id == student_id && link.revoked_at.is_none() && state.classroom.revoke_link(&link.id, at).await? {
            revoked += 1;
        }
    }
    Ok(revoked)
}

// Student links.

/// Makes a student's personal link for a course, replacing the one before. The URL is shown
/// this once.
#[utoipa::path(post, path = "/api/v1/courses/{id}/students/{student_id}/link", tag = "classroom",
    params(("id" = String, Path, description = "Course id"), ("student_id" = String, Path, description = "Student id")),
    responses((status = 201, body = CreatedLink), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn create_link(
    State(state): State<AppState>,
    me: CurrentUser,
    Path((id, student_id)): Path<(String, String)>,
) -> Result<(StatusCode, Json<CreatedLink>), ApiError> {
    me.require(Policy::ManageStudentLinks)?;
    let course = find_course(&state, &id).await?;
    check_course(&me, &course)?;
    if !state.classroom.is_enrolled(&course.id, &student_id).await? {
        return Err(ApiError::NotFound("this student is not enrolled in the course".into()));
    }
    let secret: [u8; 32] = rand::random();
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    let link = model::StudentLink { id: new_id(), student_id, course_id: course.id, created_at: now(&state), revoked_at: None };
    state.classroom.create_link(&link, &link_secret_hash(&secret)).await?;
    tracing::info!(by = %me.user.id, course = %link.course_id, student = %link.student_id, link = %link.id, "student link created");
    Ok((StatusCode::CREATED, Json(CreatedLink { link: link.into(), url: format!("/l#{secret}") })))
}

/// Revokes a student's link for a course.
#[utoipa::path(delete, path = "/api/v1/courses/{id}/students/{student_id}/link", tag = "classroom",
    params(("id" = String, Path, description = "Course id"), ("student_id" = String, Path, description = "Student id")),
    responses((status = 204, description = "Revoked"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "No such course, or the student has no live link", body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn revoke_link(
    State(state): State<AppState>,
    me: CurrentUser,
    Path((id, student_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    me.require(Policy::ManageStudentLinks)?;
    let course = find_course(&state, &id).await?;
    check_course(&me, &course)?;
    if revoke_live_links(&state, &course.id, &student_id).await? == 0 {
        return Err(ApiError::NotFound("this student has no live link for the course".into()));
    }
    tracing::info!(by = %me.user.id, course = %course.id, student = %student_id, "student link revoked");
    Ok(StatusCode::NO_CONTENT)
}

// Lessons.

/// Lists lessons by start: all for organizers and admins; for others, those they teach and
/// those of the sites they serve as terminal or assistant.
#[utoipa::path(get, path = "/api/v1/lessons", tag = "classroom", params(LessonQuery),
    responses((status = 200, body = [Lesson]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn list_lessons(
    State(state): State<AppState>,
    me: CurrentUser,
    q: Result<Query<LessonQuery>, QueryRejection>,
) -> Result<Json<Vec<Lesson>>, ApiError> {
    me.require(Policy::ViewLessons)?;
    let q = query(q)?;
    let filter = LessonFilter {
        course_id: q.course_id,
        from: q.from.as_deref().map(|v| instant("from", v)).transpose()?,
        to: q.to.as_deref().map(|v| instant("to", v)).transpose()?,
        ..Default::default()
    };
    if me.allows(Policy::ManageSchools) {
        return Ok(all(state.classroom.list_lessons(&filter).await?));
    }
    let mut scopes = vec![LessonFilter { teacher_id: Some(me.user.id.0.clone()), ..filter.clone() }];
    scopes.extend(my_sites(&state, &me).await?.into_iter().map(|site| LessonFilter { site_id: Some(site), ..filter.clone() }));
    let mut found = BTreeMap::new();
    for scope in &scopes {
        for lesson in state.classroom.list_lessons(scope).await? {
            found.insert(lesson.id.clone(), lesson);
        }
    }
    let mut lessons: Vec<model::Lesson> = found.into_values().collect();
    lessons.sort_by(|a, b| (a.starts_at, &a.id).cmp(&(b.starts_at, &b.id)));
    Ok(all(lessons))
}

/// Schedules a lesson, or a weekly series of them (one per week at the same local time in the
/// school's time zone). Returns every lesson created.
#[utoipa::path(post, path = "/api/v1/lessons", tag = "classroom", request_body = CreateLessons,
    responses((status = 201, body = [Lesson]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn create_lessons(
    State(state): State<AppState>,
    me: CurrentUser,
    ApiJson(req): ApiJson<CreateLessons>,
) -> Result<(StatusCode, Json<Vec<Lesson>>), ApiError> {
    me.require(Policy::ManageSchools)?;
    let course = state.classroom.course(&req.course_id).await?.ok_or_else(|| ApiError::validation("course_id", "no such course"))?;
    let title = text("title", &req.title, 100)?;
    let first_start = instant("starts_at", &req.starts_at)?;
    rules::check_duration(req.duration_min)?;
    let mut seen = HashSet::new();
    for (i, site_id) in req.site_ids.iter().enumerate() {
        let field = format!("site_ids[{i}]");
        if !seen.insert(site_id) {
            return Err(ApiError::validation(field, "listed twice"));
        }
        match state.classroom.site(site_id).await? {
            Some(site) if site.school_id == course.school_id => {}
            Some(_) => return Err(ApiError::validation(field, "a classroom site of another school")),
            None => return Err(ApiError::validation(field, "no such classroom site")),
        }
    }
    // A course's school exists: the foreign key sees to it.
    let school = find_school(&state, &course.school_id).await?;
    let repeat = Repeat::from(req.repeat);
    let starts = rules::occurrences(first_start, &school.time_zone, &repeat)?;
    let series_id = repeat.rrule().map(|_| new_id());
    let created_at = now(&state);
    let lessons: Vec<model::Lesson> = starts
        .into_iter()
        .map(|starts_at| model::Lesson {
            id: new_id(),
            course_id: course.id.clone(),
            teacher_id: course.teacher_id.clone(),
            title: title.clone(),
            starts_at,
            duration_min: req.duration_min,
            site_ids: req.site_ids.clone(),
            series_id: series_id.clone(),
            rrule: repeat.rrule(),
            ended_at: None,
            cancelled_at: None,
            created_at,
        })
        .collect();
    state.classroom.create_lessons(&lessons).await?;
    tracing::info!(by = %me.user.id, course = %course.id, lessons = lessons.len(), series = ?series_id, "lessons scheduled");
    Ok((StatusCode::CREATED, all(lessons)))
}

/// One lesson.
#[utoipa::path(get, path = "/api/v1/lessons/{id}", tag = "classroom", params(("id" = String, Path, description = "Lesson id")),
    responses((status = 200, body = Lesson), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn get_lesson(State(state): State<AppState>, me: CurrentUser, Path(id): Path<String>) -> Result<Json<Lesson>, ApiError> {
    me.require(Policy::ViewLessons)?;
    let lesson = find_lesson(&state, &id).await?;
    let visible = me.allows(Policy::ManageSchools)
        || lesson.teacher_id == me.user.id.0
        || my_sites(&state, &me).await?.iter().any(|s| lesson.site_ids.contains(s));
    if !visible {
        return Err(ApiError::Forbidden("this lesson is not yours or your classroom's".into()));
    }
    Ok(Json(lesson.into()))
}

/// Cancels a lesson (cancelling it again changes nothing).
#[utoipa::path(post, path = "/api/v1/lessons/{id}/cancel", tag = "classroom", params(("id" = String, Path, description = "Lesson id")),
    responses((status = 200, body = Lesson), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "The lesson has ended", body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn cancel_lesson(State(state): State<AppState>, me: CurrentUser, Path(id): Path<String>) -> Result<Json<Lesson>, ApiError> {
    me.require(Policy::ManageSchools)?;
    let lesson = find_lesson(&state, &id).await?;
    if lesson.ended_at.is_some() {
        return Err(ApiError::Conflict("the lesson has ended; it cannot be cancelled".into()));
    }
    if lesson.cancelled_at.is_none() && state.classroom.cancel_lesson(&lesson.id, now(&state)).await? {
        tracing::info!(by = %me.user.id, lesson = %lesson.id, "lesson cancelled");
    }
    Ok(Json(find_lesson(&state, &id).await?.into()))
}
