//! Pure decisions about lessons, with time always an argument: when a lesson's room is open,
//! who may join it and as what, the join grant each kind of attendee gets, and the dates of a
//! weekly series in the school's time zone.

use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::{Span, Timestamp};
use serde::{Deserialize, Serialize};
use tongxin_common::{JoinGrant, RoomRole};

use crate::model::{Attendee, Lesson, Millis, Repeat};

/// How long a join token lives. Short, because the client fetches a fresh one on every full
/// rejoin; a reconnect within the server's grace period needs none.
pub const TOKEN_TTL: Duration = Duration::from_secs(10 * 60);

/// The lesson lengths accepted, in minutes.
const DURATION_MIN: std::ops::RangeInclusive<u32> = 5..=480;
/// The lengths of a weekly series accepted, the first lesson included.
const WEEKLY_COUNT: std::ops::RangeInclusive<u32> = 2..=52;

/// The margins around a lesson's scheduled time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long before the start the room opens (15 min).
    pub open_before: Duration,
    /// How long after the start a first join counts as late (5 min).
    pub late_after: Duration,
    /// How long before the end a final leave counts as leaving early (5 min).
    pub early_before: Duration,
    /// How long after the scheduled end the room stays joinable unless the teacher ends the
    /// lesson first (30 min): lessons overrun.
    pub overrun: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        const MINUTE: u64 = 60;
        Timing {
            open_before: Duration::from_secs(15 * MINUTE),
            late_after: Duration::from_secs(5 * MINUTE),
            early_before: Duration::from_secs(5 * MINUTE),
            overrun: Duration::from_secs(30 * MINUTE),
        }
    }
}

/// A duration as milliseconds, saturating (no real margin comes near the limit).
pub(crate) fn millis(d: Duration) -> Millis {
    Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
}

/// The instants that bound one lesson, UTC ms: joinable in `[opens_at, closes_at)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// When the room opens for joining.
    pub opens_at: Millis,
    /// The scheduled start.
    pub starts_at: Millis,
    /// The scheduled end.
    pub ends_at: Millis,
    /// When joining stops: the teacher ending the lesson, or the overrun running out, whichever
    /// comes first.
    pub closes_at: Millis,
}

/// The window of `lesson`. A lesson the teacher ended closes at `ended_at` (capped at the end
/// of the overrun); a cancelled lesson keeps its window, [`phase`] says it is cancelled.
pub fn window(lesson: &Lesson, timing: &Timing) -> Window {
    let ends_at = lesson.ends_at();
    let overrun_end = ends_at.saturating_add(millis(timing.overrun));
    Window {
        opens_at: lesson.starts_at.saturating_sub(millis(timing.open_before)),
        starts_at: lesson.starts_at,
        ends_at,
        closes_at: lesson.ended_at.map_or(overrun_end, |ended| ended.min(overrun_end)),
    }
}

/// Where a lesson stands at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Not open for joining yet.
    Scheduled,
    /// Joinable now.
    Open,
    /// Ended by the teacher, or past its window.
    Over,
    /// Cancelled: it will not take place.
    Cancelled,
}

impl Phase {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Scheduled => "scheduled",
            Phase::Open => "open",
            Phase::Over => "over",
            Phase::Cancelled => "cancelled",
        }
    }
}

/// The phase of `lesson` at `now`. Cancellation wins over everything, then the teacher ending
/// it (even before it opened); otherwise it is open in `[opens_at, closes_at)`.
pub fn phase(lesson: &Lesson, timing: &Timing, now: Millis) -> Phase {
    let w = window(lesson, timing);
    if lesson.cancelled_at.is_some() {
        Phase::Cancelled
    } else if lesson.ended_at.is_some() || now >= w.closes_at {
        Phase::Over
    } else if now < w.opens_at {
        Phase::Scheduled
    } else {
        Phase::Open
    }
}

/// Who asks to join a lesson, as the API layer resolved them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller<'a> {
    /// A signed-in account.
    Account {
        /// The account's id.
        user_id: &'a str,
        /// The account is a platform admin.
        is_admin: bool,
        /// The site whose terminal this account is, if it is a device account.
        device_site: Option<&'a str>,
        /// The account heads the lesson's school.
        heads_school: bool,
    },
    /// A student with a personal link.
    StudentLink {
        /// The link's student.
        student_id: &'a str,
        /// The link is for the lesson's course.
        enrolled: bool,
        /// The link was revoked.
        revoked: bool,
    },
}

/// Why a caller may not join a lesson (now).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The caller takes no part in this lesson.
    #[error("you are not invited to this lesson")]
    NotInvited,
    /// The student's link was revoked.
    #[error("this lesson link was revoked; ask the school for a new one")]
    LinkRevoked,
    /// Too early: the room opens at `opens_at`.
    #[error("the lesson is not open yet; it opens at {}", utc(*opens_at))]
    NotYetOpen {
        /// When the room opens, UTC ms.
        opens_at: Millis,
    },
    /// The lesson ended or its window passed.
    #[error("the lesson is over")]
    Over,
    /// The lesson was cancelled.
    #[error("the lesson was cancelled")]
    Cancelled,
}

impl Refusal {
    /// A stable code for clients: `not_invited`, `link_revoked`, `not_open_yet`, `over`,
    /// `cancelled`.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::NotInvited => "not_invited",
            Refusal::LinkRevoked => "link_revoked",
            Refusal::NotYetOpen { .. } => "not_open_yet",
            Refusal::Over => "over",
            Refusal::Cancelled => "cancelled",
        }
    }
}

/// An instant as RFC 3339 UTC text, for messages.
fn utc(at: Millis) -> String {
    Timestamp::from_millisecond(at).map_or_else(|_| format!("{at} ms"), |t| t.to_string())
}

/// Decides whether `caller` may join `lesson` at `now`, and as what.
///
/// Who is checked before when: a caller who takes no part gets [`Refusal::NotInvited`] whatever
/// the time, so the schedule only reaches those invited. Then the lesson must be open: not
/// cancelled, not ended, and `now` in `[opens_at, closes_at)`.
pub fn admit(lesson: &Lesson, caller: &Caller<'_>, now: Millis, timing: &Timing) -> Result<Attendee, Refusal> {
    let attendee = match *caller {
        Caller::Account { user_id, .. } if user_id == lesson.teacher_id => Attendee::Teacher(user_id.to_owned()),
        Caller::Account { device_site: Some(site), .. } => {
            if !lesson.site_ids.iter().any(|s| s == site) {
                return Err(Refusal::NotInvited);
            }
            Attendee::Classroom(site.to_owned())
        }
        Caller::Account { user_id, is_admin, heads_school, .. } => {
            if !(is_admin || heads_school) {
                return Err(Refusal::NotInvited);
            }
            Attendee::Observer(user_id.to_owned())
        }
        Caller::StudentLink { revoked: true, .. } => return Err(Refusal::LinkRevoked),
        Caller::StudentLink { enrolled: false, .. } => return Err(Refusal::NotInvited),
        Caller::StudentLink { student_id, .. } => Attendee::Student(student_id.to_owned()),
    };
    match phase(lesson, timing, now) {
        Phase::Open => Ok(attendee),
        Phase::Scheduled => Err(Refusal::NotYetOpen { opens_at: window(lesson, timing).opens_at }),
        Phase::Over => Err(Refusal::Over),
        Phase::Cancelled => Err(Refusal::Cancelled),
    }
}

/// The join grant for an admitted attendee. Students never publish media (they watch from
/// home); a locked chat takes data away from classrooms and students; an observer is hidden
/// and only watches.
pub fn grant(attendee: &Attendee, name: Option<String>, lesson: &Lesson, chat_locked: bool) -> JoinGrant {
    let (role, can_publish, can_publish_data, hidden) = match attendee {
        Attendee::Teacher(_) => (RoomRole::Teacher, true, true, false),
        Attendee::Classroom(_) => (RoomRole::Classroom, true, !chat_locked, false),
        Attendee::Student(_) => (RoomRole::Student, false, !chat_locked, false),
        Attendee::Observer(_) => (RoomRole::Observer, false, false, true),
    };
    JoinGrant { room: lesson.room(), identity: attendee.identity(), name, role, can_publish, can_subscribe: true, can_publish_data, hidden }
}

/// A schedule value that cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {message}")]
pub struct RuleError {
    /// The field at fault, as the API names it (`repeat.count`, `time_zone`, `duration_min`).
    pub field: &'static str,
    /// What is wrong with it.
    pub message: String,
}

/// Checks an IANA time zone name against the system's tzdata.
pub fn check_time_zone(tz: &str) -> Result<(), RuleError> {
    zone(tz).map(drop)
}

fn zone(tz: &str) -> Result<TimeZone, RuleError> {
    TimeZone::get(tz).map_err(|_| RuleError {
        field: "time_zone",
        message: format!("unknown time zone {tz:?}; expected an IANA name such as Asia/Shanghai"),
    })
}

/// Checks a lesson length in minutes (5–480).
pub fn check_duration(min: u32) -> Result<(), RuleError> {
    if DURATION_MIN.contains(&min) {
        return Ok(());
    }
    Err(RuleError { field: "duration_min", message: format!("a lesson lasts {} to {} minutes", DURATION_MIN.start(), DURATION_MIN.end()) })
}

/// The start of every lesson of a series, UTC ms, the first included. A weekly series keeps
/// the same local wall time in `time_zone` across daylight-saving changes; a wall time that
/// does not exist on some date (a spring-forward gap) moves forward by the gap, on that date only.
pub fn occurrences(first_start: Millis, time_zone: &str, repeat: &Repeat) -> Result<Vec<Millis>, RuleError> {
    let tz = zone(time_zone)?;
    let count = match *repeat {
        Repeat::Once => return Ok(vec![first_start]),
        Repeat::Weekly { count } if WEEKLY_COUNT.contains(&count) => count,
        Repeat::Weekly { .. } => {
            return Err(RuleError {
                field: "repeat.count",
                message: format!("a weekly series has {} to {} lessons", WEEKLY_COUNT.start(), WEEKLY_COUNT.end()),
            });
        }
    };
    let out_of_range = || RuleError { field: "starts_at", message: "the series runs outside the supported dates".into() };
    let first = Timestamp::from_millisecond(first_start).map_err(|_| out_of_range())?.to_zoned(tz);
    // Each week is counted from the first lesson, so a gap-shifted date does not shift the rest.
    (0..i64::from(count))
        .map(|week| first.checked_add(Span::new().weeks(week)).map(|z| z.timestamp().as_millisecond()).map_err(|_| out_of_range()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Millis = 60_000;
    /// 2025-03-03T08:00:00Z, a Monday.
    const T0: Millis = 1_740_988_800_000;

    fn lesson() -> Lesson {
        Lesson {
            id: "00000000000000aa".into(),
            course_id: "c1".into(),
            teacher_id: "teacher-1".into(),
            title: "Fractions (2)".into(),
            starts_at: T0,
            duration_min: 45,
            site_ids: vec!["site-a".into(), "site-b".into()],
            series_id: None,
            rrule: None,
            ended_at: None,
            cancelled_at: None,
            created_at: T0 - 7 * 24 * 60 * MIN,
        }
    }

    fn ended(at: Millis) -> Lesson {
        Lesson { ended_at: Some(at), ..lesson() }
    }

    fn cancelled() -> Lesson {
        Lesson { cancelled_at: Some(T0 - 60 * MIN), ..lesson() }
    }

    #[test]
    fn t0_is_the_monday_the_tests_assume() {
        assert_eq!(Timestamp::from_millisecond(T0).unwrap().to_string(), "2025-03-03T08:00:00Z");
    }

    #[test]
    fn windows() {
        let t = Timing::default();
        let cases = [
            ("as scheduled", lesson(), T0 + 75 * MIN),
            ("ended early by the teacher", ended(T0 + 30 * MIN), T0 + 30 * MIN),
            ("ended during the overrun", ended(T0 + 50 * MIN), T0 + 50 * MIN),
            ("ended after the overrun ran out", ended(T0 + 90 * MIN), T0 + 75 * MIN),
            ("cancelled keeps its window", cancelled(), T0 + 75 * MIN),
        ];
        for (name, l, closes_at) in cases {
            assert_eq!(window(&l, &t), Window { opens_at: T0 - 15 * MIN, starts_at: T0, ends_at: T0 + 45 * MIN, closes_at }, "{name}");
        }
        let tight = Timing { open_before: Duration::ZERO, overrun: Duration::ZERO, ..t };
        assert_eq!(window(&lesson(), &tight), Window { opens_at: T0, starts_at: T0, ends_at: T0 + 45 * MIN, closes_at: T0 + 45 * MIN });
    }

    #[test]
    fn phase_boundaries() {
        let t = Timing::default();
        let closes = T0 + 75 * MIN;
        let cases = [
            ("long before", lesson(), T0 - 60 * MIN, Phase::Scheduled),
            ("1 ms before it opens", lesson(), T0 - 15 * MIN - 1, Phase::Scheduled),
            ("exactly at opens_at", lesson(), T0 - 15 * MIN, Phase::Open),
            ("at the start", lesson(), T0, Phase::Open),
            ("at the scheduled end", lesson(), T0 + 45 * MIN, Phase::Open),
            ("1 ms before closes_at", lesson(), closes - 1, Phase::Open),
            ("exactly at closes_at", lesson(), closes, Phase::Over),
            ("ended early, after the end", ended(T0 + 20 * MIN), T0 + 21 * MIN, Phase::Over),
            ("ended, even on a clock that lags", ended(T0 + 20 * MIN), T0 + 19 * MIN, Phase::Over),
            ("ended before it opened", ended(T0 - 30 * MIN), T0 - 20 * MIN, Phase::Over),
            ("cancelled, before", cancelled(), T0 - 60 * MIN, Phase::Cancelled),
            ("cancelled, during", cancelled(), T0, Phase::Cancelled),
            ("cancelled, after", cancelled(), closes + MIN, Phase::Cancelled),
        ];
        for (name, l, now, want) in cases {
            assert_eq!(phase(&l, &t, now), want, "{name}");
        }
    }

    #[test]
    fn phases_have_snake_case_wire_names() {
        for p in [Phase::Scheduled, Phase::Open, Phase::Over, Phase::Cancelled] {
            assert_eq!(serde_json::to_value(p).unwrap(), serde_json::json!(p.as_str()));
        }
    }

    fn account(user_id: &str) -> Caller<'_> {
        Caller::Account { user_id, is_admin: false, device_site: None, heads_school: false }
    }

    #[test]
    fn who_may_join_which_lesson_when() {
        use Refusal::*;
        let t = Timing::default();
        let teacher = account("teacher-1");
        let other_teacher = account("teacher-2");
        let device_a = Caller::Account { user_id: "dev-a", is_admin: false, device_site: Some("site-a"), heads_school: false };
        let device_c = Caller::Account { user_id: "dev-c", is_admin: false, device_site: Some("site-c"), heads_school: false };
        let head = Caller::Account { user_id: "head-1", is_admin: false, device_site: None, heads_school: true };
        let admin = Caller::Account { user_id: "admin-1", is_admin: true, device_site: None, heads_school: false };
        let student = Caller::StudentLink { student_id: "stu-1", enrolled: true, revoked: false };
        let revoked = Caller::StudentLink { student_id: "stu-1", enrolled: true, revoked: true };
        let not_enrolled = Caller::StudentLink { student_id: "stu-2", enrolled: false, revoked: false };

        let before = T0 - 20 * MIN;
        let during = T0 + 10 * MIN;
        let after = T0 + 80 * MIN;
        let too_early = Err(NotYetOpen { opens_at: T0 - 15 * MIN });
        let as_teacher = Ok(Attendee::Teacher("teacher-1".into()));
        let as_site_a = Ok(Attendee::Classroom("site-a".into()));
        let as_head = Ok(Attendee::Observer("head-1".into()));
        let as_admin = Ok(Attendee::Observer("admin-1".into()));
        let as_student = Ok(Attendee::Student("stu-1".into()));

        let cases = [
            ("teacher, during", lesson(), teacher, during, as_teacher.clone()),
            ("teacher, before", lesson(), teacher, before, too_early.clone()),
            ("teacher, after", lesson(), teacher, after, Err(Over)),
            ("teacher, ended early", ended(T0 + 5 * MIN), teacher, during, Err(Over)),
            ("teacher, cancelled", cancelled(), teacher, during, Err(Cancelled)),
            ("another teacher, during", lesson(), other_teacher, during, Err(NotInvited)),
            ("another teacher, before: the schedule stays hidden", lesson(), other_teacher, before, Err(NotInvited)),
            ("another teacher, cancelled", cancelled(), other_teacher, during, Err(NotInvited)),
            ("device of an invited site, during", lesson(), device_a, during, as_site_a.clone()),
            ("device of an invited site, before", lesson(), device_a, before, too_early.clone()),
            ("device of an invited site, after", lesson(), device_a, after, Err(Over)),
            ("device of another site, during", lesson(), device_c, during, Err(NotInvited)),
            ("device of another site, before", lesson(), device_c, before, Err(NotInvited)),
            ("head of the school, during", lesson(), head, during, as_head.clone()),
            ("head of the school, before", lesson(), head, before, too_early.clone()),
            ("head of the school, after", lesson(), head, after, Err(Over)),
            ("admin, during", lesson(), admin, during, as_admin.clone()),
            ("admin, cancelled", cancelled(), admin, during, Err(Cancelled)),
            ("enrolled student, during", lesson(), student, during, as_student.clone()),
            ("enrolled student, before", lesson(), student, before, too_early.clone()),
            ("enrolled student, after", lesson(), student, after, Err(Over)),
            ("enrolled student, cancelled", cancelled(), student, during, Err(Cancelled)),
            ("revoked link, during", lesson(), revoked, during, Err(LinkRevoked)),
            ("revoked link, before", lesson(), revoked, before, Err(LinkRevoked)),
            ("student not enrolled, during", lesson(), not_enrolled, during, Err(NotInvited)),
            ("student not enrolled, after", lesson(), not_enrolled, after, Err(NotInvited)),
        ];
        for (name, l, caller, now, want) in cases {
            assert_eq!(admit(&l, &caller, now, &t), want, "{name}");
        }
    }

    #[test]
    fn the_teacher_of_a_lesson_wins_over_other_hats() {
        let t = Timing::default();
        let admin_teacher = Caller::Account { user_id: "teacher-1", is_admin: true, device_site: None, heads_school: true };
        assert_eq!(admit(&lesson(), &admin_teacher, T0, &t), Ok(Attendee::Teacher("teacher-1".into())));
        let substitute = Lesson { teacher_id: "teacher-2".into(), ..lesson() };
        assert_eq!(admit(&substitute, &account("teacher-1"), T0, &t), Err(Refusal::NotInvited));
        assert_eq!(admit(&substitute, &account("teacher-2"), T0, &t), Ok(Attendee::Teacher("teacher-2".into())));
    }

    #[test]
    fn refusals_have_codes_and_readable_messages() {
        let cases = [
            (Refusal::NotInvited, "not_invited", "you are not invited to this lesson"),
            (Refusal::LinkRevoked, "link_revoked", "this lesson link was revoked; ask the school for a new one"),
            (
                Refusal::NotYetOpen { opens_at: T0 - 15 * MIN },
                "not_open_yet",
                "the lesson is not open yet; it opens at 2025-03-03T07:45:00Z",
            ),
            (Refusal::Over, "over", "the lesson is over"),
            (Refusal::Cancelled, "cancelled", "the lesson was cancelled"),
        ];
        for (refusal, code, message) in cases {
            assert_eq!(refusal.code(), code);
            assert_eq!(refusal.to_string(), message);
        }
    }

    #[test]
    fn grants_by_role() {
        let l = lesson();
        struct Case {
            attendee: Attendee,
            chat_locked: bool,
            role: RoomRole,
            publish: bool,
            data: bool,
            hidden: bool,
        }
        let case = |attendee, chat_locked, role, publish, data, hidden| Case { attendee, chat_locked, role, publish, data, hidden };
        let teacher = Attendee::Teacher("teacher-1".into());
        let site = Attendee::Classroom("site-a".into());
        let student = Attendee::Student("stu-1".into());
        let observer = Attendee::Observer("head-1".into());
        let cases = [
            case(teacher.clone(), false, RoomRole::Teacher, true, true, false),
            case(teacher, true, RoomRole::Teacher, true, true, false),
            case(site.clone(), false, RoomRole::Classroom, true, true, false),
            case(site, true, RoomRole::Classroom, true, false, false),
            case(student.clone(), false, RoomRole::Student, false, true, false),
            case(student, true, RoomRole::Student, false, false, false),
            case(observer.clone(), false, RoomRole::Observer, false, false, true),
            case(observer, true, RoomRole::Observer, false, false, true),
        ];
        for c in cases {
            let g = grant(&c.attendee, Some("Name".into()), &l, c.chat_locked);
            let what = format!("{:?}, chat locked: {}", c.attendee, c.chat_locked);
            assert_eq!(g.room.as_str(), "lesson-00000000000000aa", "{what}");
            assert_eq!(g.identity, c.attendee.identity(), "{what}");
            assert_eq!(g.name.as_deref(), Some("Name"), "{what}");
            assert_eq!(g.role, c.role, "{what}");
            assert_eq!(g.can_publish, c.publish, "{what}");
            assert!(g.can_subscribe, "{what}");
            assert_eq!(g.can_publish_data, c.data, "{what}");
            assert_eq!(g.hidden, c.hidden, "{what}");
            assert!(g.validate().is_ok(), "{what}");
        }
    }

    #[test]
    fn tokens_live_ten_minutes() {
        assert_eq!(TOKEN_TTL, Duration::from_secs(600));
        assert!(TOKEN_TTL <= tongxin_common::grant::MAX_TTL);
    }

    fn at(rfc3339: &str) -> Millis {
        rfc3339.parse::<Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn weekly_occurrences_keep_the_local_wall_time() {
        let weekly = |count| Repeat::Weekly { count };
        let cases: [(&str, &str, Repeat, Vec<&str>); 6] = [
            ("once", "Asia/Shanghai", Repeat::Once, vec!["2025-03-03T01:00:00Z"]),
            ("no DST", "Asia/Shanghai", weekly(3), vec!["2025-03-03T01:00:00Z", "2025-03-10T01:00:00Z", "2025-03-17T01:00:00Z"]),
            // 09:00 EST, then 09:00 EDT after the clocks go forward on 9 March 2025.
            (
                "New York, spring forward",
                "America/New_York",
                weekly(3),
                vec!["2025-03-03T14:00:00Z", "2025-03-10T13:00:00Z", "2025-03-17T13:00:00Z"],
            ),
            // 02:30 does not exist on 9 March: that lesson moves to 03:30 EDT, the next is 02:30 again.
            (
                "New York, a wall time in the gap",
                "America/New_York",
                weekly(3),
                vec!["2025-03-02T07:30:00Z", "2025-03-09T07:30:00Z", "2025-03-16T06:30:00Z"],
            ),
            // 09:00 EDT, then 09:00 EST after the clocks go back on 2 November 2025.
            ("New York, fall back", "America/New_York", weekly(2), vec!["2025-10-27T13:00:00Z", "2025-11-03T14:00:00Z"]),
            ("UTC", "UTC", weekly(2), vec!["2025-03-03T08:00:00Z", "2025-03-10T08:00:00Z"]),
        ];
        for (name, tz, repeat, want) in cases {
            let want: Vec<Millis> = want.into_iter().map(at).collect();
            assert_eq!(occurrences(want[0], tz, &repeat), Ok(want), "{name}");
        }
        let year = occurrences(T0, "Europe/Berlin", &weekly(52)).unwrap();
        assert_eq!(year.len(), 52);
        assert!(year.windows(2).all(|w| w[1] > w[0]));
    }

    #[test]
    fn bad_series_name_their_field() {
        let cases = [
            ("a single weekly lesson", "Asia/Shanghai", Repeat::Weekly { count: 1 }, "repeat.count"),
            ("no lessons", "Asia/Shanghai", Repeat::Weekly { count: 0 }, "repeat.count"),
            ("more than a year", "Asia/Shanghai", Repeat::Weekly { count: 53 }, "repeat.count"),
            ("unknown zone", "Mars/Olympus_Mons", Repeat::Weekly { count: 4 }, "time_zone"),
            ("unknown zone, once", "Europe/Nowhere", Repeat::Once, "time_zone"),
            ("empty zone", "", Repeat::Once, "time_zone"),
            ("a path, not a zone", "../../etc/passwd", Repeat::Once, "time_zone"),
        ];
        for (name, tz, repeat, field) in cases {
            assert_eq!(occurrences(T0, tz, &repeat).unwrap_err().field, field, "{name}");
        }
        let e = occurrences(T0, "Asia/Shanghai", &Repeat::Weekly { count: 53 }).unwrap_err();
        assert_eq!(e.to_string(), "invalid repeat.count: a weekly series has 2 to 52 lessons");
    }

    #[test]
    fn time_zones_and_durations_are_checked() {
        for ok in ["Asia/Shanghai", "America/New_York", "UTC", "Asia/Urumqi"] {
            assert_eq!(check_time_zone(ok), Ok(()), "{ok}");
        }
        for bad in ["", "Asia/Beijing", "asia/shanghai-ish", "+08:00"] {
            assert_eq!(check_time_zone(bad).unwrap_err().field, "time_zone", "{bad:?}");
        }
        for (min, ok) in [(0, false), (4, false), (5, true), (45, true), (480, true), (481, false)] {
            assert_eq!(check_duration(min).is_ok(), ok, "{min}");
            if !ok {
                assert_eq!(check_duration(min).unwrap_err().field, "duration_min");
            }
        }
    }
}
