//! The classroom records. Times are Unix milliseconds in UTC (`i64`), the unit every table
//! stores; a school's IANA time zone is kept only to show and to plan local times.
//!
//! Account ids (teachers, assistants, terminals, school heads) are the web crate's user ids as
//! text: this crate does not depend on the accounts module, and its tables do not reference
//! `users` with foreign keys, so it migrates on its own.

use serde::{Deserialize, Serialize};
use tongxin_common::{Identity, RoomName};

/// Unix milliseconds, UTC.
pub type Millis = i64;

/// A new random id: 16 lowercase hex characters (64 bits).
pub fn new_id() -> String {
    let bytes: [u8; 8] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An urban school that runs lessons.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct School {
    /// The id.
    pub id: String,
    /// The name.
    pub name: String,
    /// IANA time zone, e.g. `Asia/Shanghai`.
    pub time_zone: String,
    /// Accounts that head the school: they may watch its lessons as hidden observers.
    pub head_user_ids: Vec<String>,
    /// When it was created.
    pub created_at: Millis,
}

/// A remote classroom site: one screen and camera for a whole room of pupils.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Site {
    /// The id.
    pub id: String,
    /// The school whose lessons it joins.
    pub school_id: String,
    /// E.g. "Lianghe village school, grade 4".
    pub name: String,
    /// The terminal's device account, which joins lessons for the room.
    pub device_user_id: Option<String>,
    /// On-site assistants' accounts.
    pub assistant_user_ids: Vec<String>,
    /// When it was created.
    pub created_at: Millis,
}

/// A course: a subject taught by one teacher to students and classroom sites.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Course {
    /// The id.
    pub id: String,
    /// The school.
    pub school_id: String,
    /// E.g. "Mathematics, grade 4".
    pub title: String,
    /// The teacher's account.
    pub teacher_id: String,
    /// When it was created.
    pub created_at: Millis,
}

/// A student who joins from home (a phone) with a personal link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Student {
    /// The id.
    pub id: String,
    /// The school.
    pub school_id: String,
    /// The name the teacher sees (personal data: never logged).
    pub name: String,
    /// When it was created.
    pub created_at: Millis,
}

/// How a lesson repeats. Stored as an RFC 5545 `RRULE` value, so full scheduling can come later
/// without a migration; today only one-off and weekly lessons are created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Repeat {
    /// Once.
    Once,
    /// Every week at the same local time, `count` lessons in all (2–52).
    Weekly {
        /// How many lessons in the series, the first included.
        count: u32,
    },
}

impl Repeat {
    /// The RFC 5545 `RRULE` value (`None` for a one-off lesson).
    pub fn rrule(&self) -> Option<String> {
        match self {
            Repeat::Once => None,
            Repeat::Weekly { count } => Some(format!("FREQ=WEEKLY;COUNT={count}")),
        }
    }
}

/// One lesson: an occurrence with its own room, attendance and live state. A weekly series is
/// a row per occurrence sharing a `series_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lesson {
    /// The id.
    pub id: String,
    /// The course.
    pub course_id: String,
    /// The teacher's account (the course's teacher unless a substitute was set).
    pub teacher_id: String,
    /// E.g. "Fractions (2)".
    pub title: String,
    /// Scheduled start, UTC ms.
    pub starts_at: Millis,
    /// Scheduled length in minutes (5–480).
    pub duration_min: u32,
    /// The classroom sites that join.
    pub site_ids: Vec<String>,
    /// The series this occurrence belongs to, if it repeats.
    pub series_id: Option<String>,
    /// The series rule, e.g. `FREQ=WEEKLY;COUNT=8`.
    pub rrule: Option<String>,
    /// When the teacher ended it (the room closed), if so.
    pub ended_at: Option<Millis>,
    /// When it was cancelled, if so.
    pub cancelled_at: Option<Millis>,
    /// When it was created.
    pub created_at: Millis,
}

impl Lesson {
    /// The scheduled end, UTC ms.
    pub fn ends_at(&self) -> Millis {
        self.starts_at + i64::from(self.duration_min) * 60_000
    }

    /// The lesson's room.
    pub fn room(&self) -> RoomName {
        RoomName::parse(&format!("lesson-{}", self.id)).expect("lesson ids are hex, so the room name is valid")
    }
}

/// A personal, revocable link a student uses to join every lesson of one course without a
/// password. Only the SHA-256 of the secret is stored; the secret is shown once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StudentLink {
    /// The id (not the secret).
    pub id: String,
    /// Whose link.
    pub student_id: String,
    /// For which course.
    pub course_id: String,
    /// When it was made.
    pub created_at: Millis,
    /// When it was revoked, if so.
    pub revoked_at: Option<Millis>,
}

/// Who takes part in a lesson, and as what. Each maps to one room identity, so room events
/// map back to the attendee.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Attendee {
    /// The lesson's teacher (account id).
    Teacher(String),
    /// A remote classroom's terminal (site id).
    Classroom(String),
    /// A student at home (student id).
    Student(String),
    /// A hidden observer, e.g. a school head (account id).
    Observer(String),
}

impl Attendee {
    /// The room identity: `teacher:<id>`, `classroom:<id>`, `student:<id>`, `observer:<id>`.
    pub fn identity(&self) -> Identity {
        let (kind, id) = self.parts();
        Identity::parse(&format!("{kind}:{id}")).expect("ids are short and printable")
    }

    /// The attendee a room identity names, if it names one.
    pub fn from_identity(identity: &Identity) -> Option<Attendee> {
        let (kind, id) = identity.as_str().split_once(':')?;
        Attendee::from_parts(kind, id.to_owned())
    }

    /// The attendee of a kind (`teacher`, `classroom`, `student`, `observer`) and an id.
    pub fn from_parts(kind: &str, id: String) -> Option<Attendee> {
        if id.is_empty() {
            return None;
        }
        Some(match kind {
            "teacher" => Attendee::Teacher(id),
            "classroom" => Attendee::Classroom(id),
            "student" => Attendee::Student(id),
            "observer" => Attendee::Observer(id),
            _ => return None,
        })
    }

    /// The kind's wire name and the id.
    pub fn parts(&self) -> (&'static str, &str) {
        match self {
            Attendee::Teacher(id) => ("teacher", id),
            Attendee::Classroom(id) => ("classroom", id),
            Attendee::Student(id) => ("student", id),
            Attendee::Observer(id) => ("observer", id),
        }
    }
}

/// What the attendance log records about one attendee of one lesson.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// Asked for a join token (a lesson link opened, a terminal pressed "join"): an attempt,
    /// whether or not the connection then came up.
    Attempt,
    /// Joined the room.
    Joined,
    /// Left the room (`reason` says why: left, timeout, kicked, replaced, room_closed).
    Left,
    /// The link's quality rating changed (`reason` holds the new rating).
    Quality,
}

impl EventKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Attempt => "attempt",
            EventKind::Joined => "joined",
            EventKind::Left => "left",
            EventKind::Quality => "quality",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<EventKind> {
        [EventKind::Attempt, EventKind::Joined, EventKind::Left, EventKind::Quality].into_iter().find(|k| k.as_str() == s)
    }
}

/// One row of a lesson's attendance log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttendanceEvent {
    /// The lesson.
    pub lesson_id: String,
    /// Who.
    pub attendee: Attendee,
    /// What happened.
    pub kind: EventKind,
    /// For `Left`: the leave reason's wire name; for `Quality`: the rating's wire name.
    pub detail: Option<String>,
    /// When, UTC ms.
    pub at: Millis,
}

/// The number of pupils an assistant counted in a classroom for a lesson.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Headcount {
    /// The lesson.
    pub lesson_id: String,
    /// The classroom site.
    pub site_id: String,
    /// Pupils in the room (0–500).
    pub pupils: u32,
    /// Who entered it (account id).
    pub entered_by: String,
    /// When.
    pub at: Millis,
}

/// One page of a slide deck: a JPEG stored under its content hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlidePage {
    /// Lowercase hex SHA-256 of the JPEG bytes: the file name and the URL.
    pub hash: String,
    /// Pixels.
    pub width: u32,
    /// Pixels.
    pub height: u32,
    /// Size of the JPEG.
    pub bytes: u32,
}

/// A slide deck uploaded for a lesson.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deck {
    /// The id.
    pub id: String,
    /// The lesson.
    pub lesson_id: String,
    /// The uploaded file's name, e.g. "fractions.pdf".
    pub title: String,
    /// The pages in order.
    pub pages: Vec<SlidePage>,
    /// When it was uploaded.
    pub created_at: Millis,
}

/// A running lesson's shared state: what a late joiner or a reconnecting terminal needs to
/// catch up. Persisted on every change, so a server restart loses none of it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveState {
    /// The classroom on stage (site id): its audio and full video reach everyone.
    pub stage: Option<String>,
    /// Raised hands in the order they were raised (site ids).
    pub hands: Vec<String>,
    /// Chat is locked: only the teacher may send.
    pub chat_locked: bool,
    /// The deck being shown, if any.
    pub deck_id: Option<String>,
    /// The page shown (0-based).
    pub page: u32,
    /// Bumped on every change, so clients can drop stale updates.
    pub version: u64,
}
