//! WHIP and WHEP with headless Chromium (Debian's /usr/bin/chromium driven by playwright-core):
//! a page on one origin publishes the fake camera and microphone, a page on another origin plays
//! them, and the SFU's HTTP endpoint is a third origin.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use axum::Router;
use axum::response::Html;
use axum::routing::get;
use tokio::task::JoinHandle;
use tongxin_common::RoomRole;

use crate::harness::TestServer;

/// What both pages share: loopback-only offers, waiting for ICE, the WHIP/WHEP exchange.
const COMMON_JS: &str = r#"
'use strict';
const query = new URLSearchParams(location.search);

// Only UDP host candidates on 127.0.0.1 reach the server: the test stays on loopback even
// though Chromium gathers on every interface.
function loopbackOnly(sdp) {
  return sdp.split('\r\n').filter((line) => {
    if (!line.startsWith('a=candidate:')) return true;
    const f = line.slice('a=candidate:'.length).split(' ');
    return f[2].toLowerCase() === 'udp' && f[4] === '127.0.0.1';
  }).join('\r\n');
}

function iceGathered(pc, ms) {
  return new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') return resolve();
    const timer = setTimeout(resolve, ms);
    pc.addEventListener('icegatheringstatechange', () => {
      if (pc.iceGatheringState === 'complete') {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}

function connected(pc, ms) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`not connected after ${ms} ms (state ${pc.connectionState})`)), ms);
    const check = () => {
      if (pc.connectionState === 'connected') {
        clearTimeout(timer);
        resolve();
      } else if (pc.connectionState === 'failed' || pc.connectionState === 'closed') {
        clearTimeout(timer);
        reject(new Error(`the connection ${pc.connectionState}`));
      }
    };
    pc.addEventListener('connectionstatechange', check);
    check();
  });
}

// Offers everything gathered at once (no trickle), POSTs it, applies the answer; returns the
// absolute session URL from Location.
async function negotiate(pc, endpoint, token) {
  await pc.setLocalDescription(await pc.createOffer());
  await iceGathered(pc, 10000);
  const offer = loopbackOnly(pc.localDescription.sdp);
  if (!/^a=candidate:\S+ \d+ udp \d+ 127\.0\.0\.1 /im.test(offer)) {
    throw new Error(`no 127.0.0.1 UDP candidate was gathered:\n${pc.localDescription.sdp}`);
  }
  const res = await fetch(endpoint, {
    method: 'POST',
    headers: { 'Content-Type': 'application/sdp', Authorization: `Bearer ${token}` },
    body: offer,
  });
  const answer = await res.text();
  if (res.status !== 201) throw new Error(`POST ${endpoint} answered ${res.status}: ${answer}`);
  if (res.headers.get('Content-Type') !== 'application/sdp') throw new Error(`answer type ${res.headers.get('Content-Type')}`);
  const location = res.headers.get('Location');
  if (!location) throw new Error('the Location header is missing or not exposed to the page (CORS)');
  window.sdp = { offer, answer };
  await pc.setRemoteDescription({ type: 'answer', sdp: answer });
  return new URL(location, endpoint).href;
}

async function endSession(session, token) {
  const res = await fetch(session, { method: 'DELETE', headers: { Authorization: `Bearer ${token}` } });
  return res.status;
}

function codecOf(report, stat) {
  const codec = stat && stat.codecId && report.get(stat.codecId);
  return codec ? codec.mimeType : null;
}
// Ends this page's session with the token that started it (each page script sets `pc`,
// `session` and `token`), then closes the connection.
window.stop = async () => {
  const status = await endSession(session, token);
  pc.close();
  return status;
};
"#;

/// The publisher: camera and microphone, sendonly, H.264 first when Chromium can encode it.
const PUBLISH_JS: &str = r#"
const endpoint = query.get('whip');
const token = query.get('token');
let pc;
let session;

// Puts H.264 constrained baseline with packetization-mode=1 (what the SFU forwards to every
// kind of client) first; false if this Chromium cannot send it.
function preferH264(transceiver) {
  const sendable = (RTCRtpSender.getCapabilities('video') || { codecs: [] }).codecs;
  const baseline = (c) => c.mimeType.toLowerCase() === 'video/h264' &&
    /packetization-mode=1/.test(c.sdpFmtpLine || '') && /profile-level-id=42e01f/i.test(c.sdpFmtpLine || '');
  if (!transceiver.setCodecPreferences || !sendable.some(baseline)) return false;
  const codecs = RTCRtpReceiver.getCapabilities('video').codecs;
  transceiver.setCodecPreferences([...codecs.filter(baseline), ...codecs.filter((c) => !baseline(c))]);
  return true;
}

window.started = (async () => {
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: true,
    video: { width: 320, height: 240, frameRate: 15 },
  });
  document.getElementById('self').srcObject = stream;
  const [audio] = stream.getAudioTracks();
  const [video] = stream.getVideoTracks();
  pc = new RTCPeerConnection();
  pc.addTransceiver(audio, { direction: 'sendonly', streams: [stream] });
  const h264 = preferH264(pc.addTransceiver(video, { direction: 'sendonly', streams: [stream] }));
  session = await negotiate(pc, endpoint, token);
  await connected(pc, 20000);
  const { width, height, frameRate } = video.getSettings();
  return { session, h264, camera: { width, height, frameRate } };
})();

window.sample = async () => {
  const report = await pc.getStats();
  const out = { connection: pc.connectionState };
  for (const s of report.values()) {
    if (s.type === 'outbound-rtp' && s.kind === 'video') {
      Object.assign(out, { framesEncoded: s.framesEncoded, videoPackets: s.packetsSent, videoCodec: codecOf(report, s),
        pliCount: s.pliCount, firCount: s.firCount, nackCount: s.nackCount });
    }
    if (s.type === 'outbound-rtp' && s.kind === 'audio') {
      Object.assign(out, { audioPackets: s.packetsSent, audioCodec: codecOf(report, s) });
    }
  }
  return out;
};

"#;

/// The player: recvonly audio and video, shown in a muted video element.
const PLAY_JS: &str = r#"
const endpoint = query.get('whep');
const token = query.get('token');
let pc;
let session;

window.started = (async () => {
  pc = new RTCPeerConnection();
  pc.addTransceiver('audio', { direction: 'recvonly' });
  pc.addTransceiver('video', { direction: 'recvonly' });
  const remote = new MediaStream();
  const element = document.getElementById('remote');
  pc.addEventListener('track', (e) => {
    remote.addTrack(e.track);
    element.srcObject = remote;
  });
  session = await negotiate(pc, endpoint, token);
  await connected(pc, 20000);
  return { session };
})();

window.sample = async () => {
  const report = await pc.getStats();
  const out = { connection: pc.connectionState, framesDecoded: 0, audioPackets: 0 };
  for (const s of report.values()) {
    if (s.type === 'inbound-rtp' && s.kind === 'video') {
      Object.assign(out, { framesDecoded: s.framesDecoded || 0, keyFramesDecoded: s.keyFramesDecoded, videoPackets: s.packetsReceived,
        videoLost: s.packetsLost, width: s.frameWidth, height: s.frameHeight, videoCodec: codecOf(report, s) });
    }
    if (s.type === 'inbound-rtp' && s.kind === 'audio') {
      Object.assign(out, { audioPackets: s.packetsReceived || 0, audioLost: s.packetsLost, audioCodec: codecOf(report, s) });
    }
  }
  return out;
};

"#;

fn page(title: &str, body: &str, script: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <link rel=\"icon\" href=\"data:,\"></head>\n<body>{body}\n<script>{COMMON_JS}{script}</script></body></html>\n"
    )
}

/// Serves one page at `/` on its own loopback port (its own origin).
async fn serve_page(html: String) -> (String, JoinHandle<std::io::Result<()>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let app = Router::new().route("/", get(move || std::future::ready(Html(html.clone()))));
    (url, tokio::spawn(async move { axum::serve(listener, app).await }))
}

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/browser")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_publishes_over_whip_and_another_origin_plays_over_whep() {
    let dir = browser_dir();
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed in {}; run `scripts/install-deps.sh test` (make test does)",
        dir.display()
    );
    let server = TestServer::start().await;
    let room = "browser-lesson";
    let teacher = server.token(room, "teacher-wang", RoomRole::Teacher, true, false);
    let class = server.token(room, "class-3", RoomRole::Classroom, false, true);
    let (publish_page, publish_task) =
        serve_page(page("WHIP publisher", "<video id=\"self\" autoplay muted playsinline></video>", PUBLISH_JS)).await;
    let (play_page, play_task) = serve_page(page("WHEP player", "<video id=\"remote\" autoplay muted playsinline></video>", PLAY_JS)).await;
    let sfu = format!("http://{}", server.http);

    let started = Instant::now();
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg("whip_whep.mjs")
        .current_dir(&dir)
        .env("PUBLISH_PAGE", &publish_page)
        .env("PLAY_PAGE", &play_page)
        .env("WHIP_URL", format!("{sfu}/whip/{room}"))
        .env("WHEP_URL", format!("{sfu}/whep/{room}"))
        .env("PUBLISH_TOKEN", &teacher)
        .env("PLAY_TOKEN", &class)
        .kill_on_drop(true);
    // A generous bound: the script has its own per-step waits; this only stops a hung browser.
    let out = tokio::time::timeout(Duration::from_secs(180), cmd.output())
        .await
        .expect("whip_whep.mjs did not finish within 180 s")
        .expect("run node (is Node.js installed?)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "whip_whep.mjs failed ({}):\n{text}", out.status);
    eprintln!("{text}whip_whep.mjs took {:.1} s", started.elapsed().as_secs_f64());

    let stats = server.media.stats().await;
    assert_eq!(stats.panics, 0, "the media core panicked");
    assert_eq!(stats.peers, 0, "both sessions were ended by DELETE");
    publish_task.abort();
    play_task.abort();
}
