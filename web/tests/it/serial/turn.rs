//! TURN: a coturn started by the test on loopback with a REST secret; Chromium forced to
//! relay-only connects a WHIP publisher and a WHEP player through it with the credentials from
//! the join response, and an expired credential is refused. The browser steps are in
//! `tests/browser/turn.mjs`.

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
        .args(["--allow-loopback-peers", "--no-cli", "--no-tls", "--no-dtls", "--fingerprint", "--min-port", "49152", "--max-port", "49400"])
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
    let new = NewUser {
        username: Username::parse("admin").unwrap(),
        display_name: "Admin".into(),
        role: AccountRole::Admin,
        password_hash: password::hash("long-enough-password").unwrap(),
        locale: Locale::En,
    };
    state.accounts.create_user(new, SystemTime::now()).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(tongxin_web::serve(state, listener));

    run_script(
        "turn.mjs",
        &[
            ("BASE_URL", url),
            ("USERNAME", "admin".into()),
            ("PASSWORD", "long-enough-password".into()),
            ("EXPIRED_ICE", serde_json::to_string(&expired.ice_servers).unwrap()),
        ],
    )
    .await;
    server.abort();
    let _ = turn.kill().await;
}
