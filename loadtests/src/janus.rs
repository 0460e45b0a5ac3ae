//! Janus (Debian's 1.1, VideoRoom plugin) as a load target: its configuration files, written
//! from the templates in `loadtests/janus/` (the same ones `scripts/janus.sh config` fills in),
//! and a client of its JSON API over the HTTP transport.
//!
//! A publisher joins a room and offers (`joinandconfigure` with the JSEP offer; the answer comes
//! back in the `joined` event); a subscriber joins with `ptype: subscriber` and the publisher's
//! feed id, gets Janus's offer in the `attached` event and sends its answer with `start`. Each
//! participant has a session of its own with one VideoRoom handle; a task long-polls the
//! session's events and another sends a keepalive every [`KEEPALIVE`], well inside the 60 s
//! session timeout.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::participant::{self, Peer, Res};

/// The HTTP transport's port in the written configuration.
pub const HTTP_PORT: u16 = 8088;
/// The first VideoRoom room of the configuration; scenario room `r` is `FIRST_ROOM + r`.
pub const FIRST_ROOM: u64 = 1000;
/// Rooms in the configuration (the scenario's maximum).
pub const ROOMS: u64 = 20;
/// How often a session says it is alive (Janus ends one silent for 60 s).
pub const KEEPALIVE: Duration = Duration::from_secs(25);
/// Janus answers a long poll with a keepalive after 30 s without events.
const LONG_POLL: Duration = Duration::from_secs(35);
/// How long a request's asynchronous event may take.
const EVENT_WAIT: Duration = Duration::from_secs(30);

const CORE: &str = include_str!("../janus/janus.jcfg");
const HTTP: &str = include_str!("../janus/janus.transport.http.jcfg");
const VIDEOROOM: &str = include_str!("../janus/janus.plugin.videoroom.jcfg");
const ROOM: &str = include_str!("../janus/videoroom-room.jcfg");

/// The configuration files (name, text) for a Janus whose API and media use `addr`, whose
/// configuration folder is `dir` and whose modules are under `libdir` (`…/janus`).
pub fn config_files(dir: &Path, addr: IpAddr, libdir: &Path) -> Vec<(&'static str, String)> {
    let fill = |t: &str| {
        t.replace("@DIR@", &dir.display().to_string())
            .replace("@ADDR@", &addr.to_string())
            .replace("@PORT@", &HTTP_PORT.to_string())
            .replace("@LIBDIR@", &libdir.display().to_string())
    };
    let rooms: String = (FIRST_ROOM..FIRST_ROOM + ROOMS).map(|r| ROOM.replace("@ROOM@", &r.to_string())).collect();
    vec![
        ("janus.jcfg", fill(CORE)),
        ("janus.transport.http.jcfg", fill(HTTP)),
        ("janus.plugin.videoroom.jcfg", fill(&VIDEOROOM.replace("@ROOMS@", &rooms))),
    ]
}

/// Writes [`config_files`] into `dir`.
///
/// # Errors
///
/// A file could not be written.
pub fn write_config(dir: &Path, addr: IpAddr, libdir: &Path) -> std::io::Result<()> {
    for (name, text) in config_files(dir, addr, libdir) {
        std::fs::write(dir.join(name), text)?;
    }
    Ok(())
}

/// The installed Janus: its binary and the folder holding its `plugins/` and `transports/`
/// (Debian: `/usr/lib/<triplet>/janus`); `None` when the package is not installed.
pub fn installed() -> Option<(PathBuf, PathBuf)> {
    let binary = PathBuf::from("/usr/bin/janus");
    if !binary.is_file() {
        return None;
    }
    let libdir = std::fs::read_dir("/usr/lib")
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path().join("janus"))
        .chain([PathBuf::from("/usr/lib/janus"), PathBuf::from("/opt/janus/lib/janus")])
        .find(|d| d.join("plugins/libjanus_videoroom.so").exists() && d.join("transports/libjanus_http.so").exists())?;
    Some((binary, libdir))
}

static TRANSACTION: AtomicU64 = AtomicU64::new(1);

fn transaction() -> String {
    format!("tx{}", TRANSACTION.fetch_add(1, Ordering::Relaxed))
}

/// POSTs a Janus API message; returns the parsed response.
async fn post(http: SocketAddr, path: &str, body: &Value) -> Res<Value> {
    let (status, _, text) = participant::request(http, "POST", path, &[("Content-Type", "application/json")], &body.to_string()).await?;
    if status != 200 {
        return Err(format!("POST {path}: HTTP {status}: {}", text.trim()).into());
    }
    let value: Value = serde_json::from_str(&text).map_err(|e| format!("POST {path}: not JSON ({e}): {text}"))?;
    if value["janus"] == "error" {
        return Err(format!("POST {path}: Janus error {}: {}", value["error"]["code"], value["error"]["reason"]).into());
    }
    Ok(value)
}

/// `GET /janus/info`: the server's name, version and modules (also a readiness check).
///
/// # Errors
///
/// Janus did not answer with its info.
pub async fn info(http: SocketAddr) -> Res<Value> {
    let (status, _, text) = participant::request(http, "GET", "/janus/info", &[], "").await?;
    if status != 200 {
        return Err(format!("GET /janus/info: HTTP {status}").into());
    }
    Ok(serde_json::from_str(&text)?)
}

/// One Janus session with a VideoRoom handle; its background tasks end when it is dropped.
pub struct Session {
    http: SocketAddr,
    id: u64,
    handle: u64,
    events: mpsc::UnboundedReceiver<Value>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Session {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Session {
    /// Creates a session and attaches the VideoRoom plugin.
    ///
    /// # Errors
    ///
    /// Janus refused or did not answer.
    pub async fn open(http: SocketAddr) -> Res<Session> {
        let created = post(http, "/janus", &json!({"janus": "create", "transaction": transaction()})).await?;
        let id = created["data"]["id"].as_u64().ok_or_else(|| format!("create: no session id in {created}"))?;
        let path = format!("/janus/{id}");
        let attached =
            post(http, &path, &json!({"janus": "attach", "plugin": "janus.plugin.videoroom", "transaction": transaction()})).await?;
        let handle = attached["data"]["id"].as_u64().ok_or_else(|| format!("attach: no handle id in {attached}"))?;
        let (tx, events) = mpsc::unbounded_channel();
        let poll = tokio::spawn(async move {
            let path = format!("/janus/{id}?maxev=10");
            loop {
                let Ok((200, _, text)) = participant::request_within(http, "GET", &path, &[], "", LONG_POLL).await else {
                    // The session is gone (destroyed or timed out): nothing more will come.
                    return;
                };
                let batch: Vec<Value> = match serde_json::from_str(&text) {
                    Ok(Value::Array(list)) => list,
                    Ok(one) => vec![one],
                    Err(_) => continue,
                };
                for event in batch.into_iter().filter(|e| e["janus"] != "keepalive") {
                    if tx.send(event).is_err() {
                        return;
                    }
                }
            }
        });
        let keepalive = tokio::spawn(async move {
            let path = format!("/janus/{id}");
            loop {
                tokio::time::sleep(KEEPALIVE).await;
                if post(http, &path, &json!({"janus": "keepalive", "transaction": transaction()})).await.is_err() {
                    return;
                }
            }
        });
        Ok(Session { http, id, handle, events, tasks: vec![poll, keepalive] })
    }

    /// Sends `body` to the VideoRoom plugin (with `jsep`, if any); returns the plugin's data and
    /// the JSEP of its reply, from the response itself (synchronous requests) or from the event
    /// with this request's transaction.
    ///
    /// # Errors
    ///
    /// Janus or the plugin answered with an error, or no event came within 30 s.
    pub async fn message(&mut self, body: Value, jsep: Option<Value>) -> Res<(Value, Option<Value>)> {
        let tx = transaction();
        let mut msg = json!({"janus": "message", "transaction": tx, "body": body});
        if let Some(jsep) = jsep {
            msg["jsep"] = jsep;
        }
        let reply = post(self.http, &format!("/janus/{}/{}", self.id, self.handle), &msg).await?;
        let event = if reply["janus"] == "ack" {
            let wait = async {
                while let Some(e) = self.events.recv().await {
                    if e["transaction"] == tx.as_str() {
                        return Some(e);
                    }
                }
                None
            };
            tokio::time::timeout(EVENT_WAIT, wait)
                .await
                .map_err(|_| format!("no reply to {} within {EVENT_WAIT:?}", msg["body"]))?
                .ok_or("the session ended")?
        } else {
            reply
        };
        let data = event["plugindata"]["data"].clone();
        if let Some(error) = data.get("error") {
            return Err(format!("VideoRoom: {} (code {})", error, data["error_code"]).into());
        }
        Ok((data, event.get("jsep").cloned()))
    }

    /// Tells Janus no more candidates follow (they were all in the SDP).
    async fn candidates_done(&self) -> Res<()> {
        let msg = json!({"janus": "trickle", "transaction": transaction(), "candidate": {"completed": true}});
        post(self.http, &format!("/janus/{}/{}", self.id, self.handle), &msg).await?;
        Ok(())
    }

    /// Ends the session and with it the handle's PeerConnection.
    pub async fn destroy(self) {
        let _ = post(self.http, &format!("/janus/{}", self.id), &json!({"janus": "destroy", "transaction": transaction()})).await;
    }
}

/// Publishes `peer` (a publisher) in `room`: joins as `display`, offers, applies Janus's answer
/// and waits until connected. Returns the session (keep it open while publishing) and the feed
/// id subscribers ask for.
///
/// # Errors
///
/// Signalling failed, or the connection did not come up within 30 s.
pub async fn publish(http: SocketAddr, room: u64, display: &str, peer: &mut Peer) -> Res<(Session, u64)> {
    let mut session = Session::open(http).await?;
    let offer = peer.offer().await?;
    let body = json!({"request": "joinandconfigure", "room": room, "ptype": "publisher", "display": display});
    let (data, jsep) = session.message(body, Some(json!({"type": "offer", "sdp": offer}))).await?;
    let feed = data["id"].as_u64().ok_or_else(|| format!("joinandconfigure: no publisher id in {data}"))?;
    let answer = jsep.as_ref().and_then(|j| j["sdp"].as_str()).ok_or("joinandconfigure: no answer")?;
    peer.accept_answer(answer).await?;
    session.candidates_done().await?;
    peer.wait_connected().await?;
    Ok((session, feed))
}

/// Subscribes `peer` (an [`answering player`](Peer::answering_player_on)) to `feed` in `room`:
/// joins, answers Janus's offer, starts, and waits until connected.
///
/// # Errors
///
/// Signalling failed, or the connection did not come up within 30 s.
pub async fn subscribe(http: SocketAddr, room: u64, feed: u64, peer: &mut Peer) -> Res<Session> {
    let mut session = Session::open(http).await?;
    let body = json!({"request": "join", "room": room, "ptype": "subscriber", "streams": [{"feed": feed}]});
    let (_, jsep) = session.message(body, None).await?;
    let offer = jsep.as_ref().and_then(|j| j["sdp"].as_str()).ok_or("join: no offer from Janus")?;
    let answer = peer.answer(offer).await?;
    session.message(json!({"request": "start"}), Some(json!({"type": "answer", "sdp": answer}))).await?;
    session.candidates_done().await?;
    peer.wait_connected().await?;
    Ok(session)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_forces_h264_uncapped_on_the_given_address() {
        let files = config_files(Path::new("/tmp/j"), "10.199.0.2".parse().unwrap(), Path::new("/usr/lib/x86_64-linux-gnu/janus"));
        let get = |name: &str| files.iter().find(|(n, _)| *n == name).map(|(_, t)| t.as_str()).unwrap();
        for (_, text) in &files {
            assert!(!text.contains('@'), "every placeholder filled:\n{text}");
        }
        let core = get("janus.jcfg");
        assert!(core.contains("configs_folder = \"/tmp/j\"") && core.contains("ice_enforce_list = \"10.199.0.2\""));
        assert!(core.contains("plugins_folder = \"/usr/lib/x86_64-linux-gnu/janus/plugins\""));
        assert!(core.contains("session_timeout = 60") && KEEPALIVE < Duration::from_secs(60));
        // Only the VideoRoom and the HTTP transport stay.
        assert!(!core.contains("libjanus_videoroom.so") && !core.contains("libjanus_http.so") && core.contains("libjanus_streaming.so"));
        let http = get("janus.transport.http.jcfg");
        assert!(http.contains("ip = \"10.199.0.2\"") && http.contains(&format!("port = {HTTP_PORT}")));
        let rooms = get("janus.plugin.videoroom.jcfg");
        assert_eq!(rooms.matches("videocodec = \"h264\"").count(), ROOMS as usize);
        assert_eq!(rooms.matches("bitrate = 0").count(), ROOMS as usize);
        assert!(rooms.contains(&format!("room-{FIRST_ROOM}: {{")) && rooms.contains(&format!("room-{}: {{", FIRST_ROOM + ROOMS - 1)));
    }
}
