//! Tests that drive a real browser. `make test` runs this module with --test-threads=1 so two
//! Chromium instances never share the two cores.

mod browser;
mod classroom;
mod lesson;
mod paths;
mod room;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use tongxin_common::Clock;
use tongxin_web::accounts::store::NewUser;
use tongxin_web::accounts::{AccountRole, Locale, Username};
use tongxin_web::auth::password;
use tongxin_web::config::Config;
use tongxin_web::state::AppState;

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/browser")
}

/// Runs a browser script against a real server on a loopback port; fails with its output.
pub async fn run_script(script: &str, env: &[(&str, String)]) {
    let dir = browser_dir();
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed; run `scripts/install-deps.sh test` (make test does)"
    );
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(script).current_dir(&dir).env("SCREENSHOT_DIR", &shots).kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    // A generous bound: the script has its own per-step waits; this only stops a hung browser.
    let out = tokio::time::timeout(Duration::from_secs(300), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{script} did not finish within 300 s"))
        .expect("run node");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{script} failed:\n{text}");
    eprintln!("{text}screenshots in {}", shots.display());
}

/// The password of every account the browser tests create.
pub const PASSWORD: &str = "long-enough-password";

/// The server as `tongxin serve` builds it — database, token key and media server from a fresh
/// data directory, media on loopback only, so the browsers never leave the machine — answering
/// HTTP on a loopback port. Dropping it stops serving.
pub struct LiveServer {
    pub state: AppState,
    pub router: Router,
    pub media: tongxin_sfu::MediaServer,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    _data_dir: tempfile::TempDir,
}

impl LiveServer {
    pub async fn start() -> LiveServer {
        let data_dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.storage.data_dir = data_dir.path().to_owned();
        config.media.listen = "127.0.0.1:0".parse().unwrap();
        let state = AppState::open(config, Clock::system()).await.expect("open the server state");
        let media = state.media.clone().expect("AppState::open starts the media server");
        let router = tongxin_web::app(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = router.clone().into_make_service_with_connect_info::<SocketAddr>();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        LiveServer { state, router, media, url, server, _data_dir: data_dir }
    }

    /// Creates an account in the store as `tongxin admin create-user` does, with [`PASSWORD`];
    /// returns its id.
    pub async fn user(&self, username: &str, display_name: &str, role: AccountRole) -> String {
        let new = NewUser {
            username: Username::parse(username).unwrap(),
            display_name: display_name.to_owned(),
            role,
            password_hash: password::hash(PASSWORD).unwrap(),
            locale: Locale::ZhCn,
        };
        self.state.accounts.create_user(new, SystemTime::now()).await.unwrap().id.0
    }

    /// One request through the router, as if from 127.0.0.1.
    pub async fn send(&self, mut req: Request<Body>) -> axum::response::Response {
        req.extensions_mut().insert(ConnectInfo("127.0.0.1:40000".parse::<SocketAddr>().unwrap()));
        self.router.clone().oneshot(req).await.unwrap()
    }

    /// A JSON request (or none, for a `None` body); the status and the JSON answer (null if none).
    pub async fn call(&self, method: Method, path: &str, bearer: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = bearer {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        let res = self.send(req.body(body.map_or_else(Body::empty, |b| Body::from(b.to_string()))).unwrap()).await;
        let status = res.status();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// A session token of `username`.
    pub async fn login(&self, username: &str) -> String {
        let body = json!({"username": username, "password": PASSWORD});
        let (status, b) = self.call(Method::POST, "/api/v1/auth/login", None, Some(body)).await;
        assert_eq!(status, StatusCode::OK, "login as {username}: {b}");
        b["token"].as_str().unwrap().to_owned()
    }

    /// Checks that the media core never panicked, and stops serving.
    pub async fn finish(self) {
        let stats = self.media.stats().await;
        assert_eq!(stats.panics, 0, "the media core panicked");
    }
}

impl Drop for LiveServer {
    fn drop(&mut self) {
        self.server.abort();
    }
}
