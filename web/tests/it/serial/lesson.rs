//! A live lesson in headless Chromium against the real server and media server: a teacher, two
//! classroom terminals and a student on a phone with their personal link; hands, stage, slides,
//! an abrupt reconnect and the end; then the attendance report. The browser steps are in
//! `tests/browser/lesson.mjs`.

use std::net::SocketAddr;
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use super::run_script;

use tongxin_common::Clock;
use tongxin_web::accounts::store::NewUser;
use tongxin_web::accounts::{AccountRole, Locale, Username};
use tongxin_web::auth::password;
use tongxin_web::config::Config;
use tongxin_web::state::AppState;

const PASSWORD: &str = "long-enough-password";

async fn call(router: &axum::Router, method: Method, path: &str, bearer: Option<&str>, body: Option<String>) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = bearer {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    if body.is_some() {
        req = req.header(header::CONTENT_TYPE, "application/json");
    }
    let mut req = req.body(body.map_or_else(Body::empty, Body::from)).unwrap();
    req.extensions_mut().insert(ConnectInfo("127.0.0.1:40000".parse::<SocketAddr>().unwrap()));
    let res = router.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_teacher_two_classrooms_and_a_student_on_a_phone_run_a_lesson() {
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.storage.data_dir = data_dir.path().to_owned();
    config.media.listen = "127.0.0.1:0".parse().unwrap();
    let state = AppState::open(config, Clock::system()).await.expect("open the server state");
    let media = state.media.clone().expect("AppState::open starts the media server");
    let router = tongxin_web::app(state.clone());

    let mut ids = std::collections::HashMap::new();
    for (name, role) in
        [("org", AccountRole::Organizer), ("li.hua", AccountRole::Teacher), ("dev-a", AccountRole::Device), ("dev-b", AccountRole::Device)]
    {
        let new = NewUser {
            username: Username::parse(name).unwrap(),
            display_name: format!("{name} display"),
            role,
            password_hash: password::hash(PASSWORD).unwrap(),
            locale: Locale::ZhCn,
        };
        ids.insert(name, state.accounts.create_user(new, SystemTime::now()).await.unwrap().id.0);
    }
    let login = |name: &'static str| {
        let router = router.clone();
        async move {
            let (status, b) =
                call(&router, Method::POST, "/api/v1/auth/login", None, Some(json!({"username": name, "password": PASSWORD}).to_string()))
                    .await;
            assert_eq!(status, StatusCode::OK, "login as {name}: {b}");
            b["token"].as_str().unwrap().to_owned()
        }
    };
    let org = login("org").await;
    let li = login("li.hua").await;
    // A POST by the organizer that must create something; a null body sends none.
    let post = |path: &str, body: Value| {
        let (router, org, path) = (router.clone(), org.clone(), path.to_owned());
        async move {
            let body = (!body.is_null()).then(|| body.to_string());
            let (status, b) = call(&router, Method::POST, &path, Some(&org), body).await;
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
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(format!("/api/v1/lessons/{lesson}/decks?title=a.pdf"))
        .header(header::AUTHORIZATION, format!("Bearer {li}"))
        .body(Body::from(crate::classroom_manage::two_page_pdf()))
        .unwrap();
    req.extensions_mut().insert(ConnectInfo("127.0.0.1:40000".parse::<SocketAddr>().unwrap()));
    let res = router.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED, "deck upload");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = router.clone().into_make_service_with_connect_info::<SocketAddr>();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let env = [
        ("BASE_URL", url),
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
    let (status, report) = call(&router, Method::GET, &format!("/api/v1/lessons/{lesson}/attendance"), Some(&li), None).await;
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
    let stats = media.stats().await;
    assert_eq!(stats.panics, 0, "the media core panicked");
    server.abort();
}
