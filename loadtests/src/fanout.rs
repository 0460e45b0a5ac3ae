//! Fan-out load measurement of a running `tongxin serve`: one WHIP publisher (synthetic H.264 at
//! about 1 Mbit/s, 30 fps, a keyframe every 2 s, plus 20 ms Opus frames) and N WHEP subscribers,
//! every client on the `webrtc` crate (independent of the server's str0m), all on 127.0.0.1.
//!
//! It samples the server's `/proc/<pid>/{stat,status}` (CPU from utime+stime, VmRSS, VmHWM), its
//! own CPU (to tell whether the figures are generator-bound) and the machine's, and checks at each
//! subscriber that every access unit sent after that subscriber's first keyframe arrives
//! byte-identical. Prints a plain-text table and one `JSON ` line.
//!
//! ```sh
//! cargo run --release -p tongxin-loadtests --bin tongxin-load -- fanout --http http://127.0.0.1:PORT --server-pid PID \
//!     --publisher-token T --subscriber-token T --room R --subscribers 20 --seconds 30
//! ```
//!
//! Optional: `--stagger-ms 200` (between subscriber starts), `--settle 2` (seconds between the
//! last subscriber's first keyframe and the window), `--ignore-pli` (the synthetic encoder does
//! not answer keyframe requests; by default it does, as a real encoder would).

use std::collections::VecDeque;
use std::error::Error;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rtc::ice::mdns::MulticastDnsMode;
use rtc::ice::network_type::NetworkType;
use rtc::interceptor::{Attribute, Interceptor, Packet, Slot, StreamInfo, TaggedPacket};
use rtc::media::Sample;
use rtc::media::io::sample_builder::SampleBuilder;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_H264, MIME_TYPE_OPUS};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp::codec::h264::H264Packet;
use rtc::rtp::codec::opus::OpusPacket;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{PayloadType, RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use rtc::sansio::Protocol;
use rtc::shared::marshal::MarshalSize as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::watch;
use webrtc::media_stream::Track as _;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceGatheringState,
    RTCPeerConnectionState, RTCSessionDescription, Registry, SettingEngineBuilder,
};

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

const FPS: u32 = 30;
/// A keyframe every 2 s.
const GOP: u32 = 2 * FPS;
const FRAME: Duration = Duration::from_nanos(33_333_334);
const OPUS_FRAME: Duration = Duration::from_millis(20);
/// Subscribers that connected wait at most this long for their first keyframe before the window.
const FIRST_KEYFRAME_LIMIT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------------------------
// Arguments
// ---------------------------------------------------------------------------------------------

struct Args {
    http: SocketAddr,
    server_pid: u32,
    publisher_token: String,
    subscriber_token: String,
    room: String,
    subscribers: usize,
    seconds: u64,
    stagger: Duration,
    settle: Duration,
    answer_pli: bool,
}

fn usage() -> String {
    "usage: tongxin-load fanout --http http://127.0.0.1:PORT --server-pid PID --publisher-token T --subscriber-token T --room R \
     [--subscribers 20] [--seconds 30] [--stagger-ms 200] [--settle 2] [--ignore-pli]"
        .to_owned()
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Res<Args> {
    let mut http = None;
    let mut server_pid = None;
    let mut publisher_token = None;
    let mut subscriber_token = None;
    let mut room = None;
    let mut subscribers = 20usize;
    let mut seconds = 30u64;
    let mut stagger = Duration::from_millis(200);
    let mut settle = Duration::from_secs(2);
    let mut answer_pli = true;
    while let Some(flag) = it.next() {
        if flag == "--ignore-pli" {
            answer_pli = false;
            continue;
        }
        if flag == "--help" || flag == "-h" {
            return Err(usage().into());
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value\n{}", usage()))?;
        match flag.as_str() {
            "--http" => {
                let hostport = value.strip_prefix("http://").unwrap_or(&value).trim_end_matches('/');
                let addr: SocketAddr = hostport.parse().map_err(|e| format!("--http {value}: {e}"))?;
                if !addr.ip().is_loopback() {
                    return Err(format!("--http must be a loopback address (got {addr})").into());
                }
                http = Some(addr);
            }
            "--server-pid" => server_pid = Some(value.parse().map_err(|e| format!("--server-pid: {e}"))?),
            "--publisher-token" => publisher_token = Some(value),
            "--subscriber-token" => subscriber_token = Some(value),
            "--room" => room = Some(value),
            "--subscribers" => subscribers = value.parse().map_err(|e| format!("--subscribers: {e}"))?,
            "--seconds" => seconds = value.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--stagger-ms" => stagger = Duration::from_millis(value.parse().map_err(|e| format!("--stagger-ms: {e}"))?),
            "--settle" => settle = Duration::from_secs(value.parse().map_err(|e| format!("--settle: {e}"))?),
            other => return Err(format!("unknown flag {other}\n{}", usage()).into()),
        }
    }
    let missing = |name: &str| format!("missing {name}\n{}", usage());
    let args = Args {
        http: http.ok_or_else(|| missing("--http"))?,
        server_pid: server_pid.ok_or_else(|| missing("--server-pid"))?,
        publisher_token: publisher_token.ok_or_else(|| missing("--publisher-token"))?,
        subscriber_token: subscriber_token.ok_or_else(|| missing("--subscriber-token"))?,
        room: room.ok_or_else(|| missing("--room"))?,
        subscribers,
        seconds,
        stagger,
        settle,
        answer_pli,
    };
    if !(1..=200).contains(&args.subscribers) || !(1..=600).contains(&args.seconds) {
        return Err("--subscribers must be 1..=200 and --seconds 1..=600".into());
    }
    Ok(args)
}

// ---------------------------------------------------------------------------------------------
// Synthetic media: deterministic from (index, keyframe), so a receiver regenerates what was sent
// and compares byte for byte without keeping copies.
// ---------------------------------------------------------------------------------------------

const SPS: [u8; 14] = [0, 0, 0, 1, 0x67, 0x42, 0xe0, 0x1f, 0xda, 0x02, 0x80, 0xf6, 0x9b, 0x80];
const PPS: [u8; 8] = [0, 0, 0, 1, 0x68, 0xce, 0x06, 0xe2];
const IDR_HEAD: [u8; 6] = [0, 0, 0, 1, 0x65, 0x88];
const P_HEAD: [u8; 6] = [0, 0, 0, 1, 0x41, 0x9a];
const KEY_INDEX_AT: usize = SPS.len() + PPS.len() + IDR_HEAD.len();
const P_INDEX_AT: usize = P_HEAD.len();

/// The index as four bytes of seven bits each, high bit set: never zero, so never part of a start
/// code, and unambiguous up to 2^28 units.
fn index_bytes(index: u32) -> [u8; 4] {
    [0x80 | (index >> 21) as u8 & 0x7f, 0x80 | (index >> 14) as u8 & 0x7f, 0x80 | (index >> 7) as u8 & 0x7f, 0x80 | index as u8 & 0x7f]
}

fn read_index(b: &[u8]) -> Option<u32> {
    let b = b.get(..4)?;
    if b.iter().any(|x| x & 0x80 == 0) {
        return None;
    }
    Some(b.iter().fold(0u32, |acc, x| (acc << 7) | u32::from(x & 0x7f)))
}

/// Non-zero pseudo-random filler (xorshift), so no emulated start code can appear.
fn filler(v: &mut Vec<u8>, n: usize, seed: u32) {
    let mut x = seed.wrapping_mul(0x9e37_79b9) | 1;
    v.extend((0..n).map(|_| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        (x % 255) as u8 + 1
    }));
}

/// Keyframes ≈ 24–26 KB, P frames 2.8–4.8 KB (mean ≈ 3.8 KB): (25 + 59 × 3.8) KB per 2 s ≈ 1.0 Mbit/s.
fn access_unit(index: u32, keyframe: bool) -> Bytes {
    let mut v = Vec::with_capacity(27_000);
    if keyframe {
        v.extend_from_slice(&SPS);
        v.extend_from_slice(&PPS);
        v.extend_from_slice(&IDR_HEAD);
        v.extend_from_slice(&index_bytes(index));
        filler(&mut v, 24_000 + (index as usize % 5) * 500, index);
    } else {
        v.extend_from_slice(&P_HEAD);
        v.extend_from_slice(&index_bytes(index));
        filler(&mut v, 2_800 + (index as usize).wrapping_mul(7919) % 2_000, index);
    }
    Bytes::from(v)
}

/// `(index, keyframe)` of a received unit, if it has the shape `access_unit` gives.
fn parse_access_unit(au: &[u8]) -> Option<(u32, bool)> {
    if au.starts_with(&SPS) && au[SPS.len()..].starts_with(&PPS) && au[SPS.len() + PPS.len()..].starts_with(&IDR_HEAD) {
        read_index(&au[KEY_INDEX_AT..]).map(|i| (i, true))
    } else if au.starts_with(&P_HEAD) {
        read_index(&au[P_INDEX_AT..]).map(|i| (i, false))
    } else {
        None
    }
}

/// A synthetic 20 ms Opus frame, 100–139 bytes (≈ 48 kbit/s); the SFU never decodes it.
fn opus_frame(index: u32) -> Bytes {
    let mut v = vec![0xfc];
    v.extend_from_slice(&index_bytes(index));
    filler(&mut v, 95 + (index as usize % 40), !index);
    Bytes::from(v)
}

// ---------------------------------------------------------------------------------------------
// /proc
// ---------------------------------------------------------------------------------------------

fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// utime + stime (clock ticks) and thread count of a process (`self` or a pid).
fn proc_cpu(pid: &str) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces: field 3 is [0].
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    let threads: u64 = f.get(17)?.parse().ok()?;
    Some((utime + stime, threads))
}

/// (VmRSS, VmHWM) in kB.
fn proc_rss(pid: &str) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// (busy, total) ticks of the whole machine.
fn machine_cpu() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// The kernel's UDP counters (`/proc/net/snmp`, whole machine): (InErrors, RcvbufErrors, SndbufErrors).
fn udp_errors() -> (u64, u64, u64) {
    let Ok(snmp) = std::fs::read_to_string("/proc/net/snmp") else { return (0, 0, 0) };
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp: "));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else { return (0, 0, 0) };
    let get = |name: &str| {
        names.split_whitespace().position(|n| n == name).and_then(|i| values.split_whitespace().nth(i)).and_then(|v| v.parse().ok())
    };
    (get("InErrors").unwrap_or(0), get("RcvbufErrors").unwrap_or(0), get("SndbufErrors").unwrap_or(0))
}

#[derive(Clone, Copy)]
struct CpuSnap {
    at: Instant,
    server: u64,
    generator: u64,
    machine_busy: u64,
    machine_total: u64,
}

fn cpu_snap(pid: &str) -> CpuSnap {
    let (mb, mt) = machine_cpu().unwrap_or((0, 0));
    CpuSnap {
        at: Instant::now(),
        server: proc_cpu(pid).map(|c| c.0).unwrap_or(0),
        generator: proc_cpu("self").map(|c| c.0).unwrap_or(0),
        machine_busy: mb,
        machine_total: mt,
    }
}

/// What the background sampler saw: (time, server ticks, server VmRSS kB).
#[derive(Default)]
struct Samples {
    points: Vec<(Instant, u64, u64)>,
    server_gone: bool,
}

// ---------------------------------------------------------------------------------------------
// HTTP (a minimal HTTP/1.1 client, loopback only)
// ---------------------------------------------------------------------------------------------

async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Res<(u16, Vec<(String, String)>, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut raw)).await??;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
    let headers = lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned())).collect();
    Ok((status, headers, body.to_owned()))
}

/// POSTs an offer; returns (Location, answer).
async fn post_offer(addr: SocketAddr, path: &str, token: &str, offer: &str) -> Res<(String, String)> {
    let auth = format!("Bearer {token}");
    let (status, headers, body) =
        request(addr, "POST", path, &[("Content-Type", "application/sdp"), ("Authorization", &auth)], offer).await?;
    if status != 201 {
        return Err(format!("POST {path}: HTTP {status}: {}", body.trim()).into());
    }
    let location = headers.iter().find(|(k, _)| k == "location").map(|(_, v)| v.clone()).unwrap_or_default();
    Ok((location, body))
}

async fn delete(addr: SocketAddr, location: &str, token: &str) -> Res<u16> {
    let auth = format!("Bearer {token}");
    Ok(request(addr, "DELETE", location, &[("Authorization", &auth)], "").await?.0)
}

// ---------------------------------------------------------------------------------------------
// Keyframe requests reach the publisher's application only through an interceptor that marks
// them (the `webrtc` crate's rtcp-processing example): inbound PLI/FIR are passed on, all other
// inbound RTCP stops at the end of the chain as usual.
// ---------------------------------------------------------------------------------------------

struct KeyframeRequestForwarder {
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeRequestForwarder {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            let requests: Vec<Box<dyn rtc::rtcp::Packet>> = packets
                .iter()
                .filter(|p| p.as_any().is::<PictureLossIndication>() || p.as_any().is::<FullIntraRequest>())
                .cloned()
                .collect();
            if requests.is_empty() {
                return Ok(());
            }
            msg.message.packet = Packet::Rtcp(requests);
            msg.message.add(Attribute::DeliverToApplication);
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write.pop_front()
    }
}

impl Interceptor for KeyframeRequestForwarder {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

// ---------------------------------------------------------------------------------------------
// Peers
// ---------------------------------------------------------------------------------------------

fn h264() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_H264.to_owned(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f".to_owned(),
        rtcp_feedback: vec![
            RTCPFeedback { typ: "nack".into(), parameter: String::new() },
            RTCPFeedback { typ: "nack".into(), parameter: "pli".into() },
        ],
    }
}

fn opus() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

/// Sequence-number bookkeeping of one received RTP stream (before any retransmission repairs it).
#[derive(Default)]
struct SeqTrack {
    next: Option<u16>,
}

impl SeqTrack {
    /// (packets skipped, 1 if this packet is late: a retransmission or reordering).
    fn on(&mut self, seq: u16) -> (u64, u64) {
        let Some(next) = self.next else {
            self.next = Some(seq.wrapping_add(1));
            return (0, 0);
        };
        let d = seq.wrapping_sub(next) as i16;
        if d >= 0 {
            self.next = Some(seq.wrapping_add(1));
            (d as u64, 0)
        } else {
            (0, 1)
        }
    }
}

struct RxUnit {
    /// `u32::MAX` if the unit could not be parsed.
    index: u32,
    keyframe: bool,
    identical: bool,
    /// When its last (marker) packet arrived.
    complete_at: Instant,
}

/// What one subscriber received.
#[derive(Default)]
struct Rx {
    video_pkts: u64,
    video_bytes: u64,
    audio_pkts: u64,
    audio_bytes: u64,
    video_skipped: u64,
    video_late: u64,
    audio_skipped: u64,
    audio_late: u64,
    units: Vec<RxUnit>,
    opus: Vec<(u32, bool)>,
    /// (sequence number, arrival) of the first video and audio packet. The SFU numbers a
    /// subscriber's stream from 1, so a first sequence number above 1 means packets the SFU
    /// wrote never reached this subscriber's track.
    first_video: Option<(u16, Instant)>,
    first_audio: Option<(u16, Instant)>,
    /// (arrival, RTP timestamp, sequence number, keyframe start) of the first 64 video packets.
    early_video: Vec<(Instant, u32, u16, bool)>,
}

struct Handler {
    gathered: watch::Sender<bool>,
    state: watch::Sender<RTCPeerConnectionState>,
    rx: Arc<Mutex<Rx>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.send(true);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.state.send(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let kind = track.kind().await;
        let rx = self.rx.clone();
        // Callbacks run on the connection's driver: read the track on a task of its own.
        tokio::spawn(async move {
            let mut video = SampleBuilder::new(256, H264Packet::default(), 90_000).with_max_time_delay(Duration::from_millis(1000));
            let mut audio = SampleBuilder::new(256, OpusPacket, 48_000);
            let mut seq = SeqTrack::default();
            // RTP timestamp → arrival of the packet with the marker bit (end of the access unit).
            let mut marker_at: VecDeque<(u32, Instant)> = VecDeque::new();
            while let Some(event) = track.poll().await {
                match event {
                    TrackRemoteEvent::OnRtpPacket(packet) if kind == RtpCodecKind::Video => {
                        let now = Instant::now();
                        let size = packet.marshal_size() as u64;
                        let (skipped, late) = seq.on(packet.header.sequence_number);
                        {
                            let mut r = rx.lock().unwrap();
                            r.first_video.get_or_insert((packet.header.sequence_number, now));
                            if r.early_video.len() < 64 {
                                let p = &packet.payload;
                                let key_start = p.first().is_some_and(|b| matches!(b & 0x1f, 5 | 7 | 24))
                                    || (p.first().is_some_and(|b| b & 0x1f == 28)
                                        && p.get(1).is_some_and(|h| h & 0x80 != 0 && h & 0x1f == 5));
                                r.early_video.push((now, packet.header.timestamp, packet.header.sequence_number, key_start));
                            }
                        }
                        if packet.header.marker {
                            if marker_at.len() >= 128 {
                                marker_at.pop_front();
                            }
                            marker_at.push_back((packet.header.timestamp, now));
                        }
                        video.push(now, packet);
                        let mut r = rx.lock().unwrap();
                        r.video_pkts += 1;
                        r.video_bytes += size;
                        r.video_skipped += skipped;
                        r.video_late += late;
                        while let Some(s) = video.pop(now) {
                            let complete_at =
                                marker_at.iter().rev().find(|(ts, _)| *ts == s.packet_timestamp).map(|(_, t)| *t).unwrap_or(now);
                            let unit = match parse_access_unit(&s.data) {
                                Some((index, keyframe)) => {
                                    RxUnit { index, keyframe, identical: access_unit(index, keyframe) == s.data, complete_at }
                                }
                                None => RxUnit { index: u32::MAX, keyframe: false, identical: false, complete_at },
                            };
                            r.units.push(unit);
                        }
                    }
                    TrackRemoteEvent::OnRtpPacket(packet) => {
                        let now = Instant::now();
                        let size = packet.marshal_size() as u64;
                        let (skipped, late) = seq.on(packet.header.sequence_number);
                        rx.lock().unwrap().first_audio.get_or_insert((packet.header.sequence_number, now));
                        audio.push(now, packet);
                        let mut r = rx.lock().unwrap();
                        r.audio_pkts += 1;
                        r.audio_bytes += size;
                        r.audio_skipped += skipped;
                        r.audio_late += late;
                        while let Some(s) = audio.pop(now) {
                            let entry = match s.data.get(1..).and_then(read_index) {
                                Some(i) => (i, opus_frame(i) == s.data),
                                None => (u32::MAX, false),
                            };
                            r.opus.push(entry);
                        }
                    }
                    TrackRemoteEvent::OnEnded => break,
                    _ => {}
                }
            }
        });
    }
}

type Sender = Arc<dyn webrtc::rtp_transceiver::RtpSender>;

struct Peer {
    pc: Arc<dyn PeerConnection>,
    gathered: watch::Receiver<bool>,
    state: watch::Receiver<RTCPeerConnectionState>,
    rx: Arc<Mutex<Rx>>,
    video: Option<(Arc<TrackLocalStaticSample>, Sender)>,
    audio: Option<(Arc<TrackLocalStaticSample>, Sender)>,
}

async fn build(forward_keyframe_requests: bool) -> Res<Peer> {
    let mut engine = MediaEngine::default();
    engine.register_codec(RTCRtpCodecParameters { rtp_codec: h264(), payload_type: 102 }, RtpCodecKind::Video)?;
    engine.register_codec(RTCRtpCodecParameters { rtp_codec: opus(), payload_type: 111 }, RtpCodecKind::Audio)?;
    let mut registry = register_default_interceptors(Registry::new(), &mut engine)?;
    if forward_keyframe_requests {
        // Application-most, so every other interceptor has seen the inbound RTCP first.
        registry = registry.with(Slot::from(14_000), KeyframeRequestForwarder { read: VecDeque::new(), write: VecDeque::new() });
    }
    let settings =
        SettingEngineBuilder::new().with_multicast_dns_mode(MulticastDnsMode::Disabled).with_network_types(vec![NetworkType::Udp4]).build();
    let (gathered_tx, gathered) = watch::channel(false);
    let (state_tx, state) = watch::channel(RTCPeerConnectionState::New);
    let rx = Arc::new(Mutex::new(Rx::default()));
    let pc = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(engine)
        .with_interceptor_registry(registry)
        .with_setting_engine(settings)
        .with_handler(Arc::new(Handler { gathered: gathered_tx, state: state_tx, rx: rx.clone() }))
        .with_udp_addrs(vec!["127.0.0.1:0".to_owned()])
        .build()
        .await?;
    Ok(Peer { pc: Arc::new(pc), gathered, state, rx, video: None, audio: None })
}

fn sample_track(kind: RtpCodecKind, codec: RTCRtpCodec, id: &str) -> Res<Arc<TrackLocalStaticSample>> {
    let ssrc: u32 = rand::random::<u32>() | 1;
    let track = MediaStreamTrack::new(
        "tongxin-fanout".to_owned(),
        id.to_owned(),
        id.to_owned(),
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(ssrc), ..Default::default() },
            codec,
            ..Default::default()
        }],
    );
    Ok(Arc::new(TrackLocalStaticSample::new(Instant::now(), track)?))
}

impl Peer {
    async fn publisher() -> Res<Peer> {
        let mut peer = build(true).await?;
        let sendonly = || Some(RTCRtpTransceiverInit { direction: RTCRtpTransceiverDirection::Sendonly, ..Default::default() });
        for (kind, codec, id) in [(RtpCodecKind::Video, h264(), "video"), (RtpCodecKind::Audio, opus(), "audio")] {
            let track = sample_track(kind, codec, id)?;
            let transceiver = peer.pc.add_transceiver_from_track(track.clone() as Arc<dyn TrackLocal>, sendonly()).await?;
            let sender = transceiver.sender().await?.ok_or("no sender")?;
            if kind == RtpCodecKind::Video {
                peer.video = Some((track, sender));
            } else {
                peer.audio = Some((track, sender));
            }
        }
        Ok(peer)
    }

    async fn player() -> Res<Peer> {
        let peer = build(false).await?;
        let recvonly = || Some(RTCRtpTransceiverInit { direction: RTCRtpTransceiverDirection::Recvonly, ..Default::default() });
        peer.pc.add_transceiver_from_kind(RtpCodecKind::Video, recvonly()).await?;
        peer.pc.add_transceiver_from_kind(RtpCodecKind::Audio, recvonly()).await?;
        Ok(peer)
    }

    async fn offer(&mut self) -> Res<String> {
        let offer = self.pc.create_offer(None).await?;
        self.pc.set_local_description(offer).await?;
        tokio::time::timeout(Duration::from_secs(30), self.gathered.wait_for(|g| *g)).await??;
        Ok(self.pc.local_description().await.ok_or("no local description")?.sdp)
    }

    async fn accept_answer(&self, answer: &str) -> Res<()> {
        self.pc.set_remote_description(RTCSessionDescription::answer(answer.to_owned())?).await?;
        Ok(())
    }

    async fn wait_connected(&mut self) -> Res<()> {
        tokio::time::timeout(Duration::from_secs(30), self.state.wait_for(|s| *s == RTCPeerConnectionState::Connected))
            .await
            .map_err(|_| "not connected within 30 s")??;
        Ok(())
    }

    fn state(&self) -> RTCPeerConnectionState {
        *self.state.borrow()
    }

    async fn write(track: &(Arc<TrackLocalStaticSample>, Sender), data: Bytes, duration: Duration) -> Res<()> {
        let (track, sender) = track;
        let ssrc = *track.ssrcs().await.first().ok_or("no ssrc")?;
        let pt: PayloadType = sender.get_parameters().await?.rtp_parameters.codecs.first().ok_or("no negotiated codec")?.payload_type;
        track.sample_writer(ssrc, pt).write_sample(&Sample { data, duration, ..Sample::new(Instant::now()) }).await?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The publisher's send loops
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct SentLog {
    /// Per video index: (when written, keyframe, bytes).
    video: Vec<(Instant, bool, usize)>,
    /// Per Opus index: when written.
    audio: Vec<(Instant, usize)>,
    /// The largest delay behind schedule of a send (generator saturation shows here).
    max_video_lag: Duration,
    error: Option<String>,
}

struct Shared {
    sent: Mutex<SentLog>,
    stop: AtomicBool,
    force_keyframe: AtomicBool,
    keyframe_requests: AtomicU64,
    forced_keyframes: AtomicU64,
    /// When each keyframe request reached the publisher.
    request_times: Mutex<Vec<Instant>>,
}

async fn send_video(peer: Arc<Peer>, shared: Arc<Shared>) {
    let track = peer.video.as_ref().expect("publisher video");
    let start = tokio::time::Instant::now();
    let mut i = 0u32;
    while !shared.stop.load(Ordering::Relaxed) {
        let scheduled = start + FRAME * i;
        let forced = shared.force_keyframe.swap(false, Ordering::Relaxed);
        let keyframe = i.is_multiple_of(GOP) || forced;
        if forced && !i.is_multiple_of(GOP) {
            shared.forced_keyframes.fetch_add(1, Ordering::Relaxed);
        }
        let au = access_unit(i, keyframe);
        {
            let mut s = shared.sent.lock().unwrap();
            s.video.push((Instant::now(), keyframe, au.len()));
            let lag = tokio::time::Instant::now().saturating_duration_since(scheduled);
            s.max_video_lag = s.max_video_lag.max(lag);
        }
        if let Err(e) = Peer::write(track, au, FRAME).await {
            shared.sent.lock().unwrap().error.get_or_insert_with(|| format!("video write: {e}"));
            return;
        }
        i += 1;
        tokio::time::sleep_until(start + FRAME * i).await;
    }
}

async fn send_audio(peer: Arc<Peer>, shared: Arc<Shared>) {
    let track = peer.audio.as_ref().expect("publisher audio");
    let start = tokio::time::Instant::now();
    let mut i = 0u32;
    while !shared.stop.load(Ordering::Relaxed) {
        let f = opus_frame(i);
        shared.sent.lock().unwrap().audio.push((Instant::now(), f.len()));
        if let Err(e) = Peer::write(track, f, OPUS_FRAME).await {
            shared.sent.lock().unwrap().error.get_or_insert_with(|| format!("audio write: {e}"));
            return;
        }
        i += 1;
        tokio::time::sleep_until(start + OPUS_FRAME * i).await;
    }
}

async fn watch_keyframe_requests(peer: Arc<Peer>, shared: Arc<Shared>, answer: bool) {
    let (track, _) = peer.video.as_ref().expect("publisher video");
    while let Some(TrackLocalEvent::OnRtcpPacket(packets)) = track.poll().await {
        let n = packets.iter().filter(|p| p.as_any().is::<PictureLossIndication>() || p.as_any().is::<FullIntraRequest>()).count();
        shared.keyframe_requests.fetch_add(n as u64, Ordering::Relaxed);
        if n > 0 {
            shared.request_times.lock().unwrap().push(Instant::now());
        }
        if answer && n > 0 {
            shared.force_keyframe.store(true, Ordering::Relaxed);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Subscribers
// ---------------------------------------------------------------------------------------------

struct Sub {
    peer: Option<Peer>,
    location: Option<String>,
    started: Instant,
    /// WHEP 201 received.
    answered: Option<Instant>,
    connected: Option<Instant>,
    error: Option<String>,
}

async fn run_subscriber(addr: SocketAddr, room: String, token: String) -> Sub {
    let started = Instant::now();
    let mut sub = Sub { peer: None, location: None, started, answered: None, connected: None, error: None };
    let mut peer = match Peer::player().await {
        Ok(p) => p,
        Err(e) => {
            sub.error = Some(format!("build: {e}"));
            return sub;
        }
    };
    let result: Res<()> = async {
        let offer = peer.offer().await?;
        let (location, answer) = post_offer(addr, &format!("/whep/{room}"), &token, &offer).await?;
        sub.answered = Some(Instant::now());
        sub.location = Some(location);
        peer.accept_answer(&answer).await?;
        peer.wait_connected().await?;
        sub.connected = Some(Instant::now());
        Ok(())
    }
    .await;
    if let Err(e) = result {
        sub.error = Some(e.to_string());
    }
    sub.peer = Some(peer);
    sub
}

// ---------------------------------------------------------------------------------------------
// Figures
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Default)]
struct Counters {
    video_pkts: u64,
    video_bytes: u64,
    audio_pkts: u64,
    audio_bytes: u64,
}

fn counters(rx: &Mutex<Rx>) -> Counters {
    let r = rx.lock().unwrap();
    Counters { video_pkts: r.video_pkts, video_bytes: r.video_bytes, audio_pkts: r.audio_pkts, audio_bytes: r.audio_bytes }
}

struct SubReport {
    n: usize,
    error: Option<String>,
    /// From the subscriber's start (peer built, offer gathered) to WHEP 201.
    answer_ms: Option<f64>,
    connect_ms: Option<f64>,
    /// From Connected to the first access unit complete.
    first_key_wait_ms: Option<f64>,
    first_index: Option<u32>,
    first_is_keyframe: bool,
    expected: u64,
    received_ok: u64,
    lost: u64,
    corrupt: u64,
    duplicate: u64,
    out_of_order: u64,
    window_expected: u64,
    window_ok: u64,
    audio_expected: u64,
    audio_ok: u64,
    video_skipped: u64,
    video_late: u64,
    audio_skipped: u64,
    /// The first video RTP sequence number this subscriber's track saw (the SFU starts at 1).
    first_video_seq: Option<u16>,
    window_pkts: u64,
    window_bytes: u64,
    /// Send → complete at this subscriber, of the access units sent in the window, sorted.
    latency_ms: Vec<f64>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn json_num(x: f64) -> String {
    if x.is_finite() { format!("{x:.3}") } else { "null".to_owned() }
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[allow(clippy::too_many_arguments)]
fn analyse(
    n: usize,
    sub: &Sub,
    sent: &SentLog,
    video_cutoff: usize,
    audio_cutoff: usize,
    window: (Instant, Instant),
    c0: Counters,
    c1: Counters,
) -> SubReport {
    let mut rep = SubReport {
        n,
        error: sub.error.clone(),
        answer_ms: sub.answered.map(|c| ms(c - sub.started)),
        connect_ms: sub.connected.map(|c| ms(c - sub.started)),
        first_key_wait_ms: None,
        first_index: None,
        first_is_keyframe: false,
        expected: 0,
        received_ok: 0,
        lost: 0,
        corrupt: 0,
        duplicate: 0,
        out_of_order: 0,
        window_expected: 0,
        window_ok: 0,
        audio_expected: 0,
        audio_ok: 0,
        video_skipped: 0,
        video_late: 0,
        audio_skipped: 0,
        first_video_seq: None,
        window_pkts: (c1.video_pkts + c1.audio_pkts).saturating_sub(c0.video_pkts + c0.audio_pkts),
        window_bytes: (c1.video_bytes + c1.audio_bytes).saturating_sub(c0.video_bytes + c0.audio_bytes),
        latency_ms: Vec::new(),
    };
    let Some(peer) = &sub.peer else { return rep };
    let r = peer.rx.lock().unwrap();
    rep.video_skipped = r.video_skipped;
    rep.video_late = r.video_late;
    rep.audio_skipped = r.audio_skipped;
    rep.first_video_seq = r.first_video.map(|v| v.0);
    let Some(first) = r.units.first() else { return rep };
    rep.first_index = (first.index != u32::MAX).then_some(first.index);
    rep.first_is_keyframe = first.keyframe && sent.video.get(first.index as usize).is_some_and(|s| s.1);
    rep.first_key_wait_ms = sub.connected.map(|c| ms(first.complete_at.saturating_duration_since(c)));
    if let Some(first_index) = rep.first_index {
        let first_index = first_index as usize;
        let range = first_index..video_cutoff.max(first_index);
        let mut seen = vec![false; sent.video.len()];
        let mut last = None;
        for u in &r.units {
            if u.index == u32::MAX || !u.identical {
                rep.corrupt += 1;
                continue;
            }
            let i = u.index as usize;
            if last.is_some_and(|l| i <= l) {
                rep.out_of_order += 1;
            }
            last = Some(i);
            if i >= seen.len() {
                rep.corrupt += 1;
                continue;
            }
            if seen[i] {
                rep.duplicate += 1;
                continue;
            }
            seen[i] = true;
            let at = sent.video[i].0;
            if range.contains(&i) && at >= window.0 && at < window.1 {
                rep.latency_ms.push(ms(u.complete_at.saturating_duration_since(at)));
            }
        }
        rep.expected = range.len() as u64;
        rep.received_ok = range.clone().filter(|i| seen[*i]).count() as u64;
        rep.lost = rep.expected - rep.received_ok;
        for i in range {
            let at = sent.video[i].0;
            if at >= window.0 && at < window.1 {
                rep.window_expected += 1;
                rep.window_ok += u64::from(seen[i]);
            }
        }
    }
    if let Some(&(first_audio, _)) = r.opus.iter().find(|(i, _)| *i != u32::MAX) {
        let first_audio = first_audio as usize;
        let range = first_audio..audio_cutoff.max(first_audio);
        let mut seen = vec![false; sent.audio.len()];
        for &(i, ok) in &r.opus {
            if ok && (i as usize) < seen.len() {
                seen[i as usize] = true;
            }
        }
        rep.audio_expected = range.len() as u64;
        rep.audio_ok = range.filter(|i| seen[*i]).count() as u64;
    }
    rep.latency_ms.sort_by(|a, b| a.total_cmp(b));
    rep
}

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

/// `tongxin-load fanout ARGS…`: parses `args` (the flags above) and runs; the exit code is 0,
/// 1 (the run failed) or 2 (bad arguments).
pub async fn main(args: Vec<String>) -> std::process::ExitCode {
    let args = match parse_args(args.into_iter()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    // Bounded in time whatever happens: setup, the window, and teardown.
    let limit = Duration::from_secs(args.seconds + 180);
    match tokio::time::timeout(limit, run(args)).await {
        Ok(Ok(())) => std::process::ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("fanout: {e}");
            std::process::ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("fanout: gave up after {} s", limit.as_secs());
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Res<()> {
    let pid = args.server_pid.to_string();
    let tck = clock_ticks_per_second();
    if proc_cpu(&pid).is_none() {
        return Err(format!("no process {pid} (--server-pid)").into());
    }
    let run_start = Instant::now();
    let udp_start = udp_errors();
    let (rss_before, _) = proc_rss(&pid).unwrap_or((0, 0));

    // Background sampler: the server's CPU ticks and VmRSS every 250 ms for the whole run.
    let samples = Arc::new(Mutex::new(Samples::default()));
    let sampler = {
        let samples = samples.clone();
        let pid = pid.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                match (proc_cpu(&pid), proc_rss(&pid)) {
                    (Some((t, _)), Some((rss, _))) => samples.lock().unwrap().points.push((Instant::now(), t, rss)),
                    _ => {
                        samples.lock().unwrap().server_gone = true;
                        return;
                    }
                }
            }
        })
    };

    // Publisher.
    eprintln!("fanout: publisher: WHIP /whip/{}", args.room);
    let mut publisher = Peer::publisher().await?;
    let offer = publisher.offer().await?;
    let (pub_location, answer) = post_offer(args.http, &format!("/whip/{}", args.room), &args.publisher_token, &offer).await?;
    publisher.accept_answer(&answer).await?;
    publisher.wait_connected().await?;
    let publisher_connected_ms = ms(run_start.elapsed());
    let publisher = Arc::new(publisher);
    let shared = Arc::new(Shared {
        sent: Mutex::new(SentLog::default()),
        stop: AtomicBool::new(false),
        force_keyframe: AtomicBool::new(false),
        keyframe_requests: AtomicU64::new(0),
        forced_keyframes: AtomicU64::new(0),
        request_times: Mutex::new(Vec::new()),
    });
    let video_task = tokio::spawn(send_video(publisher.clone(), shared.clone()));
    let audio_task = tokio::spawn(send_audio(publisher.clone(), shared.clone()));
    let pli_task = tokio::spawn(watch_keyframe_requests(publisher.clone(), shared.clone(), args.answer_pli));
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Subscribers, staggered.
    eprintln!("fanout: {} subscribers, {} ms apart", args.subscribers, args.stagger.as_millis());
    let origin = Instant::now();
    let origin_wall = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let mut joins = Vec::new();
    for k in 0..args.subscribers {
        if k > 0 {
            tokio::time::sleep(args.stagger).await;
        }
        joins.push(tokio::spawn(run_subscriber(args.http, args.room.clone(), args.subscriber_token.clone())));
    }
    let mut subs = Vec::new();
    for j in joins {
        subs.push(j.await?);
    }
    let all_started = Instant::now();
    let connected = subs.iter().filter(|s| s.connected.is_some()).count();
    eprintln!("fanout: {connected}/{} subscribers connected", subs.len());
    for (k, s) in subs.iter().enumerate() {
        if let Some(e) = &s.error {
            eprintln!("fanout: subscriber {k}: {e}");
        }
    }

    // Wait until every connected subscriber has its first access unit (a keyframe).
    let deadline = Instant::now() + FIRST_KEYFRAME_LIMIT;
    loop {
        let waiting =
            subs.iter().filter(|s| s.connected.is_some() && s.peer.as_ref().is_some_and(|p| p.rx.lock().unwrap().units.is_empty())).count();
        if waiting == 0 || Instant::now() >= deadline {
            if waiting > 0 {
                eprintln!("fanout: {waiting} subscribers still without a keyframe after {} s", FIRST_KEYFRAME_LIMIT.as_secs());
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let all_keyframed_ms = ms(all_started.elapsed());
    tokio::time::sleep(args.settle).await;

    // The steady-state window.
    eprintln!("fanout: steady state for {} s", args.seconds);
    let c0: Vec<Counters> = subs.iter().map(|s| s.peer.as_ref().map(|p| counters(&p.rx)).unwrap_or_default()).collect();
    let s0 = cpu_snap(&pid);
    let udp_w0 = udp_errors();
    let requests0 = shared.keyframe_requests.load(Ordering::Relaxed);
    let forced0 = shared.forced_keyframes.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let s1 = cpu_snap(&pid);
    let udp_w1 = udp_errors();
    let c1: Vec<Counters> = subs.iter().map(|s| s.peer.as_ref().map(|p| counters(&p.rx)).unwrap_or_default()).collect();
    let requests_in_window = shared.keyframe_requests.load(Ordering::Relaxed) - requests0;
    let forced_in_window = shared.forced_keyframes.load(Ordering::Relaxed) - forced0;
    let (rss_end, hwm_end) = proc_rss(&pid).unwrap_or((0, 0));

    // Stop the sender; let what is in flight arrive.
    shared.stop.store(true, Ordering::Relaxed);
    let _ = video_task.await;
    let _ = audio_task.await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let states: Vec<RTCPeerConnectionState> =
        subs.iter().map(|s| s.peer.as_ref().map(|p| p.state()).unwrap_or(RTCPeerConnectionState::Failed)).collect();
    let publisher_state = publisher.state();

    // Figures.
    let window = (s0.at, s1.at);
    let secs = (s1.at - s0.at).as_secs_f64();
    let server_cpu = (s1.server - s0.server) as f64 / tck / secs * 100.0;
    let generator_cpu = (s1.generator - s0.generator) as f64 / tck / secs * 100.0;
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
    let machine_cpu = if s1.machine_total > s0.machine_total {
        (s1.machine_busy - s0.machine_busy) as f64 / (s1.machine_total - s0.machine_total) as f64 * 100.0 * cores
    } else {
        f64::NAN
    };
    let (rss_peak, per_second) = {
        let s = samples.lock().unwrap();
        let peak = s.points.iter().map(|p| p.2).max().unwrap_or(0);
        // One-second server CPU inside the window (four samples apart).
        let inside: Vec<&(Instant, u64, u64)> = s.points.iter().filter(|p| p.0 >= window.0 && p.0 <= window.1).collect();
        let per_second: Vec<f64> =
            inside.windows(5).step_by(4).map(|w| (w[4].1 - w[0].1) as f64 / tck / (w[4].0 - w[0].0).as_secs_f64() * 100.0).collect();
        (peak, per_second)
    };
    let (sent_au, sent_key, sent_video_bytes, sent_audio_frames, sent_audio_bytes, window_sent_video_bytes, max_lag, send_error) = {
        let s = shared.sent.lock().unwrap();
        let in_window = |t: &Instant| *t >= window.0 && *t < window.1;
        (
            s.video.len(),
            s.video.iter().filter(|v| v.1).count(),
            s.video.iter().map(|v| v.2).sum::<usize>(),
            s.audio.len(),
            s.audio.iter().map(|a| a.1).sum::<usize>(),
            s.video.iter().filter(|v| in_window(&v.0)).map(|v| v.2).sum::<usize>()
                + s.audio.iter().filter(|a| in_window(&a.0)).map(|a| a.1).sum::<usize>(),
            s.max_video_lag,
            s.error.clone(),
        )
    };
    let reports: Vec<SubReport> = {
        let sent = shared.sent.lock().unwrap();
        let video_cutoff = sent.video.len().saturating_sub(2);
        let audio_cutoff = sent.audio.len().saturating_sub(2);
        subs.iter().enumerate().map(|(k, s)| analyse(k, s, &sent, video_cutoff, audio_cutoff, window, c0[k], c1[k])).collect()
    };

    // Teardown: DELETE every session, close every peer, then see what the server keeps.
    let mut delete_status = Vec::new();
    for s in &subs {
        if let Some(l) = &s.location {
            delete_status.push(delete(args.http, l, &args.subscriber_token).await.map(|c| c.to_string()).unwrap_or_else(|e| e.to_string()));
        }
        if let Some(p) = &s.peer {
            let _ = p.pc.close().await;
        }
    }
    let pub_delete = delete(args.http, &pub_location, &args.publisher_token).await.map(|c| c.to_string()).unwrap_or_else(|e| e.to_string());
    pli_task.abort();
    let _ = publisher.pc.close().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss_after_teardown, hwm_after) = proc_rss(&pid).unwrap_or((0, 0));
    sampler.abort();
    let server_gone = samples.lock().unwrap().server_gone || proc_cpu(&pid).is_none();

    // ---------------------------------------------------------------------------------------------
    // Output
    // ---------------------------------------------------------------------------------------------
    let total_pkts: u64 = reports.iter().map(|r| r.window_pkts).sum();
    let total_bytes: u64 = reports.iter().map(|r| r.window_bytes).sum();
    let total_expected: u64 = reports.iter().map(|r| r.expected).sum();
    let total_ok: u64 = reports.iter().map(|r| r.received_ok).sum();
    let total_lost: u64 = reports.iter().map(|r| r.lost).sum();
    let total_corrupt: u64 = reports.iter().map(|r| r.corrupt).sum();
    let window_expected: u64 = reports.iter().map(|r| r.window_expected).sum();
    let window_ok: u64 = reports.iter().map(|r| r.window_ok).sum();
    let audio_expected: u64 = reports.iter().map(|r| r.audio_expected).sum();
    let audio_ok: u64 = reports.iter().map(|r| r.audio_ok).sum();
    let mut all_latency: Vec<f64> = reports.iter().flat_map(|r| r.latency_ms.iter().copied()).collect();
    all_latency.sort_by(|a, b| a.total_cmp(b));
    let mut waits: Vec<f64> = reports.iter().filter_map(|r| r.first_key_wait_ms).collect();
    waits.sort_by(|a, b| a.total_cmp(b));
    let not_keyframe_first = reports.iter().filter(|r| r.first_index.is_some() && !r.first_is_keyframe).count();
    let connected_count = reports.iter().filter(|r| r.connect_ms.is_some()).count();
    let still_connected = states.iter().filter(|s| **s == RTCPeerConnectionState::Connected).count();

    let mut t = String::new();
    let _ = writeln!(t, "\nTongxin SFU fan-out: 1 publisher → {} subscribers, room {}, window {:.1} s", args.subscribers, args.room, secs);
    let _ = writeln!(t, "{:-<132}", "");
    let _ = writeln!(
        t,
        "{:>3} {:>6} {:>7} {:>7} {:>6} {:>4} {:>6} {:>6} {:>5} {:>5} {:>5} {:>7} {:>7} {:>7} {:>7} {:>7} {:>6} {:>6} {:>7} {:>7}",
        "sub",
        "ans_ms",
        "conn_ms",
        "kf_wait",
        "first",
        "key",
        "exp",
        "ok",
        "lost",
        "bad",
        "dup",
        "win_exp",
        "win_ok",
        "aud_exp",
        "aud_ok",
        "pkt/s",
        "Mbit/s",
        "gaps",
        "lat_p50",
        "lat_p99"
    );
    for r in &reports {
        let opt = |x: Option<f64>| x.map(|v| format!("{v:.0}")).unwrap_or_else(|| "-".into());
        let _ = writeln!(
            t,
            "{:>3} {:>6} {:>7} {:>7} {:>6} {:>4} {:>6} {:>6} {:>5} {:>5} {:>5} {:>7} {:>7} {:>7} {:>7} {:>7.1} {:>6.3} {:>6} {:>7.1} {:>7.1}{}",
            r.n,
            opt(r.answer_ms),
            opt(r.connect_ms),
            opt(r.first_key_wait_ms),
            r.first_index.map(|i| i.to_string()).unwrap_or_else(|| "-".into()),
            if r.first_is_keyframe { "yes" } else { "NO" },
            r.expected,
            r.received_ok,
            r.lost,
            r.corrupt,
            r.duplicate,
            r.window_expected,
            r.window_ok,
            r.audio_expected,
            r.audio_ok,
            r.window_pkts as f64 / secs,
            r.window_bytes as f64 * 8.0 / secs / 1e6,
            r.video_skipped,
            percentile(&r.latency_ms, 0.5),
            percentile(&r.latency_ms, 0.99),
            r.error.as_ref().map(|e| format!("  ERROR {e}")).unwrap_or_default()
        );
    }
    let _ = writeln!(t, "{:-<132}", "");
    let _ = writeln!(t, "server pid {pid}: CPU {server_cpu:.1} % of one core over the window (utime+stime, CLK_TCK {tck})");
    if !per_second.is_empty() {
        let min = per_second.iter().copied().fold(f64::INFINITY, f64::min);
        let max = per_second.iter().copied().fold(0.0, f64::max);
        let _ = writeln!(t, "  per-second server CPU in the window: min {min:.1} %, max {max:.1} % ({} samples)", per_second.len());
    }
    let _ = writeln!(
        t,
        "server VmRSS: before {:.1} MiB, peak (sampled every 250 ms) {:.1} MiB, at window end {:.1} MiB, after teardown {:.1} MiB; VmHWM {:.1} MiB",
        rss_before as f64 / 1024.0,
        rss_peak as f64 / 1024.0,
        rss_end as f64 / 1024.0,
        rss_after_teardown as f64 / 1024.0,
        hwm_end.max(hwm_after) as f64 / 1024.0
    );
    let _ = writeln!(
        t,
        "load generator (this process): CPU {generator_cpu:.1} % of one core; machine busy {machine_cpu:.1} % of {:.0} % ({} cores); max video send lag {:.1} ms",
        cores * 100.0,
        cores,
        ms(max_lag)
    );
    let _ = writeln!(
        t,
        "forwarded at subscribers: {:.0} packets/s, {:.2} Mbit/s RTP (header + payload, all {} subscribers)",
        total_pkts as f64 / secs,
        total_bytes as f64 * 8.0 / secs / 1e6,
        args.subscribers
    );
    let _ = writeln!(
        t,
        "published: {sent_au} access units ({sent_key} keyframes, {:.3} Mbit/s media payload in the window incl. Opus), {sent_audio_frames} Opus frames; whole run video {:.3} MB, audio {:.3} MB",
        window_sent_video_bytes as f64 * 8.0 / secs / 1e6,
        sent_video_bytes as f64 / 1e6,
        sent_audio_bytes as f64 / 1e6
    );
    let _ = writeln!(
        t,
        "access units after each subscriber's first keyframe: expected {total_expected}, received byte-identical {total_ok}, lost {total_lost}, corrupt {total_corrupt}; in the window: {window_ok}/{window_expected}"
    );
    let _ = writeln!(t, "Opus frames after each subscriber's first frame: expected {audio_expected}, received byte-identical {audio_ok}");
    let _ = writeln!(
        t,
        "first keyframe wait after connect (ms): min {:.0}, median {:.0}, max {:.0}; first unit not a keyframe: {not_keyframe_first}",
        percentile(&waits, 0.0),
        percentile(&waits, 0.5),
        percentile(&waits, 1.0)
    );
    let _ = writeln!(
        t,
        "access-unit latency in the window, send → last packet at subscriber (ms): p50 {:.1}, p99 {:.1}, max {:.1}",
        percentile(&all_latency, 0.5),
        percentile(&all_latency, 0.99),
        percentile(&all_latency, 1.0)
    );
    let _ = writeln!(
        t,
        "keyframe requests (PLI/FIR) at the publisher: {} total, {requests_in_window} in the window; keyframes forced by them: {} ({forced_in_window} in the window){}",
        shared.keyframe_requests.load(Ordering::Relaxed),
        shared.forced_keyframes.load(Ordering::Relaxed),
        if args.answer_pli { "" } else { " [--ignore-pli]" }
    );
    let _ = writeln!(
        t,
        "connected {connected_count}/{} (publisher after {publisher_connected_ms:.0} ms, all first keyframes {all_keyframed_ms:.0} ms after the last start); still connected at the end {still_connected}, publisher {publisher_state}",
        args.subscribers
    );
    let _ = writeln!(
        t,
        "DELETE: publisher {pub_delete}, subscribers {:?}; server alive after the run: {}",
        dedup(&delete_status),
        !server_gone
    );
    if let Some(e) = &send_error {
        let _ = writeln!(t, "publisher send error: {e}");
    }
    let udp_end = udp_errors();
    // Join-phase diagnostics: what happened between the subscribers' start and the window.
    let rel = |t: Instant| ms(t.saturating_duration_since(origin));
    let _ = writeln!(
        t,
        "\njoin phase (ms from the first subscriber's start, UNIX {}.{:03}; the server logs in UTC):",
        origin_wall.as_secs(),
        origin_wall.subsec_millis()
    );
    let requests: Vec<String> = shared.request_times.lock().unwrap().iter().map(|t| format!("{:.0}", rel(*t))).collect();
    let _ = writeln!(t, "  keyframe requests reached the publisher at: [{}]", requests.join(", "));
    {
        let sent = shared.sent.lock().unwrap();
        let keys: Vec<String> = sent
            .video
            .iter()
            .enumerate()
            .filter(|(_, v)| v.1 && v.0 >= origin && v.0 < window.0)
            .map(|(i, v)| format!("#{i}@{:.0}", rel(v.0)))
            .collect();
        let _ = writeln!(t, "  keyframes sent before the window: [{}]", keys.join(", "));
    }
    let _ = writeln!(
        t,
        "  {:>3} {:>7} {:>7} {:>7} {:>9} {:>9} {:>9} {:>9} {:>11} {:>9}",
        "sub", "start", "answer", "conn", "v_seq1st", "v_at", "a_seq1st", "a_at", "1st_unit", "unit_at"
    );
    for (k, sub) in subs.iter().enumerate() {
        let Some(peer) = &sub.peer else { continue };
        let r = peer.rx.lock().unwrap();
        let o = |t: Option<Instant>| t.map(|t| format!("{:.0}", rel(t))).unwrap_or_else(|| "-".into());
        let _ = writeln!(
            t,
            "  {:>3} {:>7} {:>7} {:>7} {:>9} {:>9} {:>9} {:>9} {:>11} {:>9}",
            k,
            o(Some(sub.started)),
            o(sub.answered),
            o(sub.connected),
            r.first_video.map(|v| v.0.to_string()).unwrap_or_else(|| "-".into()),
            o(r.first_video.map(|v| v.1)),
            r.first_audio.map(|v| v.0.to_string()).unwrap_or_else(|| "-".into()),
            o(r.first_audio.map(|v| v.1)),
            r.units.first().map(|u| format!("#{}{}", u.index, if u.keyframe { "K" } else { "P" })).unwrap_or_else(|| "-".into()),
            o(r.units.first().map(|u| u.complete_at)),
        );
        if r.units.first().is_some_and(|u| !u.keyframe) {
            let early: Vec<String> = r
                .early_video
                .iter()
                .take(12)
                .map(|(at, ts, seq, key)| format!("seq {seq} ts {ts}{} @{:.0}", if *key { " KEY" } else { "" }, rel(*at)))
                .collect();
            let _ = writeln!(t, "      first video packets: {}", early.join("; "));
        }
    }
    let _ = writeln!(
        t,
        "kernel UDP counters (whole machine) InErrors/RcvbufErrors/SndbufErrors: run +{}/+{}/+{}, window +{}/+{}/+{}",
        udp_end.0 - udp_start.0,
        udp_end.1 - udp_start.1,
        udp_end.2 - udp_start.2,
        udp_w1.0 - udp_w0.0,
        udp_w1.1 - udp_w0.1,
        udp_w1.2 - udp_w0.2
    );
    print!("{t}");

    let mut j = String::from("{");
    let mut kv = |k: &str, v: String| {
        if j.len() > 1 {
            j.push(',');
        }
        let _ = write!(j, "{}:{}", json_str(k), v);
    };
    kv("subscribers", args.subscribers.to_string());
    kv("window_s", json_num(secs));
    kv("server_cpu_pct", json_num(server_cpu));
    kv("server_rss_before_kb", rss_before.to_string());
    kv("server_rss_peak_kb", rss_peak.to_string());
    kv("server_rss_end_kb", rss_end.to_string());
    kv("server_rss_after_teardown_kb", rss_after_teardown.to_string());
    kv("server_vmhwm_kb", hwm_end.max(hwm_after).to_string());
    kv("generator_cpu_pct", json_num(generator_cpu));
    kv("machine_cpu_pct", json_num(machine_cpu));
    kv("cores", json_num(cores));
    kv("forwarded_pkts_per_s", json_num(total_pkts as f64 / secs));
    kv("forwarded_mbit_per_s", json_num(total_bytes as f64 * 8.0 / secs / 1e6));
    kv("published_mbit_per_s", json_num(window_sent_video_bytes as f64 * 8.0 / secs / 1e6));
    kv("access_units_sent", sent_au.to_string());
    kv("keyframes_sent", sent_key.to_string());
    kv("frames_expected", total_expected.to_string());
    kv("frames_received_identical", total_ok.to_string());
    kv("frames_lost", total_lost.to_string());
    kv("frames_corrupt", total_corrupt.to_string());
    kv("window_frames_expected", window_expected.to_string());
    kv("window_frames_received_identical", window_ok.to_string());
    kv("opus_expected", audio_expected.to_string());
    kv("opus_received_identical", audio_ok.to_string());
    kv("first_keyframe_wait_ms_max", json_num(percentile(&waits, 1.0)));
    kv("first_keyframe_wait_ms_median", json_num(percentile(&waits, 0.5)));
    kv("first_unit_not_keyframe", not_keyframe_first.to_string());
    kv("latency_ms_p50", json_num(percentile(&all_latency, 0.5)));
    kv("latency_ms_p99", json_num(percentile(&all_latency, 0.99)));
    kv("latency_ms_max", json_num(percentile(&all_latency, 1.0)));
    kv("keyframe_requests", shared.keyframe_requests.load(Ordering::Relaxed).to_string());
    kv("keyframe_requests_in_window", requests_in_window.to_string());
    kv("forced_keyframes", shared.forced_keyframes.load(Ordering::Relaxed).to_string());
    kv("max_video_send_lag_ms", json_num(ms(max_lag)));
    kv("connected", connected_count.to_string());
    kv("still_connected", still_connected.to_string());
    kv("server_alive", (!server_gone).to_string());
    kv("udp_rcvbuf_errors_run", (udp_end.1 - udp_start.1).to_string());
    kv("udp_rcvbuf_errors_window", (udp_w1.1 - udp_w0.1).to_string());
    kv("udp_in_errors_run", (udp_end.0 - udp_start.0).to_string());
    let per_sub: Vec<String> = reports
        .iter()
        .map(|r| {
            format!(
                "{{\"n\":{},\"answer_ms\":{},\"connect_ms\":{},\"first_keyframe_wait_ms\":{},\"expected\":{},\"ok\":{},\"lost\":{},\"corrupt\":{},\"pkts_per_s\":{},\"mbit_per_s\":{},\"rtp_gaps\":{},\"rtp_late\":{},\"first_video_seq\":{},\"error\":{}}}",
                r.n,
                r.answer_ms.map(json_num).unwrap_or_else(|| "null".into()),
                r.connect_ms.map(json_num).unwrap_or_else(|| "null".into()),
                r.first_key_wait_ms.map(json_num).unwrap_or_else(|| "null".into()),
                r.expected,
                r.received_ok,
                r.lost,
                r.corrupt,
                json_num(r.window_pkts as f64 / secs),
                json_num(r.window_bytes as f64 * 8.0 / secs / 1e6),
                r.video_skipped + r.audio_skipped,
                r.video_late,
                r.first_video_seq.map(|v| v.to_string()).unwrap_or_else(|| "null".into()),
                r.error.as_deref().map(json_str).unwrap_or_else(|| "null".into())
            )
        })
        .collect();
    kv("per_subscriber", format!("[{}]", per_sub.join(",")));
    j.push('}');
    println!("JSON {j}");
    Ok(())
}

/// "200 ×20" style summary of repeated statuses.
fn dedup(v: &[String]) -> Vec<String> {
    let mut out: Vec<(String, usize)> = Vec::new();
    for s in v {
        match out.iter_mut().find(|(x, _)| x == s) {
            Some((_, n)) => *n += 1,
            None => out.push((s.clone(), 1)),
        }
    }
    out.into_iter().map(|(s, n)| format!("{s} ×{n}")).collect()
}
