//! Rooms and participants over the forwarding core: who is in a room, which tracks they publish,
//! what they may do, the reconnect grace period, and the signalling messages all this produces.
//!
//! A participant of the room protocol owns up to two peer connections in the core: a
//! publisher connection (the client offers) and a subscriber connection (the server offers, one
//! send-only m-line per subscribed track, plus the data channel). WHIP and WHEP sessions are
//! participants too, each with its one connection. Tracks have room-wide ids that outlive the
//! connections, so a participant that reconnects keeps its tracks and its subscribers' m-lines.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer};
use str0m::channel::ChannelData;
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid};
use tongxin_common::rooms::{
    LeaveReason, ParticipantInfo, Permissions, QualityRating, QualitySample, RoomError, RoomEvent, RoomInfo, TrackInfo, TrackSource,
};
use tongxin_common::{Identity, JoinGrant, RoomName, RoomRole};

use crate::core::{PeerId, RemoveReason, Role, Sfu, SfuError, TrackIn, TrackOut, first_line, usable_media};
use crate::signal::{
    ClientMessage, ConnId, ParticipantView, PcTarget, PublishTrack, QualityView, RoomView, ServerMessage, Speaker, TrackId, TrackView,
};

/// How often rooms are looked after (grace periods, speakers); quality goes out every fourth tick.
const ROOM_TICK: Duration = Duration::from_millis(500);
const QUALITY_EVERY: u64 = 4;
/// The loudest level (−dBov) that still counts as silence, and how long a level stays fresh.
const SPEAKING_LEVEL: i8 = 60;
const LEVEL_FRESH: Duration = Duration::from_millis(1000);
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
            p.subscriptions = room.participants.values().flat_map(|o| o.tracks.iter().map(|t| t.id)).collect();
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

    // ---- the WebSocket side ----------------------------------------------------------------

    /// A `join` on connection `conn`, with the grant its token carried (already verified) and
    /// the resume credential it sent. Answers go out as [`Signal`]s.
    pub fn join(&mut self, now: Instant, conn: ConnId, grant: Option<JoinGrant>, resume: Option<String>, auto_subscribe: bool) {
        if self.conns.contains_key(&conn) {
            return self.refuse(conn, Refusal::new("already_joined", "this connection has already joined"));
        }
        if let Some(credential) = resume.as_deref()
            && let Some((room, identity)) = self.find_resumable(credential)
            && grant.as_ref().is_none_or(|g| g.room == room && g.identity == identity)
        {
            return self.resume(now, conn, &room, &identity);
        }
        let Some(grant) = grant else {
            self.refuse(conn, Refusal::new("unauthorized", "the resume credential is unknown or expired, and no valid token was given"));
            return self.signals.push_back(Signal { conn, message: None, close: true });
        };
        if let Err(e) = self.check_capacity(&grant.room, &grant.identity) {
            self.refuse(conn, e.into());
            return self.signals.push_back(Signal { conn, message: None, close: true });
        }
        self.replace_participant(now, &grant.room, &grant.identity);
        let mut p = self.new_participant(&grant, ParticipantKind::Rtc);
        p.conn = Some(conn);
        p.auto_subscribe = auto_subscribe;
        self.conns.insert(conn, (grant.room.clone(), grant.identity.clone()));
        self.admit_into(now, &grant.room, p);
        self.send_joined(now, conn, &grant.room, &grant.identity, false);
    }

    fn find_resumable(&self, credential: &str) -> Option<(RoomName, Identity)> {
        self.rooms.iter().find_map(|(name, room)| {
            room.participants
                .values()
                .find(|p| p.kind == ParticipantKind::Rtc && p.resume.as_deref() == Some(credential))
                .map(|p| (name.clone(), p.identity.clone()))
        })
    }

    fn resume(&mut self, now: Instant, conn: ConnId, room: &RoomName, identity: &Identity) {
        let Some(p) = self.participant_mut(room, identity) else { return };
        let old_conn = p.conn.replace(conn);
        let old_pcs = [p.publisher.take(), p.subscriber.take()];
        p.broken_since = None;
        for t in &mut p.tracks {
            t.mid = None;
        }
        if let Some(old) = old_conn {
            self.conns.remove(&old);
            self.signals.push_back(Signal { conn: old, message: None, close: true });
        }
        for pc in old_pcs.into_iter().flatten() {
            self.remove(now, pc, RemoveReason::Replaced);
        }
        self.conns.insert(conn, (room.clone(), identity.clone()));
        tracing::info!(room = %room, "participant resumed");
        self.send_joined(now, conn, room, identity, true);
    }

    /// `joined` with a fresh resume credential, then the first offer of a new subscriber connection.
    fn send_joined(&mut self, now: Instant, conn: ConnId, room_name: &RoomName, identity: &Identity, resumed: bool) {
        let grace_seconds = self.config.reconnect_grace.as_secs();
        let Some(room) = self.rooms.get_mut(room_name) else { return };
        let others: Vec<ParticipantView> =
            room.participants.values().filter(|o| &o.identity != identity && !o.hidden).map(Participant::view).collect();
        let Some(p) = room.participants.get_mut(identity) else { return };
        let resume = new_credential();
        p.resume = Some(resume.clone());
        let message = ServerMessage::Joined {
            protocol: crate::signal::PROTOCOL,
            participant: p.view(),
            resume,
            resumed,
            grace_seconds,
            room: RoomView { name: room_name.clone(), participants: others },
        };
        self.signals.push_back(Signal { conn, message: Some(message), close: false });
        self.open_subscriber(now, room_name, identity);
    }

    /// The tracks a participant should receive now: its subscriptions that exist, with their kinds.
    fn wanted_tracks(&self, room: &RoomName, identity: &Identity) -> Vec<(TrackId, MediaKind, u64)> {
        let Some(r) = self.rooms.get(room) else { return Vec::new() };
        let Some(p) = r.participants.get(identity) else { return Vec::new() };
        if !p.permissions.subscribe {
            return Vec::new();
        }
        let mut wanted: Vec<(TrackId, MediaKind, u64)> = r
            .participants
            .values()
            .filter(|o| &o.identity != identity)
            .flat_map(|o| o.tracks.iter().map(move |t| (t.id, t.kind, o.sid)))
            .filter(|(id, _, _)| p.subscriptions.contains(id))
            .collect();
        wanted.sort_by_key(|(id, _, _)| *id);
        wanted
    }

    fn open_subscriber(&mut self, now: Instant, room: &RoomName, identity: &Identity) {
        let Some(p) = self.rooms.get(room).and_then(|r| r.participants.get(identity)) else { return };
        let (conn, role) = (p.conn, p.role);
        let wanted = self.wanted_tracks(room, identity);
        let mut rtc = self.new_rtc(now, room);
        let mut api = rtc.sdp_api();
        let channel = api.add_channel("tongxin".to_owned());
        let mut outs = Vec::new();
        for (track, kind, owner) in wanted {
            let mid = api.add_media(kind, Direction::SendOnly, Some(format!("p{owner}")), Some(format!("t{}", track.0)), None);
            outs.push(TrackOut::new(mid, kind, Some(track)));
        }
        // A new data channel is always a change, so there is an offer.
        let Some((offer, pending)) = api.apply() else { return };
        let tracks = out_map(&outs);
        let role_state = Role::Downstream { outs, pending: Some(pending), needs_offer: false, channel };
        let id = self.insert_peer(now, room, identity, role, rtc, role_state);
        if let Some(r) = self.rooms.get_mut(room) {
            r.subscribers.insert(id);
        }
        if let Some(p) = self.participant_mut(room, identity) {
            p.subscriber = Some(id);
        }
        if let Some(conn) = conn {
            self.send(conn, ServerMessage::Offer { sdp: offer.to_sdp_string(), tracks });
        }
    }

    /// Brings a participant's subscriber connection in line with what it should receive: m-lines
    /// of tracks gone turn inactive, new tracks get new m-lines, and the client gets an offer.
    fn sync_subscriber(&mut self, now: Instant, room: &RoomName, identity: &Identity) {
        let wanted = self.wanted_tracks(room, identity);
        let Some(p) = self.rooms.get(room).and_then(|r| r.participants.get(identity)) else { return };
        let (Some(pc), conn) = (p.subscriber, p.conn) else { return };
        let Some(peer) = self.peers.get_mut(&pc) else { return };
        let crate::core::Peer { rtc, role, .. } = peer;
        let Role::Downstream { outs, pending, needs_offer, .. } = role else { return };
        if pending.is_some() {
            *needs_offer = true;
            return;
        }
        let wanted_ids: HashSet<TrackId> = wanted.iter().map(|(id, _, _)| *id).collect();
        let mut api = rtc.sdp_api();
        for out in outs.iter_mut() {
            if let Some(t) = out.track
                && !wanted_ids.contains(&t)
            {
                api.set_direction(out.mid, Direction::Inactive);
                out.track = None;
                out.source = None;
            }
        }
        for (track, kind, owner) in wanted {
            if outs.iter().any(|o| o.track == Some(track)) {
                continue;
            }
            let mid = api.add_media(kind, Direction::SendOnly, Some(format!("p{owner}")), Some(format!("t{}", track.0)), None);
            outs.push(TrackOut::new(mid, kind, Some(track)));
        }
        if let Some((offer, pend)) = api.apply() {
            *pending = Some(pend);
            let tracks = out_map(outs);
            if let Some(conn) = conn {
                self.send(conn, ServerMessage::Offer { sdp: offer.to_sdp_string(), tracks });
            }
        }
        self.drain(now, pc);
    }

    /// A frame from a joined (or not yet joined) WebSocket, other than `join`.
    pub fn client_message(&mut self, now: Instant, conn: ConnId, message: ClientMessage) {
        if matches!(message, ClientMessage::Ping) {
            return self.send(conn, ServerMessage::Pong);
        }
        let Some((room, identity)) = self.conns.get(&conn).cloned() else {
            return self.refuse(conn, Refusal::new("not_joined", "send join first"));
        };
        let result = match message {
            ClientMessage::Join { .. } => Err(Refusal::new("already_joined", "this connection has already joined")),
            ClientMessage::Answer { sdp } => self.on_answer(now, &room, &identity, &sdp),
            ClientMessage::Publish { sdp, tracks } => self.on_publish(now, conn, &room, &identity, &sdp, &tracks),
            ClientMessage::Candidate { target, candidate } => {
                let pc = self.participant(&room, &identity).and_then(|p| match target {
                    PcTarget::Publisher => p.publisher,
                    PcTarget::Subscriber => p.subscriber,
                });
                // The server is ICE-lite and learns addresses from checks: a bad candidate is harmless.
                if let Some(peer) = pc.and_then(|pc| self.peers.get_mut(&pc))
                    && let Ok(c) = str0m::Candidate::from_sdp_string(&candidate.candidate)
                {
                    peer.rtc.add_remote_candidate(c);
                }
                Ok(())
            }
            ClientMessage::Subscribe { tracks } => self.on_subscribe(now, &room, &identity, &tracks, true),
            ClientMessage::Unsubscribe { tracks } => self.on_subscribe(now, &room, &identity, &tracks, false),
            ClientMessage::Mute { source, muted } => {
                self.set_muted(now, &room, &identity, source, muted).map_err(|_| Refusal::new("unknown_track", "you publish no such track"))
            }
            ClientMessage::Leave => {
                self.leave(now, &room, &identity, LeaveReason::Left);
                Ok(())
            }
            ClientMessage::Ping => Ok(()),
        };
        if let Err(refusal) = result {
            self.refuse(conn, refusal);
        }
    }

    /// The WebSocket is gone: the grace period starts.
    pub fn conn_closed(&mut self, now: Instant, conn: ConnId) {
        let Some((room, identity)) = self.conns.remove(&conn) else { return };
        if let Some(p) = self.participant_mut(&room, &identity)
            && p.conn == Some(conn)
        {
            p.conn = None;
            p.broken_since.get_or_insert(now);
        }
    }

    fn on_answer(&mut self, now: Instant, room: &RoomName, identity: &Identity, sdp: &str) -> Result<(), Refusal> {
        let pc = self
            .participant(room, identity)
            .and_then(|p| p.subscriber)
            .ok_or_else(|| Refusal::new("bad_message", "no offer is pending"))?;
        let answer = SdpAnswer::from_sdp_string(sdp).map_err(|e| Refusal::new("bad_sdp", first_line(&e.to_string())))?;
        let Some(peer) = self.peers.get_mut(&pc) else { return Err(Refusal::new("bad_message", "no offer is pending")) };
        let Role::Downstream { pending, needs_offer, .. } = &mut peer.role else {
            return Err(Refusal::new("internal", "not a subscriber"));
        };
        let Some(pend) = pending.take() else { return Err(Refusal::new("bad_message", "no offer is pending")) };
        let again = std::mem::take(needs_offer);
        let result = peer.rtc.sdp_api().accept_answer(pend, answer);
        self.drain(now, pc);
        if let Err(e) = result {
            return Err(Refusal::new("bad_sdp", first_line(&e.to_string())));
        }
        if again {
            self.sync_subscriber(now, room, identity);
        }
        Ok(())
    }

    fn on_publish(
        &mut self,
        now: Instant,
        conn: ConnId,
        room: &RoomName,
        identity: &Identity,
        sdp: &str,
        declared: &[PublishTrack],
    ) -> Result<(), Refusal> {
        let p = self.participant(room, identity).ok_or_else(|| Refusal::new("not_joined", "send join first"))?;
        if !p.permissions.publish {
            return Err(Refusal::new("not_allowed", "you may not publish in this room"));
        }
        let existing = p.publisher;
        let role = p.role;
        let offer = SdpOffer::from_sdp_string(sdp).map_err(|e| Refusal::new("bad_sdp", first_line(&e.to_string())))?;
        let (pc, answer) = match existing.filter(|pc| self.peers.contains_key(pc)) {
            Some(pc) => {
                let Some(peer) = self.peers.get_mut(&pc) else { return Err(Refusal::new("internal", "connection vanished")) };
                let answer = peer.rtc.sdp_api().accept_offer(offer).map_err(|e| Refusal::new("bad_sdp", first_line(&e.to_string())))?;
                (pc, answer.to_sdp_string())
            }
            None => {
                let mut rtc = self.new_rtc(now, room);
                let answer = rtc.sdp_api().accept_offer(offer).map_err(|e| Refusal::new("bad_sdp", first_line(&e.to_string())))?;
                let answer = answer.to_sdp_string();
                if usable_media(&rtc, &answer, true).is_empty() {
                    return Err(Refusal::new("bad_sdp", "no sendonly audio or video m-line with a codec this room accepts"));
                }
                let state = Role::Publisher { tracks: HashMap::new(), ssrc_mid: HashMap::new(), sr_anchor: None };
                let pc = self.insert_peer(now, room, identity, role, rtc, state);
                if let Some(r) = self.rooms.get_mut(room) {
                    r.publishers.push(pc);
                }
                if let Some(p) = self.participant_mut(room, identity) {
                    p.publisher = Some(pc);
                }
                (pc, answer)
            }
        };
        let usable = self.peers.get(&pc).map(|peer| usable_media(&peer.rtc, &answer, true)).unwrap_or_default();
        // Which source each usable m-line carries: as declared, else the first free default.
        let mut lines: Vec<(Mid, MediaKind, TrackSource)> = Vec::new();
        for (mid, kind) in usable {
            let declared = declared.iter().find(|t| t.mid == mid.to_string()).map(|t| t.source);
            let default = if kind == MediaKind::Audio { TrackSource::Microphone } else { TrackSource::Camera };
            let source = declared.unwrap_or(default);
            if source_fits(source, kind) && !lines.iter().any(|(_, _, s)| *s == source) {
                lines.push((mid, kind, source));
            }
        }
        let (published, unpublished) = self.update_tracks(room, identity, &lines);
        let answer_tracks = self
            .participant(room, identity)
            .map(|p| p.tracks.iter().filter_map(|t| t.mid.map(|m| (m.to_string(), t.id))).collect::<BTreeMap<_, _>>())
            .unwrap_or_default();
        self.send(conn, ServerMessage::PublishAnswer { sdp: answer, tracks: answer_tracks });
        for track in unpublished {
            self.broadcast(room, None, ServerMessage::TrackUnpublished { participant: identity.clone(), track });
        }
        for track in &published {
            self.broadcast(room, None, ServerMessage::TrackPublished { participant: identity.clone(), track: track.clone() });
        }
        let ids: Vec<TrackId> = published.iter().map(|t| t.id).collect();
        self.subscribe_others(now, room, identity, &ids);
        self.drain(now, pc);
        Ok(())
    }

    /// Sets a participant's tracks to `lines`, keeping the ids of sources it already had. Returns
    /// the tracks that are new and the ids of those gone.
    fn update_tracks(
        &mut self,
        room: &RoomName,
        identity: &Identity,
        lines: &[(Mid, MediaKind, TrackSource)],
    ) -> (Vec<TrackView>, Vec<TrackId>) {
        let mut fresh = Vec::new();
        for (_, kind, source) in lines {
            let has = self.participant(room, identity).is_some_and(|p| p.tracks.iter().any(|t| t.source == *source && t.kind == *kind));
            if !has {
                fresh.push(self.new_track_id());
            }
        }
        let Some(p) = self.participant_mut(room, identity) else { return (Vec::new(), Vec::new()) };
        let mut gone = Vec::new();
        p.tracks.retain(|t| {
            let keep = lines.iter().any(|(_, k, s)| *s == t.source && *k == t.kind);
            if !keep {
                gone.push(t.id);
            }
            keep
        });
        let mut published = Vec::new();
        let mut fresh = fresh.into_iter();
        for (mid, kind, source) in lines {
            if let Some(t) = p.tracks.iter_mut().find(|t| t.source == *source) {
                t.mid = Some(*mid);
            } else if let Some(id) = fresh.next() {
                let track = Track { id, kind: *kind, source: *source, muted: false, mid: Some(*mid) };
                published.push(track.view());
                p.tracks.push(track);
            }
        }
        self.bind_track_ins(room, identity);
        for id in &gone {
            for other in self.rooms.get_mut(room).into_iter().flat_map(|r| r.participants.values_mut()) {
                other.subscriptions.remove(id);
            }
        }
        (published, gone)
    }

    /// Points the publisher connection's incoming m-lines at the participant's tracks, and sets
    /// whether each is forwarded (not muted, publishing allowed).
    fn bind_track_ins(&mut self, room: &RoomName, identity: &Identity) {
        let Some(p) = self.rooms.get(room).and_then(|r| r.participants.get(identity)) else { return };
        if let Some(peer) = p.publisher.and_then(|pc| self.peers.get_mut(&pc)) {
            bind_tracks(&mut peer.role, p);
        }
    }

    /// Adds freshly published tracks to the subscriptions of everyone who receives automatically.
    fn subscribe_others(&mut self, now: Instant, room: &RoomName, owner: &Identity, tracks: &[TrackId]) {
        let Some(r) = self.rooms.get_mut(room) else { return };
        let mut changed = Vec::new();
        for p in r.participants.values_mut() {
            if &p.identity == owner || p.kind != ParticipantKind::Rtc {
                continue;
            }
            if p.auto_subscribe && p.permissions.subscribe && !tracks.is_empty() {
                p.subscriptions.extend(tracks.iter().copied());
            }
            changed.push(p.identity.clone());
        }
        for identity in changed {
            self.sync_subscriber(now, room, &identity);
        }
    }

    fn on_subscribe(&mut self, now: Instant, room: &RoomName, identity: &Identity, tracks: &[TrackId], on: bool) -> Result<(), Refusal> {
        let r = self.rooms.get(room).ok_or_else(|| Refusal::new("internal", "room vanished"))?;
        let known: HashSet<TrackId> =
            r.participants.values().filter(|o| &o.identity != identity).flat_map(|o| o.tracks.iter().map(|t| t.id)).collect();
        if let Some(unknown) = tracks.iter().find(|t| !known.contains(t)) {
            return Err(Refusal::new("unknown_track", format!("no track t{} in this room", unknown.0)));
        }
        let Some(p) = self.participant_mut(room, identity) else { return Ok(()) };
        if on && !p.permissions.subscribe {
            return Err(Refusal::new("not_allowed", "you may not subscribe in this room"));
        }
        for t in tracks {
            if on {
                p.subscriptions.insert(*t);
            } else {
                p.subscriptions.remove(t);
            }
        }
        self.sync_subscriber(now, room, identity);
        Ok(())
    }

    // ---- service operations (RoomControl) --------------------------------------------------

    /// Creates a room that lives until closed (or marks an existing one so).
    pub fn create_room(&mut self, now: Instant, room: &RoomName) -> Result<(), RoomError> {
        if !self.rooms.contains_key(room) && self.rooms.len() >= self.config.max_rooms {
            return Err(RoomError::TooManyRooms);
        }
        let r = self.rooms.entry(room.clone()).or_default();
        r.managed = true;
        r.empty_since = None;
        self.schedule_room_tick(now);
        Ok(())
    }

    /// Closes a room: everyone leaves with reason `room_closed`.
    pub fn close_room(&mut self, now: Instant, room: &RoomName) -> Result<(), RoomError> {
        let r = self.rooms.get(room).ok_or(RoomError::NoSuchRoom)?;
        let everyone: Vec<Identity> = r.participants.keys().cloned().collect();
        for identity in everyone {
            self.leave(now, room, &identity, LeaveReason::RoomClosed);
        }
        let leftover: Vec<PeerId> = self.peers.iter().filter(|(_, p)| &p.room == room).map(|(id, _)| *id).collect();
        for pc in leftover {
            self.remove(now, pc, RemoveReason::Ended);
        }
        self.rooms.remove(room);
        self.room_events.push_back(RoomEvent::RoomClosed { room: room.clone() });
        Ok(())
    }

    /// Changes a participant's rights at once.
    pub fn set_permissions(
        &mut self,
        now: Instant,
        room: &RoomName,
        identity: &Identity,
        permissions: Permissions,
    ) -> Result<(), RoomError> {
        let p = self.participant_mut(room, identity).ok_or(RoomError::NoSuchParticipant)?;
        let before = p.permissions;
        p.permissions = permissions;
        let kind = p.kind;
        let hidden = p.hidden;
        if before.publish && !permissions.publish {
            if kind == ParticipantKind::Whip {
                // A WHIP session is nothing but publishing.
                self.leave(now, room, identity, LeaveReason::Kicked);
                return Ok(());
            }
            let Some(p) = self.participant_mut(room, identity) else { return Ok(()) };
            let gone: Vec<TrackId> = p.tracks.drain(..).map(|t| t.id).collect();
            let pc = p.publisher.take();
            // Forwarding stops with the connection, before any message goes out.
            if let Some(pc) = pc {
                self.remove(now, pc, RemoveReason::Ended);
            }
            for track in &gone {
                self.broadcast(room, None, ServerMessage::TrackUnpublished { participant: identity.clone(), track: *track });
            }
            if let Some(r) = self.rooms.get_mut(room) {
                for other in r.participants.values_mut() {
                    other.subscriptions.retain(|t| !gone.contains(t));
                }
            }
            self.subscribe_others(now, room, identity, &[]);
        }
        if before.subscribe != permissions.subscribe {
            let all: HashSet<TrackId> = self
                .rooms
                .get(room)
                .map(|r| r.participants.values().filter(|o| &o.identity != identity).flat_map(|o| o.tracks.iter().map(|t| t.id)).collect())
                .unwrap_or_default();
            if let Some(p) = self.participant_mut(room, identity) {
                p.subscriptions = if permissions.subscribe && p.auto_subscribe { all } else { HashSet::new() };
            }
            self.sync_subscriber(now, room, identity);
        }
        let message = ServerMessage::PermissionsChanged { participant: identity.clone(), permissions };
        if hidden {
            if let Some(conn) = self.participant(room, identity).and_then(|p| p.conn) {
                self.send(conn, message);
            }
        } else {
            self.broadcast(room, None, message);
        }
        Ok(())
    }

    /// Removes a participant (`kicked`).
    pub fn remove_participant(&mut self, now: Instant, room: &RoomName, identity: &Identity) -> Result<(), RoomError> {
        if self.participant(room, identity).is_none() {
            return Err(if self.rooms.contains_key(room) { RoomError::NoSuchParticipant } else { RoomError::NoSuchRoom });
        }
        self.leave(now, room, identity, LeaveReason::Kicked);
        Ok(())
    }

    /// Mutes or unmutes a participant's track; a muted track is not forwarded.
    pub fn set_muted(
        &mut self,
        now: Instant,
        room: &RoomName,
        identity: &Identity,
        source: TrackSource,
        muted: bool,
    ) -> Result<(), RoomError> {
        let p = self.participant_mut(room, identity).ok_or(RoomError::NoSuchParticipant)?;
        let track = p.tracks.iter_mut().find(|t| t.source == source).ok_or(RoomError::NoSuchTrack)?;
        if track.muted == muted {
            return Ok(());
        }
        track.muted = muted;
        let (id, kind, mid) = (track.id, track.kind, track.mid);
        let (pc, hidden) = (p.publisher, p.hidden);
        self.bind_track_ins(room, identity);
        if !muted
            && kind == MediaKind::Video
            && let (Some(pc), Some(mid)) = (pc, mid)
        {
            // Subscribers wait for a keyframe before showing the track again.
            self.queue_keyframe_request(now, pc, mid, KeyframeRequestKind::Pli);
        }
        let message = ServerMessage::TrackMuted { participant: identity.clone(), track: id, muted };
        if hidden {
            if let Some(conn) = self.participant(room, identity).and_then(|p| p.conn) {
                self.send(conn, message);
            }
        } else {
            self.broadcast(room, None, message);
        }
        Ok(())
    }

    /// Sends a JSON object to everyone in the room over the data channel (`from` is null).
    pub fn send_data(&mut self, now: Instant, room: &RoomName, message: serde_json::Value) -> Result<(), RoomError> {
        if !self.rooms.contains_key(room) {
            return Err(RoomError::NoSuchRoom);
        }
        if !message.is_object() {
            return Err(RoomError::BadData("a data message is a JSON object".into()));
        }
        let bytes = serde_json::json!({ "from": null, "message": message }).to_string();
        if bytes.len() > MAX_DATA {
            return Err(RoomError::BadData(format!("a data message is at most {MAX_DATA} bytes")));
        }
        self.relay_data(now, room, None, bytes.as_bytes());
        Ok(())
    }

    /// Every room and who is in it.
    pub fn room_infos(&self) -> Vec<RoomInfo> {
        let mut rooms: Vec<RoomInfo> = self
            .rooms
            .iter()
            .map(|(name, r)| {
                let mut participants: Vec<ParticipantInfo> = r
                    .participants
                    .values()
                    .map(|p| ParticipantInfo {
                        identity: p.identity.clone(),
                        name: p.name.clone(),
                        role: p.role,
                        kind: p.kind.as_str(),
                        permissions: p.permissions,
                        tracks: p
                            .tracks
                            .iter()
                            .map(|t| TrackInfo { id: format!("t{}", t.id.0), kind: kind_str(t.kind), source: t.source, muted: t.muted })
                            .collect(),
                        hidden: p.hidden,
                        quality: p.quality,
                    })
                    .collect();
                participants.sort_by(|a, b| a.identity.as_str().cmp(b.identity.as_str()));
                RoomInfo { name: name.clone(), managed: r.managed, participants }
            })
            .collect();
        rooms.sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
        rooms
    }

    /// The next signal for a WebSocket.
    pub fn poll_signal(&mut self) -> Option<Signal> {
        self.signals.pop_front()
    }

    /// The next room event for services.
    pub fn poll_room_event(&mut self) -> Option<RoomEvent> {
        self.room_events.pop_front()
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

    // ---- data ------------------------------------------------------------------------------

    pub(crate) fn on_channel_data(&mut self, now: Instant, pc: PeerId, data: ChannelData) {
        let Some(peer) = self.peers.get(&pc) else { return };
        let (room, identity) = (peer.room.clone(), peer.identity.clone());
        let Some(p) = self.participant(&room, &identity) else { return };
        let conn = p.conn;
        let refuse = |sfu: &mut Sfu, code: &'static str, message: &str| {
            if let Some(conn) = conn {
                sfu.refuse(conn, Refusal::new(code, message));
            }
        };
        if !p.permissions.publish_data {
            return refuse(self, "not_allowed", "you may not send data in this room");
        }
        let parsed = (!data.binary && data.data.len() <= MAX_DATA)
            .then(|| serde_json::from_slice::<serde_json::Value>(&data.data).ok())
            .flatten()
            .filter(serde_json::Value::is_object);
        let Some(message) = parsed else {
            return refuse(self, "bad_data", "a data message is a JSON object as text, at most 16 KiB");
        };
        let bytes = serde_json::json!({ "from": identity, "message": message }).to_string();
        self.relay_data(now, &room, Some(&identity), bytes.as_bytes());
    }

    fn relay_data(&mut self, now: Instant, room: &RoomName, from: Option<&Identity>, bytes: &[u8]) {
        let Some(r) = self.rooms.get(room) else { return };
        let targets: Vec<PeerId> = r.participants.values().filter(|p| Some(&p.identity) != from).filter_map(|p| p.subscriber).collect();
        for pc in targets {
            let Some(peer) = self.peers.get_mut(&pc) else { continue };
            let Role::Downstream { channel, .. } = &peer.role else { continue };
            let channel = *channel;
            if let Some(mut ch) = peer.rtc.channel(channel)
                && let Err(e) = ch.write(false, bytes)
            {
                tracing::debug!(error = %e, "data channel write failed");
            }
            self.drain(now, pc);
        }
    }

    // ---- the room tick ---------------------------------------------------------------------

    /// Grace periods, speakers, quality samples and empty rooms, every [`ROOM_TICK`].
    pub(crate) fn room_tick(&mut self, now: Instant) {
        self.room_ticks += 1;
        let quality_due = self.room_ticks.is_multiple_of(QUALITY_EVERY);
        let grace = self.config.reconnect_grace;
        let names: Vec<RoomName> = self.rooms.keys().cloned().collect();
        for name in names {
            let mut expired = Vec::new();
            let healthy: Vec<(Identity, bool)> = self.rooms[&name]
                .participants
                .values()
                .filter(|p| p.kind == ParticipantKind::Rtc)
                .map(|p| {
                    let up = |pc: Option<PeerId>| pc.and_then(|pc| self.peers.get(&pc)).is_some_and(|x| x.disconnected_since.is_none());
                    (p.identity.clone(), p.conn.is_some() && up(p.subscriber) && (p.publisher.is_none() || up(p.publisher)))
                })
                .collect();
            for (identity, ok) in healthy {
                let Some(p) = self.participant_mut(&name, &identity) else { continue };
                if ok {
                    p.broken_since = None;
                } else if now.duration_since(*p.broken_since.get_or_insert(now)) >= grace {
                    expired.push(identity);
                }
            }
            for identity in expired {
                self.leave(now, &name, &identity, LeaveReason::Timeout);
            }
            self.announce_speakers(now, &name);
            if quality_due {
                self.sample_quality(&name);
            }
            let Some(r) = self.rooms.get_mut(&name) else { continue };
            if r.participants.is_empty() && !r.managed && r.policy.is_none() {
                let since = *r.empty_since.get_or_insert(now);
                let live_pcs = r.publishers.len() + r.subscribers.len();
                if live_pcs == 0 && now.duration_since(since) >= self.config.empty_room_timeout {
                    self.rooms.remove(&name);
                    tracing::info!(room = %name, "empty room closed");
                    self.room_events.push_back(RoomEvent::RoomClosed { room: name });
                }
            }
        }
        self.next_room_tick = (!self.rooms.is_empty()).then_some(now + ROOM_TICK);
    }

    fn announce_speakers(&mut self, now: Instant, room: &RoomName) {
        let Some(r) = self.rooms.get(room) else { return };
        let mut speakers: Vec<Speaker> = r
            .participants
            .values()
            .filter(|p| !p.hidden)
            .filter_map(|p| {
                let peer = self.peers.get(&p.publisher?)?;
                let Role::Publisher { tracks, .. } = &peer.role else { return None };
                let level = tracks
                    .values()
                    .filter(|t| t.forwarding && t.kind == MediaKind::Audio)
                    .filter_map(|t| t.audio_level)
                    .filter(|(level, at)| *level <= SPEAKING_LEVEL && now.duration_since(*at) < LEVEL_FRESH)
                    .map(|(level, _)| level)
                    .min()?;
                Some(Speaker { identity: p.identity.clone(), level: level.max(0) as u8 })
            })
            .collect();
        speakers.sort_by(|a, b| a.level.cmp(&b.level).then_with(|| a.identity.as_str().cmp(b.identity.as_str())));
        let who: Vec<Identity> = speakers.iter().map(|s| s.identity.clone()).collect();
        if self.rooms.get(room).is_some_and(|r| r.speakers != who) {
            if let Some(r) = self.rooms.get_mut(room) {
                r.speakers = who;
            }
            self.broadcast(room, None, ServerMessage::Speakers { speakers });
        }
    }

    fn sample_quality(&mut self, room: &RoomName) {
        let interval_ms = (ROOM_TICK * QUALITY_EVERY as u32).as_millis().max(1) as u64;
        let Some(r) = self.rooms.get(room) else { return };
        let members: Vec<(Identity, Vec<PeerId>, bool, bool)> = r
            .participants
            .values()
            .map(|p| (p.identity.clone(), [p.publisher, p.subscriber].into_iter().flatten().collect(), p.broken_since.is_some(), p.hidden))
            .collect();
        let mut views = Vec::new();
        for (identity, pcs, broken, hidden) in members {
            let mut loss: f32 = 0.0;
            let mut rtt: Option<u32> = None;
            let mut bytes = 0u64;
            for pc in pcs {
                let Some(peer) = self.peers.get_mut(&pc) else { continue };
                loss = loss.max(peer.loss.unwrap_or(0.0));
                if let Some(r) = peer.rtt {
                    rtt = Some(rtt.unwrap_or(0).max(r.as_millis() as u32));
                }
                bytes += peer.media_bytes.saturating_sub(peer.media_bytes_sampled);
                peer.media_bytes_sampled = peer.media_bytes;
            }
            let rating = if broken { QualityRating::Lost } else { QualityRating::from_figures(loss, rtt) };
            let sample = QualitySample { loss, rtt_ms: rtt, bitrate_kbps: (bytes * 8 / interval_ms) as u32, rating };
            if let Some(p) = self.participant_mut(room, &identity) {
                p.quality = Some(sample);
            }
            self.room_events.push_back(RoomEvent::Quality { room: room.clone(), identity: identity.clone(), sample });
            if !hidden {
                views.push(QualityView { identity, loss, rtt_ms: rtt, bitrate_kbps: sample.bitrate_kbps, rating });
            }
        }
        views.sort_by(|a, b| a.identity.as_str().cmp(b.identity.as_str()));
        self.broadcast(room, None, ServerMessage::Quality { participants: views });
    }

    // ---- small helpers ---------------------------------------------------------------------

    fn participant(&self, room: &RoomName, identity: &Identity) -> Option<&Participant> {
        self.rooms.get(room)?.participants.get(identity)
    }

    fn participant_mut(&mut self, room: &RoomName, identity: &Identity) -> Option<&mut Participant> {
        self.rooms.get_mut(room)?.participants.get_mut(identity)
    }

    fn send(&mut self, conn: ConnId, message: ServerMessage) {
        self.signals.push_back(Signal { conn, message: Some(message), close: false });
    }

    fn refuse(&mut self, conn: ConnId, refusal: Refusal) {
        self.send(conn, ServerMessage::error(refusal.0, refusal.1));
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
