//! `tongxin serve` over HTTPS: serves the configured certificate, reloads it on SIGHUP, and keeps
//! the old one when the new files are broken.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};

use crate::harness::{TestCertificate, test_certificate};

const NAME: &str = "school.tongxin.test";

/// The server's log lines, collected as they come.
type Log = Arc<Mutex<Vec<String>>>;

fn start(dir: &Path) -> (Child, Log, u16) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tongxin"));
    cmd.current_dir(dir);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("TONGXIN_")) {
        cmd.env_remove(k);
    }
    let mut child = cmd
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .env("TONGXIN_MEDIA_LISTEN", "127.0.0.1:0")
        .env("TONGXIN_HTTP_TLS_CERT", dir.join("cert.pem"))
        .env("TONGXIN_HTTP_TLS_KEY", dir.join("key.pem"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log: Log = Arc::default();
    let lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    let url = wait_for(&log, "tongxin serving", Duration::from_secs(60));
    let v: serde_json::Value = serde_json::from_str(&url).unwrap();
    let url = v["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with("https://"), "the startup line names an https URL: {url}");
    (child, log, url.rsplit(':').next().unwrap().parse().unwrap())
}

/// Polls the log until a line contains `text`; returns it.
fn wait_for(log: &Log, text: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(line) = log.lock().unwrap().iter().find(|l| l.contains(text)) {
            return line.clone();
        }
        assert!(Instant::now() < deadline, "no log line with {text:?} within {limit:?}:\n{}", log.lock().unwrap().join("\n"));
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `GET /healthz` over TLS trusting only `ca`; the status line and the certificate served.
fn get(port: u16, ca: &[u8]) -> (String, Vec<u8>) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca.to_vec())).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let conn = rustls::ClientConnection::new(Arc::new(config), ServerName::try_from(NAME).unwrap()).unwrap();
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    write!(tls, "GET /healthz HTTP/1.1\r\nHost: {NAME}\r\nConnection: close\r\n\r\n").unwrap();
    let mut reply = Vec::new();
    // A server may close without close_notify once the reply is sent; the reply is what counts.
    let _ = tls.read_to_end(&mut reply);
    let served = tls.conn.peer_certificates().expect("a certificate")[0].to_vec();
    (String::from_utf8_lossy(&reply).lines().next().unwrap_or_default().to_owned(), served)
}

fn install(dir: &Path, cert: &TestCertificate) {
    std::fs::write(dir.join("cert.pem"), &cert.cert_pem).unwrap();
    std::fs::write(dir.join("key.pem"), &cert.key_pem).unwrap();
}

fn hang_up(child: &Child) {
    assert!(Command::new("kill").args(["-HUP", &child.id().to_string()]).status().unwrap().success());
}

#[test]
fn serves_https_and_reloads_the_certificate_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let first = test_certificate(NAME);
    install(dir.path(), &first);
    let (mut child, log, port) = start(dir.path());

    let (status, served) = get(port, &first.ca_der);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(served, first.cert_der, "the configured certificate is served");

    // A renewed certificate (another CA, even) takes over on SIGHUP, without a restart.
    let second = test_certificate(NAME);
    install(dir.path(), &second);
    hang_up(&child);
    wait_for(&log, "TLS certificate reloaded", Duration::from_secs(30));
    let (status, served) = get(port, &second.ca_der);
    assert_eq!((status.as_str(), served == second.cert_der), ("HTTP/1.1 200 OK", true), "the renewed certificate is served");

    // Broken files: the server says why and keeps serving the certificate it had.
    std::fs::write(dir.path().join("key.pem"), test_certificate(NAME).key_pem).unwrap();
    hang_up(&child);
    let line = wait_for(&log, "keeping the old TLS certificate", Duration::from_secs(30));
    assert!(line.contains("http.tls_key"), "the error names the key: {line}");
    let (status, served) = get(port, &second.ca_der);
    assert_eq!((status.as_str(), served == second.cert_der), ("HTTP/1.1 200 OK", true));
    assert!(child.try_wait().unwrap().is_none(), "still running");

    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_missing_certificate_file_stops_the_start_with_the_key_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tongxin"))
        .current_dir(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("TONGXIN_MEDIA_LISTEN", "127.0.0.1:0")
        .env("TONGXIN_HTTP_TLS_CERT", dir.path().join("nope.pem"))
        .env("TONGXIN_HTTP_TLS_KEY", dir.path().join("nope.key"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("http.tls_cert"), "{err}");
}
