//! The classroom store: every record of [`crate::model`] in portable SQL over sqlx's `Any`
//! driver, so the same statements run on SQLite and PostgreSQL.
//!
//! Lists come back in a fixed order (creation time, then id; lessons by start) that both
//! backends agree on: text collation differs between them, so nothing is ordered by name.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AssertSqlSafe, Row};
use tongxin_common::Db;

use crate::model::{
    AttendanceEvent, Attendee, Course, Deck, EventKind, Headcount, Lesson, LiveState, Millis, School, Site, SlidePage, Student,
    StudentLink, new_id,
};

/// The migrations of the classroom schema.
pub fn migrator() -> sqlx::migrate::Migrator {
    sqlx::migrate!("./migrations")
}

/// The history table of this crate's migrations.
pub const MIGRATIONS_TABLE: &str = "_tongxin_classroom_migrations";

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique value is taken (a terminal already serving another site), or a row the record
    /// refers to does not exist.
    #[error("{0}")]
    Conflict(String),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    /// A row holds a value this version does not understand.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

/// Which lessons [`ClassroomStore::list_lessons`] returns; every field set narrows the list.
#[derive(Debug, Clone, Default)]
pub struct LessonFilter {
    /// Lessons of this course.
    pub course_id: Option<String>,
    /// Lessons taught by this account.
    pub teacher_id: Option<String>,
    /// Lessons this classroom site joins.
    pub site_id: Option<String>,
    /// Lessons starting at or after this time.
    pub from: Option<Millis>,
    /// Lessons starting before this time.
    pub to: Option<Millis>,
}

/// Schools, sites, courses, students, lessons and their logs over a [`Db`].
#[derive(Debug, Clone)]
pub struct ClassroomStore {
    db: Db,
}

/// A value bound to a dynamically built query.
enum Arg {
    Text(String),
    Int(i64),
}

fn bind_all<'q>(mut q: Query<'q, Any, AnyArguments>, args: &[Arg]) -> Query<'q, Any, AnyArguments> {
    for a in args {
        q = match a {
            Arg::Text(s) => q.bind(s.clone()),
            Arg::Int(i) => q.bind(*i),
        };
    }
    q
}

/// `WHERE` conditions with `$n` placeholders numbered as they are added.
#[derive(Default)]
struct Conditions {
    sql: Vec<String>,
    args: Vec<Arg>,
}

impl Conditions {
    /// Adds `template`, whose `$?` becomes the next placeholder bound to `arg`.
    fn push(&mut self, template: &str, arg: Arg) {
        self.args.push(arg);
        self.sql.push(template.replace("$?", &format!("${}", self.args.len())));
    }

    fn text(mut self, template: &str, value: Option<&str>) -> Self {
        if let Some(v) = value {
            self.push(template, Arg::Text(v.to_owned()));
        }
        self
    }

    fn where_clause(&self) -> String {
        if self.sql.is_empty() { String::new() } else { format!("WHERE {}", self.sql.join(" AND ")) }
    }
}

/// Maps constraint violations to [`StoreError::Conflict`].
fn constraint(what: &str) -> impl FnOnce(sqlx::Error) -> StoreError + '_ {
    move |e| match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict(format!("{what} already exists")),
        sqlx::Error::Database(d) if d.is_foreign_key_violation() => StoreError::Conflict(format!("{what} refers to a missing record")),
        _ => StoreError::Db(e),
    }
}

fn u32_column(row: &AnyRow, column: &str) -> Result<u32, StoreError> {
    let v: i64 = row.try_get(column)?;
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("{column} {v}")))
}

/// The last attendance sequence number handed out in this process.
static LAST_SEQ: AtomicI64 = AtomicI64::new(0);

/// The next attendance sequence number: the wall clock in microseconds, but always above the last
/// one, so events that share a millisecond keep their insertion order, across restarts too.
fn next_seq() -> i64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
    let step = |last: i64| now.max(last.saturating_add(1));
    // The closure always returns Some, so fetch_update cannot fail; both arms hold the old value.
    let last = LAST_SEQ.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| Some(step(last))).unwrap_or_else(|v| v);
    step(last)
}

const SCHOOL_COLUMNS: &str = "s.id, s.name, s.time_zone, s.created_at";
const SITE_COLUMNS: &str = "s.id, s.school_id, s.name, s.device_user_id, s.created_at";
const COURSE_COLUMNS: &str = "id, school_id, title, teacher_id, created_at";
const STUDENT_COLUMNS: &str = "s.id, s.school_id, s.name, s.created_at";
const LINK_COLUMNS: &str = "id, student_id, course_id, created_at, revoked_at";
const LESSON_COLUMNS: &str =
    "l.id, l.course_id, l.teacher_id, l.title, l.starts_at, l.duration_min, l.series_id, l.rrule, l.ended_at, l.cancelled_at, l.created_at";
const DECK_COLUMNS: &str = "id, lesson_id, title, pages, created_at";

fn school_from_row(row: &AnyRow) -> Result<School, StoreError> {
    Ok(School {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        time_zone: row.try_get("time_zone")?,
        head_user_ids: Vec::new(),
        created_at: row.try_get("created_at")?,
    })
}

fn site_from_row(row: &AnyRow) -> Result<Site, StoreError> {
    Ok(Site {
        id: row.try_get("id")?,
        school_id: row.try_get("school_id")?,
        name: row.try_get("name")?,
        device_user_id: row.try_get("device_user_id")?,
        assistant_user_ids: Vec::new(),
        created_at: row.try_get("created_at")?,
    })
}

fn course_from_row(row: &AnyRow) -> Result<Course, StoreError> {
    Ok(Course {
        id: row.try_get("id")?,
        school_id: row.try_get("school_id")?,
        title: row.try_get("title")?,
        teacher_id: row.try_get("teacher_id")?,
        created_at: row.try_get("created_at")?,
    })
}

fn student_from_row(row: &AnyRow) -> Result<Student, StoreError> {
    Ok(Student {
        id: row.try_get("id")?,
        school_id: row.try_get("school_id")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
    })
}

fn link_from_row(row: &AnyRow) -> Result<StudentLink, StoreError> {
    Ok(StudentLink {
        id: row.try_get("id")?,
        student_id: row.try_get("student_id")?,
        course_id: row.try_get("course_id")?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

fn lesson_from_row(row: &AnyRow) -> Result<Lesson, StoreError> {
    Ok(Lesson {
        id: row.try_get("id")?,
        course_id: row.try_get("course_id")?,
        teacher_id: row.try_get("teacher_id")?,
        title: row.try_get("title")?,
        starts_at: row.try_get("starts_at")?,
        duration_min: u32_column(row, "duration_min")?,
        site_ids: Vec::new(),
        series_id: row.try_get("series_id")?,
        rrule: row.try_get("rrule")?,
        ended_at: row.try_get("ended_at")?,
        cancelled_at: row.try_get("cancelled_at")?,
        created_at: row.try_get("created_at")?,
    })
}

fn event_from_row(row: &AnyRow) -> Result<AttendanceEvent, StoreError> {
    let attendee_kind: String = row.try_get("attendee_kind")?;
    let kind: String = row.try_get("kind")?;
    Ok(AttendanceEvent {
        lesson_id: row.try_get("lesson_id")?,
        attendee: Attendee::from_parts(&attendee_kind, row.try_get("attendee_id")?)
            .ok_or_else(|| StoreError::Corrupt(format!("attendee kind {attendee_kind:?}")))?,
        kind: EventKind::parse(&kind).ok_or_else(|| StoreError::Corrupt(format!("event kind {kind:?}")))?,
        detail: row.try_get("detail")?,
        at: row.try_get("occurred_at")?,
    })
}

fn headcount_from_row(row: &AnyRow) -> Result<Headcount, StoreError> {
    Ok(Headcount {
        lesson_id: row.try_get("lesson_id")?,
        site_id: row.try_get("site_id")?,
        pupils: u32_column(row, "pupils")?,
        entered_by: row.try_get("entered_by")?,
        at: row.try_get("entered_at")?,
    })
}

fn deck_from_row(row: &AnyRow) -> Result<Deck, StoreError> {
    let id: String = row.try_get("id")?;
    let pages: String = row.try_get("pages")?;
    let pages: Vec<SlidePage> = serde_json::from_str(&pages).map_err(|e| StoreError::Corrupt(format!("pages of deck {id}: {e}")))?;
    Ok(Deck { id, lesson_id: row.try_get("lesson_id")?, title: row.try_get("title")?, pages, created_at: row.try_get("created_at")? })
}

/// Groups `(owner, member)` rows, already in member order, by owner.
fn group_members(rows: &[AnyRow]) -> Result<HashMap<String, Vec<String>>, StoreError> {
    let mut groups: HashMap<String, Vec<String>> = HashMap::new();
    for row in rows {
        groups.entry(row.try_get("owner")?).or_default().push(row.try_get("member")?);
    }
    Ok(groups)
}

/// Writes the members of a school, site or lesson list (`table (owner_col, member_col, position)`),
/// replacing what was there.
async fn replace_members(
    conn: &mut sqlx::AnyConnection,
    table: &str,
    owner_col: &str,
    member_col: &str,
    owner: &str,
    members: &[String],
    what: &str,
) -> Result<(), StoreError> {
    sqlx::query(AssertSqlSafe(format!("DELETE FROM {table} WHERE {owner_col} = $1"))).bind(owner.to_owned()).execute(&mut *conn).await?;
    let insert = format!("INSERT INTO {table} ({owner_col}, {member_col}, position) VALUES ($1, $2, $3)");
    for (position, member) in members.iter().enumerate() {
        sqlx::query(AssertSqlSafe(insert.clone()))
            .bind(owner.to_owned())
            .bind(member.clone())
            .bind(i64::try_from(position).unwrap_or(i64::MAX))
            .execute(&mut *conn)
            .await
            .map_err(constraint(what))?;
    }
    Ok(())
}

impl ClassroomStore {
    /// A store over `db` (already migrated with [`migrator`]).
    pub fn new(db: Db) -> Self {
        ClassroomStore { db }
    }

    // Schools.

    /// Creates a school with its heads.
    pub async fn create_school(&self, s: &School) -> Result<(), StoreError> {
        let mut tx = self.db.pool().begin().await?;
        sqlx::query("INSERT INTO schools (id, name, time_zone, created_at) VALUES ($1, $2, $3, $4)")
            .bind(s.id.clone())
            .bind(s.name.clone())
            .bind(s.time_zone.clone())
            .bind(s.created_at)
            .execute(&mut *tx)
            .await
            .map_err(constraint("school"))?;
        replace_members(&mut tx, "school_heads", "school_id", "user_id", &s.id, &s.head_user_ids, "school head").await?;
        tx.commit().await?;
        Ok(())
    }

    async fn load_schools(&self, c: Conditions) -> Result<Vec<School>, StoreError> {
        let sql = format!("SELECT {SCHOOL_COLUMNS} FROM schools s {} ORDER BY s.created_at, s.id", c.where_clause());
        let rows = bind_all(sqlx::query(AssertSqlSafe(sql)), &c.args).fetch_all(self.db.pool()).await?;
        let sql = format!(
            "SELECT h.school_id AS owner, h.user_id AS member FROM school_heads h JOIN schools s ON s.id = h.school_id {} \
             ORDER BY h.school_id, h.position",
            c.where_clause()
        );
        let mut heads = group_members(&bind_all(sqlx::query(AssertSqlSafe(sql)), &c.args).fetch_all(self.db.pool()).await?)?;
        rows.iter()
            .map(|row| {
                let mut school = school_from_row(row)?;
                school.head_user_ids = heads.remove(&school.id).unwrap_or_default();
                Ok(school)
            })
            .collect()
    }

    /// A school by id.
    pub async fn school(&self, id: &str) -> Result<Option<School>, StoreError> {
        Ok(self.load_schools(Conditions::default().text("s.id = $?", Some(id))).await?.pop())
    }

    /// Every school, oldest first.
    pub async fn list_schools(&self) -> Result<Vec<School>, StoreError> {
        self.load_schools(Conditions::default()).await
    }

    /// Replaces a school's name, time zone and heads. Returns whether it exists.
    pub async fn update_school(&self, s: &School) -> Result<bool, StoreError> {
        let mut tx = self.db.pool().begin().await?;
        let r = sqlx::query("UPDATE schools SET name = $1, time_zone = $2 WHERE id = $3")
            .bind(s.name.clone())
            .bind(s.time_zone.clone())
            .bind(s.id.clone())
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() == 0 {
            return Ok(false);
        }
        replace_members(&mut tx, "school_heads", "school_id", "user_id", &s.id, &s.head_user_ids, "school head").await?;
        tx.commit().await?;
        Ok(true)
    }

    // Classroom sites.

    /// Creates a site with its assistants. A device account serves one site only: a second
    /// site with the same terminal is a [`StoreError::Conflict`].
    pub async fn create_site(&self, s: &Site) -> Result<(), StoreError> {
        let mut tx = self.db.pool().begin().await?;
        sqlx::query("INSERT INTO sites (id, school_id, name, device_user_id, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(s.id.clone())
            .bind(s.school_id.clone())
            .bind(s.name.clone())
            .bind(s.device_user_id.clone())
            .bind(s.created_at)
            .execute(&mut *tx)
            .await
            .map_err(constraint("a site with this id or terminal"))?;
        replace_members(&mut tx, "site_assistants", "site_id", "user_id", &s.id, &s.assistant_user_ids, "site assistant").await?;
        tx.commit().await?;
        Ok(())
    }

    async fn load_sites(&self, c: Conditions) -> Result<Vec<Site>, StoreError> {
        let sql = format!("SELECT {SITE_COLUMNS} FROM sites s {} ORDER BY s.created_at, s.id", c.where_clause());
        let rows = bind_all(sqlx::query(AssertSqlSafe(sql)), &c.args).fetch_all(self.db.pool()).await?;
        let sql = format!(
            "SELECT a.site_id AS owner, a.user_id AS member FROM site_assistants a JOIN sites s ON s.id = a.site_id {} \
             ORDER BY a.site_id, a.position",
            c.where_clause()
        );
        let mut assistants = group_members(&bind_all(sqlx::query(AssertSqlSafe(sql)), &c.args).fetch_all(self.db.pool()).await?)?;
        rows.iter()
            .map(|row| {
                let mut site = site_from_row(row)?;
                site.assistant_user_ids = assistants.remove(&site.id).unwrap_or_default();
                Ok(site)
            })
            .collect()
    }

    /// A site by id.
    pub async fn site(&self, id: &str) -> Result<Option<Site>, StoreError> {
        Ok(self.load_sites(Conditions::default().text("s.id = $?", Some(id))).await?.pop())
    }

    /// Every site, or a school's, oldest first.
    pub async fn list_sites(&self, school_id: Option<&str>) -> Result<Vec<Site>, StoreError> {
        self.load_sites(Conditions::default().text("s.school_id = $?", school_id)).await
    }

    /// Replaces a site's school, name, terminal and assistants. Returns whether it exists.
    pub async fn update_site(&self, s: &Site) -> Result<bool, StoreError> {
        let mut tx = self.db.pool().begin().await?;
        let r = sqlx::query("UPDATE sites SET school_id = $1, name = $2, device_user_id = $3 WHERE id = $4")
            .bind(s.school_id.clone())
            .bind(s.name.clone())
            .bind(s.device_user_id.clone())
            .bind(s.id.clone())
            .execute(&mut *tx)
            .await
            .map_err(constraint("a site with this terminal"))?;
        if r.rows_affected() == 0 {
            return Ok(false);
        }
        replace_members(&mut tx, "site_assistants", "site_id", "user_id", &s.id, &s.assistant_user_ids, "site assistant").await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The site whose terminal is this device account, if any.
    pub async fn site_for_device(&self, user_id: &str) -> Result<Option<Site>, StoreError> {
        Ok(self.load_sites(Conditions::default().text("s.device_user_id = $?", Some(user_id))).await?.pop())
    }

    /// The sites this account assists.
    pub async fn sites_for_assistant(&self, user_id: &str) -> Result<Vec<Site>, StoreError> {
        let c = Conditions::default().text("s.id IN (SELECT site_id FROM site_assistants WHERE user_id = $?)", Some(user_id));
        self.load_sites(c).await
    }

    // Courses.

    /// Creates a course.
    pub async fn create_course(&self, c: &Course) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO courses (id, school_id, title, teacher_id, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(c.id.clone())
            .bind(c.school_id.clone())
            .bind(c.title.clone())
            .bind(c.teacher_id.clone())
            .bind(c.created_at)
            .execute(self.db.pool())
            .await
            .map_err(constraint("course"))?;
        Ok(())
    }

    /// A course by id.
    pub async fn course(&self, id: &str) -> Result<Option<Course>, StoreError> {
        let sql = format!("SELECT {COURSE_COLUMNS} FROM courses WHERE id = $1");
        let row = sqlx::query(AssertSqlSafe(sql)).bind(id.to_owned()).fetch_optional(self.db.pool()).await?;
        row.as_ref().map(course_from_row).transpose()
    }

    /// Courses, of one school and/or one teacher if given, oldest first.
    pub async fn list_courses(&self, school_id: Option<&str>, teacher_id: Option<&str>) -> Result<Vec<Course>, StoreError> {
        let c = Conditions::default().text("school_id = $?", school_id).text("teacher_id = $?", teacher_id);
        let sql = format!("SELECT {COURSE_COLUMNS} FROM courses {} ORDER BY created_at, id", c.where_clause());
        let rows = bind_all(sqlx::query(AssertSqlSafe(sql)), &c.args).fetch_all(self.db.pool()).await?;
        rows.iter().map(course_from_row).collect()
    }

    // Students and enrolments.

    /// Creates a student.
    pub async fn create_student(&self, s: &Student) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO students (id, school_id, name, created_at) VALUES ($1, $2, $3, $4)")
            .bind(s.id.clone())
            .bind(s.school_id.clone())
            .bind(s.name.clone())
            .bind(s.created_at)
            .execute(self.db.pool())
            .await
            .map_err(constraint("student"))?;
        Ok(())
    }

    /// A student by id.
    pub async fn student(&self, id: &str) -> Result<Option<Student>, StoreError> {
        let sql = format!("SELECT {STUDENT_COLUMNS} FROM students s WHERE s.id = $1");
        let row = sqlx::query(AssertSqlSafe(sql)).bind(id.to_owned()).fetch_optional(self.db.pool()).await?;
        row.as_ref().map(student_from_row).transpose()
    }

    /// Students, of one school if given, oldest first.
    pub async fn list_students(&self, school_id: Option<&str>) -> Result<Vec<Student>, StoreError> {
        let c = Conditions::default().text("s.school_id = $?", school_id);
        let sql = format!("SELECT {STUDENT_COLUMNS} FROM students s {} ORDER BY s.created_at, s.id", c.where_clause());
        let rows = bind_all(sqlx::query(AssertSqlSafe(sql)), &c.args).fetch_all(self.db.pool()).await?;
        rows.iter().map(student_from_row).collect()
    }

    /// Enrols a student in a course. Returns false if they already were.
    pub async fn enroll(&self, course_id: &str, student_id: &str, at: Millis) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "INSERT INTO enrollments (course_id, student_id, created_at) VALUES ($1, $2, $3) ON CONFLICT (course_id, student_id) DO NOTHING",
        )
        .bind(course_id.to_owned())
        .bind(student_id.to_owned())
        .bind(at)
        .execute(self.db.pool())
        .await
        .map_err(constraint("enrolment"))?;
        Ok(r.rows_affected() > 0)
    }

    /// Takes a student out of a course. Returns whether they were in it. Their links stay, but
    /// an unenrolled student's link admits them to nothing.
    pub async fn unenroll(&self, course_id: &str, student_id: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM enrollments WHERE course_id = $1 AND student_id = $2")
            .bind(course_id.to_owned())
            .bind(student_id.to_owned())
            .execute(self.db.pool())
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// The students of a course, in enrolment order.
    pub async fn enrolled(&self, course_id: &str) -> Result<Vec<Student>, StoreError> {
        let sql = format!(
            "SELECT {STUDENT_COLUMNS} FROM students s JOIN enrollments e ON e.student_id = s.id \
             WHERE e.course_id = $1 ORDER BY e.created_at, s.id"
        );
        let rows = sqlx::query(AssertSqlSafe(sql)).bind(course_id.to_owned()).fetch_all(self.db.pool()).await?;
        rows.iter().map(student_from_row).collect()
    }

    /// Whether a student is enrolled in a course.
    pub async fn is_enrolled(&self, course_id: &str, student_id: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 AS one FROM enrollments WHERE course_id = $1 AND student_id = $2")
            .bind(course_id.to_owned())
            .bind(student_id.to_owned())
            .fetch_optional(self.db.pool())
            .await?;
        Ok(row.is_some())
    }

    // Student links.

    /// Stores a new link by the hash of its secret and, in the same transaction, revokes the
    /// student's earlier live links for that course (at `link.created_at`).
    pub async fn create_link(&self, link: &StudentLink, secret_hash: &str) -> Result<(), StoreError> {
        let mut tx = self.db.pool().begin().await?;
        sqlx::query("UPDATE student_links SET revoked_at = $1 WHERE student_id = $2 AND course_id = $3 AND revoked_at IS NULL")
            .bind(link.created_at)
            .bind(link.student_id.clone())
            .bind(link.course_id.clone())
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO student_links (id, secret_hash, student_id, course_id, created_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(link.id.clone())
        .bind(secret_hash.to_owned())
        .bind(link.student_id.clone())
        .bind(link.course_id.clone())
        .bind(link.created_at)
        .bind(link.revoked_at)
        .execute(&mut *tx)
        .await
        .map_err(constraint("student link"))?;
        tx.commit().await?;
        Ok(())
    }

    /// The link whose secret hashes to `secret_hash`, revoked or not: check `revoked_at`.
    pub async fn link_by_hash(&self, secret_hash: &str) -> Result<Option<StudentLink>, StoreError> {
        let sql = format!("SELECT {LINK_COLUMNS} FROM student_links WHERE secret_hash = $1");
        let row = sqlx::query(AssertSqlSafe(sql)).bind(secret_hash.to_owned()).fetch_optional(self.db.pool()).await?;
        row.as_ref().map(link_from_row).transpose()
    }

    /// Every link of a course, revoked ones included, oldest first.
    pub async fn links_for_course(&self, course_id: &str) -> Result<Vec<StudentLink>, StoreError> {
        let sql = format!("SELECT {LINK_COLUMNS} FROM student_links WHERE course_id = $1 ORDER BY created_at, id");
        let rows = sqlx::query(AssertSqlSafe(sql)).bind(course_id.to_owned()).fetch_all(self.db.pool()).await?;
        rows.iter().map(link_from_row).collect()
    }

    /// Revokes a live link. Returns false if there is none by that id, or it was revoked already.
    pub async fn revoke_link(&self, id: &str, at: Millis) -> Result<bool, StoreError> {
        let r = sqlx::query("UPDATE student_links SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(at)
            .bind(id.to_owned())
            .execute(self.db.pool())
            .await?;
        Ok(r.rows_affected() > 0)
    }

    // Lessons.

    /// Creates lessons (a one-off, or every occurrence of a series) in one transaction: all or
    /// none.
    pub async fn create_lessons(&self, lessons: &[Lesson]) -> Result<(), StoreError> {
        let mut tx = self.db.pool().begin().await?;
        for l in lessons {
            sqlx::query(
                "INSERT INTO lessons (id, course_id, teacher_id, title, starts_at, duration_min, series_id, rrule, ended_at, cancelled_at, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(l.id.clone())
            .bind(l.course_id.clone())
            .bind(l.teacher_id.clone())
            .bind(l.title.clone())
            .bind(l.starts_at)
            .bind(i64::from(l.duration_min))
            .bind(l.series_id.clone())
            .bind(l.rrule.clone())
            .bind(l.ended_at)
            .bind(l.cancelled_at)
            .bind(l.created_at)
            .execute(&mut *tx)
            .await
            .map_err(constraint("lesson"))?;
            replace_members(&mut tx, "lesson_sites", "lesson_id", "site_id", &l.id, &l.site_ids, "lesson site").await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn load_lessons(&self, c: Conditions) -> Result<Vec<Lesson>, StoreError> {
        let sql = format!("SELECT {LESSON_COLUMNS} FROM lessons l {} ORDER BY l.starts_at, l.id", c.where_clause());
        let rows = bind_all(sqlx::query(AssertSqlSafe(sql)), &c.args).fetch_all(self.db.pool()).await?;
        let sql = format!(
            "SELECT ls.lesson_id AS owner, ls.site_id AS member FROM lesson_sites ls JOIN lessons l ON l.id = ls.lesson_id {} \
             ORDER BY ls.lesson_id, ls.position",
            c.where_clause()
        );
        let mut sites = group_members(&bind_all(sqlx::query(AssertSqlSafe(sql)), &c.args).fetch_all(self.db.pool()).await?)?;
        rows.iter()
            .map(|row| {
                let mut lesson = lesson_from_row(row)?;
                lesson.site_ids = sites.remove(&lesson.id).unwrap_or_default();
                Ok(lesson)
            })
            .collect()
    }

    /// A lesson by id.
    pub async fn lesson(&self, id: &str) -> Result<Option<Lesson>, StoreError> {
        Ok(self.load_lessons(Conditions::default().text("l.id = $?", Some(id))).await?.pop())
    }

    /// The lessons `f` selects, by start time (cancelled and ended ones included).
    pub async fn list_lessons(&self, f: &LessonFilter) -> Result<Vec<Lesson>, StoreError> {
        let mut c = Conditions::default()
            .text("l.course_id = $?", f.course_id.as_deref())
            .text("l.teacher_id = $?", f.teacher_id.as_deref())
            .text("l.id IN (SELECT lesson_id FROM lesson_sites WHERE site_id = $?)", f.site_id.as_deref());
        if let Some(from) = f.from {
            c.push("l.starts_at >= $?", Arg::Int(from));
        }
        if let Some(to) = f.to {
            c.push("l.starts_at < $?", Arg::Int(to));
        }
        self.load_lessons(c).await
    }

    /// Marks a lesson ended. Returns false if there is no such lesson or it had ended already.
    pub async fn set_lesson_ended(&self, id: &str, at: Millis) -> Result<bool, StoreError> {
        let r = sqlx::query("UPDATE lessons SET ended_at = $1 WHERE id = $2 AND ended_at IS NULL")
            .bind(at)
            .bind(id.to_owned())
            .execute(self.db.pool())
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Cancels a lesson. Returns false if there is no such lesson, or it was cancelled or has
    /// ended already.
    pub async fn cancel_lesson(&self, id: &str, at: Millis) -> Result<bool, StoreError> {
        let r = sqlx::query("UPDATE lessons SET cancelled_at = $1 WHERE id = $2 AND cancelled_at IS NULL AND ended_at IS NULL")
            .bind(at)
            .bind(id.to_owned())
            .execute(self.db.pool())
            .await?;
        Ok(r.rows_affected() > 0)
    }

    // Attendance.

    /// Appends an event to a lesson's attendance log.
    pub async fn record_event(&self, e: &AttendanceEvent) -> Result<(), StoreError> {
        let (attendee_kind, attendee_id) = Attendee::parts(&e.attendee);
        sqlx::query(
            "INSERT INTO attendance_events (id, lesson_id, attendee_kind, attendee_id, kind, detail, occurred_at, seq) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(new_id())
        .bind(e.lesson_id.clone())
        .bind(attendee_kind)
        .bind(attendee_id.to_owned())
        .bind(e.kind.as_str())
        .bind(e.detail.clone())
        .bind(e.at)
        .bind(next_seq())
        .execute(self.db.pool())
        .await
        .map_err(constraint("attendance event"))?;
        Ok(())
    }

    /// A lesson's attendance log, by time and, within a millisecond, in the order recorded.
    pub async fn events(&self, lesson_id: &str) -> Result<Vec<AttendanceEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT lesson_id, attendee_kind, attendee_id, kind, detail, occurred_at FROM attendance_events \
             WHERE lesson_id = $1 ORDER BY occurred_at, seq",
        )
        .bind(lesson_id.to_owned())
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// Records a classroom's headcount for a lesson, replacing an earlier count.
    pub async fn set_headcount(&self, h: &Headcount) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO headcounts (lesson_id, site_id, pupils, entered_by, entered_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (lesson_id, site_id) DO UPDATE SET pupils = excluded.pupils, entered_by = excluded.entered_by, \
             entered_at = excluded.entered_at",
        )
        .bind(h.lesson_id.clone())
        .bind(h.site_id.clone())
        .bind(i64::from(h.pupils))
        .bind(h.entered_by.clone())
        .bind(h.at)
        .execute(self.db.pool())
        .await
        .map_err(constraint("headcount"))?;
        Ok(())
    }

    /// A lesson's headcounts, one per site that entered one, by site id.
    pub async fn headcounts(&self, lesson_id: &str) -> Result<Vec<Headcount>, StoreError> {
        let rows =
            sqlx::query("SELECT lesson_id, site_id, pupils, entered_by, entered_at FROM headcounts WHERE lesson_id = $1 ORDER BY site_id")
                .bind(lesson_id.to_owned())
                .fetch_all(self.db.pool())
                .await?;
        rows.iter().map(headcount_from_row).collect()
    }

    // Slides.

    /// Stores a deck's record (its pages' files are written by [`crate::slides`]).
    pub async fn create_deck(&self, d: &Deck) -> Result<(), StoreError> {
        // Plain strings and integers always serialize; a failure would be a bug, reported as corrupt data.
        let pages = serde_json::to_string(&d.pages).map_err(|e| StoreError::Corrupt(format!("pages of deck {}: {e}", d.id)))?;
        sqlx::query("INSERT INTO decks (id, lesson_id, title, pages, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(d.id.clone())
            .bind(d.lesson_id.clone())
            .bind(d.title.clone())
            .bind(pages)
            .bind(d.created_at)
            .execute(self.db.pool())
            .await
            .map_err(constraint("deck"))?;
        Ok(())
    }

    /// A deck by id.
    pub async fn deck(&self, id: &str) -> Result<Option<Deck>, StoreError> {
        let sql = format!("SELECT {DECK_COLUMNS} FROM decks WHERE id = $1");
        let row = sqlx::query(AssertSqlSafe(sql)).bind(id.to_owned()).fetch_optional(self.db.pool()).await?;
        row.as_ref().map(deck_from_row).transpose()
    }

    /// A lesson's decks, oldest first.
    pub async fn decks(&self, lesson_id: &str) -> Result<Vec<Deck>, StoreError> {
        let sql = format!("SELECT {DECK_COLUMNS} FROM decks WHERE lesson_id = $1 ORDER BY created_at, id");
        let rows = sqlx::query(AssertSqlSafe(sql)).bind(lesson_id.to_owned()).fetch_all(self.db.pool()).await?;
        rows.iter().map(deck_from_row).collect()
    }

    // Live state.

    /// Saves a running lesson's shared state, replacing the last one.
    pub async fn save_live(&self, lesson_id: &str, state: &LiveState, at: Millis) -> Result<(), StoreError> {
        let json = serde_json::to_string(state).map_err(|e| StoreError::Corrupt(format!("live state of {lesson_id}: {e}")))?;
        sqlx::query(
            "INSERT INTO lesson_live (lesson_id, state, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (lesson_id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
        )
        .bind(lesson_id.to_owned())
        .bind(json)
        .bind(at)
        .execute(self.db.pool())
        .await
        .map_err(constraint("live state"))?;
        Ok(())
    }

    /// A lesson's last saved shared state, if it ever ran.
    pub async fn live(&self, lesson_id: &str) -> Result<Option<LiveState>, StoreError> {
        let row = sqlx::query("SELECT state FROM lesson_live WHERE lesson_id = $1")
            .bind(lesson_id.to_owned())
            .fetch_optional(self.db.pool())
            .await?;
        let Some(row) = row else { return Ok(None) };
        let json: String = row.try_get("state")?;
        serde_json::from_str(&json).map(Some).map_err(|e| StoreError::Corrupt(format!("live state of {lesson_id}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attendees_round_trip_through_their_columns() {
        for a in
            [Attendee::Teacher("t".into()), Attendee::Classroom("c".into()), Attendee::Student("s".into()), Attendee::Observer("o".into())]
        {
            let (kind, id) = Attendee::parts(&a);
            assert_eq!(Attendee::from_parts(kind, id.to_owned()), Some(a.clone()));
        }
        assert_eq!(Attendee::from_parts("visitor", "x".into()), None);
    }

    #[test]
    fn sequence_numbers_increase_even_within_a_microsecond() {
        let seqs: Vec<i64> = (0..1000).map(|_| next_seq()).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn conditions_number_their_placeholders() {
        let mut c = Conditions::default().text("a = $?", Some("x")).text("b = $?", None).text("c = $?", Some("y"));
        c.push("d < $?", Arg::Int(3));
        assert_eq!(c.where_clause(), "WHERE a = $1 AND c = $2 AND d < $3");
        assert_eq!(Conditions::default().where_clause(), "");
    }
}
