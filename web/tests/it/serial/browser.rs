//! The web shell in headless Chromium (Debian's /usr/bin/chromium driven by playwright-core).

use std::path::PathBuf;
use std::time::Duration;

use tongxin_common::Clock;
use tongxin_common::testing::TestDb;
use tongxin_web::accounts::AccountRole;
use tongxin_web::accounts::store::NewUser;
use tongxin_web::accounts::{Locale, Username};
use tongxin_web::auth::password;
use tongxin_web::config::Config;
use tongxin_web::state::{AppState, migrate};

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/browser")
}

/// Runs a browser script against a real server on a loopback port; fails with its output.
async fn run_script(script: &str, env: &[(&str, String)]) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teacher_logs_in_and_switches_to_uyghur() {
    let test_db = TestDb::sqlite().await;
    migrate(&test_db.db).await.unwrap();
    let mut config = Config::default();
    config.storage.data_dir = test_db.sqlite_dir().unwrap();
    let key = tongxin_common::TokenKey::from_secret(&[9u8; 32]).unwrap();
    let state = AppState::assemble(config, test_db.db.clone(), key, Clock::system());
    let new = NewUser {
        username: Username::parse("li.laoshi").unwrap(),
        display_name: "李老师".into(),
        role: AccountRole::Teacher,
        password_hash: password::hash("blackboard-42").unwrap(),
        locale: Locale::ZhCn,
    };
    state.accounts.create_user(new, std::time::SystemTime::now()).await.unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = tongxin_web::app(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    run_script("shell.mjs", &[("BASE_URL", url), ("USERNAME", "li.laoshi".into()), ("PASSWORD", "blackboard-42".into())]).await;
    server.abort();
}
