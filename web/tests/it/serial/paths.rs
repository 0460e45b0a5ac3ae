//! Reachability for networks that block UDP, in Chromium (WHIP publisher and WHEP player; the
//! steps are in `tests/browser/paths.mjs`):
//! - TURN: a coturn started by the test on loopback with a REST secret; clients forced to
//!   relay-only connect through it with the credentials from the join response, and an expired
//!   credential is refused.
//! - ICE-TCP: the server announces only a passive TCP candidate; both connect over TCP.

use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use tongxin_common::Clock;
use tongxin_web::accounts::store::NewUser;
use tongxin_web::accounts::{AccountRole, Locale, Username};
use tongxin_web::auth::password;
use tongxin_web::config::Config;
use tongxin_web::state::AppState;

use super::run_script;

const SECRET: &str = "a-test-only-turn-secret";
const PASSWORD: &str = "long-enough-password";

/// A free loopback port for both UDP and TCP (coturn listens on both).
fn free_port() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// coturn on 127.0.0.1:`port`, relaying on loopback, checking TURN REST credentials.
fn coturn(port: u16, dir: &std::path::Path) -> tokio::process::Child {
    let turnserver = ["/usr/bin/turnserver", "/usr/sbin/turnserver"].into_iter().find(|p| std::path::Path::new(p).exists());
    let turnserver = turnserver.expect("coturn is not installed; run `scripts/install-deps.sh test` (make test does)");
    let port = port.to_string();
    let userdb = dir.join("turndb");
    let pidfile = dir.join("turnserver.pid");
    tokio::process::Command::new(turnserver)
        .args(["-n", "--listening-ip", "127.0.0.1", "--relay-ip", "127.0.0.1", "--listening-port", &port])
        .args(["--use-auth-secret", "--static-auth-secret", SECRET, "--realm", "tongxin.test"])
        .args([
            "--allow-loopback-peers",
            "--no-cli",
            "--no-tls",
            "--no-dtls",
            "--fingerprint",
            "--min-port",
            "49152",
            "--max-port",
            "49400",
        ])
        .arg("--userdb")
        .arg(&userdb)
        .arg("--pidfile")
        .arg(&pidfile)
        .args(["--log-file", "stdout", "--simple-log"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start turnserver")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_only_client_connects_through_coturn_with_the_join_response_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut turn = coturn(port, dir.path());
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(turn.try_wait().unwrap().is_none(), "turnserver exited at start");
        assert!(Instant::now() < deadline, "turnserver did not listen on {port} within 20 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut config = Config::default();
    config.storage.data_dir = dir.path().to_owned();
    config.media.listen = "127.0.0.1:0".parse().unwrap();
    config.turn.urls = vec![format!("turn:127.0.0.1:{port}?transport=udp"), format!("turn:127.0.0.1:{port}?transport=tcp")];
    config.turn.secret = Some(SECRET.to_owned());
    let expired = tongxin_web::turn::ice_servers(&config.turn, "late", SystemTime::now() - 2 * config.turn.credential_ttl);
    let state = AppState::open(config, Clock::system()).await.expect("open the server state");
    let url = serve_with_admin(state).await;
    run_script(
        "paths.mjs",
        &[
            ("BASE_URL", url),
            ("PATH_KIND", "relay".into()),
            ("USERNAME", "admin".into()),
            ("PASSWORD", PASSWORD.into()),
            ("EXPIRED_ICE", serde_json::to_string(&expired.ice_servers).unwrap()),
        ],
    )
    .await;
    let _ = turn.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_only_a_tcp_candidate_clients_connect_over_ice_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.storage.data_dir = dir.path().to_owned();
    let sfu = tongxin_sfu::SfuConfig { announce_udp: false, ..config.rooms.sfu_config() };
    let loopback = "127.0.0.1:0".parse().unwrap();
    let media = tongxin_sfu::MediaServer::start_with_tcp(loopback, Some(loopback), None, sfu).await.expect("start media");
    let db = tongxin_web::state::open_database(&config).await.unwrap();
    let key = tongxin_web::state::load_token_key(&config).unwrap();
    let state = AppState::assemble(config, db, key, Clock::system()).with_media(media);
    let url = serve_with_admin(state).await;
    run_script("paths.mjs", &[("BASE_URL", url), ("PATH_KIND", "tcp".into()), ("USERNAME", "admin".into()), ("PASSWORD", PASSWORD.into())])
        .await;
}

/// Adds an admin account and serves `state` on a loopback port; returns the base URL. The
/// server runs until the test's runtime ends.
async fn serve_with_admin(state: AppState) -> String {
    let new = NewUser {
        username: Username::parse("admin").unwrap(),
        display_name: "Admin".into(),
        role: AccountRole::Admin,
        password_hash: password::hash(PASSWORD).unwrap(),
        locale: Locale::En,
    };
    state.accounts.create_user(new, SystemTime::now()).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(tongxin_web::serve(state, listener));
    url
}
