//! Attendance from a lesson's event log: who came, who came late, who left early, whose network
//! let them down, and who never came.
//!
//! The log holds room events (joins, leaves with their reason, quality changes) and join
//! attempts. [`classify`] turns it into one [`Record`] per attendee; it is a pure function, so a
//! report can be recomputed at any time from the stored log.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use tongxin_common::rooms::LeaveReason;

use crate::model::{AttendanceEvent, Attendee, EventKind, Millis};
use crate::rules::{Timing, Window, millis};

/// How an attendee attended one lesson.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Came on time and stayed (a dropped connection they came back from included).
    Present,
    /// First joined more than `late_after` after the start.
    Late,
    /// Left for good before `early_before` ahead of the end: said goodbye, was removed, or lost
    /// the connection and did not try again.
    LeftEarly,
    /// Lost the connection before the end and tried to come back, but never got in again.
    NetworkDropped,
    /// Never joined.
    Absent,
}

impl Status {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Present => "present",
            Status::Late => "late",
            Status::LeftEarly => "left_early",
            Status::NetworkDropped => "network_dropped",
            Status::Absent => "absent",
        }
    }
}

/// One attendee's attendance of one lesson.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    /// Who.
    pub attendee: Attendee,
    /// The verdict.
    pub status: Status,
    /// The first join, UTC ms.
    pub first_joined: Option<Millis>,
    /// The leave that ended their presence for good; `None` if they never joined, or were still
    /// in the room at the end of the log.
    pub last_left: Option<Millis>,
    /// Whole minutes in the room between the scheduled start and the end (rounded to nearest).
    pub minutes_present: u32,
    /// Connections lost (leaves with reason `timeout`).
    pub drops: u32,
    /// The worst link quality seen (`good` < `fair` < `poor` < `lost`), if any was recorded.
    pub worst_quality: Option<String>,
}

/// The quality wire names, best first.
const QUALITY: [&str; 4] = ["good", "fair", "poor", "lost"];

/// Classifies attendance: one record per attendee of `expected`, in that order, then one per
/// attendee who joined without being expected, in the order they first appear. Observers never
/// appear; duplicates in `expected` are listed once. `events` are one lesson's, sorted by time.
///
/// - Presence runs from a `Joined` to the next `Left`. A `Left` with reason `replaced` never
///   ends it: the server sends one only when the same identity joins again from elsewhere, and
///   the new session's `Joined` follows at once.
/// - A presence still open at the end of the log ends at `window.closes_at`: the room closed
///   then, whatever was (not) recorded. Only time in `[starts_at, min(ends_at, closes_at))`
///   counts towards `minutes_present`, so the open end is in effect clipped to the end too.
/// - "The end" is `min(ends_at, closes_at)`: a lesson the teacher ended early ended then, and
///   leaving a few minutes before that is not leaving early.
/// - Status, first match wins: never joined → [`Status::Absent`]; gone for good before
///   end − `early_before` (reason other than `room_closed`): after a `timeout` with a later
///   `Attempt` → [`Status::NetworkDropped`], otherwise → [`Status::LeftEarly`]; first joined after
///   start + `late_after` → [`Status::Late`]; else [`Status::Present`].
///
/// To report on a lesson still running, pass `Window { closes_at: now.min(w.closes_at), ..w }`:
/// presence then counts up to `now`, and the verdicts are those the lesson would get if it
/// ended now.
pub fn classify(expected: &[Attendee], events: &[AttendanceEvent], window: &Window, timing: &Timing) -> Vec<Record> {
    let mut order: Vec<&Attendee> = Vec::new();
    let mut listed: HashSet<&Attendee> = HashSet::new();
    for attendee in expected.iter().filter(|a| !is_observer(a)) {
        if listed.insert(attendee) {
            order.push(attendee);
        }
    }
    let mut by_attendee: HashMap<&Attendee, Vec<&AttendanceEvent>> = HashMap::new();
    for event in events.iter().filter(|e| !is_observer(&e.attendee)) {
        by_attendee.entry(&event.attendee).or_default().push(event);
        // Someone unexpected is listed once they joined: attempts alone are not attendance.
        if event.kind == EventKind::Joined && listed.insert(&event.attendee) {
            order.push(&event.attendee);
        }
    }
    order
        .into_iter()
        .map(|attendee| record(attendee.clone(), by_attendee.get(attendee).map_or(&[], Vec::as_slice), window, timing))
        .collect()
}

fn is_observer(attendee: &Attendee) -> bool {
    matches!(attendee, Attendee::Observer(_))
}

fn record(attendee: Attendee, log: &[&AttendanceEvent], window: &Window, timing: &Timing) -> Record {
    let end = window.ends_at.min(window.closes_at);
    let counted = |from: Millis, to: Millis| (to.min(end) - from.max(window.starts_at)).max(0);

    let mut first_joined = None;
    let mut inside_since: Option<Millis> = None;
    let mut gone: Option<(Millis, &str)> = None;
    let mut last_attempt: Option<Millis> = None;
    let mut present_ms: Millis = 0;
    let mut drops = 0u32;
    let mut worst: Option<usize> = None;
    for event in log {
        let detail = event.detail.as_deref().unwrap_or("");
        match event.kind {
            EventKind::Attempt => last_attempt = Some(event.at),
            EventKind::Joined => {
                first_joined.get_or_insert(event.at);
                inside_since.get_or_insert(event.at);
            }
            EventKind::Left if detail == LeaveReason::Replaced.as_str() => {}
            EventKind::Left => {
                // A second leave without a join in between adds nothing.
                if let Some(since) = inside_since.take() {
                    present_ms += counted(since, event.at);
                    gone = Some((event.at, detail));
                    drops += u32::from(detail == LeaveReason::Timeout.as_str());
                }
            }
            EventKind::Quality => {
                if let Some(rank) = QUALITY.iter().position(|q| *q == detail) {
                    worst = worst.max(Some(rank));
                }
            }
        }
    }
    if let Some(since) = inside_since {
        present_ms += counted(since, window.closes_at);
        gone = None;
    }

    let early_cutoff = end.saturating_sub(millis(timing.early_before));
    let status = match (first_joined, gone) {
        (None, _) => Status::Absent,
        (Some(_), Some((left_at, reason))) if left_at < early_cutoff && reason != LeaveReason::RoomClosed.as_str() => {
            if reason == LeaveReason::Timeout.as_str() && last_attempt.is_some_and(|a| a > left_at) {
                Status::NetworkDropped
            } else {
                Status::LeftEarly
            }
        }
        (Some(joined), _) if joined > window.starts_at.saturating_add(millis(timing.late_after)) => Status::Late,
        (Some(_), _) => Status::Present,
    };
    Record {
        attendee,
        status,
        first_joined,
        last_left: gone.map(|(at, _)| at),
        minutes_present: u32::try_from((present_ms + 30_000) / 60_000).unwrap_or(u32::MAX),
        drops,
        worst_quality: worst.map(|rank| QUALITY[rank].to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Millis = 60_000;
    /// 2025-03-03T08:00:00Z.
    const T0: Millis = 1_740_988_800_000;

    /// A 60-minute lesson at T0, not ended early: closes at T0 + 90 min.
    fn window() -> Window {
        Window { opens_at: T0 - 15 * MIN, starts_at: T0, ends_at: T0 + 60 * MIN, closes_at: T0 + 90 * MIN }
    }

    fn stu(id: &str) -> Attendee {
        Attendee::Student(id.into())
    }

    /// An event `minute` minutes after the start; `what` is `attempt`, `joined`, `quality:<rating>`
    /// or `left:<reason>`.
    fn ev(who: &Attendee, minute: i64, what: &str) -> AttendanceEvent {
        let (kind, detail) = what.split_once(':').map_or((what, None), |(k, d)| (k, Some(d.to_owned())));
        AttendanceEvent {
            lesson_id: "l1".into(),
            attendee: who.clone(),
            kind: EventKind::parse(kind).unwrap(),
            detail,
            at: T0 + minute * MIN,
        }
    }

    fn log(who: &Attendee, script: &[(i64, &str)]) -> Vec<AttendanceEvent> {
        script.iter().map(|(minute, what)| ev(who, *minute, what)).collect()
    }

    struct Case {
        name: &'static str,
        window: Window,
        script: &'static [(i64, &'static str)],
        status: Status,
        minutes: u32,
        drops: u32,
        first_joined: Option<i64>,
        last_left: Option<i64>,
    }

    #[test]
    fn one_attendee_scenarios() {
        use Status::*;
        let w = window();
        let ended_at_30 = Window { closes_at: T0 + 30 * MIN, ..w };
        #[rustfmt::skip]
        let cases = [
            Case { name: "on time and stayed", window: w, script: &[(-3, "attempt"), (-2, "joined"), (61, "left:room_closed")],
                   status: Present, minutes: 60, drops: 0, first_joined: Some(-2), last_left: Some(61) },
            Case { name: "joined exactly at the late threshold", window: w, script: &[(5, "joined"), (60, "left:room_closed")],
                   status: Present, minutes: 55, drops: 0, first_joined: Some(5), last_left: Some(60) },
            Case { name: "joined 10 minutes late", window: w, script: &[(10, "joined"), (60, "left:room_closed")],
                   status: Late, minutes: 50, drops: 0, first_joined: Some(10), last_left: Some(60) },
            Case { name: "left at half time", window: w, script: &[(0, "joined"), (30, "left:left")],
                   status: LeftEarly, minutes: 30, drops: 0, first_joined: Some(0), last_left: Some(30) },
            Case { name: "removed by the teacher", window: w, script: &[(0, "joined"), (40, "left:kicked")],
                   status: LeftEarly, minutes: 40, drops: 0, first_joined: Some(0), last_left: Some(40) },
            Case { name: "late and left early: leaving early wins", window: w, script: &[(10, "joined"), (30, "left:left")],
                   status: LeftEarly, minutes: 20, drops: 0, first_joined: Some(10), last_left: Some(30) },
            Case { name: "left within the last 5 minutes", window: w, script: &[(0, "joined"), (56, "left:left")],
                   status: Present, minutes: 56, drops: 0, first_joined: Some(0), last_left: Some(56) },
            Case { name: "timeout, a later attempt, no rejoin", window: w, script: &[(0, "joined"), (20, "left:timeout"), (22, "attempt"), (25, "attempt")],
                   status: NetworkDropped, minutes: 20, drops: 1, first_joined: Some(0), last_left: Some(20) },
            Case { name: "late, then dropped: the network wins", window: w, script: &[(10, "joined"), (20, "left:timeout"), (21, "attempt")],
                   status: NetworkDropped, minutes: 10, drops: 1, first_joined: Some(10), last_left: Some(20) },
            Case { name: "timeout, no attempt after it", window: w, script: &[(-1, "attempt"), (0, "joined"), (20, "left:timeout")],
                   status: LeftEarly, minutes: 20, drops: 1, first_joined: Some(0), last_left: Some(20) },
            Case { name: "timeout in the last minutes, with an attempt", window: w, script: &[(0, "joined"), (57, "left:timeout"), (58, "attempt")],
                   status: Present, minutes: 57, drops: 1, first_joined: Some(0), last_left: Some(57) },
            Case { name: "dropped and came back", window: w,
                   script: &[(0, "joined"), (20, "left:timeout"), (21, "attempt"), (22, "joined"), (60, "left:room_closed")],
                   status: Present, minutes: 58, drops: 1, first_joined: Some(0), last_left: Some(60) },
            Case { name: "late, dropped twice, came back each time", window: w,
                   script: &[(8, "joined"), (20, "left:timeout"), (21, "joined"), (30, "left:timeout"), (31, "attempt"), (33, "joined"), (60, "left:room_closed")],
                   status: Late, minutes: 48, drops: 2, first_joined: Some(8), last_left: Some(60) },
            Case { name: "came back, then left early for good", window: w,
                   script: &[(0, "joined"), (20, "left:timeout"), (21, "joined"), (40, "left:left")],
                   status: LeftEarly, minutes: 39, drops: 1, first_joined: Some(0), last_left: Some(40) },
            Case { name: "never joined", window: w, script: &[],
                   status: Absent, minutes: 0, drops: 0, first_joined: None, last_left: None },
            Case { name: "tried, never got in", window: w, script: &[(1, "attempt"), (3, "attempt")],
                   status: Absent, minutes: 0, drops: 0, first_joined: None, last_left: None },
            Case { name: "the room closed at the end", window: w, script: &[(0, "joined"), (60, "left:room_closed")],
                   status: Present, minutes: 60, drops: 0, first_joined: Some(0), last_left: Some(60) },
            Case { name: "the teacher ended the lesson early", window: ended_at_30, script: &[(0, "joined"), (30, "left:room_closed")],
                   status: Present, minutes: 30, drops: 0, first_joined: Some(0), last_left: Some(30) },
            Case { name: "left just before the teacher ended it early", window: ended_at_30, script: &[(0, "joined"), (27, "left:left")],
                   status: Present, minutes: 27, drops: 0, first_joined: Some(0), last_left: Some(27) },
            Case { name: "replaced by a new session: one continuous presence", window: w,
                   script: &[(0, "joined"), (20, "left:replaced"), (20, "joined"), (60, "left:room_closed")],
                   status: Present, minutes: 60, drops: 0, first_joined: Some(0), last_left: Some(60) },
            Case { name: "replaced, then left early", window: w,
                   script: &[(0, "joined"), (20, "left:replaced"), (20, "joined"), (30, "left:left")],
                   status: LeftEarly, minutes: 30, drops: 0, first_joined: Some(0), last_left: Some(30) },
            Case { name: "no leave recorded: present until the room closed", window: w, script: &[(0, "joined")],
                   status: Present, minutes: 60, drops: 0, first_joined: Some(0), last_left: None },
            Case { name: "minutes clipped to the scheduled lesson", window: w, script: &[(-14, "joined"), (85, "left:room_closed")],
                   status: Present, minutes: 60, drops: 0, first_joined: Some(-14), last_left: Some(85) },
            Case { name: "joined only in the overrun", window: w, script: &[(65, "joined"), (80, "left:left")],
                   status: Late, minutes: 0, drops: 0, first_joined: Some(65), last_left: Some(80) },
            Case { name: "a repeated leave adds nothing", window: w, script: &[(0, "joined"), (30, "left:left"), (31, "left:left")],
                   status: LeftEarly, minutes: 30, drops: 0, first_joined: Some(0), last_left: Some(30) },
        ];
        let at = |m: Option<i64>| m.map(|m| T0 + m * MIN);
        let who = stu("s1");
        for c in cases {
            let records = classify(std::slice::from_ref(&who), &log(&who, c.script), &c.window, &Timing::default());
            assert_eq!(records.len(), 1, "{}", c.name);
            let r = &records[0];
            assert_eq!(r.attendee, who, "{}", c.name);
            assert_eq!(r.status, c.status, "{}", c.name);
            assert_eq!(r.minutes_present, c.minutes, "{}", c.name);
            assert_eq!(r.drops, c.drops, "{}", c.name);
            assert_eq!(r.first_joined, at(c.first_joined), "{}", c.name);
            assert_eq!(r.last_left, at(c.last_left), "{}", c.name);
        }
    }

    #[test]
    fn minutes_round_to_the_nearest() {
        let who = stu("s1");
        let w = window();
        let events = |ms_in: Millis| vec![ev(&who, 0, "joined"), AttendanceEvent { at: T0 + ms_in, ..ev(&who, 0, "left:left") }];
        for (ms_in, minutes) in [(29_999, 0), (30_000, 1), (89_999, 1), (10 * MIN + 31_000, 11)] {
            let r = &classify(std::slice::from_ref(&who), &events(ms_in), &w, &Timing::default())[0];
            assert_eq!(r.minutes_present, minutes, "{ms_in} ms");
        }
    }

    #[test]
    fn who_is_listed_and_in_what_order() {
        let teacher = Attendee::Teacher("t1".into());
        let site = Attendee::Classroom("site-a".into());
        let head = Attendee::Observer("head-1".into());
        let (s1, s2, stranger, visitor, knocker) = (stu("s1"), stu("s2"), stu("s9"), Attendee::Classroom("site-z".into()), stu("s7"));
        let events = vec![
            ev(&teacher, -10, "joined"),
            ev(&head, -5, "joined"),
            ev(&knocker, -4, "attempt"),
            ev(&site, -3, "joined"),
            ev(&visitor, -2, "attempt"),
            ev(&stranger, 2, "joined"),
            ev(&visitor, 3, "joined"),
            ev(&head, 10, "left:left"),
            ev(&s1, 12, "joined"),
            ev(&stranger, 20, "left:left"),
        ];
        let expected = [teacher.clone(), site.clone(), s1.clone(), s2.clone(), head.clone(), s1.clone()];
        let records = classify(&expected, &events, &window(), &Timing::default());
        let listed: Vec<(&Attendee, Status)> = records.iter().map(|r| (&r.attendee, r.status)).collect();
        assert_eq!(
            listed,
            [
                (&teacher, Status::Present),
                (&site, Status::Present),
                (&s1, Status::Late),
                (&s2, Status::Absent),
                (&stranger, Status::LeftEarly),
                (&visitor, Status::Present),
            ],
            "observers are never listed, the expected come first and once, then the unexpected who joined"
        );
    }

    #[test]
    fn worst_quality() {
        let who = stu("s1");
        let cases: [(&[&str], Option<&str>); 5] = [
            (&[], None),
            (&["good"], Some("good")),
            (&["good", "poor", "fair", "good"], Some("poor")),
            (&["fair", "lost", "good"], Some("lost")),
            (&["excellent", "fair"], Some("fair")),
        ];
        for (ratings, want) in cases {
            let mut events = vec![ev(&who, 0, "joined")];
            events.extend(ratings.iter().map(|r| ev(&who, 1, &format!("quality:{r}"))));
            let r = &classify(std::slice::from_ref(&who), &events, &window(), &Timing::default())[0];
            assert_eq!(r.worst_quality.as_deref(), want, "{ratings:?}");
        }
    }

    #[test]
    fn statuses_have_snake_case_wire_names() {
        for s in [Status::Present, Status::Late, Status::LeftEarly, Status::NetworkDropped, Status::Absent] {
            assert_eq!(serde_json::to_value(s).unwrap(), serde_json::json!(s.as_str()));
        }
    }
}
