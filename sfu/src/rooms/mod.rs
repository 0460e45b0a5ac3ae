//! Rooms and participants over the forwarding core: who is in a room, which tracks they publish,
//! what they may do, the reconnect grace period, and the signalling messages all this produces.
//!
//! A participant of the room protocol owns up to two peer connections in the core: a
//! publisher connection (the client offers) and a subscriber connection (the server offers, one
//! send-only m-line per subscribed track, plus the data channel). WHIP and WHEP sessions are
//! participants too, each with its one connection. Tracks have room-wide ids that outlive the
//! connections, so a participant that reconnects keeps its tracks and its subscribers' m-lines.

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use str0m::media::{MediaKind, Mid};
use tongxin_common::rooms::{LeaveReason, Permissions, QualitySample, RoomEvent, TrackSource};
use tongxin_common::{Identity, JoinGrant, RoomName, RoomRole};

use crate::core::{PeerId, RemoveReason, Role, Sfu, SfuError, TrackIn, TrackOut};
use crate::signal::{ConnId, ParticipantView, ServerMessage, TrackId, TrackView};

mod service;
mod session;
mod tick;

use tick::ROOM_TICK;

/// The largest data channel message relayed.
const MAX_DATA: usize = 16 * 1024;

/// A message for one WebSocket, or the instruction to close it.
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    /// Which connection.
    pub conn: ConnId,
    /// What to send, if anything.
    pub message: Option<ServerMessage>,
    /// Close the socket after sending.
    pub close: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParticipantKind {
    Rtc,
    Whip,
    Whep,
}

impl ParticipantKind {
    fn as_str(self) -> &'static str {
        match self {
            ParticipantKind::Rtc => "rtc",
            ParticipantKind::Whip => "whip",
            ParticipantKind::Whep => "whep",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Track {
    id: TrackId,
    kind: MediaKind,
    source: TrackSource,
    muted: bool,
    /// The m-line on the owner's current publisher connection.
    mid: Option<Mid>,
}

impl Track {
    fn view(&self) -> TrackView {
        TrackView { id: self.id, kind: kind_str(self.kind).to_owned(), source: self.source, muted: self.muted }
    }
}

pub(crate) struct Participant {
    identity: Identity,
    /// A number for the msid stream id (identities may hold characters SDP does not allow).
    sid: u64,
    name: Option<String>,
    role: RoomRole,
    hidden: bool,
    kind: ParticipantKind,
    permissions: Permissions,
    conn: Option<ConnId>,
    resume: Option<String>,
    /// Since when it has been without its WebSocket or with a broken connection.
    broken_since: Option<Instant>,
    publisher: Option<PeerId>,
    subscriber: Option<PeerId>,
    tracks: Vec<Track>,
    auto_subscribe: bool,
    subscriptions: HashSet<TrackId>,
    quality: Option<QualitySample>,
    /// The most it wants to receive, bit/s (a metered phone, a village link), if it said.
    budget_bps: Option<f64>,
}

impl Participant {
    fn view(&self) -> ParticipantView {
        ParticipantView {
            identity: self.identity.clone(),
            name: self.name.clone(),
            role: self.role,
            permissions: self.permissions,
            tracks: self.tracks.iter().map(Track::view).collect(),
            kind: self.kind.as_str().to_owned(),
        }
    }
}

fn kind_str(kind: MediaKind) -> &'static str {
    if kind == MediaKind::Audio { "audio" } else { "video" }
}

fn source_fits(source: TrackSource, kind: MediaKind) -> bool {
    (source == TrackSource::Microphone) == (kind == MediaKind::Audio)
}

fn new_credential() -> String {
    let bytes: [u8; 24] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Why a client frame was refused: an `error` frame's code and message.
struct Refusal(&'static str, String);

impl Refusal {
    fn new(code: &'static str, message: impl Into<String>) -> Refusal {
        Refusal(code, message.into())
    }
}

impl From<SfuError> for Refusal {
    fn from(e: SfuError) -> Refusal {
        let code = match e {
            SfuError::BadSdp(_) | SfuError::UnusableSdp(_) => "bad_sdp",
            SfuError::NotAllowed(_) => "not_allowed",
            SfuError::RoomFull(_) => "room_full",
            SfuError::TooManyRooms(_) => "too_many_rooms",
            _ => "internal",
        };
        Refusal(code, e.to_string())
    }
}

impl Sfu {
    // ---- admission -------------------------------------------------------------------------

    /// Refuses a new participant when the room or the server is full. The identity about to be
    /// replaced does not count.
    pub(crate) fn check_capacity(&self, room: &RoomName, identity: &Identity) -> Result<(), SfuError> {
        match self.rooms.get(room) {
            None if self.rooms.len() >= self.config.max_rooms => Err(SfuError::TooManyRooms(self.config.max_rooms)),
            Some(r) if r.participants.len() >= self.config.max_participants && !r.participants.contains_key(identity) => {
                Err(SfuError::RoomFull(self.config.max_participants))
            }
            _ => Ok(()),
        }
    }

    /// Makes room for a newcomer with an identity already present.
    pub(crate) fn replace_participant(&mut self, now: Instant, room: &RoomName, identity: &Identity) {
        if self.rooms.get(room).is_some_and(|r| r.participants.contains_key(identity)) {
            self.leave(now, room, identity, LeaveReason::Replaced);
        }
    }

    fn new_participant(&mut self, grant: &JoinGrant, kind: ParticipantKind) -> Participant {
        self.next_track += 1;
        Participant {
            identity: grant.identity.clone(),
            sid: self.next_track,
            name: grant.name.clone(),
            role: grant.role,
            hidden: grant.hidden,
            kind,
            permissions: Permissions { publish: grant.can_publish, subscribe: grant.can_subscribe, publish_data: grant.can_publish_data },
            conn: None,
            resume: None,
            broken_since: None,
            publisher: None,
            subscriber: None,
            tracks: Vec::new(),
            auto_subscribe: true,
            subscriptions: HashSet::new(),
            quality: None,
            budget_bps: None,
        }
    }

    /// A WHIP or WHEP session as a participant: its tracks get ids (first audio the microphone,
    /// first video the camera, a second video the screen) so room clients can subscribe.
    pub(crate) fn add_session_participant(&mut self, now: Instant, grant: &JoinGrant, kind: ParticipantKind, peer: PeerId) {
        let mut p = self.new_participant(grant, kind);
        if kind == ParticipantKind::Whip {
            p.publisher = Some(peer);
            let mut mids: Vec<(Mid, MediaKind)> = match self.peers.get(&peer).map(|x| &x.role) {
                Some(Role::Publisher { tracks, .. }) => tracks.iter().map(|(m, t)| (*m, t.kind)).collect(),
                _ => Vec::new(),
            };
            mids.sort_by_key(|(m, _)| m.to_string());
            for (mid, kind) in mids {
                let taken = |s: TrackSource| p.tracks.iter().any(|t| t.source == s);
                let source = match kind {
                    MediaKind::Audio if !taken(TrackSource::Microphone) => TrackSource::Microphone,
                    MediaKind::Video if !taken(TrackSource::Camera) => TrackSource::Camera,
                    MediaKind::Video if !taken(TrackSource::Screen) => TrackSource::Screen,
                    _ => continue,
                };
                let id = self.new_track_id();
                p.tracks.push(Track { id, kind, source, muted: false, mid: Some(mid) });
            }
            if let Some(peer) = self.peers.get_mut(&peer) {
                bind_tracks(&mut peer.role, &p);
            }
        } else {
            p.subscriber = Some(peer);
        }
        self.admit(now, p);
    }

    fn new_track_id(&mut self) -> TrackId {
        self.next_track += 1;
        TrackId(self.next_track)
    }

    /// Puts a participant in its room and tells everyone.
    fn admit(&mut self, now: Instant, p: Participant) {
        let Some(room_name) = self.peers.get(&p.publisher.or(p.subscriber).unwrap_or(PeerId(0))).map(|x| x.room.clone()) else {
            return;
        };
        self.admit_into(now, &room_name, p);
    }

    fn admit_into(&mut self, now: Instant, room_name: &RoomName, mut p: Participant) {
        let tracks: Vec<TrackView> = p.tracks.iter().map(Track::view).collect();
        let identity = p.identity.clone();
        let role = p.role;
        let hidden = p.hidden;
        let view = p.view();
        let room = self.rooms.entry(room_name.clone()).or_default();
        room.empty_since = None;
        if p.auto_subscribe && p.permissions.subscribe {
            p.subscriptions = room.participants.values().filter(|o| !o.hidden).flat_map(|o| o.tracks.iter().map(|t| t.id)).collect();
        }
        room.participants.insert(identity.clone(), p);
        self.schedule_room_tick(now);
        tracing::info!(room = %room_name, role = %role, "participant joined");
        self.room_events.push_back(RoomEvent::ParticipantJoined { room: room_name.clone(), identity: identity.clone(), role });
        if !hidden {
            self.broadcast(room_name, Some(&identity), ServerMessage::ParticipantJoined { participant: view });
        }
        let ids: Vec<TrackId> = tracks.iter().map(|t| t.id).collect();
        self.subscribe_others(now, room_name, &identity, &ids);
    }

    pub(crate) fn schedule_room_tick(&mut self, now: Instant) {
        if self.next_room_tick.is_none() {
            self.next_room_tick = Some(now + ROOM_TICK);
        }
    }

    // ---- leaving ---------------------------------------------------------------------------

    /// Takes a participant out of its room with `reason`, closing its connections.
    pub(crate) fn leave(&mut self, now: Instant, room: &RoomName, identity: &Identity, reason: LeaveReason) {
        let Some(r) = self.rooms.get_mut(room) else { return };
        let Some(p) = r.participants.remove(identity) else { return };
        if r.participants.is_empty() {
            r.empty_since = Some(now);
        }
        let gone: Vec<TrackId> = p.tracks.iter().map(|t| t.id).collect();
        for other in r.participants.values_mut() {
            other.subscriptions.retain(|t| !gone.contains(t));
        }
        if let Some(conn) = p.conn {
            self.conns.remove(&conn);
            let message = (reason != LeaveReason::Left).then_some(ServerMessage::Removed { reason });
            self.signals.push_back(Signal { conn, message, close: true });
        }
        let pc_reason = if reason == LeaveReason::Replaced { RemoveReason::Replaced } else { RemoveReason::Ended };
        for pc in [p.publisher, p.subscriber].into_iter().flatten() {
            self.remove(now, pc, pc_reason);
        }
        tracing::info!(room = %room, reason = reason.as_str(), "participant left");
        self.room_events.push_back(RoomEvent::ParticipantLeft { room: room.clone(), identity: identity.clone(), reason });
        if !p.hidden {
            self.broadcast(room, None, ServerMessage::ParticipantLeft { identity: identity.clone(), reason });
        }
        self.subscribe_others(now, room, identity, &[]);
    }

    /// The core removed a peer connection: a WHIP/WHEP participant leaves with it; a room
    /// participant loses that connection and its grace period starts.
    pub(crate) fn on_peer_removed(&mut self, now: Instant, pc: PeerId, room: &RoomName, reason: RemoveReason) {
        let Some(r) = self.rooms.get_mut(room) else { return };
        let Some(p) = r.participants.values_mut().find(|p| p.publisher == Some(pc) || p.subscriber == Some(pc)) else { return };
        let identity = p.identity.clone();
        if p.kind != ParticipantKind::Rtc {
            let reason = match reason {
                RemoveReason::Ended => LeaveReason::Left,
                RemoveReason::Replaced => LeaveReason::Replaced,
                RemoveReason::Timeout | RemoveReason::Failed => LeaveReason::Timeout,
            };
            p.publisher = None;
            p.subscriber = None;
            return self.leave(now, room, &identity, reason);
        }
        if p.publisher == Some(pc) {
            p.publisher = None;
            for t in &mut p.tracks {
                t.mid = None;
            }
        } else {
            p.subscriber = None;
        }
        p.broken_since.get_or_insert(now);
    }

    /// A connection came up: a publisher's subscribers need a keyframe from it.
    pub(crate) fn on_peer_connected(&mut self, now: Instant, pc: PeerId) {
        let is_room_publisher = self.peers.get(&pc).is_some_and(|p| {
            matches!(p.role, Role::Publisher { .. })
                && self.rooms.get(&p.room).and_then(|r| r.participants.get(&p.identity)).is_some_and(|x| x.kind == ParticipantKind::Rtc)
        });
        if is_room_publisher {
            self.request_keyframes(now, pc);
        }
    }

    // ---- small helpers ---------------------------------------------------------------------

    fn participant(&self, room: &RoomName, identity: &Identity) -> Option<&Participant> {
        self.rooms.get(room)?.participants.get(identity)
    }

    fn participant_mut(&mut self, room: &RoomName, identity: &Identity) -> Option<&mut Participant> {
        self.rooms.get_mut(room)?.participants.get_mut(identity)
    }

    pub(crate) fn send(&mut self, conn: ConnId, message: ServerMessage) {
        self.signals.push_back(Signal { conn, message: Some(message), close: false });
    }

    /// Answers a refused frame of type `refused` with an `error`.
    fn refuse(&mut self, conn: ConnId, refused: &'static str, refusal: Refusal) {
        self.send(conn, ServerMessage::Error { code: refusal.0.to_owned(), message: refusal.1, refused: Some(refused.to_owned()) });
    }

    /// The receive budget the participant owning connection `pc` set, bit/s.
    pub(crate) fn budget_of(&self, pc: PeerId) -> Option<f64> {
        let peer = self.peers.get(&pc)?;
        self.participant(&peer.room, &peer.identity)?.budget_bps
    }

    /// The WebSocket of the room page publishing on connection `pc`, which can pause its own
    /// simulcast layers when told to (a WHIP publisher cannot).
    pub(crate) fn pausable_publisher(&self, pc: PeerId) -> Option<ConnId> {
        let peer = self.peers.get(&pc)?;
        let p = self.participant(&peer.room, &peer.identity)?;
        (p.kind == ParticipantKind::Rtc && p.publisher == Some(pc)).then_some(p.conn).flatten()
    }

    /// The WebSocket of the room page receiving on connection `pc` (a WHEP player has none).
    pub(crate) fn receiving_page(&self, pc: PeerId) -> Option<ConnId> {
        let peer = self.peers.get(&pc)?;
        let p = self.participant(&peer.room, &peer.identity)?;
        (p.kind == ParticipantKind::Rtc && p.subscriber == Some(pc)).then_some(p.conn).flatten()
    }

    /// Sends a message about `identity` to the room, or only to it when it is hidden.
    fn announce(&mut self, room: &RoomName, identity: &Identity, message: ServerMessage) {
        let Some(p) = self.participant(room, identity) else { return };
        match (p.hidden, p.conn) {
            (false, _) => self.broadcast(room, None, message),
            (true, Some(conn)) => self.send(conn, message),
            (true, None) => {}
        }
    }

    /// Sends `message` to every participant with a WebSocket, except `except`.
    fn broadcast(&mut self, room: &RoomName, except: Option<&Identity>, message: ServerMessage) {
        let Some(r) = self.rooms.get(room) else { return };
        let conns: Vec<ConnId> = r.participants.values().filter(|p| Some(&p.identity) != except).filter_map(|p| p.conn).collect();
        for conn in conns {
            self.send(conn, message.clone());
        }
    }
}

fn bind_tracks(role: &mut Role, p: &Participant) {
    let Role::Publisher { tracks, .. } = role else { return };
    tracks.retain(|mid, _| p.tracks.iter().any(|t| t.mid == Some(*mid)));
    for t in &p.tracks {
        let Some(mid) = t.mid else { continue };
        let track_in = tracks.entry(mid).or_insert_with(|| TrackIn::new(t.kind));
        track_in.track = Some(t.id);
        track_in.forwarding = !t.muted && p.permissions.publish;
    }
}

fn out_map(outs: &[TrackOut]) -> BTreeMap<String, TrackId> {
    outs.iter().filter_map(|o| o.track.map(|t| (o.mid.to_string(), t))).collect()
}
