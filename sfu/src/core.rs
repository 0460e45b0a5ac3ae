//! The sans-IO core: rooms, peers and forwarding, fed with `(now, input)`.
//!
//! Each peer connection is one str0m [`Rtc`] in RTP mode (ICE-lite). A publisher's packets are
//! forwarded as RTP to every subscriber of that publisher, with sequence numbers and timestamps
//! rebased per subscriber. No socket, task or clock lives here: the shell feeds datagrams and
//! timeouts and sends what [`Sfu::poll_transmit`] returns.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use str0m::bwe::{Bitrate, BweKind};
use str0m::change::SdpOffer;
use str0m::format::PayloadParams;
use str0m::media::{KeyframeRequestKind, MediaKind, Mid, Pt, Rid};
use str0m::net::{Protocol, Receive, TcpType};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, SeqNo, Ssrc};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Reason, Rtc, RtcConfig};
use tongxin_common::rooms::{Audience, RoomEvent};
use tongxin_common::{Identity, JoinGrant, RoomName, RoomRole};

use crate::renditions::{JobId, LayerKey, TranscodeConfig, TranscodeOp};
use crate::rooms::{Participant, ParticipantKind, Signal};
use crate::sdp::{self, first_line, usable_media};
use crate::signal::TrackId;
use crate::{keyframe, stun};

/// Where str0m's send-side estimate starts, bit/s: libwebrtc's customary start, which carries
/// audio and the lowest camera layer on a weak link until feedback says more.
const INITIAL_ESTIMATE_BPS: u64 = 300_000;
/// How far ahead of `now` a pacer timeout may be and still be handled within the same drain.
const PACER_CATCH_UP: Duration = Duration::from_micros(200);
/// At most this many pacer timeouts are handled within one drain (a burst, then the timer).
const MAX_PACED_ROUNDS: u32 = 256;

/// A peer connection's id, unique for the life of the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u64);

/// Which video codecs a room accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CodecPolicy {
    /// H.264 constrained baseline only: lessons, so OBS, Chromium and cheap phones agree.
    H264Only,
    /// H.264 or VP8.
    #[default]
    H264OrVp8,
}

/// How the core is set up.
#[derive(Debug, Clone)]
pub struct SfuConfig {
    /// The addresses announced as UDP host candidates (the media port as clients reach it).
    pub candidates: Vec<SocketAddr>,
    /// The addresses announced as passive TCP host candidates (RFC 6544), for networks that
    /// block UDP; their priority is below UDP's, so a client uses them only when UDP fails.
    pub tcp_candidates: Vec<SocketAddr>,
    /// Announce the UDP candidate (false only to force ICE over TCP, in tests).
    pub announce_udp: bool,
    /// Drop every datagram whose source is not a loopback address (tests, single-host set-ups).
    pub loopback_only: bool,
    /// The codec policy of rooms nobody configured.
    pub default_policy: CodecPolicy,
    /// How long a peer may stay disconnected before it is removed.
    pub disconnect_grace: Duration,
    /// The shortest interval between keyframe requests relayed to one publisher track.
    pub keyframe_request_interval: Duration,
    /// How long a new session may take to connect (ICE and DTLS) before it is dropped.
    pub connect_timeout: Duration,
    /// How long a room participant keeps its place after losing its WebSocket or its ICE.
    pub reconnect_grace: Duration,
    /// How long an ad-hoc room lives on empty.
    pub empty_room_timeout: Duration,
    /// The most participants one room holds (WHIP and WHEP sessions count).
    pub max_participants: usize,
    /// The most rooms the server runs at once.
    pub max_rooms: usize,
    /// When the transcoder makes renditions of single-layer tracks.
    pub transcode: TranscodeConfig,
}

impl Default for SfuConfig {
    fn default() -> Self {
        SfuConfig {
            candidates: Vec::new(),
            tcp_candidates: Vec::new(),
            announce_udp: true,
            loopback_only: false,
            default_policy: CodecPolicy::default(),
            disconnect_grace: Duration::from_secs(15),
            keyframe_request_interval: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(30),
            reconnect_grace: Duration::from_secs(20),
            empty_room_timeout: Duration::from_secs(60),
            max_participants: 100,
            max_rooms: 200,
            transcode: TranscodeConfig::default(),
        }
    }
}

/// Why a publish or subscribe was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SfuError {
    /// The SDP could not be parsed.
    #[error("unparsable SDP: {0}")]
    BadSdp(String),
    /// The SDP parsed but cannot be used (no common codec, missing ICE or DTLS attributes).
    #[error("unusable SDP: {0}")]
    UnusableSdp(String),
    /// The grant does not allow this.
    #[error("{0}")]
    NotAllowed(&'static str),
    /// Nobody publishes in the room (or not the participant asked for).
    #[error("nobody is publishing")]
    NoPublisher,
    /// The peer is gone.
    #[error("no such session")]
    NoSuchPeer,
    /// The room holds its maximum number of participants.
    #[error("the room is full ({0} participants)")]
    RoomFull(usize),
    /// The server runs its maximum number of rooms.
    #[error("the server already runs its maximum number of rooms ({0})")]
    TooManyRooms(usize),
    /// A bug in the media core (a caught panic) or the media task is gone.
    #[error("internal media server error")]
    Internal,
}

/// Something the service above the core may want to know.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SfuEvent {
    /// ICE and DTLS are up for this peer.
    Connected(PeerId),
    /// The peer was removed.
    Removed {
        /// Which.
        peer: PeerId,
        /// Why.
        reason: RemoveReason,
    },
}

/// Why a peer left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoveReason {
    /// Ended by request (WHIP/WHEP DELETE).
    Ended,
    /// Replaced by a new session with the same identity.
    Replaced,
    /// Disconnected for longer than the grace period, or closed by the remote.
    Timeout,
    /// The connection failed (DTLS error and the like).
    Failed,
}

/// A datagram (or, over ICE-TCP, one framed packet) to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// UDP, or TCP: then it goes on the connection from `destination` (RFC 4571 framing).
    pub proto: Protocol,
    /// Where to.
    pub destination: SocketAddr,
    /// From which local address.
    pub source: SocketAddr,
    /// The bytes.
    pub contents: Vec<u8>,
}

/// One packet of a track on its way to subscribers: a publisher's, or a rendition's.
pub(crate) struct Outgoing<'a> {
    pub(crate) from: PeerId,
    pub(crate) track: Option<TrackId>,
    pub(crate) kind: MediaKind,
    /// The publisher's payload type parameters (a subscriber's own are matched to them).
    pub(crate) params: PayloadParams,
    /// Its layer, and every layer of its track.
    pub(crate) layer: LayerKey,
    pub(crate) layers: &'a [LayerKey],
    /// The layer's own sequence number (extended) and RTP timestamp.
    pub(crate) seq: u64,
    pub(crate) ts: u32,
    pub(crate) marker: bool,
    pub(crate) payload: Arc<[u8]>,
    /// Whether it begins a keyframe.
    pub(crate) keyframe: bool,
    pub(crate) ext: ExtensionValues,
    pub(crate) wallclock: Instant,
}

/// A publisher's incoming track.
#[derive(Debug)]
pub(crate) struct TrackIn {
    pub(crate) kind: MediaKind,
    /// The room's id for the track, when it belongs to a participant.
    pub(crate) track: Option<TrackId>,
    /// False while muted or while its owner may not publish: nothing is forwarded.
    pub(crate) forwarding: bool,
    /// The last RFC 6464 level (−dBov) heard on an audio track, and when.
    pub(crate) audio_level: Option<(i8, Instant)>,
    /// Per layer (`None` without simulcast): when a keyframe was last asked for.
    last_keyframe_request: HashMap<Option<Rid>, Instant>,
    /// Requests that came within the throttle interval: sent when the interval ends, so a
    /// late joiner is coalesced with earlier ones instead of waiting for the next periodic keyframe.
    pending_keyframe_request: HashMap<Option<Rid>, KeyframeRequestKind>,
    /// Simulcast layers by rid, as they arrive.
    pub(crate) layers: Vec<LayerIn>,
    /// A video track without rids: its SSRC, bytes since the last rate measurement, and the rate
    /// (bit/s).
    pub(crate) ssrc: Option<Ssrc>,
    pub(crate) bytes: u64,
    pub(crate) bps: f64,
    /// Whether it is H.264 (the transcoder's input), and its renditions while a job makes them.
    pub(crate) h264: bool,
    pub(crate) renditions: Option<crate::renditions::Renditions>,
    /// Which layers its publisher was asked to pause (room pages only) because nobody wants them.
    pub(crate) pause: crate::layers::LayerPause,
}

/// One simulcast layer of an incoming track.
#[derive(Debug)]
pub(crate) struct LayerIn {
    pub(crate) rid: Rid,
    pub(crate) ssrc: Ssrc,
    /// Bytes since the last rate measurement, and the rate measured then (bit/s).
    pub(crate) bytes: u64,
    pub(crate) bps: f64,
}

impl TrackIn {
    pub(crate) fn new(kind: MediaKind) -> TrackIn {
        TrackIn {
            kind,
            track: None,
            forwarding: true,
            audio_level: None,
            last_keyframe_request: HashMap::new(),
            pending_keyframe_request: HashMap::new(),
            layers: Vec::new(),
            ssrc: None,
            bytes: 0,
            bps: 0.0,
            h264: false,
            renditions: None,
            pause: crate::layers::LayerPause::default(),
        }
    }
}

/// A subscriber's outgoing m-line and how the current source maps onto it.
#[derive(Debug)]
pub(crate) struct TrackOut {
    pub(crate) mid: Mid,
    pub(crate) kind: MediaKind,
    /// The room track this m-line carries (subscriber connections of the room protocol).
    pub(crate) track: Option<TrackId>,
    /// (publisher, layer) currently forwarded here.
    pub(crate) source: Option<(PeerId, LayerKey)>,
    seq_delta: u64,
    ts_delta: u32,
    last_seq: u64,
    last_ts: u32,
    /// The publisher's capture time of the last packet sent here.
    last_wallclock: Option<Instant>,
    /// Nothing forwarded until the first keyframe of a video source (a decoder needs one).
    waiting_for_keyframe: bool,
    /// The layer this m-line should carry (switched to at its next keyframe): a simulcast
    /// encoding or a rendition.
    pub(crate) target: Option<LayerKey>,
    /// The highest layer the subscriber wants here (index from the lowest), if it said.
    pub(crate) max_layer: Option<usize>,
    pub(crate) selector: crate::layers::LayerSelector,
    /// Video: off because the subscriber's budget does not carry it (audio goes on).
    pub(crate) video_off: bool,
    /// Video: frames were held back since the last room tick because str0m's pacer held more
    /// than [`CONGESTED`] of it: the link does not carry this layer.
    pub(crate) congested: bool,
    /// Since when its budget has not carried the publisher's lone layer (a transcoder job is
    /// started only once that has lasted: a new connection's estimate starts low).
    pub(crate) short_since: Option<Instant>,
    /// Audio: sent with RFC 2198 redundancy (a lossy link), and the frame to repeat.
    pub(crate) red_on: bool,
    red: crate::red::RedStream,
}

impl TrackOut {
    pub(crate) fn new(mid: Mid, kind: MediaKind, track: Option<TrackId>) -> TrackOut {
        TrackOut {
            mid,
            kind,
            track,
            source: None,
            seq_delta: 0,
            ts_delta: 0,
            last_seq: 0,
            last_ts: 0,
            last_wallclock: None,
            waiting_for_keyframe: kind == MediaKind::Video,
            target: None,
            max_layer: None,
            selector: crate::layers::LayerSelector::default(),
            video_off: false,
            congested: false,
            short_since: None,
            red_on: false,
            red: crate::red::RedStream::default(),
        }
    }

    /// Stops this m-line's video until it is given a layer again, which then starts at a keyframe.
    pub(crate) fn turn_video_off(&mut self) {
        self.video_off = true;
        self.source = None;
        self.target = None;
        self.waiting_for_keyframe = true;
    }
}

pub(crate) enum Role {
    /// Receives a client's tracks (WHIP, or a room participant's publisher connection).
    Publisher { tracks: HashMap<Mid, TrackIn>, ssrc_mid: HashMap<Ssrc, Mid>, sr_anchor: Option<(Instant, SystemTime)> },
    /// A WHEP player following one publisher.
    Subscriber { target: Option<Identity>, source: Option<PeerId>, outs: Vec<TrackOut> },
    /// A room participant's subscriber connection: the server offers, one m-line per track.
    Downstream {
        outs: Vec<TrackOut>,
        pending: Option<str0m::change::SdpPendingOffer>,
        /// Changes waited for the pending offer's answer.
        needs_offer: bool,
        /// An answer was accepted once (the connection's first offer went through).
        negotiated: bool,
        channel: str0m::channel::ChannelId,
    },
}

pub(crate) struct Peer {
    pub(crate) room: RoomName,
    pub(crate) identity: Identity,
    pub(crate) room_role: RoomRole,
    pub(crate) rtc: Rtc,
    pub(crate) role: Role,
    pub(crate) ufrag: String,
    /// The remote addresses (and transports) ICE verified for this peer.
    pub(crate) addrs: HashSet<(Protocol, SocketAddr)>,
    /// The remote's relayed candidates (TURN allocations), from its SDP and trickled candidates.
    pub(crate) relay_addrs: HashSet<SocketAddr>,
    /// Where the peer's media goes now (ICE's nominated pair), from its latest transmit.
    pub(crate) send_to: Option<(Protocol, SocketAddr)>,
    pub(crate) connected: bool,
    pub(crate) disconnected_since: Option<Instant>,
    /// The remote closed DTLS (or SCTP): remove at the next timeout, no grace.
    pub(crate) closed: bool,
    pub(crate) next_timeout: Instant,
    pub(crate) created: Instant,
    /// Link figures from str0m's stats: (media bytes both ways, loss, rtt).
    pub(crate) media_bytes: u64,
    pub(crate) media_bytes_sampled: u64,
    pub(crate) loss: Option<f32>,
    pub(crate) rtt: Option<Duration>,
    /// The send-side bandwidth estimate towards this peer (TWCC) and what feeds it.
    pub(crate) send_side: crate::estimate::SendSide,
    /// Whether its audio gets redundancy (a lossy link).
    pub(crate) red: crate::red::RedPolicy,
    /// Whether its room page was last told that its video is off for a weak link.
    pub(crate) told_audio_only: bool,
}

impl Peer {
    /// How the peer's media travels: `udp`, `tcp` or `turn`; `None` before anything was sent.
    pub(crate) fn path(&self) -> Option<&'static str> {
        let (proto, to) = self.send_to?;
        Some(if proto == Protocol::Tcp {
            "tcp"
        } else if self.relay_addrs.contains(&to) {
            "turn"
        } else {
            "udp"
        })
    }
}

#[derive(Default)]
pub(crate) struct Room {
    pub(crate) policy: Option<CodecPolicy>,
    /// Publishers in the order they started.
    pub(crate) publishers: Vec<PeerId>,
    pub(crate) subscribers: HashSet<PeerId>,
    pub(crate) participants: HashMap<Identity, Participant>,
    /// Created by a service: lives until closed.
    pub(crate) managed: bool,
    pub(crate) empty_since: Option<Instant>,
    /// The speakers last announced.
    pub(crate) speakers: Vec<Identity>,
    /// Who receives whose tracks, where a service narrowed it (absent: everyone).
    pub(crate) audiences: HashMap<Identity, Audience>,
}

impl Room {
    /// Whether a participant with room role `viewer` receives `owner`'s tracks.
    pub(crate) fn admits(&self, owner: &Identity, viewer: RoomRole) -> bool {
        self.audiences.get(owner).is_none_or(|a| a.admits(viewer))
    }
}

/// What a publish or subscribe produced.
#[derive(Debug, Clone)]
pub struct Session {
    /// The new peer.
    pub peer: PeerId,
    /// The SDP answer to return.
    pub answer: String,
}

/// The selective forwarding unit.
pub struct Sfu {
    pub(crate) config: SfuConfig,
    pub(crate) rooms: HashMap<RoomName, Room>,
    pub(crate) peers: HashMap<PeerId, Peer>,
    by_ufrag: HashMap<String, PeerId>,
    by_addr: HashMap<(Protocol, SocketAddr), PeerId>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<SfuEvent>,
    pub(crate) signals: VecDeque<Signal>,
    pub(crate) room_events: VecDeque<RoomEvent>,
    /// Which participant each joined WebSocket speaks for.
    pub(crate) conns: HashMap<crate::signal::ConnId, (RoomName, Identity)>,
    keyframe_requests: VecDeque<(PeerId, Mid, Option<Rid>, KeyframeRequestKind)>,
    next_id: u64,
    pub(crate) next_track: u64,
    pub(crate) next_room_tick: Option<Instant>,
    pub(crate) room_ticks: u64,
    /// Datagrams dropped before reaching any peer (unknown source, garbage, not loopback).
    pub dropped: u64,
    /// What the media task must do with the transcoder ([`crate::renditions`]).
    pub(crate) transcode_ops: VecDeque<TranscodeOp>,
    pub(crate) next_job: JobId,
    pub(crate) transcode_refusals: u64,
    /// Tracks refused a job, counted once until they get one or stop needing it.
    pub(crate) transcode_refused: HashSet<(PeerId, Mid)>,
    /// When a keyframe of each (job, rung) was last asked for.
    pub(crate) rendition_keyframes: HashMap<(JobId, usize), Instant>,
}

impl Sfu {
    /// An empty SFU.
    pub fn new(config: SfuConfig) -> Self {
        Sfu {
            config,
            rooms: HashMap::new(),
            peers: HashMap::new(),
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            signals: VecDeque::new(),
            room_events: VecDeque::new(),
            conns: HashMap::new(),
            keyframe_requests: VecDeque::new(),
            next_id: 1,
            next_track: 1,
            next_room_tick: None,
            room_ticks: 0,
            dropped: 0,
            transcode_ops: VecDeque::new(),
            next_job: 1,
            transcode_refusals: 0,
            transcode_refused: HashSet::new(),
            rendition_keyframes: HashMap::new(),
        }
    }

    /// Sets a room's codec policy (rooms without one use the configured default).
    pub fn set_room_policy(&mut self, room: &RoomName, policy: CodecPolicy) {
        self.rooms.entry(room.clone()).or_default().policy = Some(policy);
    }

    /// A connection's str0m configuration. One the server sends media on (`receives`: a subscriber
    /// connection) offers RFC 2198 redundancy for Opus, which the server adds when its link loses
    /// packets ([`crate::red`]); a publisher's connection does not, so what arrives is plain Opus
    /// the server can forward as it is.
    pub(crate) fn rtc_config(&self, room: &RoomName, receives: bool) -> RtcConfig {
        let policy = self.rooms.get(room).and_then(|r| r.policy).unwrap_or(self.config.default_policy);
        // str0m answers in the order codecs are configured, and browsers send the first one the
        // answer lists: H.264 goes first so cheap phones that decode only H.264 can play.
        let mut cfg = RtcConfig::new()
            .set_ice_lite(true)
            .set_rtp_mode(true)
            .set_stats_interval(Some(Duration::from_secs(1)))
            // The send-side estimate (TWCC) that picks each subscriber's simulcast layers. It acts
            // only where the server sends media: a receive-only connection never probes or reports.
            .enable_bwe(Some(Bitrate::bps(INITIAL_ESTIMATE_BPS)))
            .clear_codecs()
            .enable_opus(true, receives);
        cfg.codec_config().add_h264(108.into(), Some(109.into()), true, 0x42e01f);
        if policy == CodecPolicy::H264OrVp8 {
            cfg = cfg.enable_vp8(true);
        }
        cfg
    }

    /// Number of live peers.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// The identity and room of a peer.
    pub fn peer_info(&self, peer: PeerId) -> Option<(&RoomName, &Identity)> {
        self.peers.get(&peer).map(|p| (&p.room, &p.identity))
    }

    /// Starts a publisher from a WHIP offer. A live publisher with the same identity in the room
    /// is replaced; its subscribers move to the new session.
    pub fn publish(&mut self, now: Instant, grant: &JoinGrant, offer: &str) -> Result<Session, SfuError> {
        if !grant.can_publish {
            return Err(SfuError::NotAllowed("this token does not allow publishing"));
        }
        self.check_capacity(&grant.room, &grant.identity)?;
        let role = Role::Publisher { tracks: HashMap::new(), ssrc_mid: HashMap::new(), sr_anchor: None };
        let session = self.add_peer(now, grant, offer, role, true)?;
        self.rooms.entry(grant.room.clone()).or_default().publishers.push(session.peer);
        self.replace_participant(now, &grant.room, &grant.identity);
        self.add_session_participant(now, grant, ParticipantKind::Whip, session.peer);
        self.attach_waiting_subscribers(now, &grant.room);
        Ok(session)
    }

    /// Starts a subscriber from a WHEP offer: it plays `target`, or the room's main publisher
    /// (the first publishing teacher, else the first publisher). Without a target it follows
    /// whoever becomes the main publisher when the current one leaves.
    pub fn subscribe(&mut self, now: Instant, grant: &JoinGrant, target: Option<Identity>, offer: &str) -> Result<Session, SfuError> {
        if !grant.can_subscribe {
            return Err(SfuError::NotAllowed("this token does not allow subscribing"));
        }
        let source = self.pick_publisher(&grant.room, target.as_ref(), grant.role).ok_or(SfuError::NoPublisher)?;
        self.check_capacity(&grant.room, &grant.identity)?;
        let role = Role::Subscriber { target: target.clone(), source: None, outs: Vec::new() };
        let session = self.add_peer(now, grant, offer, role, false)?;
        self.rooms.entry(grant.room.clone()).or_default().subscribers.insert(session.peer);
        self.replace_participant(now, &grant.room, &grant.identity);
        self.add_session_participant(now, grant, ParticipantKind::Whep, session.peer);
        // Replacing may have moved the publisher; pick again.
        if let Some(source) = self.pick_publisher(&grant.room, target.as_ref(), grant.role).or(Some(source)) {
            self.attach(now, session.peer, source);
        }
        Ok(session)
    }

    /// A network check before joining: a connection with ICE and DTLS only (the page offers a
    /// data channel), so the page learns which path (UDP, TCP, a relay) reaches the media port.
    /// It carries no media, joins no participant list, and goes when the page closes it (or
    /// after the connect timeout, or the disconnect grace).
    pub fn probe(&mut self, now: Instant, grant: &JoinGrant, offer: &str) -> Result<Session, SfuError> {
        let relays = sdp::relay_addrs(offer);
        let offer = SdpOffer::from_sdp_string(offer).map_err(|e| SfuError::BadSdp(first_line(&e.to_string())))?;
        let mut rtc = self.new_rtc(now, &grant.room, false);
        let answer = rtc.sdp_api().accept_offer(offer).map_err(|e| SfuError::UnusableSdp(first_line(&e.to_string())))?;
        // A subscriber with nothing to receive, attached to nobody.
        let role = Role::Subscriber { target: None, source: None, outs: Vec::new() };
        let id = self.insert_peer(now, &grant.room, &grant.identity, grant.role, rtc, role);
        if let Some(peer) = self.peers.get_mut(&id) {
            peer.relay_addrs.extend(relays);
        }
        Ok(Session { peer: id, answer: answer.to_sdp_string() })
    }

    fn pick_publisher(&self, room: &RoomName, target: Option<&Identity>, viewer: RoomRole) -> Option<PeerId> {
        let room = self.rooms.get(room)?;
        let live = room.publishers.iter().copied().filter_map(|id| self.peers.get(&id).map(|p| (id, p)));
        let live = live.filter(|(_, p)| room.admits(&p.identity, viewer));
        let live: Vec<(PeerId, &Peer)> = live.collect();
        match target {
            Some(t) => live.iter().rev().find(|(_, p)| &p.identity == t).map(|(id, _)| *id),
            // The main publisher: the lesson's teacher, else whoever started first.
            None => live.iter().find(|(_, p)| p.room_role == RoomRole::Teacher).or(live.first()).map(|(id, _)| *id),
        }
    }

    fn add_peer(&mut self, now: Instant, grant: &JoinGrant, offer: &str, role: Role, publishing: bool) -> Result<Session, SfuError> {
        let relays = sdp::relay_addrs(offer);
        // A player sends nothing: whatever it offers to send is refused in the answer.
        let offer = if publishing { offer.to_owned() } else { sdp::receive_only(offer) };
        let offer = SdpOffer::from_sdp_string(&offer).map_err(|e| SfuError::BadSdp(first_line(&e.to_string())))?;
        let mut rtc = self.new_rtc(now, &grant.room, !publishing);
        let answer = rtc.sdp_api().accept_offer(offer).map_err(|e| SfuError::UnusableSdp(first_line(&e.to_string())))?;
        // A publisher is asked for speech-sized Opus with DTX and FEC (weak links, RFC 7587).
        let answer = if publishing { sdp::tune_opus(&answer.to_sdp_string()) } else { answer.to_sdp_string() };
        let usable = usable_media(&rtc, &answer, publishing);
        if usable.is_empty() {
            let want = if publishing { "sendonly" } else { "recvonly" };
            return Err(SfuError::UnusableSdp(format!(
                "no {want} audio or video m-line with a codec this room accepts (H.264, VP8 or Opus)"
            )));
        }
        let role = match role {
            Role::Publisher { .. } => Role::Publisher {
                tracks: usable.iter().map(|(mid, kind)| (*mid, TrackIn::new(*kind))).collect(),
                ssrc_mid: HashMap::new(),
                sr_anchor: None,
            },
            Role::Subscriber { target, .. } => {
                Role::Subscriber { target, source: None, outs: usable.iter().map(|(mid, kind)| TrackOut::new(*mid, *kind, None)).collect() }
            }
            Role::Downstream { .. } => unreachable!("subscriber connections are offered by the server, never answered"),
        };
        let id = self.insert_peer(now, &grant.room, &grant.identity, grant.role, rtc, role);
        if let Some(peer) = self.peers.get_mut(&id) {
            peer.relay_addrs.extend(relays);
        }
        Ok(Session { peer: id, answer })
    }

    /// A str0m instance for `room` with the media candidates announced; `receives`: a subscriber
    /// connection ([`Self::rtc_config`]).
    pub(crate) fn new_rtc(&self, now: Instant, room: &RoomName, receives: bool) -> Rtc {
        let mut rtc = self.rtc_config(room, receives).build(now);
        let udp = self.config.candidates.iter().map(|addr| Candidate::host(*addr, "udp"));
        let tcp = self.config.tcp_candidates.iter().map(|addr| Candidate::builder().tcp().host(*addr).tcptype(TcpType::Passive).build());
        for candidate in udp.chain(tcp) {
            match candidate {
                Ok(c) => {
                    rtc.add_local_candidate(c);
                }
                Err(e) => tracing::warn!(error = %e, "cannot announce a media candidate"),
            }
        }
        rtc
    }

    /// Registers a new peer connection and drains its first outputs.
    pub(crate) fn insert_peer(
        &mut self,
        now: Instant,
        room: &RoomName,
        identity: &Identity,
        room_role: RoomRole,
        mut rtc: Rtc,
        role: Role,
    ) -> PeerId {
        let ufrag = rtc.direct_api().local_ice_credentials().ufrag;
        let id = PeerId(self.next_id);
        self.next_id += 1;
        self.rooms.entry(room.clone()).or_default();
        self.by_ufrag.insert(ufrag.clone(), id);
        let peer = Peer {
            room: room.clone(),
            identity: identity.clone(),
            room_role,
            rtc,
            role,
            ufrag,
            addrs: HashSet::new(),
            relay_addrs: HashSet::new(),
            send_to: None,
            connected: false,
            disconnected_since: None,
            closed: false,
            next_timeout: now,
            created: now,
            media_bytes: 0,
            media_bytes_sampled: 0,
            loss: None,
            rtt: None,
            send_side: crate::estimate::SendSide::default(),
            red: crate::red::RedPolicy::default(),
            told_audio_only: false,
        };
        self.peers.insert(id, peer);
        self.drain(now, id);
        id
    }

    /// Points subscribers whose publisher is gone (or who wait for a named one, or may no longer
    /// receive theirs) at a live one they may receive.
    pub(crate) fn attach_waiting_subscribers(&mut self, now: Instant, room: &RoomName) {
        let Some(r) = self.rooms.get(room) else { return };
        let subs: Vec<PeerId> = r.subscribers.iter().copied().collect();
        for sub in subs {
            let (source, target, viewer) = match self.peers.get(&sub) {
                Some(Peer { role: Role::Subscriber { source, target, .. }, room_role, .. }) => (*source, target.clone(), *room_role),
                _ => continue,
            };
            let admitted = |s: &PeerId| {
                let owner = self.peers.get(s);
                owner.is_some_and(|p| self.rooms.get(room).is_some_and(|r| r.admits(&p.identity, viewer)))
            };
            let live_source = source.filter(admitted);
            if source.is_some() && live_source.is_none() {
                self.detach(sub);
            }
            let wanted = self.pick_publisher(room, target.as_ref(), viewer);
            if let Some(w) = wanted
                && (live_source.is_none() || (target.is_some() && wanted != live_source))
            {
                self.attach(now, sub, w);
            }
        }
    }

    /// Stops a WHEP subscriber's forwarding until it is attached again.
    fn detach(&mut self, sub: PeerId) {
        if let Some(Peer { role: Role::Subscriber { source, outs, .. }, .. }) = self.peers.get_mut(&sub) {
            *source = None;
            for out in outs.iter_mut() {
                out.source = None;
            }
        }
    }

    fn attach(&mut self, now: Instant, sub: PeerId, publisher: PeerId) {
        if let Some(Peer { role: Role::Subscriber { source, outs, .. }, .. }) = self.peers.get_mut(&sub) {
            *source = Some(publisher);
            for out in outs.iter_mut() {
                out.source = None;
                out.waiting_for_keyframe = out.kind == MediaKind::Video;
            }
        }
        self.request_keyframes(now, publisher);
    }

    pub(crate) fn queue_layer_keyframe_request(&mut self, now: Instant, publisher: PeerId, mid: Mid, rid: Rid, kind: KeyframeRequestKind) {
        self.keyframe_requests.push_back((publisher, mid, Some(rid), kind));
        self.flush_keyframe_requests(now);
    }

    pub(crate) fn queue_keyframe_request(&mut self, now: Instant, publisher: PeerId, mid: Mid, kind: KeyframeRequestKind) {
        self.keyframe_requests.push_back((publisher, mid, None, kind));
        self.flush_keyframe_requests(now);
    }

    pub(crate) fn request_keyframes(&mut self, now: Instant, publisher: PeerId) {
        let Some(Peer { role: Role::Publisher { tracks, .. }, .. }) = self.peers.get(&publisher) else { return };
        let video: Vec<Mid> = tracks.iter().filter(|(_, t)| t.kind == MediaKind::Video).map(|(m, _)| *m).collect();
        for mid in video {
            self.keyframe_requests.push_back((publisher, mid, None, KeyframeRequestKind::Pli));
        }
        self.flush_keyframe_requests(now);
    }

    /// Ends a peer (WHIP/WHEP DELETE).
    pub fn end(&mut self, now: Instant, peer: PeerId) -> Result<(), SfuError> {
        if !self.peers.contains_key(&peer) {
            return Err(SfuError::NoSuchPeer);
        }
        self.remove(now, peer, RemoveReason::Ended);
        Ok(())
    }

    pub(crate) fn remove(&mut self, now: Instant, id: PeerId, reason: RemoveReason) {
        let Some(mut peer) = self.peers.remove(&id) else { return };
        peer.rtc.disconnect();
        self.by_ufrag.remove(&peer.ufrag);
        for addr in &peer.addrs {
            self.by_addr.remove(addr);
        }
        if let Some(room) = self.rooms.get_mut(&peer.room) {
            room.publishers.retain(|p| *p != id);
            room.subscribers.remove(&id);
        }
        tracing::info!(peer = id.0, room = %peer.room, ?reason, "peer removed");
        self.events.push_back(SfuEvent::Removed { peer: id, reason });
        self.on_peer_removed(now, id, &peer.room, reason);
        if let Role::Publisher { tracks, .. } = &peer.role {
            self.stop_renditions_of(tracks);
            self.attach_waiting_subscribers(now, &peer.room.clone());
        }
    }

    /// Feeds a datagram received on the media port.
    pub fn handle_datagram(&mut self, now: Instant, source: SocketAddr, destination: SocketAddr, contents: &[u8]) {
        self.handle_packet(now, Protocol::Udp, source, destination, contents);
    }

    /// Feeds one packet (an RFC 4571 frame's payload) received on the ICE-TCP connection from
    /// `source`; answers go out as [`Transmit`]s with `proto` TCP to the same address.
    pub fn handle_tcp_frame(&mut self, now: Instant, source: SocketAddr, destination: SocketAddr, contents: &[u8]) {
        self.handle_packet(now, Protocol::Tcp, source, destination, contents);
    }

    fn handle_packet(&mut self, now: Instant, proto: Protocol, source: SocketAddr, destination: SocketAddr, contents: &[u8]) {
        if self.config.loopback_only && !source.ip().is_loopback() {
            self.dropped += 1;
            return;
        }
        let known = self.by_addr.get(&(proto, source)).copied();
        let id = known.or_else(|| stun::local_ufrag(contents).and_then(|u| self.by_ufrag.get(u).copied()));
        let Some(id) = id else {
            self.dropped += 1;
            return;
        };
        let Ok(receive) = Receive::new(proto, source, destination, contents) else {
            self.dropped += 1;
            return;
        };
        let input = Input::Receive(now, receive);
        let Some(peer) = self.peers.get_mut(&id) else { return };
        if !peer.rtc.accepts(&input) {
            self.dropped += 1;
            return;
        }
        if known.is_none() {
            // The check above verified the STUN message's integrity: this address is the peer's.
            peer.addrs.insert((proto, source));
            self.by_addr.insert((proto, source), id);
        }
        if let Err(e) = peer.rtc.handle_input(input) {
            tracing::debug!(peer = id.0, error = %e, "input refused");
            if !peer.rtc.is_alive() {
                self.remove(now, id, RemoveReason::Failed);
                return;
            }
        }
        self.drain(now, id);
        self.flush_keyframe_requests(now);
    }

    /// The earliest instant [`Sfu::handle_timeout`] should run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let interval = self.config.keyframe_request_interval;
        let pending = self.peers.values().filter_map(|p| match &p.role {
            Role::Publisher { tracks, .. } => tracks
                .values()
                .flat_map(|t| t.pending_keyframe_request.keys().filter_map(|rid| t.last_keyframe_request.get(rid)))
                .map(|at| *at + interval)
                .min(),
            Role::Subscriber { .. } | Role::Downstream { .. } => None,
        });
        self.peers.values().map(|p| p.next_timeout).chain(pending).chain(self.next_room_tick).min()
    }

    /// Re-queues coalesced keyframe requests whose throttle interval has ended.
    fn release_pending_keyframe_requests(&mut self, now: Instant) {
        let interval = self.config.keyframe_request_interval;
        for (id, peer) in &mut self.peers {
            let Role::Publisher { tracks, .. } = &mut peer.role else { continue };
            for (mid, track) in tracks.iter_mut() {
                let last = &track.last_keyframe_request;
                let due: Vec<Option<Rid>> = track
                    .pending_keyframe_request
                    .keys()
                    .copied()
                    .filter(|rid| last.get(rid).is_none_or(|t| now.duration_since(*t) >= interval))
                    .collect();
                for rid in due {
                    if let Some(kind) = track.pending_keyframe_request.remove(&rid) {
                        self.keyframe_requests.push_back((*id, *mid, rid, kind));
                    }
                }
            }
        }
    }

    /// Advances every peer whose timer is due, and removes peers that are gone.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<PeerId> = self.peers.iter().filter(|(_, p)| p.next_timeout <= now).map(|(id, _)| *id).collect();
        for id in due {
            if let Some(peer) = self.peers.get_mut(&id) {
                let _ = peer.rtc.handle_input(Input::Timeout(now));
            }
            self.drain(now, id);
        }
        let expired: Vec<(PeerId, RemoveReason)> = self
            .peers
            .iter()
            .filter_map(|(id, p)| {
                let dead = !p.rtc.is_alive() || p.closed;
                let disconnected_too_long = p.disconnected_since.is_some_and(|t| now.duration_since(t) >= self.config.disconnect_grace);
                let never_connected = !p.connected && now.duration_since(p.created) >= self.config.connect_timeout;
                (dead || disconnected_too_long || never_connected).then_some((*id, RemoveReason::Timeout))
            })
            .collect();
        for (id, reason) in expired {
            self.remove(now, id, reason);
        }
        if self.next_room_tick.is_some_and(|t| t <= now) {
            self.room_tick(now);
        }
        self.release_pending_keyframe_requests(now);
        self.flush_keyframe_requests(now);
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event for the service above.
    pub fn poll_event(&mut self) -> Option<SfuEvent> {
        self.events.pop_front()
    }

    /// Drains one peer's outputs until it asks for a timeout (str0m's contract after every change).
    pub(crate) fn drain(&mut self, now: Instant, id: PeerId) {
        let mut paced = 0;
        loop {
            let Some(peer) = self.peers.get_mut(&id) else { return };
            let out = match peer.rtc.poll_output() {
                Ok(o) => o,
                Err(e) => {
                    tracing::debug!(peer = id.0, error = %e, "peer failed");
                    self.remove(now, id, RemoveReason::Failed);
                    return;
                }
            };
            match out {
                Output::Timeout(t) => {
                    // With BWE on, str0m's pacer lets one packet out per timeout and asks to be
                    // woken a microsecond later for the next: that is handled here at once (its
                    // own clock steps a microsecond a packet, bounded), or a subscriber could send
                    // only one packet per timer tick.
                    if matches!(peer.rtc.last_timeout_reason(), Reason::Pacer(_)) && t <= now + PACER_CATCH_UP && paced < MAX_PACED_ROUNDS {
                        paced += 1;
                        if let Err(e) = peer.rtc.handle_input(Input::Timeout(t.max(now))) {
                            tracing::debug!(peer = id.0, error = %e, "pacer timeout refused");
                        }
                        continue;
                    }
                    // Anything else due now waits a millisecond: never schedule into the past.
                    peer.next_timeout = t.max(now + Duration::from_millis(1));
                    return;
                }
                Output::Transmit(t) => {
                    peer.send_to = Some((t.proto, t.destination));
                    self.transmits.push_back(Transmit {
                        proto: t.proto,
                        destination: t.destination,
                        source: t.source,
                        contents: t.contents.to_vec(),
                    })
                }
                Output::Event(e) => self.handle_event(now, id, e),
            }
        }
    }

    fn handle_event(&mut self, now: Instant, id: PeerId, event: Event) {
        match event {
            Event::Connected => {
                if let Some(p) = self.peers.get_mut(&id) {
                    p.connected = true;
                    p.disconnected_since = None;
                }
                self.events.push_back(SfuEvent::Connected(id));
                // A subscriber that just connected needs a keyframe to start decoding.
                if let Some(Peer { role: Role::Subscriber { source: Some(src), .. }, .. }) = self.peers.get(&id) {
                    let src = *src;
                    self.request_keyframes(now, src);
                }
                self.on_peer_connected(now, id);
            }
            Event::IceConnectionStateChange(state) => {
                if let Some(p) = self.peers.get_mut(&id) {
                    match state {
                        IceConnectionState::Disconnected => p.disconnected_since = p.disconnected_since.or(Some(now)),
                        IceConnectionState::Connected | IceConnectionState::Completed => p.disconnected_since = None,
                        _ => {}
                    }
                }
            }
            Event::RtpPacket(packet) => self.forward(now, id, packet),
            Event::KeyframeRequest(req) => {
                // What the m-line carries: its layer's maker is asked (a publisher, or a
                // transcoder job for a rendition).
                let carried = match self.peers.get(&id).map(|p| &p.role) {
                    Some(Role::Subscriber { source, outs, .. }) => outs
                        .iter()
                        .find(|o| o.mid == req.mid)
                        .and_then(|o| o.source)
                        .map(|(p, k)| (p, Some(k)))
                        .or(source.map(|s| (s, None))),
                    Some(Role::Downstream { outs, .. }) => {
                        outs.iter().find(|o| o.mid == req.mid).and_then(|o| o.source).map(|(p, k)| (p, Some(k)))
                    }
                    _ => None,
                };
                match carried {
                    Some((publisher, Some(key))) => self.request_layer_keyframe(now, publisher, key, req.kind),
                    // A player before its first keyframe: every video track of its publisher.
                    Some((publisher, None)) => {
                        if let Some(Peer { role: Role::Publisher { tracks, .. }, .. }) = self.peers.get(&publisher) {
                            for (mid, _) in tracks.iter().filter(|(_, t)| t.kind == MediaKind::Video) {
                                self.keyframe_requests.push_back((publisher, *mid, None, req.kind));
                            }
                        }
                    }
                    None => {}
                }
            }
            Event::SenderFeedback(fb) => {
                if let Some(Peer { role: Role::Publisher { sr_anchor, .. }, .. }) = self.peers.get_mut(&id)
                    && sr_anchor.is_none()
                {
                    *sr_anchor = Some((fb.received_at, fb.sender_info.ntp_time));
                }
            }
            Event::Closed => {
                if let Some(p) = self.peers.get_mut(&id) {
                    p.closed = true;
                }
            }
            Event::PeerStats(stats) => {
                if let Some(p) = self.peers.get_mut(&id) {
                    p.media_bytes = stats.bytes_rx + stats.bytes_tx;
                    p.loss = match (stats.ingress_loss_fraction, stats.egress_loss_fraction) {
                        (Some(a), Some(b)) => Some(a.max(b)),
                        (a, b) => a.or(b),
                    };
                    p.rtt = stats.rtt.or_else(|| stats.selected_candidate_pair.and_then(|c| c.current_round_trip_time));
                    p.send_side.on_stats(stats.timestamp, stats.bwe_tx.map(|b| b.as_f64()), stats.bytes_tx, stats.egress_loss_fraction);
                }
            }
            Event::MediaEgressStats(stats) => {
                if let (Some(p), Some(loss)) = (self.peers.get_mut(&id), stats.loss) {
                    let counts = stats.remote.map(|r| (*r.maximum_sequence_number, r.packets_lost));
                    p.send_side.on_reported_loss(stats.timestamp, stats.mid, loss, counts);
                }
            }
            Event::ChannelData(data) => self.on_channel_data(now, id, data),
            Event::EgressBitrateEstimate(BweKind::Twcc { estimate, .. }) => {
                if let Some(p) = self.peers.get_mut(&id) {
                    p.send_side.on_estimate(estimate.as_f64());
                }
            }
            _ => {}
        }
    }

    fn flush_keyframe_requests(&mut self, now: Instant) {
        let interval = self.config.keyframe_request_interval;
        while let Some((publisher, mid, rid, kind)) = self.keyframe_requests.pop_front() {
            let Some(peer) = self.peers.get_mut(&publisher) else { continue };
            let Role::Publisher { tracks, .. } = &mut peer.role else { continue };
            let Some(track) = tracks.get_mut(&mid) else { continue };
            if track.last_keyframe_request.get(&rid).is_some_and(|t| now.duration_since(*t) < interval) {
                track.pending_keyframe_request.insert(rid, kind);
                continue;
            }
            track.last_keyframe_request.insert(rid, now);
            track.pending_keyframe_request.remove(&rid);
            if let Some(rx) = peer.rtc.direct_api().stream_rx_by_mid(mid, rid) {
                rx.request_keyframe(kind);
            }
            self.drain(now, publisher);
        }
    }

    /// Forwards one packet from publisher `from` to each of its subscribers (and to the
    /// transcoder job of its track, if one runs).
    fn forward(&mut self, now: Instant, from: PeerId, packet: RtpPacket) {
        let ssrc = packet.header.ssrc;
        let Some(publisher) = self.peers.get_mut(&from) else { return };
        let room = publisher.room.clone();
        let params: Option<PayloadParams> = publisher.rtc.codec_config().find(|p| p.pt() == packet.header.payload_type).copied();
        let Some(params) = params else { return };
        let Role::Publisher { tracks, ssrc_mid, sr_anchor } = &mut publisher.role else { return };
        let mid = match ssrc_mid.get(&ssrc) {
            Some(m) => *m,
            None => {
                let Some(mid) = publisher.rtc.direct_api().stream_rx(&ssrc).map(|s| s.mid()) else { return };
                ssrc_mid.insert(ssrc, mid);
                mid
            }
        };
        let rid = publisher.rtc.direct_api().stream_rx(&ssrc).and_then(|s| s.rid());
        let Some(track) = tracks.get_mut(&mid) else { return };
        // Simulcast: learn the layer and count its bytes for the rate measurement.
        if let Some(rid) = rid {
            match track.layers.iter_mut().find(|l| l.ssrc == ssrc) {
                Some(layer) => layer.bytes += packet.payload.len() as u64,
                None => track.layers.push(LayerIn { rid, ssrc, bytes: packet.payload.len() as u64, bps: 0.0 }),
            }
        } else {
            track.ssrc = Some(ssrc);
            track.bytes += packet.payload.len() as u64;
            track.h264 = params.spec().codec == str0m::format::Codec::H264;
        }
        // Muted, or its owner lost the right to publish: nothing leaves the server.
        if !track.forwarding {
            return;
        }
        let kind = track.kind;
        if let Some(r) = &track.renditions {
            let copy = tongxin_transcoder::RtpPacket {
                sequence: *packet.seq_no as u16,
                timestamp: packet.header.timestamp,
                marker: packet.header.marker,
                payload: bytes::Bytes::copy_from_slice(&packet.payload),
            };
            self.transcode_ops.push_back(TranscodeOp::Packet { job: r.job, packet: copy });
        }
        let mut layers: Vec<LayerKey> = track.layers.iter().map(|l| LayerKey::Encoding(l.ssrc)).collect();
        if let Some(r) = &track.renditions {
            layers.extend((0..r.layers.len()).map(|i| LayerKey::Rendition(r.job, i)));
            layers.push(LayerKey::Encoding(ssrc));
        }
        if let Some(level) = packet.header.ext_vals.audio_level.filter(|_| kind == MediaKind::Audio) {
            track.audio_level = Some((level, now));
        }
        let clock_rate = params.spec().clock_rate.get();
        let sr = packet.last_sender_info.as_ref().map(|sr| (sr.ntp_time, sr.rtp_time.numer() as u32));
        let wallclock = publisher_wallclock(*sr_anchor, sr, packet.header.timestamp, clock_rate, packet.timestamp).min(now);
        let outgoing = Outgoing {
            from,
            track: track.track,
            kind,
            params,
            layer: LayerKey::Encoding(ssrc),
            layers: &layers,
            seq: *packet.seq_no,
            ts: packet.header.timestamp,
            marker: packet.header.marker,
            keyframe: kind == MediaKind::Video && keyframe::is_keyframe(params, &packet.payload),
            payload: packet.payload,
            ext: ExtensionValues {
                audio_level: packet.header.ext_vals.audio_level,
                voice_activity: packet.header.ext_vals.voice_activity,
                ..Default::default()
            },
            wallclock,
        };
        if self.fan_out(now, &room, &outgoing) {
            self.keyframe_requests.push_back((from, mid, rid, KeyframeRequestKind::Pli));
        }
    }

    /// Writes one packet of a track (a publisher's, or a rendition's) to each subscriber m-line
    /// that carries it; returns whether some m-line waits for a keyframe of its layer.
    pub(crate) fn fan_out(&mut self, now: Instant, room: &RoomName, packet: &Outgoing<'_>) -> bool {
        let Outgoing { from, track: track_id, kind, params, layer, layers, .. } = *packet;
        let layered = layers.len() > 1;
        let clock_rate = params.spec().clock_rate.get();
        let Some(room) = self.rooms.get(room) else { return false };
        let subs: Vec<PeerId> = room.subscribers.iter().copied().collect();
        let mut wants_keyframe = false;
        for sub in subs {
            let Some(peer) = self.peers.get_mut(&sub) else { continue };
            // Media written before a subscriber is connected would be queued and burst out stale
            // when it connects; it starts instead from the keyframe requested on connection.
            if !peer.connected {
                continue;
            }
            let Peer { rtc, role, send_side, .. } = peer;
            // An m-line already carrying one of this track's layers stays the track's m-line.
            let ours = |o: &TrackOut| {
                o.source.is_none() || o.source == Some((from, layer)) || o.source.is_some_and(|(p, k)| p == from && layers.contains(&k))
            };
            let (out, room_protocol) = match role {
                Role::Subscriber { source: Some(src), outs, .. } if *src == from => {
                    (outs.iter_mut().find(|o| o.kind == kind && ours(o)), false)
                }
                Role::Downstream { outs, .. } if track_id.is_some() => (outs.iter_mut().find(|o| o.track == track_id), true),
                _ => (None, false),
            };
            let Some(out) = out else { continue };
            if out.video_off {
                continue;
            }
            if out.source != Some((from, layer)) {
                // Several layers: only the target one may take the m-line over (the current one
                // goes on until it does); before any target, the first layer with a keyframe.
                let current_layer = out.source.is_some_and(|(p, k)| p == from && layers.contains(&k));
                if layered && (out.target.is_some() || current_layer) && out.target != Some(layer) {
                    continue;
                }
                if kind == MediaKind::Video && !packet.keyframe {
                    // Wait for a keyframe. A WHEP player's was requested when its source was
                    // attached; a room subscriber, or a layer switch, asks here (the throttle
                    // coalesces requests).
                    wants_keyframe |= room_protocol || layered;
                    continue;
                }
                // Rebase: the first packet of a new source follows the last one sent on this m-line.
                // Audio re-encoded by the transcoder keeps its source's timestamps: switching
                // between the two keeps the timeline, so the player's jitter buffer sees no jump.
                // Otherwise the new source's timestamps continue from the last sent, as far on as
                // its capture time is from the last sent's (at least a frame): a player that
                // paired RTP time with the sender reports' wall clock would otherwise see video
                // seconds behind audio after a pause, and hold frames back to "sync" them.
                let same_clock = kind == MediaKind::Audio && out.source.is_some_and(|(p, _)| p == from);
                let gap = out.last_wallclock.map_or(0, |at| {
                    let ticks = packet.wallclock.saturating_duration_since(at).as_secs_f64() * f64::from(clock_rate);
                    ticks.min(f64::from(u32::MAX / 4)) as u32
                });
                out.seq_delta = (out.last_seq + 1).wrapping_sub(packet.seq);
                out.ts_delta = match (out.last_seq, same_clock) {
                    (0, _) => 0,
                    (_, true) => out.ts_delta,
                    _ => out.last_ts.wrapping_add(gap.max(clock_rate / 30)).wrapping_sub(packet.ts),
                };
                out.source = Some((from, layer));
                out.waiting_for_keyframe = false;
                out.red.reset();
            }
            let seq = packet.seq.wrapping_add(out.seq_delta);
            let ts = packet.ts.wrapping_add(out.ts_delta);
            // str0m's pacer sends video at 1.1 times the estimate, which spreads a keyframe so it
            // does not overrun a weak link's queue. That suits a track whose layer is chosen
            // under the estimate; a single-layer track cannot slow down, and a receiver without
            // TWCC feedback has no estimate (the pacer would hold to the initial one): those go
            // out as they come, as their publisher paced them.
            // A rendition comes from our own encoder at its rung's rate, frame by frame: held
            // under an estimate that reads low it would only starve.
            let paced = kind == MediaKind::Video && layered && send_side.has_estimate() && matches!(layer, LayerKey::Encoding(_));
            // A new frame while the pacer still holds more than CONGESTED of this m-line's video
            // (the link fell under the layer): it and the rest until a keyframe stay here, so the
            // lower layer's keyframe, asked for at the switch, is not queued behind stale video.
            // A publisher is asked for one; a rendition has one every 2 s, and asking would only
            // send a big frame into the congestion sooner.
            if paced && kind == MediaKind::Video && !packet.keyframe && ts != out.last_ts && queued(rtc, out.mid, now) > CONGESTED {
                out.source = None;
                out.waiting_for_keyframe = true;
                out.congested = true;
                wants_keyframe |= matches!(layer, LayerKey::Encoding(_));
                continue;
            }
            out.last_seq = out.last_seq.max(seq);
            out.last_ts = ts;
            out.last_wallclock = Some(packet.wallclock);
            let out_mid = out.mid;
            let Some(ours) = rtc.codec_config().match_params(params) else { continue };
            // A lossy link's audio carries the previous frame again (when the subscriber took RED).
            let (pt, payload): (Pt, Arc<[u8]>) = match ours.red().filter(|_| out.red_on && kind == MediaKind::Audio) {
                Some(red) => (red, out.red.wrap(*ours.pt(), ts, &packet.payload).into()),
                None => (ours.pt(), packet.payload.clone()),
            };
            let write = RtpWrite::new(pt, SeqNo::from(seq), ts, packet.wallclock, payload)
                .marker(packet.marker)
                .ext_vals(packet.ext.clone())
                .nackable(kind == MediaKind::Video);
            if let Some(tx) = rtc.direct_api().stream_tx_by_mid(out_mid, None) {
                tx.set_unpaced(!paced);
                tx.write_rtp(write);
            }
            self.drain(now, sub);
        }
        wants_keyframe
    }

    /// The last audio level (−dBov, RFC 6464) heard from each publisher in a room.
    pub fn audio_levels(&self, room: &RoomName) -> Vec<(Identity, i8)> {
        let Some(room) = self.rooms.get(room) else { return Vec::new() };
        room.publishers
            .iter()
            .filter_map(|id| self.peers.get(id))
            .filter_map(|p| match &p.role {
                Role::Publisher { tracks, .. } => tracks.values().find_map(|t| t.audio_level).map(|(l, _)| (p.identity.clone(), l)),
                _ => None,
            })
            .collect()
    }
}

/// How long str0m's pacer may hold a subscriber m-line's video before new frames wait for a
/// keyframe instead (a keyframe of the room page's lowest layer takes about 300 ms at 150 kbit/s).
const CONGESTED: Duration = Duration::from_millis(400);

/// How long the oldest packet str0m's pacer holds for m-line `mid` has waited.
fn queued(rtc: &mut Rtc, mid: Mid, now: Instant) -> Duration {
    let mut api = rtc.direct_api();
    let first = api.stream_tx_by_mid(mid, None).and_then(|tx| tx.queue_info()).and_then(|q| q.first_unsent());
    first.map_or(Duration::ZERO, |t| now.saturating_duration_since(t))
}

/// The local instant a packet's media time corresponds to, for the outgoing sender reports.
///
/// Lip sync: with the publisher's own sender report `(ntp, rtp)` and one anchor per publisher
/// (the local arrival of its first report and that report's NTP time), audio and video keep the
/// relation the publisher stated, whatever jitter the network added. Without a report yet, the
/// arrival time is the best there is.
fn publisher_wallclock(
    anchor: Option<(Instant, SystemTime)>,
    sender_report: Option<(SystemTime, u32)>,
    rtp_time: u32,
    clock_rate: u32,
    arrival: Instant,
) -> Instant {
    let (Some((anchor_at, anchor_ntp)), Some((sr_ntp, sr_rtp))) = (anchor, sender_report) else { return arrival };
    let ticks = i64::from(rtp_time.wrapping_sub(sr_rtp) as i32);
    let offset = Duration::from_micros((ticks.unsigned_abs() * 1_000_000) / u64::from(clock_rate.max(1)));
    let packet_ntp = if ticks >= 0 { sr_ntp + offset } else { sr_ntp - offset };
    match packet_ntp.duration_since(anchor_ntp) {
        Ok(d) => anchor_at + d,
        Err(e) => anchor_at.checked_sub(e.duration()).unwrap_or(arrival),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wallclock_follows_the_publishers_sender_reports_not_arrival() {
        let t0 = Instant::now();
        let ntp0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let anchor = Some((t0, ntp0));
        // Video SR: NTP ntp0 = RTP 90_000; audio SR: NTP ntp0 = RTP 48_000.
        let video_sr = Some((ntp0, 90_000u32));
        let audio_sr = Some((ntp0, 48_000u32));
        // A video frame 1 s after the report arrives late (jitter); an audio frame 1 s after it arrives early.
        let v = publisher_wallclock(anchor, video_sr, 180_000, 90_000, t0 + Duration::from_millis(1400));
        let a = publisher_wallclock(anchor, audio_sr, 96_000, 48_000, t0 + Duration::from_millis(900));
        assert_eq!(v, t0 + Duration::from_secs(1));
        assert_eq!(a, v, "both media times map to the same instant, as the publisher said");
        // Before the report, and across an RTP wrap-around.
        let before = publisher_wallclock(anchor, Some((ntp0 + Duration::from_secs(2), 5)), u32::MAX - 89_994, 90_000, t0);
        assert_eq!(before, t0 + Duration::from_secs(1));
        // No report yet: arrival time.
        assert_eq!(publisher_wallclock(None, None, 1, 90_000, t0), t0);
    }
}
