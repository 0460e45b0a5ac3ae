//! A WebRTC peer on the `webrtc` crate (independent of the server's str0m): a WHIP publisher
//! sending H.264 access units and Opus frames, a WHEP player reassembling what it receives, or
//! the answering side of a room's subscriber connection (media by m-line, the data channel).
//! Bound to 127.0.0.1 only, mDNS off, so no traffic leaves loopback. ICE runs over UDP, or over
//! TCP to the server's passive candidate ([`IceTransport::Tcp`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rtc::ice::mdns::MulticastDnsMode;
use rtc::ice::network_type::NetworkType;
use rtc::media::Sample;
use rtc::media::io::sample_builder::SampleBuilder;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::MIME_TYPE_RTX;
use rtc::peer_connection::transport::{RTCIceCandidate, RTCIceCandidateInit};
use rtc::rtp::codec::h264::H264Packet;
use rtc::rtp::codec::opus::OpusPacket;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RTCRtpCodecParameters, RtpCodecKind};
use rtc::rtp_transceiver::{PayloadType, RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use tokio::sync::watch;
use tongxin_loadtests::participant::{h264, opus, sample_track};
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::media_stream::Track as _;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceGatheringState,
    RTCPeerConnectionState, RTCSessionDescription, RTCStatsReportEntry, Registry, SettingEngineBuilder, StatsSelector,
};

/// What a peer's ICE candidates run over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IceTransport {
    /// A host candidate on a loopback UDP socket.
    Udp,
    /// Active TCP only (RFC 6544): the peer dials the server's passive candidate.
    Tcp,
}

/// What a player reassembled, in arrival order.
#[derive(Default)]
pub struct Received {
    pub access_units: Vec<Bytes>,
    pub opus_frames: Vec<Bytes>,
    /// Access units and Opus frames by the mid of the m-line they arrived on.
    pub by_mid: HashMap<String, Vec<Bytes>>,
    /// Text messages received on data channels.
    pub data: Vec<String>,
}

impl Received {
    fn record(&mut self, kind: RtpCodecKind, mid: Option<&str>, data: Bytes) {
        if let Some(mid) = mid {
            self.by_mid.entry(mid.to_owned()).or_default().push(data.clone());
        }
        if kind == RtpCodecKind::Video { self.access_units.push(data) } else { self.opus_frames.push(data) }
    }
}

struct Handler {
    gathered: watch::Sender<bool>,
    state: watch::Sender<RTCPeerConnectionState>,
    received: Arc<Mutex<Received>>,
    /// The connection, to find a track's m-line; weak because the connection owns this handler.
    pc: OnceLock<Weak<dyn PeerConnection>>,
    data_channel: watch::Sender<Option<Arc<dyn DataChannel>>>,
}

/// The mid of the m-line whose receiver is `receiver`.
async fn mid_of(pc: &Weak<dyn PeerConnection>, receiver: rtc::rtp_transceiver::RTCRtpReceiverId) -> Option<String> {
    let pc = pc.upgrade()?;
    let id = usize::from(receiver);
    for t in pc.get_transceivers().await {
        if t.id() == id {
            return t.mid().await.ok().flatten();
        }
    }
    None
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
        let received = self.received.clone();
        let pc = self.pc.get().cloned();
        // Callbacks run on the connection's driver: read the track on a task of its own.
        tokio::spawn(async move {
            let mut video = SampleBuilder::new(256, H264Packet::default(), 90_000).with_max_time_delay(Duration::from_millis(1000));
            let mut audio = SampleBuilder::new(256, OpusPacket, 48_000);
            let mut mid = None;
            while let Some(event) = track.poll().await {
                match event {
                    TrackRemoteEvent::OnOpen(init) => {
                        if let Some(pc) = &pc {
                            mid = mid_of(pc, init.receiver_id).await;
                        }
                    }
                    TrackRemoteEvent::OnRtpPacket(packet) if kind == RtpCodecKind::Video => {
                        video.push(Instant::now(), packet);
                        while let Some(s) = video.pop(Instant::now()) {
                            received.lock().unwrap().record(kind, mid.as_deref(), s.data);
                        }
                    }
                    TrackRemoteEvent::OnRtpPacket(packet) => {
                        audio.push(Instant::now(), packet);
                        while let Some(s) = audio.pop(Instant::now()) {
                            received.lock().unwrap().record(kind, mid.as_deref(), s.data);
                        }
                    }
                    TrackRemoteEvent::OnEnded => break,
                    _ => {}
                }
            }
        });
    }

    async fn on_data_channel(&self, channel: Arc<dyn DataChannel>) {
        let _ = self.data_channel.send(Some(channel.clone()));
        let received = self.received.clone();
        tokio::spawn(async move {
            while let Some(event) = channel.poll().await {
                match event {
                    DataChannelEvent::OnMessage(m) => received.lock().unwrap().data.push(String::from_utf8_lossy(&m.data).into_owned()),
                    DataChannelEvent::OnClose => break,
                    _ => {}
                }
            }
        });
    }
}

pub struct Peer {
    pub pc: Arc<dyn PeerConnection>,
    transport: IceTransport,
    gathered: watch::Receiver<bool>,
    state: watch::Receiver<RTCPeerConnectionState>,
    pub received: Arc<Mutex<Received>>,
    data_channel: watch::Receiver<Option<Arc<dyn DataChannel>>>,
    video: Option<(Arc<TrackLocalStaticSample>, Arc<dyn webrtc::rtp_transceiver::RtpSender>)>,
    audio: Option<(Arc<TrackLocalStaticSample>, Arc<dyn webrtc::rtp_transceiver::RtpSender>)>,
}

async fn build(transport: IceTransport) -> Peer {
    let mut engine = MediaEngine::default();
    engine.register_codec(RTCRtpCodecParameters { rtp_codec: h264(), payload_type: 102 }, RtpCodecKind::Video).unwrap();
    // RTX (RFC 4588) for H.264, as every browser offers: without it the SFU cannot retransmit.
    let rtx = RTCRtpCodec {
        mime_type: MIME_TYPE_RTX.to_owned(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: "apt=102".to_owned(),
        rtcp_feedback: vec![],
    };
    engine.register_codec(RTCRtpCodecParameters { rtp_codec: rtx, payload_type: 103 }, RtpCodecKind::Video).unwrap();
    engine.register_codec(RTCRtpCodecParameters { rtp_codec: opus(), payload_type: 111 }, RtpCodecKind::Audio).unwrap();
    let registry = register_default_interceptors(Registry::new(), &mut engine).unwrap();
    let network = match transport {
        IceTransport::Udp => NetworkType::Udp4,
        IceTransport::Tcp => NetworkType::Tcp4,
    };
    let settings =
        SettingEngineBuilder::new().with_multicast_dns_mode(MulticastDnsMode::Disabled).with_network_types(vec![network]).build();
    // A TCP listener is what makes the crate gather its active TCP candidate (port 9).
    let (udp_addrs, tcp_addrs) = match transport {
        IceTransport::Udp => (vec!["127.0.0.1:0".to_owned()], vec![]),
        IceTransport::Tcp => (vec![], vec!["127.0.0.1:0".to_owned()]),
    };
    let (gathered_tx, gathered) = watch::channel(false);
    let (state_tx, state) = watch::channel(RTCPeerConnectionState::New);
    let received = Arc::new(Mutex::new(Received::default()));
    let (data_channel_tx, data_channel) = watch::channel(None);
    let handler = Arc::new(Handler {
        gathered: gathered_tx,
        state: state_tx,
        received: received.clone(),
        pc: OnceLock::new(),
        data_channel: data_channel_tx,
    });
    let pc = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(engine)
        .with_interceptor_registry(registry)
        .with_setting_engine(settings)
        .with_handler(handler.clone())
        .with_udp_addrs(udp_addrs)
        .with_tcp_addrs(tcp_addrs)
        .build()
        .await
        .expect("build a webrtc peer");
    let pc: Arc<dyn PeerConnection> = Arc::new(pc);
    let _ = handler.pc.set(Arc::downgrade(&pc));
    Peer { pc, transport, gathered, state, received, data_channel, video: None, audio: None }
}

impl Peer {
    /// A publisher with one H.264 and one Opus sendonly track.
    pub async fn publisher() -> Peer {
        Peer::publisher_over(IceTransport::Udp).await
    }

    /// [`Peer::publisher`] with its ICE candidates on `transport`.
    pub async fn publisher_over(transport: IceTransport) -> Peer {
        Peer::sending_over(RTCRtpTransceiverDirection::Sendonly, transport).await
    }

    /// One H.264 and one Opus track, in that m-line order, both offered in `direction`
    /// (`Sendonly` for a publisher; `Sendrecv` for a player that tries to send).
    pub async fn sending(direction: RTCRtpTransceiverDirection) -> Peer {
        Peer::sending_over(direction, IceTransport::Udp).await
    }

    async fn sending_over(direction: RTCRtpTransceiverDirection, transport: IceTransport) -> Peer {
        let mut peer = build(transport).await;
        let init = || Some(RTCRtpTransceiverInit { direction, ..Default::default() });
        for (kind, codec, id) in [(RtpCodecKind::Video, h264(), "video"), (RtpCodecKind::Audio, opus(), "audio")] {
            let track = sample_track(kind, codec, id).expect("sample track");
            let transceiver = peer.pc.add_transceiver_from_track(track.clone() as Arc<dyn TrackLocal>, init()).await.unwrap();
            let sender = transceiver.sender().await.unwrap().expect("sender");
            if kind == RtpCodecKind::Video {
                peer.video = Some((track, sender));
            } else {
                peer.audio = Some((track, sender));
            }
        }
        peer
    }

    /// A player with recvonly video and audio.
    pub async fn player() -> Peer {
        Peer::player_over(IceTransport::Udp).await
    }

    /// [`Peer::player`] with its ICE candidates on `transport`.
    pub async fn player_over(transport: IceTransport) -> Peer {
        let peer = build(transport).await;
        let recvonly = || Some(RTCRtpTransceiverInit { direction: RTCRtpTransceiverDirection::Recvonly, ..Default::default() });
        peer.pc.add_transceiver_from_kind(RtpCodecKind::Video, recvonly()).await.unwrap();
        peer.pc.add_transceiver_from_kind(RtpCodecKind::Audio, recvonly()).await.unwrap();
        peer
    }

    /// A peer that only answers (a room's subscriber connection): its m-lines and data channel
    /// come from the remote offers.
    pub async fn answerer() -> Peer {
        build(IceTransport::Udp).await
    }

    /// Applies a remote offer (a first one or a renegotiation) and returns the answer, with the
    /// candidates gathered.
    pub async fn answer(&self, offer: &str) -> Result<String, String> {
        let offer = RTCSessionDescription::offer(offer.to_owned()).map_err(|e| format!("parse offer: {e}"))?;
        self.pc.set_remote_description(offer).await.map_err(|e| format!("set offer: {e}"))?;
        let answer = self.pc.create_answer(None).await.map_err(|e| format!("create answer: {e}"))?;
        self.pc.set_local_description(answer).await.map_err(|e| format!("set answer: {e}"))?;
        let mut gathered = self.gathered.clone();
        tokio::time::timeout(Duration::from_secs(30), gathered.wait_for(|g| *g)).await.map_err(|_| "ICE gathering took 30 s")?.unwrap();
        Ok(self.pc.local_description().await.ok_or("no local description")?.sdp)
    }

    /// Sends a text message on the data channel the remote side opened, waiting (bounded) for
    /// it to open.
    pub async fn send_data(&self, text: &str) {
        let mut channel = self.data_channel.clone();
        let channel = tokio::time::timeout(Duration::from_secs(20), channel.wait_for(|c| c.is_some()))
            .await
            .expect("no data channel opened within 20 s")
            .unwrap()
            .clone()
            .unwrap();
        channel.send_text(text).await.expect("send on the data channel");
    }

    /// Creates the offer and waits for ICE gathering (host candidates only: immediate).
    pub async fn offer(&mut self) -> String {
        let offer = self.pc.create_offer(None).await.unwrap();
        self.pc.set_local_description(offer).await.unwrap();
        tokio::time::timeout(Duration::from_secs(30), self.gathered.wait_for(|g| *g)).await.expect("ICE gathering").unwrap();
        self.pc.local_description().await.expect("local description").sdp
    }

    /// Applies the server's answer. A TCP peer also hands the answer's passive TCP candidates
    /// to `add_ice_candidate`: webrtc 0.21 dials a passive candidate only when it arrives that
    /// way, never when it sits in a description.
    pub async fn accept_answer(&self, answer: &str) {
        self.pc.set_remote_description(RTCSessionDescription::answer(answer.to_owned()).unwrap()).await.expect("set answer");
        if self.transport == IceTransport::Tcp {
            let passive = passive_tcp_candidates(answer);
            assert!(!passive.is_empty(), "the answer has no passive TCP candidate:\n{answer}");
            for candidate in passive {
                let init = RTCIceCandidateInit { candidate, sdp_mline_index: Some(0), ..Default::default() };
                self.pc.add_ice_candidate(init).await.expect("add the passive TCP candidate");
            }
        }
    }

    /// Waits until the connection is up, failing with a clear message after a generous limit.
    pub async fn wait_connected(&self) {
        let mut state = self.state.clone();
        tokio::time::timeout(Duration::from_secs(30), state.wait_for(|s| *s == RTCPeerConnectionState::Connected))
            .await
            .expect("peer did not connect within 30 s")
            .unwrap();
    }

    async fn pt(sender: &Arc<dyn webrtc::rtp_transceiver::RtpSender>) -> PayloadType {
        sender.get_parameters().await.unwrap().rtp_parameters.codecs.first().expect("negotiated codec").payload_type
    }

    /// Sends one H.264 access unit (Annex B) lasting `duration`.
    pub async fn send_video(&self, au: Bytes, duration: Duration) {
        self.try_send_video(au, duration).await.unwrap();
    }

    /// Like [`Peer::send_video`], for a peer whose sending the remote side may have refused.
    pub async fn try_send_video(&self, au: Bytes, duration: Duration) -> Result<(), String> {
        let (track, sender) = self.video.as_ref().ok_or("no video track")?;
        let ssrc = *track.ssrcs().await.first().ok_or("no SSRC")?;
        let params = sender.get_parameters().await.map_err(|e| e.to_string())?;
        let pt = params.rtp_parameters.codecs.first().ok_or("no negotiated codec")?.payload_type;
        track
            .sample_writer(ssrc, pt)
            .write_sample(&Sample { data: au, duration, ..Sample::new(Instant::now()) })
            .await
            .map_err(|e| e.to_string())
    }

    /// Sends one 20 ms Opus frame.
    pub async fn send_audio(&self, frame: Bytes) {
        let (track, sender) = self.audio.as_ref().expect("a publisher");
        let ssrc = *track.ssrcs().await.first().unwrap();
        let pt = Self::pt(sender).await;
        track
            .sample_writer(ssrc, pt)
            .write_sample(&Sample { data: frame, duration: Duration::from_millis(20), ..Sample::new(Instant::now()) })
            .await
            .unwrap();
    }

    pub async fn close(&self) {
        let _ = self.pc.close().await;
    }

    /// The candidate pair ICE selected (`None` before one is), with the packets the transport
    /// has carried. The pair comes from the ICE transport: in webrtc 0.21's statistics report the
    /// pair's candidate ids do not match the ids of the candidate entries.
    pub async fn selected_pair(&self) -> Option<SelectedPair> {
        let mut dtls = None;
        for sender in self.pc.get_senders().await {
            dtls = dtls.or(sender.transport().await.ok().flatten());
        }
        for receiver in self.pc.get_receivers().await {
            dtls = dtls.or(receiver.transport().await.ok().flatten());
        }
        let pair = dtls?.ice_transport().get_selected_candidate_pair().await.ok().flatten()?;
        let report = self.pc.get_stats(Instant::now(), StatsSelector::None).await;
        let (packets_sent, packets_received) = report
            .iter()
            .find_map(|e| match e {
                RTCStatsReportEntry::Transport(t) => Some((t.packets_sent, t.packets_received)),
                _ => None,
            })
            .unwrap_or_default();
        Some(SelectedPair { local: pair.local().clone(), remote: pair.remote().clone(), packets_sent, packets_received })
    }
}

/// The selected ICE candidate pair of a connection, and what its transport carried.
#[derive(Debug)]
pub struct SelectedPair {
    pub local: RTCIceCandidate,
    pub remote: RTCIceCandidate,
    /// Packets sent and received on the connection's transport (all of STUN, DTLS, RTP, RTCP).
    pub packets_sent: u64,
    pub packets_received: u64,
}

/// The `candidate:…` values of the passive TCP candidates in `sdp`.
pub fn passive_tcp_candidates(sdp: &str) -> Vec<String> {
    sdp.lines()
        .filter_map(|l| l.trim().strip_prefix("a="))
        .filter(|c| {
            let fields: Vec<&str> = c.split_whitespace().collect();
            c.starts_with("candidate:")
                && fields.get(2).is_some_and(|p| p.eq_ignore_ascii_case("tcp"))
                && fields.windows(2).any(|w| w[0] == "tcptype" && w[1] == "passive")
        })
        .map(str::to_owned)
        .collect()
}

/// A synthetic access unit: SPS + PPS + IDR for keyframes, a P slice otherwise. Sizes vary so
/// some need FU-A fragmentation; the index is embedded so every unit is different. No byte
/// pattern inside can look like a start code.
pub fn access_unit(index: u32, keyframe: bool) -> Bytes {
    let mut v = Vec::new();
    let filler = |v: &mut Vec<u8>, n: usize, seed: u32| v.extend((0..n).map(|i| (((i as u32).wrapping_mul(31) ^ seed) % 251) as u8 | 0x01));
    let id = index.to_be_bytes().map(|b| b | 0x01);
    if keyframe {
        v.extend_from_slice(&[0, 0, 0, 1, 0x67, 0x42, 0xe0, 0x1f, 0xda, 0x02, 0x80, 0xf6, 0x9b, 0x80]);
        v.extend_from_slice(&[0, 0, 0, 1, 0x68, 0xce, 0x06, 0xe2]);
        v.extend_from_slice(&[0, 0, 0, 1, 0x65, 0x88]);
        v.extend_from_slice(&id);
        filler(&mut v, 3000 + (index as usize % 7) * 500, index);
    } else {
        v.extend_from_slice(&[0, 0, 0, 1, 0x41, 0x9a]);
        v.extend_from_slice(&id);
        filler(&mut v, 200 + (index as usize * 97) % 2200, index);
    }
    Bytes::from(v)
}

/// A synthetic Opus frame (the SFU never decodes it).
pub fn opus_frame(index: u32) -> Bytes {
    let mut v = vec![0xfc];
    v.extend_from_slice(&index.to_be_bytes());
    v.extend((0..(40 + index % 40)).map(|i| (i ^ index) as u8));
    Bytes::from(v)
}
