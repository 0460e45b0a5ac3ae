//! A live lesson in headless Chromium against the real server and media server: a teacher, two
//! classroom terminals and a student on a phone with their personal link; hands, stage, slides,
//! an abrupt reconnect and the end; then the attendance report. The browser steps are in
//! `tests/browser/lesson.mjs`.

use std::time::SystemTime;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};
use tongxin_classroom::model::{Attendee, EventKind};
use tongxin_web::accounts::AccountRole;

use super::{LiveServer, PASSWORD, run_script};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_teacher_two_classrooms_and_a_student_on_a_phone_run_a_lesson() {
    let server = LiveServer::start().await;
    let mut ids = std::collections::HashMap::new();
    for (name, role) in
        [("org", AccountRole::Organizer), ("li.hua", AccountRole::Teacher), ("dev-a", AccountRole::Device), ("dev-b", AccountRole::Device)]
    {
        ids.insert(name, server.user(name, &format!("{name} display"), role).await);
    }
    let login = |name: &'static str| server.login(name);
    let org = login("org").await;
    let li = login("li.hua").await;
    // A POST by the organizer that must create something; a null body sends none.
    let post = |path: &str, body: Value| {
        let (server, org, path) = (&server, org.clone(), path.to_owned());
        async move {
            let body = (!body.is_null()).then_some(body);
            let (status, b) = server.call(Method::POST, &path, Some(&org), body).await;
            assert_eq!(status, StatusCode::CREATED, "POST {path}: {b}");
            b
        }
    };
    let school =
        post("/api/v1/schools", json!({"name": "Chengdu No. 7", "time_zone": "Asia/Shanghai"})).await["id"].as_str().unwrap().to_owned();
    let site_a = post("/api/v1/sites", json!({"school_id": school, "name": "Lianghe grade 4", "device_user_id": ids["dev-a"]})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let site_b = post("/api/v1/sites", json!({"school_id": school, "name": "Shimen grade 4", "device_user_id": ids["dev-b"]})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let course = post("/api/v1/courses", json!({"school_id": school, "title": "Mathematics, grade 4", "teacher_id": ids["li.hua"]})).await
        ["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let now = tongxin_common::unix_millis(SystemTime::now());
    let starts_at = jiff::Timestamp::from_millisecond(now + 5 * 60_000).unwrap().to_string();
    let lessons = post(
        "/api/v1/lessons",
        json!({"course_id": course, "title": "Fractions", "starts_at": starts_at, "duration_min": 45, "site_ids": [site_a, site_b]}),
    )
    .await;
    let lesson = lessons[0]["id"].as_str().unwrap().to_owned();

    // A student, enrolled, with a personal link made the way the course page makes it.
    let student = post("/api/v1/students", json!({"school_id": school, "name": "王小明"})).await["id"].as_str().unwrap().to_owned();
    post(&format!("/api/v1/courses/{course}/students"), json!({"student_id": student})).await;
    let link = post(&format!("/api/v1/courses/{course}/students/{student}/link"), Value::Null).await;
    let student_link = link["url"].as_str().unwrap().to_owned();

    // The teacher's deck: two pages.
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!("/api/v1/lessons/{lesson}/decks?title=a.pdf"))
        .header(header::AUTHORIZATION, format!("Bearer {li}"))
        .body(Body::from(crate::classroom_manage::two_page_pdf()))
        .unwrap();
    assert_eq!(server.send(req).await.status(), StatusCode::CREATED, "deck upload");

    let env = [
        ("BASE_URL", server.url.clone()),
        ("LESSON", lesson.clone()),
        ("SITE_A", site_a.clone()),
        ("SITE_B", site_b.clone()),
        ("TEACHER_ID", ids["li.hua"].clone()),
        ("TEACHER_USER", "li.hua".into()),
        ("TERMINAL_A_USER", "dev-a".into()),
        ("TERMINAL_B_USER", "dev-b".into()),
        ("PASSWORD", PASSWORD.into()),
        ("STUDENT_LINK", student_link),
    ];
    run_script("lesson.mjs", &env).await;

    // Attendance: the teacher, both classrooms and the student came and stayed to the end.
    let (status, report) = server.call(Method::GET, &format!("/api/v1/lessons/{lesson}/attendance"), Some(&li), None).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let status_of = |kind: &str, id: &str| {
        let r = report["records"].as_array().unwrap().iter().find(|r| r["attendee"]["kind"] == kind && r["attendee"]["id"] == id);
        r.map(|r| r["status"].as_str().unwrap_or_default().to_owned()).unwrap_or_default()
    };
    assert_eq!(status_of("teacher", &ids["li.hua"]), "present", "{report}");
    assert_eq!(status_of("classroom", &site_a), "present", "{report}");
    assert_eq!(status_of("classroom", &site_b), "present", "{report}");
    assert_eq!(status_of("student", &student), "present", "{report}");
    for r in report["records"].as_array().unwrap() {
        assert_ne!(r["status"], "absent", "nobody of the lesson is absent: {report}");
    }
    // The student's page joined once: it fetches the state again through the link's state
    // route, which records no attempt (a join again for it would).
    let events = server.state.classroom.events(&lesson).await.unwrap();
    let attempts = events.iter().filter(|e| e.attendee == Attendee::Student(student.clone()) && e.kind == EventKind::Attempt);
    assert_eq!(attempts.count(), 1, "one join by the student's link: {events:?}");
    server.finish().await;
}
