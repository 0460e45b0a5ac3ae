//! The web shell in headless Chromium (Debian's /usr/bin/chromium driven by playwright-core).

use super::run_script;

use tongxin_common::Clock;
use tongxin_common::testing::TestDb;
use tongxin_web::accounts::AccountRole;
use tongxin_web::accounts::store::NewUser;
use tongxin_web::accounts::{Locale, Username};
use tongxin_web::auth::password;
use tongxin_web::config::Config;
use tongxin_web::state::{AppState, migrate};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_origin_gets_the_camera_and_a_secure_cookie() {
    let name = "school.tongxin.test";
    let cert = crate::harness::test_certificate(name);
    let test_db = TestDb::sqlite().await;
    migrate(&test_db.db).await.unwrap();
    let dir = test_db.sqlite_dir().unwrap();
    std::fs::write(dir.join("cert.pem"), &cert.cert_pem).unwrap();
    std::fs::write(dir.join("key.pem"), &cert.key_pem).unwrap();
    let mut config = Config::default();
    config.storage.data_dir = dir.clone();
    config.http.tls_cert = Some(dir.join("cert.pem"));
    config.http.tls_key = Some(dir.join("key.pem"));
    let key = tongxin_common::TokenKey::from_secret(&[9u8; 32]).unwrap();
    let state = AppState::assemble(config, test_db.db.clone(), key, Clock::system());
    let new = NewUser {
        username: Username::parse("doctor.zhao").unwrap(),
        display_name: "赵医生".into(),
        role: AccountRole::Doctor,
        password_hash: password::hash("stethoscope-7").unwrap(),
        locale: Locale::ZhCn,
    };
    state.accounts.create_user(new, std::time::SystemTime::now()).await.unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{name}:{}", listener.local_addr().unwrap().port());
    let server = tokio::spawn(tongxin_web::serve(state, listener));
    run_script(
        "https.mjs",
        &[("BASE_URL", url), ("SPKI", cert.spki_sha256), ("USERNAME", "doctor.zhao".into()), ("PASSWORD", "stethoscope-7".into())],
    )
    .await;
    server.abort();
}
