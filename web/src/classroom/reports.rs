//! Attendance reports, per lesson and per course, as JSON for the pages and as CSV for
//! spreadsheets. Both are recomputed from the stored attendance log on every request, so a
//! report of a running lesson counts up to now.
//!
//! The CSV files start with a UTF-8 byte order mark (Excel on Chinese Windows reads UTF-8 only
//! with it) and give times in the school's time zone as `YYYY-MM-DD HH:MM`, which spreadsheets
//! read as dates.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::json;
use tongxin_classroom::attendance::{self, Record, Status};
use tongxin_classroom::model::{Attendee, Course, Headcount, Lesson};
use tongxin_classroom::rules::{self, Phase};
use tongxin_classroom::store::LessonFilter;
use tongxin_common::unix_millis;

use super::live::lesson_or_404;
use crate::accounts::{AccountRole, UserId};
use crate::auth::CurrentUser;
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// The routes under `/api/v1`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/lessons/{id}/attendance", get(lesson_json))
        .route("/lessons/{id}/attendance.csv", get(lesson_csv))
        .route("/courses/{id}/attendance", get(course_json))
        .route("/courses/{id}/attendance.csv", get(course_csv))
}

/// One attendee's attendance of one lesson, with the name people know them by.
#[derive(Debug, Serialize)]
pub struct Row {
    /// The record.
    #[serde(flatten)]
    pub record: Record,
    /// The teacher's or student's name, or the classroom's.
    pub name: String,
}

/// One lesson's report.
#[derive(Debug, Serialize)]
pub struct LessonReport {
    /// The lesson.
    pub lesson: Lesson,
    /// Its phase now (a report of an open lesson counts up to now).
    pub phase: Phase,
    /// Everyone expected, then anyone else who joined.
    pub records: Vec<Row>,
    /// Pupils counted in each classroom by its assistant.
    pub headcounts: Vec<Headcount>,
}

/// One attendee's lessons of a course, counted by status.
#[derive(Debug, Default, Serialize)]
pub struct Totals {
    /// Who.
    pub attendee: Option<Attendee>,
    /// Their name.
    pub name: String,
    /// Lessons per status (`present`, `late`, `left_early`, `network_dropped`, `absent`).
    pub counts: HashMap<&'static str, u32>,
    /// Minutes present over all lessons.
    pub minutes_present: u32,
}

/// The attendance of one lesson (its teacher, organizers and admins).
#[utoipa::path(get, path = "/api/v1/lessons/{id}/attendance", tag = "classroom", params(("id" = String, Path, description = "The lesson")), responses((status = 200, description = "The lesson, its records (with names) and headcounts"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("session" = []), ("bearer" = [])))]
pub async fn lesson_json(State(state): State<AppState>, me: CurrentUser, Path(id): Path<String>) -> Result<impl IntoResponse, ApiError> {
    let lesson = lesson_or_404(&state, &id).await?;
    let course = course_or_404(&state, &lesson.course_id).await?;
    may_see(&me, &course, Some(&lesson))?;
    let mut names = Names::default();
    Ok(Json(lesson_report(&state, lesson, &mut names).await?))
}

/// The same as CSV with a UTF-8 byte order mark, times in the school's time zone.
#[utoipa::path(get, path = "/api/v1/lessons/{id}/attendance.csv", tag = "classroom", params(("id" = String, Path, description = "The lesson")), responses((status = 200, description = "text/csv"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("session" = []), ("bearer" = [])))]
pub async fn lesson_csv(State(state): State<AppState>, me: CurrentUser, Path(id): Path<String>) -> Result<impl IntoResponse, ApiError> {
    let lesson = lesson_or_404(&state, &id).await?;
    let course = course_or_404(&state, &lesson.course_id).await?;
    may_see(&me, &course, Some(&lesson))?;
    let zone = school_zone(&state, &course).await?;
    let report = lesson_report(&state, lesson, &mut Names::default()).await?;
    let mut csv = Csv::new(&zone);
    csv.header();
    csv.lesson(&report);
    Ok(csv.into_response(&format!("attendance-{}.csv", report.lesson.id)))
}

/// The attendance of every lesson of a course that has started, and per-attendee totals.
#[utoipa::path(get, path = "/api/v1/courses/{id}/attendance", tag = "classroom", params(("id" = String, Path, description = "The course")), responses((status = 200, description = "The course, its started lessons' reports, and totals per attendee"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("session" = []), ("bearer" = [])))]
pub async fn course_json(State(state): State<AppState>, me: CurrentUser, Path(id): Path<String>) -> Result<impl IntoResponse, ApiError> {
    let course = course_or_404(&state, &id).await?;
    may_see(&me, &course, None)?;
    let lessons = course_reports(&state, &course).await?;
    let totals = totals(&lessons);
    Ok(Json(json!({"course": course, "lessons": lessons, "totals": totals})))
}

/// The same as CSV: one row per lesson and attendee.
#[utoipa::path(get, path = "/api/v1/courses/{id}/attendance.csv", tag = "classroom", params(("id" = String, Path, description = "The course")), responses((status = 200, description = "text/csv"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("session" = []), ("bearer" = [])))]
pub async fn course_csv(State(state): State<AppState>, me: CurrentUser, Path(id): Path<String>) -> Result<impl IntoResponse, ApiError> {
    let course = course_or_404(&state, &id).await?;
    may_see(&me, &course, None)?;
    let zone = school_zone(&state, &course).await?;
    let mut csv = Csv::new(&zone);
    csv.header();
    for report in course_reports(&state, &course).await? {
        csv.lesson(&report);
    }
    Ok(csv.into_response(&format!("attendance-course-{}.csv", course.id)))
}

async fn course_or_404(state: &AppState, id: &str) -> Result<Course, ApiError> {
    state.classroom.course(id).await?.ok_or_else(|| ApiError::NotFound("no such course".into()))
}

/// The course's teacher (or, for one lesson, that lesson's teacher), organizers and admins.
fn may_see(me: &CurrentUser, course: &Course, lesson: Option<&Lesson>) -> Result<(), ApiError> {
    let teaches = course.teacher_id == me.user.id.0 || lesson.is_some_and(|l| l.teacher_id == me.user.id.0);
    if teaches || matches!(me.user.role, AccountRole::Admin | AccountRole::Organizer) {
        Ok(())
    } else {
        Err(ApiError::Forbidden("only the course's teacher, organizers and admins see its attendance".into()))
    }
}

async fn school_zone(state: &AppState, course: &Course) -> Result<jiff::tz::TimeZone, ApiError> {
    let school = state.classroom.school(&course.school_id).await?;
    // The zone was checked when the school was saved; UTC only if the system lost it since.
    Ok(school.and_then(|s| jiff::tz::TimeZone::get(&s.time_zone).ok()).unwrap_or(jiff::tz::TimeZone::UTC))
}

/// Who was expected (the teacher, the lesson's classrooms, the course's students) and how they
/// attended, up to now for a lesson still running.
async fn lesson_report(state: &AppState, lesson: Lesson, names: &mut Names) -> Result<LessonReport, ApiError> {
    let timing = state.config.classroom.timing();
    let now = unix_millis(state.clock.now());
    let mut expected = vec![Attendee::Teacher(lesson.teacher_id.clone())];
    expected.extend(lesson.site_ids.iter().cloned().map(Attendee::Classroom));
    expected.extend(state.classroom.enrolled(&lesson.course_id).await?.into_iter().map(|s| Attendee::Student(s.id)));
    let events = state.classroom.events(&lesson.id).await?;
    let mut window = rules::window(&lesson, &timing);
    window.closes_at = window.closes_at.min(now);
    let mut records = Vec::new();
    for record in attendance::classify(&expected, &events, &window, &timing) {
        let name = names.of(state, &record.attendee).await?;
        records.push(Row { record, name });
    }
    let headcounts = state.classroom.headcounts(&lesson.id).await?;
    Ok(LessonReport { phase: rules::phase(&lesson, &timing, now), lesson, records, headcounts })
}

/// The reports of a course's lessons that have started and were not cancelled, oldest first.
async fn course_reports(state: &AppState, course: &Course) -> Result<Vec<LessonReport>, ApiError> {
    let now = unix_millis(state.clock.now());
    let filter = LessonFilter { course_id: Some(course.id.clone()), to: Some(now), ..LessonFilter::default() };
    let mut names = Names::default();
    let mut reports = Vec::new();
    for lesson in state.classroom.list_lessons(&filter).await? {
        if lesson.cancelled_at.is_none() {
            reports.push(lesson_report(state, lesson, &mut names).await?);
        }
    }
    Ok(reports)
}

/// Lessons per status for everyone in the reports, in the order they first appear.
fn totals(reports: &[LessonReport]) -> Vec<Totals> {
    let mut order: Vec<Totals> = Vec::new();
    let mut index: HashMap<Attendee, usize> = HashMap::new();
    for row in reports.iter().flat_map(|r| &r.records) {
        let i = *index.entry(row.record.attendee.clone()).or_insert_with(|| {
            order.push(Totals { attendee: Some(row.record.attendee.clone()), name: row.name.clone(), ..Totals::default() });
            order.len() - 1
        });
        let totals = &mut order[i];
        *totals.counts.entry(row.record.status.as_str()).or_default() += 1;
        totals.minutes_present += row.record.minutes_present;
    }
    for totals in &mut order {
        for status in [Status::Present, Status::Late, Status::LeftEarly, Status::NetworkDropped, Status::Absent] {
            totals.counts.entry(status.as_str()).or_default();
        }
    }
    order
}

/// Names of attendees, looked up once per report.
#[derive(Default)]
struct Names(HashMap<Attendee, String>);

impl Names {
    async fn of(&mut self, state: &AppState, who: &Attendee) -> Result<String, ApiError> {
        if let Some(name) = self.0.get(who) {
            return Ok(name.clone());
        }
        let name = match who {
            Attendee::Teacher(id) | Attendee::Observer(id) => state.accounts.user(&UserId(id.clone())).await?.map(|u| u.display_name),
            Attendee::Classroom(id) => state.classroom.site(id).await?.map(|s| s.name),
            Attendee::Student(id) => state.classroom.student(id).await?.map(|s| s.name),
        };
        let name = name.unwrap_or_default();
        self.0.insert(who.clone(), name.clone());
        Ok(name)
    }
}

/// A CSV attendance file being written.
struct Csv<'a> {
    text: String,
    zone: &'a jiff::tz::TimeZone,
}

impl<'a> Csv<'a> {
    fn new(zone: &'a jiff::tz::TimeZone) -> Self {
        Csv { text: String::from("\u{feff}"), zone }
    }

    fn header(&mut self) {
        self.text.push_str(
            "lesson_start,lesson_title,kind,id,name,status,first_joined,last_left,minutes_present,drops,worst_quality,pupils\r\n",
        );
    }

    fn lesson(&mut self, report: &LessonReport) {
        let pupils: HashMap<&str, u32> = report.headcounts.iter().map(|h| (h.site_id.as_str(), h.pupils)).collect();
        for row in &report.records {
            let r = &row.record;
            let (kind, id) = r.attendee.parts();
            let counted = match &r.attendee {
                Attendee::Classroom(site) => pupils.get(site.as_str()).map(u32::to_string).unwrap_or_default(),
                _ => String::new(),
            };
            let fields = [
                self.time(Some(report.lesson.starts_at)),
                field(&report.lesson.title),
                kind.to_owned(),
                field(id),
                field(&row.name),
                r.status.as_str().to_owned(),
                self.time(r.first_joined),
                self.time(r.last_left),
                r.minutes_present.to_string(),
                r.drops.to_string(),
                r.worst_quality.clone().unwrap_or_default(),
                counted,
            ];
            self.text.push_str(&fields.join(","));
            self.text.push_str("\r\n");
        }
    }

    fn time(&self, at: Option<i64>) -> String {
        at.and_then(|t| jiff::Timestamp::from_millisecond(t).ok())
            .map(|t| t.to_zoned(self.zone.clone()).strftime("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_default()
    }

    fn into_response(self, file: &str) -> impl IntoResponse + use<> {
        let disposition = format!("attachment; filename=\"{file}\"");
        ([(header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()), (header::CONTENT_DISPOSITION, disposition)], self.text)
    }
}

/// One CSV field: quoted when it holds a comma, quote or line break; a leading `=`, `+`, `-` or
/// `@` is neutralised so a spreadsheet never runs a name as a formula.
fn field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@']) { format!("'{text}") } else { text.to_owned() };
    if text.contains([',', '"', '\r', '\n']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text }
}

#[cfg(test)]
mod tests {
    use super::field;

    #[test]
    fn csv_fields_are_quoted_and_never_formulas() {
        assert_eq!(field("王小明"), "王小明");
        assert_eq!(field("Grade 4, room 2"), "\"Grade 4, room 2\"");
        assert_eq!(field("the \"red\" room"), "\"the \"\"red\"\" room\"");
        assert_eq!(field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(field("-1"), "'-1");
        assert_eq!(field("two\nlines"), "\"two\nlines\"");
    }
}
