//! Privacy from the first log line: drive the flows that handle personal data with every log
//! level on, and fail if any line shows an IP address or an 18-character resident ID number.
//!
//! A test binary of its own: the capturing subscriber is installed process-wide, which is the
//! only way to be sure no event is filtered out by another test thread's (absent) subscriber.

#[path = "../it/harness.rs"]
#[allow(dead_code)] // this binary uses only part of the shared harness
mod harness;

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::http::Method;
use serde_json::json;
use tongxin_web::accounts::AccountRole;
use tracing_subscriber::fmt::MakeWriter;

use harness::TestApp;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn subscriber(capture: &Capture) -> impl tracing::Subscriber + Send + Sync {
    tracing_subscriber::fmt().with_max_level(tracing::Level::TRACE).with_writer(capture.clone()).with_ansi(false).without_time().finish()
}

/// Every problem found in `line`: IP addresses (v4, v6, with or without port) and ID numbers.
fn leaks(line: &str) -> Vec<String> {
    let id_number = regex::Regex::new(r"(?:^|[^0-9])([0-9]{17}[0-9Xx])(?:$|[^0-9A-Za-z])").unwrap();
    let mut found: Vec<String> = id_number.captures_iter(line).map(|c| format!("ID number {}", &c[1])).collect();
    let separators = |c: char| c.is_whitespace() || matches!(c, '=' | '"' | '\'' | ',' | '(' | ')' | '{' | '}' | '<' | '>' | ';');
    for token in line.split(separators) {
        let candidates = [token, token.trim_end_matches(['.', ':']), token.trim_matches(['[', ']'])];
        let ip = candidates.iter().any(|t| t.parse::<IpAddr>().is_ok() || t.parse::<SocketAddr>().is_ok());
        if ip {
            found.push(format!("IP address {token}"));
        }
    }
    found
}

#[test]
fn the_detector_itself_catches_leaks() {
    assert_eq!(leaks("login client=203.0.113.7").len(), 1);
    assert_eq!(leaks("peer 203.0.113.7:40000 said hi").len(), 1);
    assert_eq!(leaks("peer=[2001:db8::1]:443").len(), 1);
    assert_eq!(leaks("from ::1").len(), 1);
    assert_eq!(leaks("patient id=11010519491231002X").len(), 1);
    assert_eq!(leaks("id 110105194912310025 ok").len(), 1);
    assert!(leaks("user=usr_0123456789abcdef01234567 route=/api/v1/me status=200 took 0.25 tongxin_web::auth").is_empty());
    assert!(leaks("client=pii:1a2b3c4d version 0.1.0").is_empty());
}

#[tokio::test]
async fn no_ip_address_or_id_number_reaches_the_logs() {
    let capture = Capture::default();
    tracing::subscriber::set_global_default(subscriber(&capture)).expect("the only subscriber in this binary");

    // A positive control through the same subscriber, so a broken capture cannot pass silently.
    tracing::info!(client = %"198.51.100.23", "control line");
    assert_eq!(leaks(&capture.text()).len(), 1, "the capture must see a deliberately leaked line");
    capture.0.lock().unwrap().clear();

    let app = TestApp::sqlite().await;
    let admin = app.admin_token().await;
    let id_number = "11010519491231002X";
    // Login failures and successes log the client (from ConnectInfo 203.0.113.7) and username.
    app.call(Method::POST, "/api/v1/auth/login", None, Some(json!({"username": "root", "password": "wrong"}))).await;
    app.call(Method::POST, "/api/v1/auth/login", None, Some(json!({"username": id_number, "password": "wrong"}))).await;
    // An account whose display name is an ID number and a patient's name.
    let (status, _) = app
        .call(
            Method::POST,
            "/api/v1/admin/users",
            Some(&admin),
            Some(
                json!({"username": "vdoc", "display_name": format!("卓玛 {id_number}"), "role": "village_doctor", "password": "12345678"}),
            ),
        )
        .await;
    assert_eq!(status, 201);
    app.login("vdoc", "12345678").await;
    // Join tokens for a patient identified by an ID number.
    app.call(
        Method::POST,
        "/api/v1/tokens/join",
        Some(&admin),
        Some(json!({"room": "consult-1", "identity": id_number, "name": "卓玛", "role": "patient"})),
    )
    .await;
    app.user("teacher", AccountRole::Teacher, "12345678").await;
    let t = app.login("teacher", "12345678").await;
    app.call(Method::GET, "/api/v1/admin/users", Some(&t), None).await;
    app.call(Method::POST, "/api/v1/auth/logout", Some(&t), None).await;

    let text = capture.text();
    assert!(text.lines().count() >= 5, "expected the flows to log something:\n{text}");
    assert!(text.contains("login refused") && text.contains("logged in"), "{text}");
    let problems: Vec<String> = text.lines().flat_map(|l| leaks(l).into_iter().map(move |p| format!("{p} in: {l}"))).collect();
    assert!(problems.is_empty(), "personal data in logs:\n{}", problems.join("\n"));
    assert!(!text.contains("卓玛"), "a patient's name reached the logs:\n{text}");
}
