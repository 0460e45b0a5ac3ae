//! A server per test: the real router over a fresh database, a manual clock, and helpers that
//! send JSON requests through `tower::ServiceExt::oneshot`.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt as _;
use serde_json::Value;
use tongxin_common::testing::TestDb;
use tongxin_common::{Clock, TokenKey};
use tongxin_web::accounts::store::NewUser;
use tongxin_web::accounts::{AccountRole, Locale, User, Username};
use tongxin_web::auth::password;
use tongxin_web::config::Config;
use tongxin_web::state::{AppState, migrate};
use tower::ServiceExt as _;

/// Where the manual clock starts: 2026-11-29T00:00:00Z.
pub const T0: Duration = Duration::from_secs(1_795_910_400);

/// The client address test requests appear to come from (a documentation range).
pub const CLIENT: &str = "203.0.113.7:40000";

pub struct TestApp {
    pub state: AppState,
    pub router: Router,
    pub clock: Clock,
    pub test_db: TestDb,
}

impl TestApp {
    /// One app over each backend: SQLite always, PostgreSQL when TEST_POSTGRES_URL is set.
    pub async fn each() -> Vec<TestApp> {
        let mut apps = Vec::new();
        for test_db in TestDb::each().await {
            apps.push(TestApp::over(test_db).await);
        }
        apps
    }

    pub async fn sqlite() -> TestApp {
        TestApp::over(TestDb::sqlite().await).await
    }

    async fn over(test_db: TestDb) -> TestApp {
        migrate(&test_db.db).await.expect("migrate");
        let clock = Clock::manual(UNIX_EPOCH + T0);
        let mut config = Config::default();
        config.storage.data_dir = std::env::temp_dir();
        let key = TokenKey::from_secret(&[42u8; 32]).unwrap();
        let state = AppState::assemble(config, test_db.db.clone(), key, clock.clone());
        let router = tongxin_web::app(state.clone());
        TestApp { state, router, clock, test_db }
    }

    /// The same app with a media server on a loopback port, so `/whip` and `/whep` exist.
    pub async fn with_media(mut self) -> TestApp {
        let media = tongxin_sfu::MediaServer::start("127.0.0.1:0".parse().unwrap(), None, tongxin_sfu::SfuConfig::default())
            .await
            .expect("start media");
        self.state = self.state.clone().with_media(media);
        self.router = tongxin_web::app(self.state.clone());
        self
    }

    pub fn backend(&self) -> String {
        format!("{:?}", self.test_db.backend())
    }

    pub fn now(&self) -> SystemTime {
        self.clock.now()
    }

    /// Creates an account directly in the store.
    pub async fn user(&self, username: &str, role: AccountRole, password_text: &str) -> User {
        let new = NewUser {
            username: Username::parse(username).unwrap(),
            display_name: format!("{username} display"),
            role,
            password_hash: password::hash(password_text).unwrap(),
            locale: Locale::ZhCn,
        };
        self.state.accounts.create_user(new, self.now()).await.unwrap()
    }

    /// Logs in and returns the bearer token.
    pub async fn login(&self, username: &str, password_text: &str) -> String {
        let (status, body) = self
            .call(Method::POST, "/api/v1/auth/login", None, Some(serde_json::json!({"username": username, "password": password_text})))
            .await;
        assert_eq!(status, StatusCode::OK, "login as {username} on {}: {body}", self.backend());
        body["token"].as_str().unwrap().to_owned()
    }

    /// An admin's token (creating the admin).
    pub async fn admin_token(&self) -> String {
        self.user("root", AccountRole::Admin, "root-password").await;
        self.login("root", "root-password").await
    }

    /// Sends a JSON request; returns the status and the parsed body (Null if empty or not JSON).
    pub async fn call(&self, method: Method, path: &str, bearer: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
        let (status, _, bytes) = self.raw(method, path, bearer, body.map(|b| b.to_string()), &[]).await;
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// Sends a request with a raw body and extra headers.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<String>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = bearer {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if body.is_some() && !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut req = req.body(body.map_or_else(Body::empty, Body::from)).unwrap();
        req.extensions_mut().insert(ConnectInfo(CLIENT.parse::<SocketAddr>().unwrap()));
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes().to_vec();
        (status, headers, bytes)
    }
}

/// Asserts an error body of the documented shape and returns its code.
pub fn error_code(body: &Value) -> &str {
    let e = &body["error"];
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "error without message: {body}");
    e["code"].as_str().unwrap_or_else(|| panic!("error without code: {body}"))
}

/// A WHIP offer (audio and video, send-only) from a str0m client on a made-up loopback port.
pub fn publish_offer() -> String {
    let mut rtc = str0m::RtcConfig::new().build(std::time::Instant::now());
    rtc.add_local_candidate(str0m::Candidate::host("127.0.0.1:40000".parse().unwrap(), "udp").unwrap());
    let mut api = rtc.sdp_api();
    api.add_media(str0m::media::MediaKind::Audio, str0m::media::Direction::SendOnly, None, None, None);
    api.add_media(str0m::media::MediaKind::Video, str0m::media::Direction::SendOnly, None, None, None);
    api.apply().unwrap().0.to_sdp_string()
}

/// A certificate for `name` issued by a throwaway test CA, as the server's files want them.
pub struct TestCertificate {
    /// The leaf certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PEM.
    pub key_pem: String,
    /// The leaf, DER (to compare with what a client was served).
    pub cert_der: Vec<u8>,
    /// The CA certificate, DER (a client's trust anchor).
    pub ca_der: Vec<u8>,
    /// base64(SHA-256(leaf SubjectPublicKeyInfo)), for Chromium's
    /// `--ignore-certificate-errors-spki-list`.
    pub spki_sha256: String,
}

/// Issues a fresh CA and a server certificate for `name` (and `127.0.0.1`).
pub fn test_certificate(name: &str) -> TestCertificate {
    use base64::Engine as _;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData as _};
    use sha2::Digest as _;
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "Tongxin test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec![name.to_owned(), "127.0.0.1".to_owned()]).unwrap();
    leaf.distinguished_name.push(DnType::CommonName, name);
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    TestCertificate {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        cert_der: cert.der().to_vec(),
        ca_der: ca_cert.der().to_vec(),
        spki_sha256: base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(key.subject_public_key_info())),
    }
}
