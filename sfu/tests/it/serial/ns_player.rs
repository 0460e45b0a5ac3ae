//! What the namespace player tests share: a Chromium WHEP player page run inside a network
//! namespace behind a kernel `tbf` cap (`weak_link.mjs` prints its `getStats()` once a second),
//! its samples, and a WHIP publisher that sends pre-encoded clips in real time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::response::Html;
use axum::routing::get;
use bytes::Bytes;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader, Lines};
use tongxin_loadtests::media::{EncodedVideo, OPUS_FRAME_DURATION};
use tongxin_loadtests::netns::Netns;
use tongxin_loadtests::participant::Peer;

/// The player page: receive-only audio and video over WHEP, offering only its namespace
/// address, with the server's media candidate replaced by the relay's.
pub const PLAYER_HTML: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>weak-link player</title><link rel="icon" href="data:,"></head>
<body><video id="remote" autoplay muted playsinline></video>
<script>
'use strict';
const query = new URLSearchParams(location.search);
const [endpoint, token, media, relay, own] = ['whep', 'token', 'media', 'relay', 'own'].map((k) => query.get(k));
let pc;
let session;

// Only the UDP host candidate on the namespace's own address: nothing else leaves the test.
const ownOnly = (sdp) => sdp.split('\r\n').filter((l) => {
  if (!l.startsWith('a=candidate:')) return true;
  const f = l.slice('a=candidate:'.length).split(' ');
  return f[2].toLowerCase() === 'udp' && f[4] === own;
}).join('\r\n');

window.started = (async () => {
  pc = new RTCPeerConnection();
  pc.addTransceiver('audio', { direction: 'recvonly' });
  pc.addTransceiver('video', { direction: 'recvonly' });
  const remote = new MediaStream();
  pc.addEventListener('track', (e) => {
    remote.addTrack(e.track);
    document.getElementById('remote').srcObject = remote;
  });
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => {
    const timer = setTimeout(resolve, 10000);
    pc.addEventListener('icegatheringstatechange', () => {
      if (pc.iceGatheringState === 'complete') { clearTimeout(timer); resolve(); }
    });
  });
  const res = await fetch(endpoint, {
    method: 'POST',
    headers: { 'Content-Type': 'application/sdp', Authorization: `Bearer ${token}` },
    body: ownOnly(pc.localDescription.sdp),
  });
  const answer = await res.text();
  if (res.status !== 201) throw new Error(`POST ${endpoint} answered ${res.status}: ${answer}`);
  session = new URL(res.headers.get('Location'), endpoint).href;
  const [mediaIp, mediaPort] = media.split(':');
  const [relayIp, relayPort] = relay.split(':');
  await pc.setRemoteDescription({ type: 'answer', sdp: answer.replaceAll(`${mediaIp} ${mediaPort}`, `${relayIp} ${relayPort}`) });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`not connected after 20 s (${pc.connectionState})`)), 20000);
    const check = () => {
      if (pc.connectionState === 'connected') { clearTimeout(timer); resolve(); }
      if (pc.connectionState === 'failed') { clearTimeout(timer); reject(new Error('the connection failed')); }
    };
    pc.addEventListener('connectionstatechange', check);
    check();
  });
  return { session };
})();

window.sample = async () => {
  const out = { connection: pc.connectionState };
  for (const s of (await pc.getStats()).values()) {
    if (s.type === 'inbound-rtp' && s.kind === 'video') {
      Object.assign(out, { width: s.frameWidth || 0, height: s.frameHeight || 0, framesDecoded: s.framesDecoded || 0,
        videoBytes: s.bytesReceived || 0, videoLost: s.packetsLost || 0, keyFrames: s.keyFramesDecoded || 0, freezes: s.freezeCount || 0,
        nacks: s.nackCount || 0, plis: s.pliCount || 0, dropped: s.framesDropped || 0, received: s.framesReceived || 0,
        videoPackets: s.packetsReceived || 0 });
    }
    if (s.type === 'inbound-rtp' && s.kind === 'audio') {
      Object.assign(out, { concealed: s.concealedSamples || 0, samples: s.totalSamplesReceived || 0,
        audioBytes: s.bytesReceived || 0, audioLost: s.packetsLost || 0 });
    }
  }
  return out;
};

window.stop = async () => {
  const res = await fetch(session, { method: 'DELETE', headers: { Authorization: `Bearer ${token}` } });
  pc.close();
  return res.status;
};
</script></body></html>
"#;

/// One `getStats()` sample of the player.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    pub t: f64,
    pub width: u64,
    pub frames: u64,
    pub concealed: u64,
    pub samples: u64,
    pub video_bytes: u64,
    pub audio_bytes: u64,
}

impl Sample {
    pub fn parse(v: &Value) -> Sample {
        let n = |k: &str| v[k].as_u64().unwrap_or(0);
        Sample {
            t: v["t"].as_f64().unwrap_or(0.0),
            width: n("width"),
            frames: n("framesDecoded"),
            concealed: n("concealed"),
            samples: n("samples"),
            video_bytes: n("videoBytes"),
            audio_bytes: n("audioBytes"),
        }
    }
}

/// Frames per second, concealed share of audio samples and received kbit/s between two samples.
pub fn between(a: &Sample, b: &Sample) -> (f64, f64, f64) {
    let secs = (b.t - a.t).max(0.001);
    let fps = (b.frames - a.frames) as f64 / secs;
    let concealment = (b.concealed - a.concealed) as f64 / (b.samples - a.samples).max(1) as f64;
    let kbps = ((b.video_bytes + b.audio_bytes) - (a.video_bytes + a.audio_bytes)) as f64 * 8.0 / secs / 1000.0;
    (fps, concealment, kbps)
}

/// Sends every layer's clip in step (by rid; `None`: the one layer of a publisher without
/// simulcast), and an Opus tone, until `stop`; a keyframe request makes the next frame slot every
/// clip's IDR (the server asks for one on each layer switch).
pub fn publish(peer: Arc<Peer>, layers: Vec<(Option<&'static str>, EncodedVideo)>, audio: Vec<Bytes>, stop: Arc<AtomicBool>) {
    let want_keyframe = Arc::new(AtomicBool::new(false));
    let (video_peer, video_stop, flag) = (peer.clone(), stop.clone(), want_keyframe.clone());
    tokio::spawn(async move {
        let frame = layers[0].1.spec.frame_duration();
        let start = tokio::time::Instant::now();
        let (mut slot, mut position) = (0u32, 0u64);
        while !video_stop.load(Ordering::Relaxed) {
            if flag.swap(false, Ordering::Relaxed) {
                position = 0;
            }
            for (rid, clip) in &layers {
                let Some(f) = clip.frame(position) else { return };
                let written = match rid {
                    Some(rid) => video_peer.write_video_layer(rid, f.data.clone(), frame).await,
                    None => video_peer.write_video(f.data.clone(), frame).await,
                };
                if written.is_err() {
                    return;
                }
            }
            slot += 1;
            position = (position + 1) % u64::from(layers[0].1.spec.frame_count());
            tokio::time::sleep_until(start + frame * slot).await;
        }
    });
    let audio_peer = peer.clone();
    tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        let mut i = 0u32;
        while !stop.load(Ordering::Relaxed) {
            if audio_peer.write_audio(audio[i as usize % audio.len()].clone(), OPUS_FRAME_DURATION).await.is_err() {
                return;
            }
            i += 1;
            tokio::time::sleep_until(start + OPUS_FRAME_DURATION * i).await;
        }
    });
    tokio::spawn(async move {
        while let Some(n) = peer.keyframe_requests().await {
            if n > 0 {
                want_keyframe.store(true, Ordering::Relaxed);
            }
        }
    });
}

/// `weak_link.mjs` running Chromium inside `ns` on the player page, which plays `whep` (the
/// server's WHEP URL) with `token`, the server's media candidate `media` rewritten to `via` (a
/// relay, or the media port itself).
pub struct NsPlayer {
    lines: Lines<BufReader<tokio::process::ChildStdout>>,
    child: tokio::process::Child,
    errors: tokio::task::JoinHandle<String>,
    pages: tokio::task::JoinHandle<std::io::Result<()>>,
    wrapper: std::path::PathBuf,
}

impl NsPlayer {
    /// Serves the page on `host` (the root side of the veth pair) and starts Chromium in `ns`
    /// for `seconds`.
    pub async fn start(ns: &Netns, whep: &str, token: &str, media: SocketAddr, via: SocketAddr, seconds: f64) -> NsPlayer {
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/browser");
        assert!(dir.join("node_modules/playwright-core").exists(), "playwright-core is not installed; run `scripts/install-deps.sh test`");
        let listener = tokio::net::TcpListener::bind(SocketAddr::new(ns.host_addr().into(), 0)).await.unwrap();
        let page_addr = listener.local_addr().unwrap();
        let pages = tokio::spawn(async move { axum::serve(listener, Router::new().route("/", get(|| async { Html(PLAYER_HTML) }))).await });
        let wrapper = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("chromium-in-{}", ns.name()));
        std::fs::write(&wrapper, format!("#!/bin/sh\nexec ip netns exec {} /usr/bin/chromium \"$@\"\n", ns.name())).unwrap();
        std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let page = format!("http://{page_addr}/?whep={whep}&token={token}&media={media}&relay={via}&own={}", ns.ns_addr());
        let mut child = tokio::process::Command::new("node")
            .arg("weak_link.mjs")
            .current_dir(&dir)
            .env("PAGE", &page)
            .env("CHROMIUM", &wrapper)
            .env("SECONDS", format!("{seconds}"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("run node");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut stderr = child.stderr.take().unwrap();
        let errors = tokio::spawn(async move {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text).await;
            text
        });
        NsPlayer { lines, child, errors, pages, wrapper }
    }

    /// The next sample, as JSON text and parsed; `None` when the player is done.
    pub async fn next(&mut self) -> Option<(String, Sample)> {
        while let Ok(Some(line)) = self.lines.next_line().await {
            if let Some(json) = line.strip_prefix("SAMPLE ") {
                return Some((json.to_owned(), Sample::parse(&serde_json::from_str(json).unwrap())));
            }
        }
        None
    }

    /// Waits for the player to end; fails with its output when it did not end well.
    pub async fn finish(mut self) {
        let status = self.child.wait().await.unwrap();
        let errors = (&mut self.errors).await.unwrap();
        self.pages.abort();
        let _ = std::fs::remove_file(&self.wrapper);
        assert!(status.success(), "weak_link.mjs failed ({status}):\n{errors}");
    }
}
