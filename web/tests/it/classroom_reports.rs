//! Lessons over time: the scheduler opening and closing lesson rooms, per-course attendance
//! reports, and the accounts an organizer assigns.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde_json::Value;
use tongxin_classroom::model::{AttendanceEvent, Attendee, EventKind};
use tongxin_common::rooms::RoomControl as _;
use tongxin_common::unix_millis;
use tongxin_web::classroom::schedule;

use crate::classroom_manage::{Fixture, in_minutes, lesson};
use crate::harness::TestApp;

const MINUTE: Duration = Duration::from_secs(60);

async fn running(app: &TestApp) -> Vec<String> {
    let media = app.state.media.as_ref().expect("a media server");
    media.rooms().await.into_iter().map(|r| r.name.as_str().to_owned()).collect()
}

#[tokio::test]
async fn the_scheduler_opens_a_lessons_room_in_its_window_and_closes_it_after() {
    for app in TestApp::each().await {
        let app = app.with_media().await;
        let f = Fixture::new(&app).await;
        let maths = lesson(&app, &f, "Fractions", &in_minutes(&app, 30), &[&f.site_a]).await;
        let art = lesson(&app, &f, "Drawing", &in_minutes(&app, 40), &[&f.site_b]).await;
        let (maths_room, art_room) = (format!("lesson-{maths}"), format!("lesson-{art}"));

        // The background scheduler passes too; each assertion holds whichever pass got there first.
        schedule::pass(&app.state).await.unwrap();
        assert!(!running(&app).await.contains(&maths_room), "30 minutes early nothing is open on {}", app.backend());

        app.clock.advance(16 * MINUTE);
        schedule::pass(&app.state).await.unwrap();
        assert!(running(&app).await.contains(&maths_room), "open 14 minutes before the start (15 configured)");
        assert!(!running(&app).await.contains(&art_room), "the later lesson waits for its own window");
        // The room opened with the lesson's rules in force: classroom A off stage.
        let again = schedule::pass(&app.state).await.unwrap();
        assert!(again.opened.is_empty(), "an open room is left alone: {again:?}");

        app.clock.advance(10 * MINUTE);
        schedule::pass(&app.state).await.unwrap();
        assert!(running(&app).await.contains(&art_room));
        let (status, _) = app.call(Method::POST, &format!("/api/v1/lessons/{art}/cancel"), Some(&f.organizer), None).await;
        assert_eq!(status, StatusCode::OK);
        schedule::pass(&app.state).await.unwrap();
        assert!(!running(&app).await.contains(&art_room), "a cancelled lesson's room closes");
        assert!(running(&app).await.contains(&maths_room));

        // 45 minutes of lesson and 30 of overrun after the start, the room closes.
        app.clock.advance(4 * MINUTE + 45 * MINUTE + 29 * MINUTE);
        schedule::pass(&app.state).await.unwrap();
        assert!(running(&app).await.contains(&maths_room), "still inside the overrun");
        app.clock.advance(2 * MINUTE);
        schedule::pass(&app.state).await.unwrap();
        assert!(!running(&app).await.contains(&maths_room), "closed once the overrun ran out");
        let (status, _) = app.call(Method::POST, &format!("/api/v1/lessons/{maths}/join"), Some(&f.li), None).await;
        assert_eq!(status, StatusCode::CONFLICT, "and nobody joins any more");
    }
}

#[tokio::test]
async fn a_course_report_counts_every_lesson_that_took_place_and_exports_csv() {
    for app in TestApp::each().await {
        let f = Fixture::new(&app).await;
        let first = lesson(&app, &f, "Fractions", &in_minutes(&app, 5), &[&f.site_a, &f.site_b]).await;
        let second = lesson(&app, &f, "Decimals, part 1", &in_minutes(&app, 65), &[&f.site_a, &f.site_b]).await;
        let cancelled = lesson(&app, &f, "Cancelled", &in_minutes(&app, 125), &[&f.site_a]).await;
        let future = lesson(&app, &f, "Next week", &in_minutes(&app, 7 * 24 * 60), &[&f.site_a]).await;
        let (status, _) = app.call(Method::POST, &format!("/api/v1/lessons/{cancelled}/cancel"), Some(&f.organizer), None).await;
        assert_eq!(status, StatusCode::OK);

        // Classroom A comes to both, the second time 20 minutes late; B and the students never do.
        let now = unix_millis(app.now());
        let a = Attendee::Classroom(f.site_a.clone());
        for (lesson_id, joined, left) in [(&first, now + 4 * 60_000, now + 50 * 60_000), (&second, now + 85 * 60_000, now + 110 * 60_000)] {
            for (kind, at, detail) in [(EventKind::Joined, joined, None), (EventKind::Left, left, Some("room_closed".to_owned()))] {
                let e = AttendanceEvent { lesson_id: lesson_id.clone(), attendee: a.clone(), kind, detail, at };
                app.state.classroom.record_event(&e).await.unwrap();
            }
        }
        app.clock.advance(4 * 60 * MINUTE);

        let path = format!("/api/v1/courses/{}/attendance", f.course);
        let (status, report) = app.call(Method::GET, &path, Some(&f.li), None).await;
        assert_eq!(status, StatusCode::OK, "{report} on {}", app.backend());
        let lessons: Vec<&str> = report["lessons"].as_array().unwrap().iter().map(|l| l["lesson"]["id"].as_str().unwrap()).collect();
        assert_eq!(lessons, [first.as_str(), second.as_str()], "taken place, oldest first; not {cancelled} nor {future}");
        let totals = |kind: &str, id: &str| -> Value {
            let all = report["totals"].as_array().unwrap();
            all.iter().find(|t| t["attendee"]["kind"] == kind && t["attendee"]["id"] == id).cloned().unwrap_or_default()
        };
        let site_a = totals("classroom", &f.site_a);
        assert_eq!((site_a["counts"]["present"].as_u64(), site_a["counts"]["late"].as_u64()), (Some(1), Some(1)), "{site_a}");
        assert_eq!(site_a["name"], "Lianghe grade 4");
        assert_eq!(site_a["minutes_present"], 45 + 25, "{site_a}");
        assert_eq!(totals("classroom", &f.site_b)["counts"]["absent"], 2);
        let student = totals("student", &f.students[0]);
        assert_eq!((student["name"].as_str(), student["counts"]["absent"].as_u64()), (Some("王小明"), Some(2)), "{student}");
        assert_eq!(report["lessons"][0]["records"][0]["name"], "li.hua display", "names for the teacher too");

        let (status, _, csv) = app.raw(Method::GET, &format!("{path}.csv"), Some(&f.organizer), None, &[]).await;
        assert_eq!(status, StatusCode::OK);
        let csv = String::from_utf8(csv.to_vec()).unwrap();
        let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
        assert!(lines[0].starts_with("\u{feff}lesson_start,lesson_title,kind,id,name,status"), "a BOM, then the header: {}", lines[0]);
        assert_eq!(lines.len(), 1 + 2 * 5, "teacher, two classrooms, two students per lesson:\n{csv}");
        // Times in the school's zone (Asia/Shanghai), titles with commas quoted.
        let start =
            jiff::Timestamp::from_millisecond(now + 65 * 60_000).unwrap().to_zoned(jiff::tz::TimeZone::get("Asia/Shanghai").unwrap());
        let expected = format!("{},\"Decimals, part 1\",classroom,{},Lianghe grade 4,late,", start.strftime("%Y-%m-%d %H:%M"), f.site_a);
        assert!(lines.iter().any(|l| l.starts_with(&expected)), "{expected}\nin\n{csv}");
        assert!(csv.contains(",王小明,absent,"), "{csv}");

        let (status, _) = app.call(Method::GET, &path, Some(&f.wang), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "another teacher");
        let (status, _) = app.call(Method::GET, &path, Some(&f.device_a), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "a terminal");
        let (status, _) = app.call(Method::GET, "/api/v1/courses/nope/attendance", Some(&f.li), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn an_organizer_picks_from_the_enabled_accounts_and_sees_nothing_private() {
    let app = TestApp::sqlite().await;
    let f = Fixture::new(&app).await;
    let (status, list) = app.call(Method::GET, "/api/v1/classroom/accounts", Some(&f.organizer), None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let li = list.as_array().unwrap().iter().find(|a| a["username"] == "li.hua").cloned().unwrap_or_default();
    assert_eq!((li["role"].as_str(), li["display_name"].as_str()), (Some("teacher"), Some("li.hua display")), "{list}");
    let mut keys: Vec<&str> = li.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["display_name", "id", "role", "username"], "only what a picker needs");
    let (status, _) = app.call(Method::GET, "/api/v1/classroom/accounts", Some(&f.li), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "teachers do not list accounts");
}
