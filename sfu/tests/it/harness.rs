//! A media server with its WHIP/WHEP routes and the room WebSocket on loopback ports, and a
//! minimal HTTP/1.1 client.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tongxin_common::{Identity, JoinGrant, RoomName, RoomRole, TokenKey};
use tongxin_sfu::http::{AuthError, Authorizer, WhipState};
use tongxin_sfu::{MediaServer, SfuConfig};

pub struct TokenAuth(pub TokenKey);

impl Authorizer for TokenAuth {
    fn authorize<'a>(&'a self, bearer: &'a str) -> Pin<Box<dyn Future<Output = Result<JoinGrant, AuthError>> + Send + 'a>> {
        Box::pin(async move { self.0.verify(bearer, SystemTime::now()).map(|v| v.grant).map_err(|e| AuthError(e.to_string())) })
    }
}

pub struct TestServer {
    pub http: SocketAddr,
    #[allow(dead_code)] // kept alive for the test's duration; some tests read its stats
    pub media: MediaServer,
    pub key: TokenKey,
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::start_with(SfuConfig::default()).await
    }

    /// A server with `config` (e.g. a short `reconnect_grace`).
    pub async fn start_with(config: SfuConfig) -> TestServer {
        let media = MediaServer::start("127.0.0.1:0".parse().unwrap(), None, config).await.expect("start media");
        TestServer::serve(media).await
    }

    /// A server whose media port and HTTP routes both listen on `ip` (e.g. the root side of a
    /// veth pair into a network namespace), announcing `ip` as its candidate.
    #[allow(dead_code)] // only the namespace tests use it
    pub async fn start_on(ip: std::net::IpAddr) -> TestServer {
        TestServer::start_on_with(ip, SfuConfig::default()).await
    }

    /// [`TestServer::start_on`] with `config` (e.g. the transcoder on).
    #[allow(dead_code)] // only the namespace tests use it
    pub async fn start_on_with(ip: std::net::IpAddr, config: SfuConfig) -> TestServer {
        let media = MediaServer::start(SocketAddr::new(ip, 0), None, config).await.expect("start media");
        TestServer::serve_on(media, ip).await
    }

    /// A server that announces a passive ICE-TCP candidate on a loopback port and no UDP
    /// candidate, as behind a firewall that drops UDP.
    #[allow(dead_code)] // only the ICE-TCP test uses it
    pub async fn start_tcp_only() -> TestServer {
        let loopback = "127.0.0.1:0".parse().unwrap();
        let config = SfuConfig { announce_udp: false, ..SfuConfig::default() };
        let media = MediaServer::start_with_tcp(loopback, Some(loopback), None, config).await.expect("start media with ICE-TCP");
        TestServer::serve(media).await
    }

    /// Serves the WHIP/WHEP routes and the room WebSocket for `media` on a loopback port.
    async fn serve(media: MediaServer) -> TestServer {
        TestServer::serve_on(media, std::net::Ipv4Addr::LOCALHOST.into()).await
    }

    /// Serves the WHIP/WHEP routes and the room WebSocket for `media` on a port of `ip`.
    async fn serve_on(media: MediaServer, ip: std::net::IpAddr) -> TestServer {
        let key = TokenKey::from_secret(&[5u8; 32]).unwrap();
        let state = WhipState::new(media.clone(), Arc::new(TokenAuth(key.clone())));
        let app = tongxin_sfu::http::router(state.clone()).merge(tongxin_sfu::ws::router(state));
        let listener = tokio::net::TcpListener::bind(SocketAddr::new(ip, 0)).await.unwrap();
        let http = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        TestServer { http, media, key }
    }

    /// The room signalling WebSocket (`sfu/PROTOCOL.md`).
    #[allow(dead_code)] // only the room tests use it
    pub fn ws_url(&self) -> String {
        format!("ws://{}/api/v1/rtc", self.http)
    }

    /// A join token for `grant`, valid for ten minutes.
    pub fn mint(&self, grant: &JoinGrant) -> String {
        self.key.mint(grant, SystemTime::now(), Duration::from_secs(600)).unwrap()
    }

    pub fn token(&self, room: &str, identity: &str, role: RoomRole, publish: bool, subscribe: bool) -> String {
        let grant = JoinGrant {
            room: RoomName::parse(room).unwrap(),
            identity: Identity::parse(identity).unwrap(),
            name: None,
            role,
            can_publish: publish,
            can_subscribe: subscribe,
            can_publish_data: true,
            hidden: false,
        };
        self.mint(&grant)
    }

    /// Sends one HTTP/1.1 request; returns (status, headers lower-cased, body).
    pub async fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, Vec<(String, String)>, String) {
        let mut s = tokio::net::TcpStream::connect(self.http).await.unwrap();
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(body);
        s.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.unwrap();
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut lines = head.lines();
        let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
        let headers = lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned())).collect();
        (status, headers, body.to_owned())
    }

    /// POSTs an SDP offer to a WHIP or WHEP endpoint.
    pub async fn post_offer(&self, path: &str, token: &str, offer: &str) -> (u16, Vec<(String, String)>, String) {
        let auth = format!("Bearer {token}");
        self.request("POST", path, &[("Content-Type", "application/sdp"), ("Authorization", &auth)], offer).await
    }
}

/// What a successful WHIP/WHEP exchange returned, with the peer connected.
pub struct Connected {
    pub peer: crate::peer::Peer,
    pub offer: String,
    pub headers: Vec<(String, String)>,
    pub answer: String,
}

impl TestServer {
    /// A `webrtc`-crate publisher that POSTs its offer to `path` (expects 201) and connects.
    pub async fn connect_publisher(&self, path: &str, token: &str) -> Connected {
        self.connect(crate::peer::Peer::publisher().await, path, token, |a| a.to_owned()).await
    }

    /// A `webrtc`-crate player that POSTs its offer to `path` (expects 201) and connects,
    /// after `rewrite` changes the answer (e.g. to dial a relay instead of the media port).
    pub async fn connect_player(&self, path: &str, token: &str, rewrite: impl Fn(&str) -> String) -> Connected {
        self.connect(crate::peer::Peer::player().await, path, token, rewrite).await
    }

    /// POSTs the offer of `peer` (built by the caller, e.g. over ICE-TCP) to `path` (expects
    /// 201) and connects it.
    #[allow(dead_code)] // only the ICE-TCP test uses it
    pub async fn connect_peer(&self, peer: crate::peer::Peer, path: &str, token: &str) -> Connected {
        self.connect(peer, path, token, |a| a.to_owned()).await
    }

    async fn connect(&self, mut peer: crate::peer::Peer, path: &str, token: &str, rewrite: impl Fn(&str) -> String) -> Connected {
        let offer = peer.offer().await;
        let (status, headers, answer) = self.post_offer(path, token, &offer).await;
        assert_eq!(status, 201, "{path}: {answer}");
        peer.accept_answer(&rewrite(&answer)).await;
        peer.wait_connected().await;
        Connected { peer, offer, headers, answer }
    }
}

pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}
