//! A room participant speaking `sfu/PROTOCOL.md` (protocol 1), independent of the server's code:
//! a tokio-tungstenite WebSocket for signalling, a subscriber connection that answers every
//! server offer (renegotiations included) and a publisher connection that offers our own
//! H.264 and Opus tracks, both `webrtc`-crate peers from [`crate::peer`]. Every server message
//! is recorded, so tests assert on what arrived and a failed wait lists all of it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::TestServer;
use crate::peer::{Peer, access_unit, opus_frame};

/// How long any wait lasts before it fails: generous, since a failure is a bug, not slowness.
pub const WAIT: Duration = Duration::from_secs(20);

/// Access units between keyframes in a [`Pump`] (one second at 30 fps).
pub const GOP: u32 = 30;

/// Polls `cond` every 20 ms; fails after [`WAIT`] with `what` and whatever `context` says then.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool, context: impl Fn() -> String) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        if tokio::time::Instant::now() > deadline {
            panic!("{what}: not within {} s; {}", WAIT.as_secs(), context());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The type of a server message.
pub fn type_of(message: &Value) -> &str {
    message["type"].as_str().unwrap_or("")
}

/// The identity a message names in `field`: a plain string or a participant object.
pub fn identity_in<'a>(message: &'a Value, field: &str) -> &'a str {
    let v = &message[field];
    v.as_str().or_else(|| v["identity"].as_str()).unwrap_or("")
}

/// One m-line of an SDP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSection {
    /// `audio`, `video` or `application`.
    pub kind: String,
    pub mid: String,
    /// `sendonly`, `recvonly`, `sendrecv` or `inactive`, when the section says.
    pub direction: Option<String>,
}

/// The m-lines of `sdp`, in order.
pub fn media_sections(sdp: &str) -> Vec<MediaSection> {
    let mut out: Vec<MediaSection> = Vec::new();
    for line in sdp.lines().map(str::trim) {
        if let Some(m) = line.strip_prefix("m=") {
            out.push(MediaSection { kind: m.split(' ').next().unwrap_or("").to_owned(), mid: String::new(), direction: None });
        } else if let Some(section) = out.last_mut() {
            if let Some(mid) = line.strip_prefix("a=mid:") {
                section.mid = mid.to_owned();
            } else if let Some(d) = ["sendonly", "recvonly", "sendrecv", "inactive"].iter().find(|d| line == format!("a={d}")) {
                section.direction = Some((*d).to_owned());
            }
        }
    }
    out
}

/// What the client's tasks share with it.
#[derive(Default)]
struct Shared {
    /// Every server message, in arrival order (and `client_error` notes from our own tasks).
    messages: Vec<Value>,
    /// The latest subscriber offer's `tracks`: mid → track id.
    tracks: HashMap<String, String>,
    subscriber: Option<Arc<Peer>>,
    socket_closed: bool,
}

/// A participant in a room: one WebSocket, a subscriber and (after [`RoomClient::publish`]) a
/// publisher connection.
pub struct RoomClient {
    pub identity: String,
    /// The `joined` message.
    pub joined: Value,
    shared: Arc<Mutex<Shared>>,
    out: mpsc::UnboundedSender<Message>,
    socket: JoinHandle<()>,
    publisher: Option<Arc<Peer>>,
}

impl RoomClient {
    /// Joins with `token`; fails the test if the server refuses.
    pub async fn join(server: &TestServer, token: &str) -> RoomClient {
        RoomClient::try_join(server, json!({"type": "join", "protocol": 1, "token": token}))
            .await
            .unwrap_or_else(|e| panic!("join refused: {e}"))
    }

    /// Joins with `token` and the `resume` credential of an earlier `joined`.
    pub async fn join_resume(server: &TestServer, token: &str, resume: &str) -> RoomClient {
        RoomClient::try_join(server, json!({"type": "join", "protocol": 1, "token": token, "resume": resume}))
            .await
            .unwrap_or_else(|e| panic!("resume refused: {e}"))
    }

    /// Sends `join` as the first frame; the `error` message if the answer is not `joined`.
    pub async fn try_join(server: &TestServer, join: Value) -> Result<RoomClient, Value> {
        let (ws, _) = tokio_tungstenite::connect_async(server.ws_url()).await.expect("connect the room WebSocket");
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (out, out_rx) = mpsc::unbounded_channel();
        let (in_tx, in_rx) = mpsc::unbounded_channel();
        let socket = tokio::spawn(run_socket(ws, out_rx, in_tx, shared.clone()));
        tokio::spawn(dispatch(in_rx, out.clone(), shared.clone()));
        let mut client = RoomClient { identity: String::new(), joined: Value::Null, shared, out, socket, publisher: None };
        client.send(join);
        let reply = client.wait_for("joined or error", |m| matches!(type_of(m), "joined" | "error")).await;
        if type_of(&reply) == "error" {
            return Err(reply);
        }
        client.identity = reply["participant"]["identity"].as_str().expect("joined.participant.identity").to_owned();
        client.joined = reply;
        Ok(client)
    }

    /// The resume credential from `joined`.
    pub fn resume_credential(&self) -> String {
        self.joined["resume"].as_str().expect("joined.resume is a string").to_owned()
    }

    /// Sends one JSON frame.
    pub fn send(&self, message: Value) {
        let _ = self.out.send(Message::Text(message.to_string().into()));
    }

    /// Every server message so far.
    pub fn messages(&self) -> Vec<Value> {
        self.shared.lock().unwrap().messages.clone()
    }

    /// How many messages arrived so far: pass it to [`RoomClient::wait_for_since`].
    pub fn mark(&self) -> usize {
        self.shared.lock().unwrap().messages.len()
    }

    /// The first message so far that matches, waiting for it (bounded).
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait_for_since(0, what, pred).await
    }

    /// The first message after the first `since` that matches, waiting for it (bounded).
    pub async fn wait_for_since(&self, since: usize, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let find = || self.shared.lock().unwrap().messages.iter().skip(since).find(|m| pred(m)).cloned();
        wait_until(&format!("{} waited for {what}", self.who()), || find().is_some(), || self.describe()).await;
        find().unwrap()
    }

    /// Whether any message so far matches.
    pub fn saw(&self, pred: impl Fn(&Value) -> bool) -> bool {
        self.shared.lock().unwrap().messages.iter().any(pred)
    }

    /// Whether the server closed the socket (or it was dropped).
    pub fn socket_closed(&self) -> bool {
        self.shared.lock().unwrap().socket_closed
    }

    /// Waits (bounded) for the server to close the socket.
    pub async fn wait_socket_closed(&self) {
        wait_until(&format!("{}'s socket to close", self.who()), || self.socket_closed(), || self.describe()).await;
    }

    /// Offers send-only H.264 (camera) and Opus (microphone) on a fresh publisher connection and
    /// waits until it connects; source → track id from `publish_answer`.
    pub async fn publish(&mut self) -> HashMap<String, String> {
        match self.try_publish().await {
            Ok(ids) => ids,
            Err(e) => panic!("{} could not publish: {e}", self.who()),
        }
    }

    /// Like [`RoomClient::publish`], but the server's `error` is returned, not a failure.
    pub async fn try_publish(&mut self) -> Result<HashMap<String, String>, Value> {
        let mut peer = Peer::publisher().await;
        let offer = peer.offer().await;
        let sources: Vec<(String, &str)> = media_sections(&offer)
            .into_iter()
            .map(|m| {
                let source = if m.kind == "video" { "camera" } else { "microphone" };
                (m.mid, source)
            })
            .collect();
        let tracks: Vec<Value> = sources.iter().map(|(mid, source)| json!({"mid": mid, "source": source})).collect();
        let mark = self.mark();
        self.send(json!({"type": "publish", "sdp": offer, "tracks": tracks}));
        let reply = self
            .wait_for_since(mark, "publish_answer or its error", |m| {
                type_of(m) == "publish_answer" || (type_of(m) == "error" && m["refused"] == "publish")
            })
            .await;
        if type_of(&reply) == "error" {
            peer.close().await;
            return Err(reply);
        }
        peer.accept_answer(reply["sdp"].as_str().expect("publish_answer.sdp")).await;
        peer.wait_connected().await;
        let mut ids = HashMap::new();
        for (mid, source) in sources {
            let id = reply["tracks"][&mid].as_str().unwrap_or_else(|| panic!("publish_answer.tracks has no id for mid {mid}: {reply}"));
            ids.insert(source.to_owned(), id.to_owned());
        }
        if let Some(old) = self.publisher.replace(Arc::new(peer)) {
            old.close().await;
        }
        Ok(ids)
    }

    /// The publisher connection (after [`RoomClient::publish`]).
    pub fn publisher(&self) -> Arc<Peer> {
        self.publisher.clone().expect("publish() first")
    }

    /// The subscriber connection, once the server offered it.
    pub fn subscriber(&self) -> Option<Arc<Peer>> {
        self.shared.lock().unwrap().subscriber.clone()
    }

    /// The mid that the latest subscriber offer maps to `track`.
    pub fn mid_of(&self, track: &str) -> Option<String> {
        self.shared.lock().unwrap().tracks.iter().find(|(_, t)| *t == track).map(|(mid, _)| mid.clone())
    }

    /// Access units (video) or Opus frames (audio) received on the m-line that the latest
    /// offer maps to `track`.
    pub fn received(&self, track: &str) -> Vec<Bytes> {
        self.mid_of(track).map(|mid| self.received_on(&mid)).unwrap_or_default()
    }

    /// Access units or Opus frames received on the m-line `mid` of the subscriber connection,
    /// whatever it carries now.
    pub fn received_on(&self, mid: &str) -> Vec<Bytes> {
        let Some(sub) = self.subscriber() else { return Vec::new() };
        sub.received.lock().unwrap().by_mid.get(mid).cloned().unwrap_or_default()
    }

    /// Waits (bounded) until more than `n` units or frames arrived for `track`.
    pub async fn wait_received(&self, track: &str, n: usize) {
        let what = format!("{} to receive more than {n} units of track {track}", self.who());
        wait_until(&what, || self.received(track).len() > n, || format!("got {}; {}", self.received(track).len(), self.describe())).await;
    }

    /// Sends a JSON object on the data channel.
    pub async fn send_data(&self, message: &Value) {
        let what = format!("{}'s subscriber connection", self.who());
        wait_until(&what, || self.subscriber().is_some(), || self.describe()).await;
        self.subscriber().unwrap().send_data(&message.to_string()).await;
    }

    /// Sends `{"kind": "chat", "text": text}` on the data channel.
    pub async fn send_chat(&self, text: &str) {
        self.send_data(&json!({"kind": "chat", "text": text})).await;
    }

    /// Every data-channel message received so far, parsed (a non-JSON one becomes a string).
    pub fn data_messages(&self) -> Vec<Value> {
        let Some(sub) = self.subscriber() else { return Vec::new() };
        let texts = sub.received.lock().unwrap().data.clone();
        texts.into_iter().map(|t| serde_json::from_str(&t).unwrap_or(Value::String(t))).collect()
    }

    /// The first data-channel message that matches, waiting for it (bounded).
    pub async fn wait_for_data(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let find = || self.data_messages().into_iter().find(|m| pred(m));
        let context = || format!("data messages: {:?}; {}", self.data_messages(), self.describe());
        wait_until(&format!("{} waited for data {what}", self.who()), || find().is_some(), context).await;
        find().unwrap()
    }

    /// Mutes or unmutes one of our own tracks.
    pub fn mute(&self, source: &str, muted: bool) {
        self.send(json!({"type": "mute", "source": source, "muted": muted}));
    }

    /// Leaves (`leave`), waits (bounded) for the server to close the socket, closes the peers.
    pub async fn leave(self) {
        self.send(json!({"type": "leave"}));
        self.wait_socket_closed().await;
        self.close().await;
    }

    /// Closes the WebSocket abruptly, without `leave` or a close frame, as a lost network does.
    /// The peer connections stay as they are until [`RoomClient::close`].
    pub fn drop_socket(&self) {
        self.socket.abort();
        self.shared.lock().unwrap().socket_closed = true;
    }

    /// Closes the peer connections and the socket.
    pub async fn close(&self) {
        self.socket.abort();
        let subscriber = self.shared.lock().unwrap().subscriber.take();
        for peer in subscriber.iter().chain(self.publisher.iter()) {
            peer.close().await;
        }
    }

    fn who(&self) -> String {
        if self.identity.is_empty() { "a joining client".to_owned() } else { format!("participant {:?}", self.identity) }
    }

    /// What arrived, for failure messages: every message without SDP, `quality` only counted.
    pub fn describe(&self) -> String {
        let shared = self.shared.lock().unwrap();
        let mut quality = 0;
        let mut lines = Vec::new();
        for m in &shared.messages {
            if type_of(m) == "quality" {
                quality += 1;
                continue;
            }
            let mut m = m.clone();
            if m.get("sdp").is_some() {
                m["sdp"] = json!("…");
            }
            let text = m.to_string();
            let short: String = text.chars().take(400).collect();
            lines.push(if short.len() < text.len() { format!("{short}…") } else { short });
        }
        format!(
            "{} received {} messages ({quality} quality, socket {}):\n  {}",
            self.who(),
            shared.messages.len(),
            if shared.socket_closed { "closed" } else { "open" },
            lines.join("\n  ")
        )
    }
}

impl Drop for RoomClient {
    fn drop(&mut self) {
        self.socket.abort();
    }
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Owns the socket: sends what the client queues, hands each text frame on as JSON. Aborting
/// this task drops the TCP connection without a close frame.
async fn run_socket(
    mut ws: Socket,
    mut out: mpsc::UnboundedReceiver<Message>,
    inbound: mpsc::UnboundedSender<Value>,
    shared: Arc<Mutex<Shared>>,
) {
    loop {
        tokio::select! {
            next = out.recv() => match next {
                Some(m) => if ws.send(m).await.is_err() { break },
                None => break,
            },
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    let v = serde_json::from_str(text.as_str()).unwrap_or_else(|e| json!({"type": "client_error", "message": format!("not JSON ({e}): {}", text.as_str())}));
                    let _ = inbound.send(v);
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
    shared.lock().unwrap().socket_closed = true;
}

/// Records each server message and answers subscriber offers, one at a time, in order.
async fn dispatch(mut inbound: mpsc::UnboundedReceiver<Value>, out: mpsc::UnboundedSender<Message>, shared: Arc<Mutex<Shared>>) {
    while let Some(message) = inbound.recv().await {
        shared.lock().unwrap().messages.push(message.clone());
        if type_of(&message) != "offer" {
            continue;
        }
        let tracks: HashMap<String, String> = message["tracks"]
            .as_object()
            .map(|o| o.iter().filter_map(|(mid, t)| Some((mid.clone(), t.as_str()?.to_owned()))).collect())
            .unwrap_or_default();
        let existing = shared.lock().unwrap().subscriber.clone();
        let subscriber = match existing {
            Some(s) => s,
            None => {
                let s = Arc::new(Peer::answerer().await);
                shared.lock().unwrap().subscriber = Some(s.clone());
                s
            }
        };
        shared.lock().unwrap().tracks = tracks;
        match subscriber.answer(message["sdp"].as_str().unwrap_or("")).await {
            Ok(sdp) => {
                let _ = out.send(Message::Text(json!({"type": "answer", "sdp": sdp}).to_string().into()));
            }
            Err(e) => shared.lock().unwrap().messages.push(json!({"type": "client_error", "message": format!("answering an offer: {e}")})),
        }
    }
}

/// What a [`Pump`] sent.
#[derive(Default, Clone)]
pub struct Sent {
    /// Access units in sending order, with their frame counters.
    pub video: Vec<(u32, Bytes)>,
    pub audio: Vec<Bytes>,
}

impl Sent {
    /// The frame counter of a unit we sent.
    pub fn counter_of(&self, au: &Bytes) -> Option<u32> {
        self.video.iter().find(|(_, v)| v == au).map(|(i, _)| *i)
    }
}

/// Sends 30 fps of synthetic H.264 (a keyframe every [`GOP`]) with 20 ms Opus frames from a
/// publisher until stopped. Frame counters start at `first`, so two pumps never send the
/// same unit.
pub struct Pump {
    stop: Arc<AtomicBool>,
    sent: Arc<Mutex<Sent>>,
    task: JoinHandle<()>,
}

impl Pump {
    pub fn start(peer: Arc<Peer>, first: u32) -> Pump {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(Mutex::new(Sent::default()));
        let task = {
            let (stop, sent) = (stop.clone(), sent.clone());
            tokio::spawn(async move {
                let start = tokio::time::Instant::now();
                let mut audio = first * 2;
                let mut n = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let i = first + n;
                    let au = access_unit(i, n.is_multiple_of(GOP));
                    peer.send_video(au.clone(), Duration::from_millis(33)).await;
                    sent.lock().unwrap().video.push((i, au));
                    // Opus at 20 ms against video at 33 ms: keep audio's clock with the video's.
                    while (audio - first * 2) * 20 <= (n + 1) * 33 {
                        let f = opus_frame(audio);
                        peer.send_audio(f.clone()).await;
                        sent.lock().unwrap().audio.push(f);
                        audio += 1;
                    }
                    n += 1;
                    tokio::time::sleep_until(start + Duration::from_millis(33 * u64::from(n))).await;
                }
            })
        };
        Pump { stop, sent, task }
    }

    /// Access units sent so far.
    pub fn video_sent(&self) -> usize {
        self.sent.lock().unwrap().video.len()
    }

    /// A copy of what was sent so far.
    pub fn sent(&self) -> Sent {
        self.sent.lock().unwrap().clone()
    }

    /// Stops sending; everything sent.
    pub async fn stop(self) -> Sent {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the pump task");
        self.sent.lock().unwrap().clone()
    }
}
