//! The classroom management API: an organizer sets up schools, classroom sites, courses,
//! students and lessons; teachers, terminals and assistants each see their own part.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tongxin_web::accounts::AccountRole;

use crate::harness::{TestApp, error_code};

/// 2026-12-01T09:00:00+08:00 (a Tuesday in Shanghai), Unix ms.
const FIRST: i64 = 1_796_086_800_000;
const WEEK: i64 = 7 * 24 * 3_600_000;

/// A school with two classroom sites (each with a terminal, A with an assistant), a course of
/// Teacher Li's with two enrolled students, and Teacher Wang.
pub(crate) struct Fixture {
    pub(crate) organizer: String,
    pub(crate) li: String,
    pub(crate) wang: String,
    pub(crate) wang_id: String,
    pub(crate) device_a: String,
    pub(crate) device_b: String,
    pub(crate) assistant: String,
    pub(crate) school: String,
    pub(crate) site_a: String,
    pub(crate) site_b: String,
    pub(crate) course: String,
    pub(crate) students: [String; 2],
}

impl Fixture {
    pub(crate) async fn new(app: &TestApp) -> Fixture {
        let mut ids = std::collections::HashMap::new();
        for (name, role) in [
            ("org", AccountRole::Organizer),
            ("li.hua", AccountRole::Teacher),
            ("wang.fang", AccountRole::Teacher),
            ("dev-a", AccountRole::Device),
            ("dev-b", AccountRole::Device),
            ("asst", AccountRole::Assistant),
            ("head", AccountRole::Doctor),
        ] {
            ids.insert(name, app.user(name, role, "long-enough-password").await.id.0);
        }
        let login = |name: &'static str| app.login(name, "long-enough-password");
        let organizer = login("org").await;
        let post = |path: &'static str, body: Value| {
            let organizer = organizer.clone();
            async move {
                // A second apart, so lists in creation order are in a known order.
                app.clock.advance(std::time::Duration::from_secs(1));
                let (status, b) = app.call(Method::POST, path, Some(&organizer), Some(body)).await;
                assert_eq!(status, StatusCode::CREATED, "POST {path} on {}: {b}", app.backend());
                b["id"].as_str().unwrap_or_default().to_owned()
            }
        };
        let school =
            post("/api/v1/schools", json!({"name": "Chengdu No. 7", "time_zone": "Asia/Shanghai", "head_user_ids": [ids["head"]]})).await;
        let site_a = post(
            "/api/v1/sites",
            json!({"school_id": school, "name": "Lianghe grade 4", "device_user_id": ids["dev-a"], "assistant_user_ids": [ids["asst"]]}),
        )
        .await;
        let site_b = post("/api/v1/sites", json!({"school_id": school, "name": "Shimen grade 4", "device_user_id": ids["dev-b"]})).await;
        let course =
            post("/api/v1/courses", json!({"school_id": school, "title": "Mathematics, grade 4", "teacher_id": ids["li.hua"]})).await;
        let mut students = Vec::new();
        for name in ["王小明", "李小红"] {
            let student = post("/api/v1/students", json!({"school_id": school, "name": name})).await;
            app.clock.advance(std::time::Duration::from_secs(1));
            let (status, b) = app
                .call(Method::POST, &format!("/api/v1/courses/{course}/students"), Some(&organizer), Some(json!({"student_id": student})))
                .await;
            assert_eq!(status, StatusCode::CREATED, "{b}");
            students.push(student);
        }
        Fixture {
            li: login("li.hua").await,
            wang: login("wang.fang").await,
            wang_id: ids["wang.fang"].clone(),
            device_a: login("dev-a").await,
            device_b: login("dev-b").await,
            assistant: login("asst").await,
            organizer,
            school,
            site_a,
            site_b,
            course,
            students: students.try_into().unwrap(),
        }
    }
}

/// Sends a request expected to fail validation; returns the field the error names.
async fn invalid_field(app: &TestApp, method: Method, path: &str, token: &str, body: Value) -> String {
    let (status, b) = app.call(method, path, Some(token), Some(body)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path} on {}: {b}", app.backend());
    assert_eq!(error_code(&b), "validation");
    b["error"]["field"].as_str().unwrap_or_default().to_owned()
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array().unwrap().iter().map(|v| v["id"].as_str().unwrap().to_owned()).collect()
}

pub(crate) async fn lesson(app: &TestApp, f: &Fixture, title: &str, starts_at: &str, site_ids: &[&str]) -> String {
    let body = json!({"course_id": f.course, "title": title, "starts_at": starts_at, "duration_min": 45, "site_ids": site_ids});
    let (status, b) = app.call(Method::POST, "/api/v1/lessons", Some(&f.organizer), Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{b}");
    b[0]["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn an_organizer_sets_up_a_school_and_schedules_a_weekly_series() {
    for app in TestApp::each().await {
        let f = Fixture::new(&app).await;
        let org = f.organizer.as_str();
        let teacher_id = app.state.accounts.list_users().await.unwrap().into_iter().find(|u| u.username.as_str() == "li.hua").unwrap().id.0;

        let (status, school) = app.call(Method::GET, &format!("/api/v1/schools/{}", f.school), Some(org), None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!((school["time_zone"].as_str(), school["head_user_ids"].as_array().unwrap().len()), (Some("Asia/Shanghai"), 1));
        let (_, sites) = app.call(Method::GET, &format!("/api/v1/sites?school_id={}", f.school), Some(org), None).await;
        assert_eq!(ids(&sites), [f.site_a.clone(), f.site_b.clone()], "{}", app.backend());
        assert_eq!(app.call(Method::GET, "/api/v1/sites?school_id=other", Some(org), None).await.1, json!([]));

        // Re-enrolling is not an error, and says so with 200.
        let (status, _) = app
            .call(Method::POST, &format!("/api/v1/courses/{}/students", f.course), Some(org), Some(json!({"student_id": f.students[0]})))
            .await;
        assert_eq!(status, StatusCode::OK);
        let (_, roster) = app.call(Method::GET, &format!("/api/v1/courses/{}/students", f.course), Some(org), None).await;
        assert_eq!(roster.as_array().unwrap().len(), 2);
        assert_eq!((roster[0]["student"]["name"].as_str(), &roster[0]["link"]), (Some("王小明"), &Value::Null));

        // Eight Tuesdays at 09:00 in Shanghai.
        let body = json!({
            "course_id": f.course, "title": "Fractions", "starts_at": "2026-12-01T09:00:00+08:00", "duration_min": 45,
            "site_ids": [f.site_a, f.site_b], "repeat": {"kind": "weekly", "count": 8}
        });
        let (status, series) = app.call(Method::POST, "/api/v1/lessons", Some(org), Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{series}");
        let series = series.as_array().unwrap().clone();
        assert_eq!(series.len(), 8);
        for (week, l) in series.iter().enumerate() {
            assert_eq!(l["starts_at"].as_i64(), Some(FIRST + week as i64 * WEEK), "{}: week {week}", app.backend());
            assert_eq!(l["ends_at"].as_i64(), Some(FIRST + week as i64 * WEEK + 45 * 60_000));
            assert_eq!(l["series_id"], series[0]["series_id"]);
            assert_eq!(l["rrule"], "FREQ=WEEKLY;COUNT=8");
            assert_eq!(l["teacher_id"].as_str(), Some(teacher_id.as_str()), "the course's teacher teaches it");
            assert_eq!(l["site_ids"], json!([f.site_a, f.site_b]));
        }
        assert!(series[0]["series_id"].is_string());
        let once = lesson(&app, &f, "Revision", "2026-11-30T10:00:00+08:00", &[]).await;

        let (_, all) = app.call(Method::GET, "/api/v1/lessons", Some(org), None).await;
        assert_eq!(all.as_array().unwrap().len(), 9);
        assert_eq!(all[0]["id"].as_str(), Some(once.as_str()), "by start");
        let window = format!("/api/v1/lessons?course_id={}&from=2026-12-08T00:00:00%2B08:00&to=2026-12-22T09:00:00%2B08:00", f.course);
        let (status, two) = app.call(Method::GET, &window, Some(org), None).await;
        assert_eq!(status, StatusCode::OK, "{two}");
        assert_eq!(ids(&two), [series[1]["id"].as_str().unwrap(), series[2]["id"].as_str().unwrap()], "to is exclusive");
        let (status, b) = app.call(Method::GET, "/api/v1/lessons?from=yesterday", Some(org), None).await;
        assert_eq!((status, b["error"]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("from")));

        let cancel = format!("/api/v1/lessons/{}/cancel", series[7]["id"].as_str().unwrap());
        let (status, cancelled) = app.call(Method::POST, &cancel, Some(org), None).await;
        assert_eq!(status, StatusCode::OK);
        assert!(cancelled["cancelled_at"].is_i64(), "{cancelled}");
        let (status, again) = app.call(Method::POST, &cancel, Some(org), None).await;
        assert_eq!((status, &again["cancelled_at"]), (StatusCode::OK, &cancelled["cancelled_at"]), "cancelling twice changes nothing");
        assert_eq!(app.call(Method::POST, "/api/v1/lessons/nope/cancel", Some(org), None).await.0, StatusCode::NOT_FOUND);
        assert_eq!(app.call(Method::GET, "/api/v1/courses/nope", Some(org), None).await.0, StatusCode::NOT_FOUND);

        // Renaming and re-zoning a school, releasing a terminal.
        let (status, b) = app
            .call(
                Method::PATCH,
                &format!("/api/v1/schools/{}", f.school),
                Some(org),
                Some(json!({"name": "No. 7", "time_zone": "Asia/Urumqi"})),
            )
            .await;
        assert_eq!((status, b["name"].as_str(), b["time_zone"].as_str()), (StatusCode::OK, Some("No. 7"), Some("Asia/Urumqi")));
        assert_eq!(b["head_user_ids"].as_array().unwrap().len(), 1, "absent fields stay");
        let (status, b) =
            app.call(Method::PATCH, &format!("/api/v1/sites/{}", f.site_b), Some(org), Some(json!({"device_user_id": null}))).await;
        assert_eq!((status, &b["device_user_id"], b["name"].as_str()), (StatusCode::OK, &Value::Null, Some("Shimen grade 4")));
        let (_, lessons) = app.call(Method::GET, "/api/v1/lessons", Some(&f.device_b), None).await;
        assert_eq!(lessons, json!([]), "a released terminal sees no lessons");
    }
}

#[tokio::test]
async fn invalid_requests_name_the_field() {
    for app in TestApp::each().await {
        let f = Fixture::new(&app).await;
        let org = f.organizer.as_str();
        let post = |path: &'static str, body: Value| invalid_field(&app, Method::POST, path, org, body);

        assert_eq!(post("/api/v1/schools", json!({"name": "X", "time_zone": "Mars/Olympus"})).await, "time_zone");
        assert_eq!(post("/api/v1/schools", json!({"name": " ", "time_zone": "Asia/Shanghai"})).await, "name");
        assert_eq!(
            post("/api/v1/schools", json!({"name": "X", "time_zone": "Asia/Shanghai", "head_user_ids": ["usr_nobody"]})).await,
            "head_user_ids[0]"
        );
        assert_eq!(post("/api/v1/schools", json!({"name": "X"})).await, "time_zone");

        let site = |extra: Value| {
            let mut body = json!({"school_id": f.school, "name": "Grade 5"});
            body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            body
        };
        assert_eq!(post("/api/v1/sites", site(json!({"device_user_id": f.wang_id}))).await, "device_user_id", "a teacher is no terminal");
        assert_eq!(post("/api/v1/sites", site(json!({"assistant_user_ids": [f.wang_id]}))).await, "assistant_user_ids[0]");
        assert_eq!(post("/api/v1/sites", site(json!({"school_id": "nope"}))).await, "school_id");
        // A terminal already serving site A cannot serve another site.
        let dev_a = app.state.classroom.site(&f.site_a).await.unwrap().unwrap().device_user_id.unwrap();
        let (status, b) = app.call(Method::POST, "/api/v1/sites", Some(org), Some(site(json!({"device_user_id": dev_a})))).await;
        assert_eq!((status, error_code(&b)), (StatusCode::CONFLICT, "conflict"), "{}: {b}", app.backend());
        let (status, _) =
            app.call(Method::PATCH, &format!("/api/v1/sites/{}", f.site_b), Some(org), Some(json!({"device_user_id": dev_a}))).await;
        assert_eq!(status, StatusCode::CONFLICT);

        let dev_b = app.state.classroom.site(&f.site_b).await.unwrap().unwrap().device_user_id.unwrap();
        let course = json!({"school_id": f.school, "title": "Art", "teacher_id": dev_b});
        assert_eq!(post("/api/v1/courses", course).await, "teacher_id");
        assert_eq!(post("/api/v1/students", json!({"school_id": "nope", "name": "Zhao"})).await, "school_id");
        let enrol = format!("/api/v1/courses/{}/students", f.course);
        assert_eq!(invalid_field(&app, Method::POST, &enrol, org, json!({"student_id": "nope"})).await, "student_id");

        let lessons = |extra: Value| {
            let mut body = json!({"course_id": f.course, "title": "Fractions", "starts_at": "2026-12-01T09:00:00+08:00",
                "duration_min": 45, "site_ids": [f.site_a]});
            body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            post("/api/v1/lessons", body)
        };
        assert_eq!(lessons(json!({"duration_min": 0})).await, "duration_min");
        assert_eq!(lessons(json!({"site_ids": [f.site_a, "no-such-site"]})).await, "site_ids[1]");
        assert_eq!(lessons(json!({"site_ids": [f.site_a, f.site_a]})).await, "site_ids[1]");
        assert_eq!(lessons(json!({"course_id": "nope"})).await, "course_id");
        assert_eq!(lessons(json!({"starts_at": "2026-12-01T09:00:00"})).await, "starts_at", "an offset is required");
        assert_eq!(lessons(json!({"repeat": {"kind": "weekly", "count": 1}})).await, "repeat.count");
        assert!(lessons(json!({"repeat": {"kind": "daily"}})).await.starts_with("repeat"));
        let (_, list) = app.call(Method::GET, "/api/v1/lessons", Some(org), None).await;
        assert_eq!(list, json!([]), "{}: nothing was created by a refused request", app.backend());
    }
}

#[tokio::test]
async fn a_teacher_cannot_manage_and_sees_only_their_own() {
    for app in TestApp::each().await {
        let f = Fixture::new(&app).await;
        let (status, b) =
            app.call(Method::POST, "/api/v1/schools", Some(&f.li), Some(json!({"name": "X", "time_zone": "Asia/Shanghai"}))).await;
        assert_eq!((status, error_code(&b)), (StatusCode::FORBIDDEN, "forbidden"));
        let body = json!({"course_id": f.course, "title": "T", "starts_at": "2026-12-01T09:00:00+08:00", "duration_min": 45});
        assert_eq!(app.call(Method::POST, "/api/v1/lessons", Some(&f.li), Some(body)).await.0, StatusCode::FORBIDDEN);
        assert_eq!(app.call(Method::GET, "/api/v1/students", Some(&f.li), None).await.0, StatusCode::FORBIDDEN);

        let art = json!({"school_id": f.school, "title": "Art", "teacher_id": f.wang_id});
        let (_, art) = app.call(Method::POST, "/api/v1/courses", Some(&f.organizer), Some(art)).await;
        let art = art["id"].as_str().unwrap().to_owned();
        let maths = lesson(&app, &f, "Fractions", "2026-12-01T09:00:00+08:00", &[&f.site_a]).await;
        let body = json!({"course_id": art, "title": "Colours", "starts_at": "2026-12-02T09:00:00+08:00", "duration_min": 40});
        let (_, colours) = app.call(Method::POST, "/api/v1/lessons", Some(&f.organizer), Some(body)).await;
        let colours = colours[0]["id"].as_str().unwrap().to_owned();

        let (_, mine) = app.call(Method::GET, "/api/v1/courses", Some(&f.li), None).await;
        assert_eq!(ids(&mine), [f.course.as_str()], "{}", app.backend());
        let (_, theirs) = app.call(Method::GET, "/api/v1/courses", Some(&f.wang), None).await;
        assert_eq!(ids(&theirs), [art.as_str()]);
        let (_, every) = app.call(Method::GET, "/api/v1/courses", Some(&f.organizer), None).await;
        assert_eq!(every.as_array().unwrap().len(), 2);
        assert_eq!(app.call(Method::GET, &format!("/api/v1/courses/{}", f.course), Some(&f.li), None).await.0, StatusCode::OK);
        assert_eq!(app.call(Method::GET, &format!("/api/v1/courses/{art}"), Some(&f.li), None).await.0, StatusCode::FORBIDDEN);
        let roster = format!("/api/v1/courses/{art}/students");
        assert_eq!(app.call(Method::GET, &roster, Some(&f.li), None).await.0, StatusCode::FORBIDDEN);

        let (_, lessons) = app.call(Method::GET, "/api/v1/lessons", Some(&f.li), None).await;
        assert_eq!(ids(&lessons), [maths.as_str()], "{}", app.backend());
        assert_eq!(app.call(Method::GET, &format!("/api/v1/lessons/{maths}"), Some(&f.li), None).await.0, StatusCode::OK);
        assert_eq!(app.call(Method::GET, &format!("/api/v1/lessons/{colours}"), Some(&f.li), None).await.0, StatusCode::FORBIDDEN);
        assert_eq!(app.call(Method::POST, &format!("/api/v1/lessons/{maths}/cancel"), Some(&f.li), None).await.0, StatusCode::FORBIDDEN);
    }
}

#[tokio::test]
async fn a_student_link_is_shown_once_replaced_and_revoked() {
    for app in TestApp::each().await {
        let f = Fixture::new(&app).await;
        let link_path = format!("/api/v1/courses/{}/students/{}/link", f.course, f.students[0]);
        let roster_path = format!("/api/v1/courses/{}/students", f.course);

        let (status, first) = app.call(Method::POST, &link_path, Some(&f.li), None).await;
        assert_eq!(status, StatusCode::CREATED, "{first}");
        let url = first["url"].as_str().unwrap().to_owned();
        let secret = url.strip_prefix("/l#").unwrap().to_owned();
        assert_eq!(secret.len(), 43, "32 random bytes in base64url");
        assert!(secret.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{secret}");
        let hash: String = Sha256::digest(secret.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        let stored = app.state.classroom.link_by_hash(&hash).await.unwrap().expect("stored by the SHA-256 of its secret");
        assert_eq!(stored.id, first["link"]["id"].as_str().unwrap());
        assert!(app.state.classroom.link_by_hash(&secret).await.unwrap().is_none(), "the secret itself is not stored");

        // The roster shows the link, never its secret.
        let (_, roster) = app.call(Method::GET, &roster_path, Some(&f.li), None).await;
        assert_eq!(roster[0]["link"]["id"], first["link"]["id"]);
        assert_eq!(roster[0]["link"]["revoked_at"], Value::Null);
        assert!(!roster.to_string().contains(&secret), "shown once: {roster}");
        assert_eq!(roster[1]["link"], Value::Null);

        // A new link replaces the old one; the organizer may make it too.
        app.clock.advance(std::time::Duration::from_secs(60));
        let (status, second) = app.call(Method::POST, &link_path, Some(&f.organizer), None).await;
        assert_eq!(status, StatusCode::CREATED);
        assert_ne!(second["url"], first["url"]);
        let old = app.state.classroom.link_by_hash(&hash).await.unwrap().unwrap();
        assert_eq!(old.revoked_at, second["link"]["created_at"].as_i64(), "{}: replaced means revoked", app.backend());
        let (_, roster) = app.call(Method::GET, &roster_path, Some(&f.li), None).await;
        assert_eq!((&roster[0]["link"]["id"], &roster[0]["link"]["revoked_at"]), (&second["link"]["id"], &Value::Null));

        // Only the course's teacher, or an organizer or admin, manages its links.
        assert_eq!(app.call(Method::POST, &link_path, Some(&f.wang), None).await.0, StatusCode::FORBIDDEN);
        assert_eq!(app.call(Method::DELETE, &link_path, Some(&f.wang), None).await.0, StatusCode::FORBIDDEN);
        assert_eq!(app.call(Method::POST, &link_path, Some(&f.device_a), None).await.0, StatusCode::FORBIDDEN);

        assert_eq!(app.call(Method::DELETE, &link_path, Some(&f.li), None).await.0, StatusCode::NO_CONTENT);
        let (_, roster) = app.call(Method::GET, &roster_path, Some(&f.li), None).await;
        assert!(roster[0]["link"]["revoked_at"].is_i64(), "{roster}");
        assert_eq!(app.call(Method::DELETE, &link_path, Some(&f.li), None).await.0, StatusCode::NOT_FOUND, "nothing live to revoke");

        // Unenrolling revokes the student's link; an unenrolled student gets none.
        let other_link = format!("/api/v1/courses/{}/students/{}/link", f.course, f.students[1]);
        let (_, third) = app.call(Method::POST, &other_link, Some(&f.li), None).await;
        let unenrol = format!("/api/v1/courses/{}/students/{}", f.course, f.students[1]);
        assert_eq!(app.call(Method::DELETE, &unenrol, Some(&f.li), None).await.0, StatusCode::FORBIDDEN, "organizers enrol");
        assert_eq!(app.call(Method::DELETE, &unenrol, Some(&f.organizer), None).await.0, StatusCode::NO_CONTENT);
        assert_eq!(app.call(Method::DELETE, &unenrol, Some(&f.organizer), None).await.0, StatusCode::NOT_FOUND);
        let links = app.state.classroom.links_for_course(&f.course).await.unwrap();
        let third = links.iter().find(|l| l.id == third["link"]["id"].as_str().unwrap()).unwrap();
        assert!(third.revoked_at.is_some(), "{}", app.backend());
        assert_eq!(app.call(Method::POST, &other_link, Some(&f.li), None).await.0, StatusCode::NOT_FOUND);
        let (_, roster) = app.call(Method::GET, &roster_path, Some(&f.li), None).await;
        assert_eq!(roster.as_array().unwrap().len(), 1);
    }
}

#[tokio::test]
async fn terminals_and_assistants_see_only_their_sites_lessons() {
    for app in TestApp::each().await {
        let f = Fixture::new(&app).await;
        let both = lesson(&app, &f, "Both", "2026-12-01T09:00:00+08:00", &[&f.site_a, &f.site_b]).await;
        let only_a = lesson(&app, &f, "A", "2026-12-02T09:00:00+08:00", &[&f.site_a]).await;
        let only_b = lesson(&app, &f, "B", "2026-12-03T09:00:00+08:00", &[&f.site_b]).await;

        let (status, a) = app.call(Method::GET, "/api/v1/lessons", Some(&f.device_a), None).await;
        assert_eq!(status, StatusCode::OK, "{a}");
        assert_eq!(ids(&a), [both.clone(), only_a.clone()], "{}", app.backend());
        let (_, b) = app.call(Method::GET, "/api/v1/lessons", Some(&f.device_b), None).await;
        assert_eq!(ids(&b), [both.clone(), only_b.clone()]);
        let (_, assisted) = app.call(Method::GET, "/api/v1/lessons", Some(&f.assistant), None).await;
        assert_eq!(ids(&assisted), [both.clone(), only_a.clone()]);
        let from = "/api/v1/lessons?from=2026-12-02T00:00:00Z";
        assert_eq!(ids(&app.call(Method::GET, from, Some(&f.device_a), None).await.1), [only_a.as_str()], "filters still apply");

        assert_eq!(app.call(Method::GET, &format!("/api/v1/lessons/{only_a}"), Some(&f.device_a), None).await.0, StatusCode::OK);
        assert_eq!(app.call(Method::GET, &format!("/api/v1/lessons/{only_b}"), Some(&f.device_a), None).await.0, StatusCode::FORBIDDEN);
        assert_eq!(app.call(Method::GET, "/api/v1/lessons/nope", Some(&f.device_a), None).await.0, StatusCode::NOT_FOUND);
        // A terminal manages nothing and reads no course or school records.
        assert_eq!(app.call(Method::GET, "/api/v1/courses", Some(&f.device_a), None).await.0, StatusCode::FORBIDDEN);
        assert_eq!(app.call(Method::GET, "/api/v1/schools", Some(&f.device_a), None).await.0, StatusCode::FORBIDDEN);
    }
}

#[tokio::test]
async fn the_openapi_document_lists_the_classroom_routes() {
    let app = TestApp::sqlite().await;
    let (_, doc) = app.call(Method::GET, "/api/openapi.json", None, None).await;
    for (path, method) in [
        ("/api/v1/schools", "post"),
        ("/api/v1/schools/{id}", "patch"),
        ("/api/v1/sites", "get"),
        ("/api/v1/sites/{id}", "patch"),
        ("/api/v1/courses", "post"),
        ("/api/v1/courses/{id}/students", "post"),
        ("/api/v1/courses/{id}/students/{student_id}", "delete"),
        ("/api/v1/courses/{id}/students/{student_id}/link", "post"),
        ("/api/v1/students", "post"),
        ("/api/v1/lessons", "post"),
        ("/api/v1/lessons/{id}/cancel", "post"),
        ("/api/v1/lesson-links/join", "post"),
        ("/api/v1/lesson-links/lookup", "post"),
        ("/api/v1/lesson-links/state", "post"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path} missing from the OpenAPI document");
    }
    for schema in ["School", "Site", "Lesson", "CreateLessons", "CreatedLink", "EnrolledStudent", "LessonStateView"] {
        assert!(doc["components"]["schemas"][schema].is_object(), "schema {schema} missing");
    }
}

/// An RFC 3339 instant `minutes` from the test clock's now.
pub(crate) fn in_minutes(app: &TestApp, minutes: i64) -> String {
    let now = tongxin_common::unix_millis(app.now());
    jiff::Timestamp::from_millisecond(now + minutes * 60_000).unwrap().to_string()
}

#[tokio::test]
async fn who_may_join_which_lesson_gets_a_grant_for_its_role() {
    for app in TestApp::each().await {
        let app = app.with_media().await;
        let f = Fixture::new(&app).await;
        let soon = lesson(&app, &f, "Fractions", &in_minutes(&app, 5), &[&f.site_a]).await;
        let later = lesson(&app, &f, "Decimals", &in_minutes(&app, 120), &[&f.site_a]).await;
        let join = |id: &str, token: &str| {
            let (path, token) = (format!("/api/v1/lessons/{id}/join"), token.to_owned());
            let app = &app;
            async move { app.call(Method::POST, &path, Some(&token), None).await }
        };

        let (status, t) = join(&soon, &f.li).await;
        assert_eq!(status, StatusCode::OK, "the teacher joins 5 minutes early on {}: {t}", app.backend());
        assert_eq!((t["role"].as_str(), t["phase"].as_str()), (Some("teacher"), Some("open")), "{t}");
        assert!(t["identity"].as_str().unwrap().starts_with("teacher:"), "{t}");
        assert_eq!(t["sites"][0]["id"], f.site_a.as_str(), "{t}");
        let grant = app.state.token_key.verify(t["token"].as_str().unwrap(), app.now()).expect("a valid join token").grant;
        assert!(grant.can_publish && grant.can_publish_data && !grant.hidden);

        let (status, c) = join(&soon, &f.device_a).await;
        assert_eq!(status, StatusCode::OK, "{c}");
        assert_eq!(c["identity"], format!("classroom:{}", f.site_a), "{c}");
        let (status, b) = join(&soon, &f.device_b).await;
        assert_eq!((status, error_code(&b)), (StatusCode::FORBIDDEN, "not_invited"), "a site not in the lesson: {b}");
        let (status, w) = join(&soon, &f.wang).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "another teacher: {w}");
        let (status, l) = join(&later, &f.li).await;
        assert_eq!((status, error_code(&l)), (StatusCode::CONFLICT, "not_open_yet"), "two hours early: {l}");
        let (status, _) = join("0000000000000000", &f.li).await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        // A student's link joins the open lesson, receive-only.
        let link_path = format!("/api/v1/courses/{}/students/{}/link", f.course, f.students[0]);
        let (_, link) = app.call(Method::POST, &link_path, Some(&f.li), None).await;
        let secret = link["url"].as_str().unwrap().strip_prefix("/l#").unwrap().to_owned();
        let by_link = json!({ "secret": secret });
        let (status, lobby) = app.call(Method::POST, "/api/v1/lesson-links/lookup", None, Some(by_link.clone())).await;
        assert_eq!(status, StatusCode::OK, "{lobby}");
        assert_eq!(lobby["course"]["id"], f.course.as_str(), "{lobby}");
        assert_eq!(lobby["lessons"][0]["id"], soon.as_str(), "{lobby}");
        assert_eq!(lobby["lessons"][0]["phase"], "open", "{lobby}");
        let (status, s) = app.call(Method::POST, "/api/v1/lesson-links/join", None, Some(by_link.clone())).await;
        assert_eq!(status, StatusCode::OK, "{s}");
        assert_eq!((s["role"].as_str(), s["lesson"]["id"].as_str()), (Some("student"), Some(soon.as_str())), "{s}");
        let grant = app.state.token_key.verify(s["token"].as_str().unwrap(), app.now()).unwrap().grant;
        assert!(!grant.can_publish && grant.can_subscribe, "a student never publishes");

        // The link's page in the lesson fetches the state again without joining again: the same
        // answer an account gets from the lesson's state route, and nothing in the attendance log.
        let lock = json!({"locked": true});
        let (status, _) = app.call(Method::PUT, &format!("/api/v1/lessons/{soon}/chat-lock"), Some(&f.li), Some(lock)).await;
        assert_eq!(status, StatusCode::OK, "the teacher locks the chat");
        let logged = app.state.classroom.events(&soon).await.unwrap().len();
        let (status, by_secret) = app.call(Method::POST, "/api/v1/lesson-links/state", None, Some(by_link.clone())).await;
        assert_eq!(status, StatusCode::OK, "{by_secret}");
        let (_, by_account) = app.call(Method::GET, &format!("/api/v1/lessons/{soon}/state"), Some(&f.li), None).await;
        assert_eq!(by_secret, by_account, "the link's state is the lesson's");
        assert_eq!(by_secret["lesson_id"], soon.as_str(), "{by_secret}");
        assert_eq!(by_secret["state"]["chat_locked"], true, "the change since the join is in it: {by_secret}");
        assert!(by_secret["decks"].is_array(), "{by_secret}");
        assert_eq!(app.state.classroom.events(&soon).await.unwrap().len(), logged, "fetching the state logs no attendance event");

        // A student no longer enrolled: their link reads no state, like it joins nothing.
        let other_path = format!("/api/v1/courses/{}/students/{}/link", f.course, f.students[1]);
        let (_, other) = app.call(Method::POST, &other_path, Some(&f.li), None).await;
        let other = json!({ "secret": other["url"].as_str().unwrap().strip_prefix("/l#").unwrap() });
        let unenrol = format!("/api/v1/courses/{}/students/{}", f.course, f.students[1]);
        assert_eq!(app.call(Method::DELETE, &unenrol, Some(&f.organizer), None).await.0, StatusCode::NO_CONTENT);
        let (status, r) = app.call(Method::POST, "/api/v1/lesson-links/state", None, Some(other.clone())).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "an unenrolled student's link: {r}");
        let (status, r) = app.call(Method::POST, "/api/v1/lesson-links/join", None, Some(other)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "an unenrolled student's link joins nothing: {r}");

        app.call(Method::DELETE, &link_path, Some(&f.li), None).await;
        let (status, r) = app.call(Method::POST, "/api/v1/lesson-links/join", None, Some(by_link.clone())).await;
        assert_eq!((status, error_code(&r)), (StatusCode::FORBIDDEN, "link_revoked"), "a revoked link: {r}");
        let (status, r) = app.call(Method::POST, "/api/v1/lesson-links/state", None, Some(by_link.clone())).await;
        assert_eq!((status, error_code(&r)), (StatusCode::FORBIDDEN, "link_revoked"), "a revoked link reads no state: {r}");
        let (status, r) = app.call(Method::POST, "/api/v1/lesson-links/lookup", None, Some(by_link)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "a revoked link shows no lessons: {r}");
        for route in ["join", "state"] {
            let path = format!("/api/v1/lesson-links/{route}");
            let (status, r) = app.call(Method::POST, &path, None, Some(json!({ "secret": "nope" }))).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{route} with an unknown secret: {r}");
            let (status, r) = app.call(Method::POST, &path, None, Some(json!({}))).await;
            assert_eq!((status, r["error"]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("secret")), "{route}: {r}");
        }

        // Every join asked for a token: attendance sees the attempts.
        let events = app.state.classroom.events(&soon).await.unwrap();
        assert_eq!(events.len(), 3, "teacher, classroom and student attempts: {events:?}");
    }
}

#[tokio::test]
async fn the_teacher_runs_the_lesson_and_gets_its_attendance() {
    use tongxin_classroom::model::{AttendanceEvent, Attendee, EventKind};
    for app in TestApp::each().await {
        let app = app.with_media().await;
        let f = Fixture::new(&app).await;
        let id = lesson(&app, &f, "Fractions", &in_minutes(&app, 5), &[&f.site_a, &f.site_b]).await;
        let path = |tail: &str| format!("/api/v1/lessons/{id}/{tail}");
        let (status, _) = app.call(Method::POST, &path("join"), Some(&f.li), None).await;
        assert_eq!(status, StatusCode::OK);

        // Hands queue in order; only a classroom of the lesson raises one.
        let (status, s) = app.call(Method::PUT, &path("hand"), Some(&f.device_b), Some(json!({"raised": true}))).await;
        assert_eq!(status, StatusCode::OK, "{s}");
        let (_, s) = app.call(Method::PUT, &path("hand"), Some(&f.device_a), Some(json!({"raised": true}))).await;
        assert_eq!(s["hands"], json!([f.site_b, f.site_a]), "{s}");
        let (status, _) = app.call(Method::PUT, &path("hand"), Some(&f.li), Some(json!({"raised": true}))).await;
        assert_eq!(status, StatusCode::FORBIDDEN);

        // On stage lowers its hand; only the teacher stages; a stranger site is named.
        let (status, _) = app.call(Method::PUT, &path("stage"), Some(&f.device_a), Some(json!({"site_id": f.site_a}))).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let field = invalid_field(&app, Method::PUT, &path("stage"), &f.li, json!({"site_id": "nope"})).await;
        assert_eq!(field, "site_id");
        let (_, s) = app.call(Method::PUT, &path("stage"), Some(&f.li), Some(json!({"site_id": f.site_b}))).await;
        assert_eq!((&s["stage"], &s["hands"]), (&json!(f.site_b), &json!([f.site_a])), "{s}");
        let (_, s) = app.call(Method::PUT, &path("chat-lock"), Some(&f.li), Some(json!({"locked": true}))).await;
        assert_eq!(s["chat_locked"], true);
        let field = invalid_field(&app, Method::PUT, &path("page"), &f.li, json!({"deck_id": "none", "page": 0})).await;
        assert_eq!(field, "deck_id");
        // Slides: a PDF becomes pages served at immutable content-hashed URLs; a page turn is checked.
        let (status, _, deck) = app.raw(Method::POST, &path("decks?title=a.pdf"), Some(&f.li), Some(two_page_pdf()), &[]).await;
        assert_eq!(status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&deck));
        let deck: Value = serde_json::from_slice(&deck).unwrap();
        assert_eq!(deck["pages"].as_array().map(Vec::len), Some(2), "{deck}");
        let hash = deck["pages"][1]["hash"].as_str().unwrap();
        let (status, headers, jpeg) = app.raw(Method::GET, &format!("/api/v1/slides/{hash}.jpg"), None, None, &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert!(headers["cache-control"].to_str().unwrap().contains("immutable") && jpeg.len() <= 40 * 1024);
        let (_, s) = app.call(Method::PUT, &path("page"), Some(&f.li), Some(json!({"deck_id": deck["id"], "page": 1}))).await;
        assert_eq!((&s["deck_id"], &s["page"]), (&deck["id"], &json!(1)), "{s}");
        let field = invalid_field(&app, Method::PUT, &path("page"), &f.li, json!({"deck_id": deck["id"], "page": 2})).await;
        assert_eq!(field, "page");
        let (status, _, _) = app.raw(Method::POST, &path("decks"), Some(&f.li), Some("not slides".into()), &[]).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        let (status, h) =
            app.call(Method::PUT, &path("headcount"), Some(&f.assistant), Some(json!({"site_id": f.site_a, "pupils": 31}))).await;
        assert_eq!(status, StatusCode::OK, "{h}");

        let (_, state) = app.call(Method::GET, &path("state"), Some(&f.device_a), None).await;
        assert_eq!(state["state"]["stage"], json!(f.site_b), "a rejoining terminal catches up: {state}");
        let (status, m) = app.call(Method::POST, &path("mute-all"), Some(&f.li), None).await;
        assert_eq!((status, &m["muted"]), (StatusCode::OK, &json!(0)), "nobody is publishing yet: {m}");

        // Attendance from the log: classroom A came and stayed, B never came.
        let start = tongxin_common::unix_millis(app.now()) + 5 * 60_000;
        for (attendee, kind, detail, at) in [
            (Attendee::Classroom(f.site_a.clone()), EventKind::Joined, None, start - 60_000),
            (Attendee::Classroom(f.site_a.clone()), EventKind::Left, Some("room_closed"), start + 45 * 60_000),
        ] {
            let e = AttendanceEvent { lesson_id: id.clone(), attendee, kind, detail: detail.map(str::to_owned), at };
            app.state.classroom.record_event(&e).await.unwrap();
        }
        app.clock.advance(std::time::Duration::from_secs(60 * 60));
        let (status, _) = app.call(Method::POST, &path("end"), Some(&f.li), None).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = app.call(Method::POST, &path("end"), Some(&f.li), None).await;
        assert_eq!(status, StatusCode::CONFLICT, "ending twice");
        let (status, report) = app.call(Method::GET, &path("attendance"), Some(&f.li), None).await;
        assert_eq!(status, StatusCode::OK, "{report}");
        let status_of = |kind: &str, id: &str| {
            let r = report["records"].as_array().unwrap().iter().find(|r| r["attendee"]["kind"] == kind && r["attendee"]["id"] == id);
            r.map(|r| r["status"].as_str().unwrap().to_owned()).unwrap_or_default()
        };
        assert_eq!(status_of("classroom", &f.site_a), "present", "{report}");
        assert_eq!(status_of("classroom", &f.site_b), "absent", "{report}");
        assert_eq!(status_of("student", &f.students[0]), "absent", "{report}");
        let (status, _, csv) = app.raw(Method::GET, &path("attendance.csv"), Some(&f.li), None, &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert!(csv.starts_with(b"\xef\xbb\xbflesson_start,lesson_title,kind,id,name,status"), "a UTF-8 BOM, then the header");
        let (status, _) = app.call(Method::GET, &path("attendance"), Some(&f.device_a), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
}

/// A two-page PDF with a line of text on each page.
pub fn two_page_pdf() -> String {
    let page = |n: usize, content: usize| {
        format!("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 640 360] /Contents {content} 0 R /Resources << /Font << /F1 7 0 R >> >> >>")
            + &format!("% page {n}")
    };
    let text = |t: &str| {
        let stream = format!("BT /F1 36 Tf 40 200 Td ({t}) Tj ET");
        format!("<< /Length {} >>\nstream\n{stream}\nendstream", stream.len())
    };
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        "<< /Type /Pages /Kids [3 0 R 4 0 R] /Count 2 >>".to_owned(),
        page(1, 5),
        page(2, 6),
        text("Fractions: 1/2 + 1/4"),
        text("Decimals: 0.5 + 0.25"),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_owned(),
    ];
    let mut pdf = String::from("%PDF-1.4\n");
    let mut offsets = Vec::new();
    for (i, body) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf += &format!("{} 0 obj\n{body}\nendobj\n", i + 1);
    }
    let xref = pdf.len();
    pdf += &format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1);
    for o in offsets {
        pdf += &format!("{o:010} 00000 n \n");
    }
    pdf += &format!("trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n", objects.len() + 1);
    pdf
}
