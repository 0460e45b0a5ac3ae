//! The classroom management pages as a newcomer follows the README with them, in headless
//! Chromium against the real server and media server: the accounts exist (made as `tongxin admin
//! create-user` makes them), and the organizer sets up a school, two classrooms, a course, two
//! students, enrolments, a link and a lesson through the forms; the teacher starts the lesson from
//! the home page, a terminal and the assistant see it; the course's attendance lists everyone.
//! The browser steps are in `tests/browser/classroom.mjs`; this checks afterwards that the forms
//! stored what was entered, and nothing of the refused attempts.

use std::time::SystemTime;

use axum::http::{Method, StatusCode};
use serde_json::Value;
use tongxin_web::accounts::AccountRole;

use super::{LiveServer, PASSWORD, run_script};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_sets_up_a_school_and_a_lesson_in_the_management_pages() {
    let server = LiveServer::start().await;
    server.user("jiaowu", "教务处 张老师", AccountRole::Organizer).await;
    let teacher = server.user("li.hua", "李华", AccountRole::Teacher).await;
    let device_a = server.user("lianghe-1", "两河教室终端", AccountRole::Device).await;
    let device_b = server.user("shimen-1", "石门教室终端", AccountRole::Device).await;
    let assistant = server.user("zhao.zj", "赵助教", AccountRole::Assistant).await;

    let env = [
        ("BASE_URL", server.url.clone()),
        ("PASSWORD", PASSWORD.into()),
        ("ORGANIZER_USER", "jiaowu".into()),
        ("TEACHER_USER", "li.hua".into()),
        ("TERMINAL_A_USER", "lianghe-1".into()),
        ("TERMINAL_B_USER", "shimen-1".into()),
        ("ASSISTANT_USER", "zhao.zj".into()),
    ];
    run_script("classroom.mjs", &env).await;

    // What the forms stored: exactly what was entered, and nothing of the refused attempts.
    let token = server.login("jiaowu").await;
    let get = |path: &'static str| {
        let (server, token) = (&server, token.clone());
        async move {
            let (status, body) = server.call(Method::GET, path, Some(&token), None).await;
            assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
            body.as_array().cloned().unwrap_or_else(|| panic!("GET {path} is a list: {body}"))
        }
    };
    let schools = get("/api/v1/schools").await;
    assert_eq!(schools.len(), 1, "one school (the refused one was not created): {schools:?}");
    assert_eq!(schools[0]["time_zone"], "Asia/Shanghai", "{schools:?}");
    let sites = get("/api/v1/sites").await;
    assert_eq!(sites.len(), 2, "{sites:?}");
    let site_of =
        |device: &str| sites.iter().find(|s| s["device_user_id"] == device).unwrap_or_else(|| panic!("a site of {device}: {sites:?}"));
    let (site_a, site_b) = (site_of(&device_a), site_of(&device_b));
    assert_eq!(site_a["assistant_user_ids"], serde_json::json!([assistant]), "{site_a}");
    assert_eq!(site_b["assistant_user_ids"], serde_json::json!([]), "{site_b}");
    let courses = get("/api/v1/courses").await;
    assert_eq!(courses.len(), 1, "one course (the blank title was refused): {courses:?}");
    assert_eq!(courses[0]["teacher_id"], teacher.as_str(), "{courses:?}");
    let course = courses[0]["id"].as_str().unwrap().to_owned();

    let (status, enrolled) = server.call(Method::GET, &format!("/api/v1/courses/{course}/students"), Some(&token), None).await;
    assert_eq!(status, StatusCode::OK, "{enrolled}");
    let enrolled = enrolled.as_array().unwrap();
    assert_eq!(enrolled.len(), 2, "both students enrolled: {enrolled:?}");
    let links = enrolled.iter().filter(|e| e["link"].is_object() && e["link"]["revoked_at"].is_null()).count();
    assert_eq!(links, 1, "one student has a link: {enrolled:?}");

    let (status, lessons) = server.call(Method::GET, &format!("/api/v1/lessons?course_id={course}"), Some(&token), None).await;
    assert_eq!(status, StatusCode::OK, "{lessons}");
    let lessons = lessons.as_array().unwrap();
    assert_eq!(lessons.len(), 1, "{lessons:?}");
    let mut lesson_sites: Vec<&Value> = lessons[0]["site_ids"].as_array().unwrap().iter().collect();
    lesson_sites.sort_by_key(|v| v.as_str());
    let mut both = vec![&site_a["id"], &site_b["id"]];
    both.sort_by_key(|v| v.as_str());
    assert_eq!(lesson_sites, both, "the lesson is for both classrooms: {lessons:?}");
    // Scheduled for this minute, in the school's zone: at most a few minutes ago, not ahead.
    let now = tongxin_common::unix_millis(SystemTime::now());
    let starts_at = lessons[0]["starts_at"].as_i64().unwrap();
    assert!(starts_at <= now && now - starts_at < 10 * 60_000, "starts {} ms before now: {lessons:?}", now - starts_at);
    server.finish().await;
}
