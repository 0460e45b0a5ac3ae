//! The `tongxin` binary: configuration errors, `token`, `admin`, `migrate`, and `serve` with a
//! graceful shutdown.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use tongxin_common::TokenKey;

fn tongxin(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tongxin"));
    c.current_dir(dir);
    // The test's own environment must not leak TONGXIN_* settings into the child.
    for (k, _) in std::env::vars() {
        if k.starts_with("TONGXIN_") {
            c.env_remove(k);
        }
    }
    c
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().expect("run tongxin");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_bad_config_value_names_the_key_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tongxin.toml"), "[http]\nlisten = \"nowhere\"\n").unwrap();
    let (code, _, err) = run(tongxin(dir.path()).args(["migrate"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("http.listen"), "{err}");

    let (code, _, err) = run(tongxin(dir.path()).env("TONGXIN_AUTH_SESSION_TTL", "forever").args(["--config", "/dev/null", "migrate"]));
    assert_eq!(code, 2);
    assert!(err.contains("auth.session_ttl"), "{err}");

    let (code, _, err) = run(tongxin(dir.path()).args(["--config", "/dev/null", "--log-level", "[[[", "migrate"]));
    assert_eq!(code, 2);
    assert!(err.contains("log.level"), "{err}");
}

#[test]
fn token_prints_only_the_token_and_the_server_key_verifies_it() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run(tongxin(dir.path()).args([
        "token",
        "--room",
        "lesson-3",
        "--identity",
        "class-7",
        "--name",
        "红旗小学",
        "--role",
        "classroom",
        "--subscribe",
        "--ttl",
        "30m",
    ]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 1, "stdout holds the token alone: {out:?}");
    let key_file = dir.path().join("data/join-token.key");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key_file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    use base64::Engine as _;
    let secret = base64::engine::general_purpose::STANDARD.decode(std::fs::read_to_string(&key_file).unwrap().trim()).unwrap();
    let v = TokenKey::from_secret(&secret).unwrap().verify(out.trim(), SystemTime::now()).unwrap();
    assert_eq!(v.grant.role.as_str(), "classroom");
    assert!(v.grant.can_subscribe && !v.grant.can_publish);
    let ttl = v.expires_at.duration_since(v.issued_at).unwrap();
    assert_eq!(ttl, Duration::from_secs(1800));

    for (args, needle) in [(vec!["--role", "king"], "--role"), (vec!["--ttl", "48h"], "ttl"), (vec!["--room", "no spaces"], "--room")] {
        let mut cmd = tongxin(dir.path());
        cmd.args(["token", "--identity", "x"]);
        if !args.contains(&"--room") {
            cmd.args(["--room", "r"]);
        }
        let (code, out, err) = run(cmd.args(&args));
        assert_ne!(code, 0, "{args:?} must fail");
        assert!(out.is_empty(), "{args:?} printed {out}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn admin_create_and_list_users() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = tongxin(dir.path())
        .args(["admin", "create-user", "--username", "head", "--role", "admin", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"a-long-password\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.is_empty(), "a password from stdin is never echoed");

    let (code, generated, _) = run(tongxin(dir.path()).args(["admin", "create-user", "--username", "term-1", "--role", "device"]));
    assert_eq!(code, 0);
    assert!(generated.trim().len() >= 16, "a generated password is printed once: {generated:?}");

    let (code, _, err) = run(tongxin(dir.path()).args(["admin", "create-user", "--username", "head", "--role", "teacher"]));
    assert_eq!(code, 1);
    assert!(err.contains("taken"), "{err}");
    let (code, _, err) = run(tongxin(dir.path()).args(["admin", "create-user", "--username", "x", "--role", "teacher"]));
    assert_ne!(code, 0);
    assert!(err.contains("--username"), "{err}");

    let (code, list, _) = run(tongxin(dir.path()).args(["admin", "list-users"]));
    assert_eq!(code, 0);
    let rows: Vec<Vec<&str>> = list.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 2, "{list}");
    assert_eq!((rows[0][1], rows[0][2]), ("head", "admin"));
    assert_eq!((rows[1][1], rows[1][2]), ("term-1", "device"));
}

#[test]
fn migrate_on_postgres() {
    let Some(url) = tongxin_common::testing::postgres_admin_url() else { return };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _ = rt; // the database is created by TestDb inside its own runtime below
    let name = format!("tongxin_cli_{}", std::process::id());
    let admin = url.clone();
    let create = |sql: String| Command::new("psql").arg(&admin).arg("-qc").arg(sql).status().map(|s| s.success()).unwrap_or(false);
    assert!(create(format!("CREATE DATABASE {name}")), "psql could not create a test database");
    let db_url = match url.rsplit_once('/') {
        Some((base, _)) if base.contains("://") && base.len() > "postgres://".len() => format!("{base}/{name}"),
        _ => format!("{url}/{name}"),
    };
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = run(tongxin(dir.path()).args(["--database-url", &db_url, "migrate"]));
    let (code2, _, err2) = run(tongxin(dir.path()).args(["--database-url", &db_url, "migrate"]));
    create(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    assert_eq!(code, 0, "{err}");
    assert_eq!(code2, 0, "migrating again is a no-op: {err2}");
    assert!(!dir.path().join("data/tongxin.db").exists(), "no SQLite file when PostgreSQL is configured");
}

#[test]
fn serve_answers_and_stops_gracefully_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    // Any free media port: the default one may be taken by a server running on this machine.
    let mut child = tongxin(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .env("TONGXIN_MEDIA_LISTEN", "127.0.0.1:0")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut url = None;
    let mut seen = Vec::new();
    while url.is_none() && Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
        if v["message"] == "tongxin serving" {
            url = v["url"].as_str().map(str::to_owned);
        }
        seen.push(line);
    }
    let url = url.unwrap_or_else(|| panic!("server did not report its address; stderr so far:\n{}", seen.join("\n")));
    let port = url.rsplit(':').next().unwrap();

    // A plain HTTP/1.1 request over TCP: no client library needed.
    let get = |path: &str| {
        use std::io::Read as _;
        let mut s = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
        let mut buf = String::new();
        s.read_to_string(&mut buf).unwrap();
        buf
    };
    assert!(get("/healthz").starts_with("HTTP/1.1 200"));
    assert!(get("/readyz").starts_with("HTTP/1.1 200"));

    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "server did not stop within 30 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "graceful shutdown exits 0, got {exit:?}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l.contains("SIGTERM")), "shutdown is logged: {rest:?}");
    assert!(dir.path().join("data/tongxin.db").exists());
}
