//! Simulated participants on the `webrtc` crate (independent of the server's str0m): a WHIP
//! publisher that writes pre-encoded H.264 access units and Opus frames, and a WHEP player that
//! reassembles what arrives and reads each access unit's frame counter (an SEI NAL, see
//! [`crate::media::read_counter`]), so loss and latency are measured per frame even though the
//! SFU rewrites RTP headers. Everything binds to 127.0.0.1.
//!
//! A simulcast publisher ([`Peer::simulcast_publisher`]) sends its video as several encodings of
//! one m-line, told apart by rid (`a=simulcast:send q;h;f`, one `a=rid:<rid> send` and one SSRC
//! per layer); each packet carries the SDES MID and RID header extensions, as a browser's do, so
//! the server can map the layers' SSRCs without `a=ssrc` lines.
//!
//! Peers bind to loopback unless made with an `_on(ip)` constructor: a server under test in a
//! network namespace ([`crate::bench_net`]) is reached from the root side of its veth pair.

use std::collections::VecDeque;
use std::error::Error;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rtc::ice::mdns::MulticastDnsMode;
use rtc::ice::network_type::NetworkType;
use rtc::interceptor::{Attribute, Interceptor, Packet, Slot, StreamInfo, TaggedPacket};
use rtc::media::Sample;
use rtc::media::io::sample_builder::SampleBuilder;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::{configure_simulcast_extension_headers, register_default_interceptors};
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_H264, MIME_TYPE_OPUS};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp::codec::h264::H264Packet;
use rtc::rtp::codec::opus::OpusPacket;
use rtc::rtp::extension::HeaderExtension;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{PayloadType, RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use rtc::sansio::Protocol;
use rtc::sdp::extmap::{SDES_MID_URI, SDES_RTP_STREAM_ID_URI};
use rtc::shared::marshal::{Marshal, MarshalSize};
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
use webrtc::rtp_transceiver::RtpTransceiver;

/// Errors of the participants: anything, with a message.
pub type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

// ---- HTTP: a minimal HTTP/1.1 client -----------------------------------------------------

/// Sends one HTTP/1.1 request to a loopback server; returns (status, lower-cased headers, body).
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Res<(u16, Vec<(String, String)>, String)> {
    request_within(addr, method, path, headers, body, Duration::from_secs(30)).await
}

/// [`request`] waiting at most `timeout` for the whole response (a long poll waits longer).
pub async fn request_within(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
    timeout: Duration,
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
    tokio::time::timeout(timeout, s.read_to_end(&mut raw))
        .await
        .map_err(|_| format!("{method} {path}: no response within {timeout:?}"))??;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").map_or((raw.len(), raw.len()), |i| (i, i + 4));
    let head = String::from_utf8_lossy(&raw[..split.0]).into_owned();
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned())).collect();
    let body = &raw[split.1..];
    // Janus's libmicrohttpd answers in chunks.
    let chunked = headers.iter().any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked { dechunk(body).ok_or_else(|| format!("{method} {path}: a broken chunked body"))? } else { body.to_vec() };
    Ok((status, headers, String::from_utf8_lossy(&body).into_owned()))
}

/// The payload of a chunked HTTP/1.1 body (RFC 9112 §7.1; extensions and trailers ignored).
fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&body[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
}

/// POSTs an offer; returns (Location, answer).
pub async fn post_offer(addr: SocketAddr, path: &str, token: &str, offer: &str) -> Res<(String, String)> {
    let auth = format!("Bearer {token}");
    let (status, headers, body) =
        request(addr, "POST", path, &[("Content-Type", "application/sdp"), ("Authorization", &auth)], offer).await?;
    if status != 201 {
        return Err(format!("POST {path}: HTTP {status}: {}", body.trim()).into());
    }
    let location = headers.iter().find(|(k, _)| k == "location").map(|(_, v)| v.clone()).unwrap_or_default();
    Ok((location, body))
}

/// DELETEs a WHIP/WHEP session.
pub async fn delete(addr: SocketAddr, location: &str, token: &str) -> Res<u16> {
    let auth = format!("Bearer {token}");
    Ok(request(addr, "DELETE", location, &[("Authorization", &auth)], "").await?.0)
}

// ---- keyframe requests ------------------------------------------------------------------
// They reach the publisher's application only through an interceptor that marks them (the
// `webrtc` crate's rtcp-processing example): inbound PLI/FIR are passed on, all other inbound
// RTCP stops at the end of the chain as usual.

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

// ---- peers ----------------------------------------------------------------------------

/// H.264 constrained baseline, packetization-mode 1, with NACK and PLI feedback.
pub fn h264() -> RTCRtpCodec {
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

/// Opus, 48 kHz stereo signalling (mono content), in-band FEC.
pub fn opus() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

/// Sequence-number bookkeeping of one received RTP stream: how many packets the sender sent up
/// to the highest one seen, against how many arrived. Reordering is not loss; a jump of more
/// than 3000 (a new source) starts the count over.
#[derive(Default)]
struct SeqTrack {
    /// The extended highest sequence number, and the first one.
    highest: Option<u64>,
    first: u64,
    received: u64,
    /// Expected and received before the last restart.
    expected_before: u64,
    received_before: u64,
}

impl SeqTrack {
    /// Records a packet; returns 1 if it came after a later one (reordered or retransmitted).
    fn on(&mut self, seq: u16) -> u64 {
        let Some(highest) = self.highest else {
            (self.highest, self.first, self.received) = (Some(u64::from(seq)), u64::from(seq), 1);
            return 0;
        };
        let d = i64::from(seq.wrapping_sub(highest as u16) as i16);
        if d.abs() > 3000 {
            self.expected_before = self.expected();
            self.received_before += self.received;
            (self.highest, self.first, self.received) =
                (Some(u64::from(seq) + (highest & !0xffff) + 0x10000), u64::from(seq) + (highest & !0xffff) + 0x10000, 1);
            return 0;
        }
        self.received += 1;
        if d > 0 {
            self.highest = Some(highest + d as u64);
            0
        } else {
            1
        }
    }

    /// Packets the sender sent so far (up to the highest seen).
    fn expected(&self) -> u64 {
        self.expected_before + self.highest.map_or(0, |h| h + 1 - self.first)
    }

    /// Packets missing so far.
    fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.received_before + self.received)
    }
}

/// Bytes a packet's UDP payload holds besides its RTP bytes: the SRTP authentication tag.
pub const SRTP_TAG: u64 = 10;

/// One access unit a player reassembled.
#[derive(Debug, Clone, Copy)]
pub struct RxUnit {
    /// The frame counter from its SEI, `None` if it carried none.
    pub counter: Option<u64>,
    /// An IDR: decodable on its own.
    pub keyframe: bool,
    /// Its size.
    pub bytes: usize,
    /// When its last (marker) packet arrived.
    pub complete_at: Instant,
}

/// What one player received.
#[derive(Debug, Default)]
pub struct Rx {
    /// Video RTP packets and their bytes (headers included).
    pub video_pkts: u64,
    /// Bytes of video RTP packets.
    pub video_bytes: u64,
    /// Audio RTP packets.
    pub audio_pkts: u64,
    /// Bytes of audio RTP packets.
    pub audio_bytes: u64,
    /// Video packets the sender sent (up to the highest sequence number seen).
    pub video_expected: u64,
    /// Video packets missing (expected − received; reordering does not count).
    pub video_lost: u64,
    /// Video packets that arrived after a later one (retransmissions, reordering).
    pub video_late: u64,
    /// Audio packets missing.
    pub audio_lost: u64,
    /// Reassembled access units, in arrival order.
    pub units: Vec<RxUnit>,
    /// Reassembled Opus frames.
    pub opus_frames: u64,
}

impl Rx {
    /// Video and audio packets and their UDP payload bytes (RTP + SRTP tag) so far.
    pub fn totals(&self) -> (u64, u64) {
        let pkts = self.video_pkts + self.audio_pkts;
        (pkts, self.video_bytes + self.audio_bytes + pkts * SRTP_TAG)
    }
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
            if kind == RtpCodecKind::Video {
                read_video(track, rx).await;
            } else {
                read_audio(track, rx).await;
            }
        });
    }
}

async fn read_video(track: Arc<dyn TrackRemote>, rx: Arc<Mutex<Rx>>) {
    let mut builder = SampleBuilder::new(512, H264Packet::default(), 90_000).with_max_time_delay(Duration::from_millis(1000));
    let mut seq = SeqTrack::default();
    // RTP timestamp → arrival of the packet with the marker bit (end of the access unit).
    let mut marker_at: VecDeque<(u32, Instant)> = VecDeque::new();
    while let Some(event) = track.poll().await {
        let TrackRemoteEvent::OnRtpPacket(packet) = event else {
            if matches!(event, TrackRemoteEvent::OnEnded) {
                break;
            }
            continue;
        };
        let now = Instant::now();
        let size = packet.marshal_size() as u64;
        let late = seq.on(packet.header.sequence_number);
        if packet.header.marker {
            if marker_at.len() >= 128 {
                marker_at.pop_front();
            }
            marker_at.push_back((packet.header.timestamp, now));
        }
        builder.push(now, packet);
        // The lock is never held across an await.
        let mut r = rx.lock().unwrap_or_else(|p| p.into_inner());
        r.video_pkts += 1;
        r.video_bytes += size;
        (r.video_expected, r.video_lost) = (seq.expected(), seq.lost());
        r.video_late += late;
        while let Some(s) = builder.pop(now) {
            let complete_at = marker_at.iter().rev().find(|(ts, _)| *ts == s.packet_timestamp).map(|(_, t)| *t).unwrap_or(now);
            let keyframe = is_idr(&s.data);
            r.units.push(RxUnit { counter: crate::media::read_counter(&s.data), keyframe, bytes: s.data.len(), complete_at });
        }
    }
}

async fn read_audio(track: Arc<dyn TrackRemote>, rx: Arc<Mutex<Rx>>) {
    let mut builder = SampleBuilder::new(256, OpusPacket, 48_000);
    let mut seq = SeqTrack::default();
    while let Some(event) = track.poll().await {
        let TrackRemoteEvent::OnRtpPacket(packet) = event else {
            if matches!(event, TrackRemoteEvent::OnEnded) {
                break;
            }
            continue;
        };
        let now = Instant::now();
        let size = packet.marshal_size() as u64;
        seq.on(packet.header.sequence_number);
        builder.push(now, packet);
        let mut r = rx.lock().unwrap_or_else(|p| p.into_inner());
        r.audio_pkts += 1;
        r.audio_bytes += size;
        r.audio_lost = seq.lost();
        while builder.pop(now).is_some() {
            r.opus_frames += 1;
        }
    }
}

/// Whether an Annex B access unit holds an IDR slice (NAL type 5).
fn is_idr(au: &[u8]) -> bool {
    au.windows(4).any(|w| w[..3] == [0, 0, 1] && w[3] & 0x1f == 5)
}

type Sender = Arc<dyn webrtc::rtp_transceiver::RtpSender>;

/// A peer connection: a publisher (send-only audio + video) or a player (receive-only).
pub struct Peer {
    pc: Arc<dyn PeerConnection>,
    gathered: watch::Receiver<bool>,
    state: watch::Receiver<RTCPeerConnectionState>,
    /// What a player received.
    pub rx: Arc<Mutex<Rx>>,
    video: Option<(Arc<TrackLocalStaticSample>, Sender)>,
    audio: Option<(Arc<TrackLocalStaticSample>, Sender)>,
    /// A simulcast publisher's layers.
    simulcast: Option<SimulcastLayers>,
}

/// The encodings of a simulcast video track.
struct SimulcastLayers {
    layers: LayerSsrcs,
    /// The video transceiver, for its negotiated mid.
    transceiver: Arc<dyn RtpTransceiver>,
}

/// Where peers bind by default.
const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

async fn build(forward_keyframe_requests: bool, simulcast: bool, bind: IpAddr) -> Res<Peer> {
    let mut engine = MediaEngine::default();
    engine.register_codec(RTCRtpCodecParameters { rtp_codec: h264(), payload_type: 102 }, RtpCodecKind::Video)?;
    engine.register_codec(RTCRtpCodecParameters { rtp_codec: opus(), payload_type: 111 }, RtpCodecKind::Audio)?;
    if simulcast {
        // SDES MID, RID and repaired RID on video: how a receiver maps each layer's SSRC.
        configure_simulcast_extension_headers(&mut engine)?;
    }
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
        .with_udp_addrs(vec![SocketAddr::new(bind, 0).to_string()])
        .build()
        .await?;
    Ok(Peer { pc: Arc::new(pc), gathered, state, rx, video: None, audio: None, simulcast: None })
}

/// A local track with a random SSRC, written sample by sample.
pub fn sample_track(kind: RtpCodecKind, codec: RTCRtpCodec, id: &str) -> Res<Arc<TrackLocalStaticSample>> {
    let ssrc: u32 = rand::random::<u32>() | 1;
    let track = MediaStreamTrack::new(
        "tongxin-load".to_owned(),
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

/// Each simulcast layer's (rid, SSRC), in the offer's order.
type LayerSsrcs = Vec<(String, u32)>;

/// A simulcast video track: one encoding per rid, each with a random SSRC of its own.
fn simulcast_track(codec: RTCRtpCodec, id: &str, rids: &[&str]) -> Res<(Arc<TrackLocalStaticSample>, LayerSsrcs)> {
    let layers: LayerSsrcs = rids.iter().map(|rid| ((*rid).to_owned(), rand::random::<u32>() | 1)).collect();
    let encodings = layers
        .iter()
        .map(|(rid, ssrc)| RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters { rid: rid.clone(), ssrc: Some(*ssrc), ..Default::default() },
            codec: codec.clone(),
            ..Default::default()
        })
        .collect();
    let track = MediaStreamTrack::new("tongxin-load".to_owned(), id.to_owned(), id.to_owned(), RtpCodecKind::Video, encodings);
    Ok((Arc::new(TrackLocalStaticSample::new(Instant::now(), track)?), layers))
}

/// An SDES header extension's value (MID or RID): its text, as it is.
struct SdesItem(String);

impl MarshalSize for SdesItem {
    fn marshal_size(&self) -> usize {
        self.0.len()
    }
}

impl Marshal for SdesItem {
    fn marshal_to(&self, buf: &mut [u8]) -> Result<usize, rtc::shared::error::Error> {
        let out = buf.get_mut(..self.0.len()).ok_or(rtc::shared::error::Error::ErrBufferTooSmall)?;
        out.copy_from_slice(self.0.as_bytes());
        Ok(self.0.len())
    }
}

fn sdes(uri: &'static str, value: &str) -> HeaderExtension {
    HeaderExtension::Custom { uri: uri.into(), extension: Box::new(SdesItem(value.to_owned())) }
}

impl Peer {
    /// A WHIP publisher: send-only H.264 and Opus; inbound keyframe requests reach
    /// [`Peer::keyframe_requests`].
    pub async fn publisher() -> Res<Peer> {
        Peer::publisher_on(LOOPBACK).await
    }

    /// A [`Peer::publisher`] whose media socket binds to `ip`.
    pub async fn publisher_on(ip: IpAddr) -> Res<Peer> {
        let mut peer = build(true, false, ip).await?;
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

    /// A WHIP publisher whose video is simulcast: one send-only m-line with an encoding (and
    /// SSRC) per rid in `rids`, announced as `a=rid:<rid> send` and `a=simulcast:send <rids>`;
    /// plus Opus. Write each layer with [`Peer::write_video_layer`]; inbound keyframe requests
    /// for any layer reach [`Peer::keyframe_requests`].
    pub async fn simulcast_publisher(rids: &[&str]) -> Res<Peer> {
        if rids.len() < 2 {
            return Err("simulcast needs at least two rids".into());
        }
        let mut peer = build(true, true, LOOPBACK).await?;
        let sendonly = || Some(RTCRtpTransceiverInit { direction: RTCRtpTransceiverDirection::Sendonly, ..Default::default() });
        let (video, layers) = simulcast_track(h264(), "video", rids)?;
        let transceiver = peer.pc.add_transceiver_from_track(video.clone() as Arc<dyn TrackLocal>, sendonly()).await?;
        let sender = transceiver.sender().await?.ok_or("no sender")?;
        peer.video = Some((video, sender));
        peer.simulcast = Some(SimulcastLayers { layers, transceiver });
        let audio = sample_track(RtpCodecKind::Audio, opus(), "audio")?;
        let transceiver = peer.pc.add_transceiver_from_track(audio.clone() as Arc<dyn TrackLocal>, sendonly()).await?;
        peer.audio = Some((audio, transceiver.sender().await?.ok_or("no sender")?));
        Ok(peer)
    }

    /// A WHEP player: receive-only video and audio.
    pub async fn player() -> Res<Peer> {
        Peer::player_on(LOOPBACK).await
    }

    /// A [`Peer::player`] whose media socket binds to `ip`.
    pub async fn player_on(ip: IpAddr) -> Res<Peer> {
        let peer = build(false, false, ip).await?;
        let recvonly = || Some(RTCRtpTransceiverInit { direction: RTCRtpTransceiverDirection::Recvonly, ..Default::default() });
        peer.pc.add_transceiver_from_kind(RtpCodecKind::Video, recvonly()).await?;
        peer.pc.add_transceiver_from_kind(RtpCodecKind::Audio, recvonly()).await?;
        Ok(peer)
    }

    /// A player for servers that offer (Janus's subscriptions): no transceivers of its own, it
    /// receives what the server's offer holds; see [`Peer::answer`]. Its socket binds to `ip`.
    pub async fn answering_player_on(ip: IpAddr) -> Res<Peer> {
        build(false, false, ip).await
    }

    /// Applies the server's offer; returns the answer with every candidate gathered.
    pub async fn answer(&mut self, offer: &str) -> Res<String> {
        self.pc.set_remote_description(RTCSessionDescription::offer(offer.to_owned())?).await?;
        let answer = self.pc.create_answer(None).await?;
        self.pc.set_local_description(answer).await?;
        tokio::time::timeout(Duration::from_secs(30), self.gathered.wait_for(|g| *g)).await??;
        Ok(self.pc.local_description().await.ok_or("no local description")?.sdp)
    }

    /// The offer with every candidate gathered.
    pub async fn offer(&mut self) -> Res<String> {
        let offer = self.pc.create_offer(None).await?;
        self.pc.set_local_description(offer).await?;
        tokio::time::timeout(Duration::from_secs(30), self.gathered.wait_for(|g| *g)).await??;
        Ok(self.pc.local_description().await.ok_or("no local description")?.sdp)
    }

    /// Applies the server's answer.
    pub async fn accept_answer(&self, answer: &str) -> Res<()> {
        self.pc.set_remote_description(RTCSessionDescription::answer(answer.to_owned())?).await?;
        Ok(())
    }

    /// Waits (at most 30 s) until ICE and DTLS are up.
    pub async fn wait_connected(&mut self) -> Res<()> {
        tokio::time::timeout(Duration::from_secs(30), self.state.wait_for(|s| *s == RTCPeerConnectionState::Connected))
            .await
            .map_err(|_| "not connected within 30 s")??;
        Ok(())
    }

    /// Whether the connection is up now.
    pub fn connected(&self) -> bool {
        *self.state.borrow() == RTCPeerConnectionState::Connected
    }

    /// Writes one access unit lasting `duration` (a publisher).
    pub async fn write_video(&self, au: Bytes, duration: Duration) -> Res<()> {
        if self.simulcast.is_some() {
            return Err("a simulcast publisher writes each layer with write_video_layer".into());
        }
        write(self.video.as_ref().ok_or("not a publisher")?, au, duration).await
    }

    /// Writes one access unit of simulcast layer `rid` lasting `duration` (a simulcast
    /// publisher). Its packets carry the MID and RID header extensions.
    pub async fn write_video_layer(&self, rid: &str, au: Bytes, duration: Duration) -> Res<()> {
        let layers = self.simulcast.as_ref().ok_or("not a simulcast publisher")?;
        let ssrc = layers.layers.iter().find(|(r, _)| r == rid).map(|(_, ssrc)| *ssrc).ok_or_else(|| format!("no layer {rid:?}"))?;
        let mid = layers.transceiver.mid().await?.ok_or("video not negotiated yet")?;
        let (track, sender) = self.video.as_ref().ok_or("not a publisher")?;
        let pt = payload_type(sender).await?;
        track
            .sample_writer(ssrc, pt)
            .with_extension(sdes(SDES_MID_URI, &mid))
            .with_extension(sdes(SDES_RTP_STREAM_ID_URI, rid))
            .write_sample(&Sample { data: au, duration, ..Sample::new(Instant::now()) })
            .await?;
        Ok(())
    }

    /// Writes one Opus frame (a publisher).
    pub async fn write_audio(&self, frame: Bytes, duration: Duration) -> Res<()> {
        write(self.audio.as_ref().ok_or("not a publisher")?, frame, duration).await
    }

    /// Waits for the next batch of inbound keyframe requests (PLI/FIR) of a publisher; returns how
    /// many it held, or `None` when the track is gone.
    pub async fn keyframe_requests(&self) -> Option<usize> {
        let (track, _) = self.video.as_ref()?;
        loop {
            match track.poll().await? {
                TrackLocalEvent::OnRtcpPacket(packets) => {
                    return Some(
                        packets.iter().filter(|p| p.as_any().is::<PictureLossIndication>() || p.as_any().is::<FullIntraRequest>()).count(),
                    );
                }
                _ => continue,
            }
        }
    }

    /// Closes the connection.
    pub async fn close(&self) {
        let _ = self.pc.close().await;
    }
}

async fn write(track: &(Arc<TrackLocalStaticSample>, Sender), data: Bytes, duration: Duration) -> Res<()> {
    let (track, sender) = track;
    let ssrc = *track.ssrcs().await.first().ok_or("no ssrc")?;
    let pt = payload_type(sender).await?;
    track.sample_writer(ssrc, pt).write_sample(&Sample { data, duration, ..Sample::new(Instant::now()) }).await?;
    Ok(())
}

/// The payload type a sender negotiated.
async fn payload_type(sender: &Sender) -> Res<PayloadType> {
    Ok(sender.get_parameters().await?.rtp_parameters.codecs.first().ok_or("no negotiated codec")?.payload_type)
}

/// An answer with the server's media candidate replaced by `via` (a relay in front of it).
pub fn rewrite_candidate(answer: &str, server: SocketAddr, via: SocketAddr) -> String {
    answer.replace(&format!("{} {}", server.ip(), server.port()), &format!("{} {}", via.ip(), via.port()))
}

/// The media candidate (address and port) an answer announces, if any.
pub fn answer_candidate(answer: &str) -> Option<SocketAddr> {
    answer.lines().find_map(|l| {
        let f: Vec<&str> = l.strip_prefix("a=candidate:")?.split(' ').collect();
        (f.get(2)?.eq_ignore_ascii_case("udp")).then(|| format!("{}:{}", f.get(4)?, f.get(5)?).parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(dechunk(b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n").unwrap(), b"hello, world");
        assert_eq!(dechunk(b"0\r\n\r\n").unwrap(), b"");
        assert!(dechunk(b"a\r\nshort\r\n").is_none(), "a chunk shorter than its size");
        assert!(dechunk(b"zz\r\n").is_none());
    }

    #[test]
    fn reordering_is_not_loss_and_gaps_are() {
        let mut t = SeqTrack::default();
        for seq in [65_533u16, 65_534, 0, 65_535, 1, 4, 5] {
            t.on(seq);
        }
        // 65533..=5 across the wrap is 9 packets; 2 and 3 never came; 65535 came late.
        assert_eq!((t.expected(), t.lost()), (9, 2));
        // A new source far away starts over without counting the jump as loss.
        for seq in [30_000u16, 30_001, 30_003] {
            t.on(seq);
        }
        assert_eq!((t.expected(), t.lost()), (9 + 4, 3));
        assert!(is_idr(&[0, 0, 0, 1, 0x67, 0, 0, 1, 0x65, 0x88]) && !is_idr(&[0, 0, 0, 1, 0x41, 0x9a]));
    }
}
