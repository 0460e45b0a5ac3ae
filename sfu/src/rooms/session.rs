//! The room protocol's side of a participant: join and resume, the subscriber connection's
//! offers, publishing, subscriptions and the other client frames.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{Direction, MediaKind, Mid};
use tongxin_common::rooms::{LeaveReason, TrackSource};
use tongxin_common::{Identity, JoinGrant, RoomName};

use crate::core::{RemoveReason, Role, Sfu, TrackOut};
use crate::sdp::{first_line, usable_media};
use crate::signal::{ClientMessage, ConnId, ParticipantView, PcTarget, PublishTrack, RoomView, ServerMessage, TrackId, TrackView};

use super::{Participant, ParticipantKind, Refusal, Signal, Track, bind_tracks, new_credential, out_map, source_fits};

impl Sfu {
    /// A `join` on connection `conn`, with the grant its token carried (already verified) and
    /// the resume credential it sent. Answers go out as [`Signal`]s.
    pub fn join(&mut self, now: Instant, conn: ConnId, grant: Option<JoinGrant>, resume: Option<String>, auto_subscribe: bool) {
        if self.conns.contains_key(&conn) {
            return self.refuse(conn, "join", Refusal::new("already_joined", "this connection has already joined"));
        }
        if let Some(credential) = resume.as_deref()
            && let Some((room, identity)) = self.find_resumable(credential)
            && grant.as_ref().is_none_or(|g| g.room == room && g.identity == identity)
        {
            return self.resume(now, conn, &room, &identity);
        }
        let Some(grant) = grant else {
            self.refuse(
                conn,
                "join",
                Refusal::new("unauthorized", "the resume credential is unknown or expired, and no valid token was given"),
            );
            return self.signals.push_back(Signal { conn, message: None, close: true });
        };
        if let Err(e) = self.check_capacity(&grant.room, &grant.identity) {
            self.refuse(conn, "join", e.into());
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

    pub(super) fn find_resumable(&self, credential: &str) -> Option<(RoomName, Identity)> {
        self.rooms.iter().find_map(|(name, room)| {
            room.participants
                .values()
                .find(|p| p.kind == ParticipantKind::Rtc && p.resume.as_deref() == Some(credential))
                .map(|p| (name.clone(), p.identity.clone()))
        })
    }

    pub(super) fn resume(&mut self, now: Instant, conn: ConnId, room: &RoomName, identity: &Identity) {
        let Some(p) = self.participant_mut(room, identity) else { return };
        let old_conn = p.conn.replace(conn);
        let old_pcs = [p.publisher.take(), p.subscriber.take()];
        p.broken_since = None;
        for t in &mut p.tracks {
            t.mid = None;
        }
        if let Some(old) = old_conn {
            self.conns.remove(&old);
            // The old socket learns why, so its page does not rejoin and take the place back.
            let message = Some(ServerMessage::Removed { reason: LeaveReason::Replaced });
            self.signals.push_back(Signal { conn: old, message, close: true });
        }
        for pc in old_pcs.into_iter().flatten() {
            self.remove(now, pc, RemoveReason::Replaced);
        }
        self.conns.insert(conn, (room.clone(), identity.clone()));
        tracing::info!(room = %room, "participant resumed");
        self.send_joined(now, conn, room, identity, true);
    }

    /// `joined` with a fresh resume credential, then the first offer of a new subscriber connection.
    pub(super) fn send_joined(&mut self, now: Instant, conn: ConnId, room_name: &RoomName, identity: &Identity, resumed: bool) {
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
    pub(super) fn wanted_tracks(&self, room: &RoomName, identity: &Identity) -> Vec<(TrackId, MediaKind, u64)> {
        let Some(r) = self.rooms.get(room) else { return Vec::new() };
        let Some(p) = r.participants.get(identity) else { return Vec::new() };
        if !p.permissions.subscribe {
            return Vec::new();
        }
        let mut wanted: Vec<(TrackId, MediaKind, u64)> = r
            .participants
            .values()
            .filter(|o| &o.identity != identity && r.admits(&o.identity, p.role))
            .flat_map(|o| o.tracks.iter().map(move |t| (t.id, t.kind, o.sid)))
            .filter(|(id, _, _)| p.subscriptions.contains(id))
            .collect();
        wanted.sort_by_key(|(id, _, _)| *id);
        wanted
    }

    pub(super) fn open_subscriber(&mut self, now: Instant, room: &RoomName, identity: &Identity) {
        let Some(p) = self.rooms.get(room).and_then(|r| r.participants.get(identity)) else { return };
        let (conn, role) = (p.conn, p.role);
        let wanted = self.wanted_tracks(room, identity);
        let mut rtc = self.new_rtc(now, room, true);
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
        let role_state = Role::Downstream { outs, pending: Some(pending), needs_offer: false, negotiated: false, channel };
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
    pub(super) fn sync_subscriber(&mut self, now: Instant, room: &RoomName, identity: &Identity) {
        let wanted = self.wanted_tracks(room, identity);
        let Some(p) = self.rooms.get(room).and_then(|r| r.participants.get(identity)) else { return };
        let (Some(pc), conn) = (p.subscriber, p.conn) else { return };
        let Some(peer) = self.peers.get_mut(&pc) else { return };
        let crate::core::Peer { rtc, role, .. } = peer;
        let Role::Downstream { outs, pending, needs_offer, .. } = role else { return };
        let wanted_ids: HashSet<TrackId> = wanted.iter().map(|(id, _, _)| *id).collect();
        // Unwanted tracks stop at once, even while an offer is out: forwarding follows `track`.
        for out in outs.iter_mut() {
            if out.track.is_some_and(|t| !wanted_ids.contains(&t)) {
                out.track = None;
                out.source = None;
            }
        }
        if pending.is_some() {
            *needs_offer = true;
            return;
        }
        let mut api = rtc.sdp_api();
        // M-lines that carry nothing any more are stopped; str0m recycles their slots.
        outs.retain(|out| {
            if out.track.is_none() {
                api.stop_media(out.mid);
            }
            out.track.is_some()
        });
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
        let refused = message.type_name();
        let Some((room, identity)) = self.conns.get(&conn).cloned() else {
            return self.refuse(conn, refused, Refusal::new("not_joined", "send join first"));
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
                    if c.kind() == str0m::CandidateKind::Relayed {
                        peer.relay_addrs.insert(c.addr());
                    }
                    peer.rtc.add_remote_candidate(c);
                }
                Ok(())
            }
            ClientMessage::Subscribe { tracks } => self.on_subscribe(now, &room, &identity, &tracks, true),
            ClientMessage::Unsubscribe { tracks } => self.on_subscribe(now, &room, &identity, &tracks, false),
            ClientMessage::Mute { source, muted } => {
                self.set_muted(now, &room, &identity, source, muted).map_err(|_| Refusal::new("unknown_track", "you publish no such track"))
            }
            ClientMessage::VideoQuality { track, max } => {
                let pc = self.participant(&room, &identity).and_then(|p| p.subscriber);
                let out = pc.and_then(|pc| self.peers.get_mut(&pc)).and_then(|peer| match &mut peer.role {
                    Role::Downstream { outs, .. } => outs.iter_mut().find(|o| o.track == Some(track)),
                    _ => None,
                });
                match out {
                    Some(out) => {
                        out.max_layer = max.max_layer();
                        Ok(())
                    }
                    None => Err(Refusal::new("unknown_track", format!("you receive no track t{}", track.0))),
                }
            }
            ClientMessage::Budget { kbps } => match kbps {
                Some(k) if !(16..=100_000).contains(&k) => Err(Refusal::new("bad_message", "a budget is 16 to 100000 kbit/s, or null")),
                _ => {
                    if let Some(p) = self.participant_mut(&room, &identity) {
                        p.budget_bps = kbps.map(|k| f64::from(k) * 1000.0);
                    }
                    Ok(())
                }
            },
            ClientMessage::Leave => {
                self.leave(now, &room, &identity, LeaveReason::Left);
                Ok(())
            }
            ClientMessage::Ping => Ok(()),
        };
        if let Err(refusal) = result {
            self.refuse(conn, refused, refusal);
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

    pub(super) fn on_answer(&mut self, now: Instant, room: &RoomName, identity: &Identity, sdp: &str) -> Result<(), Refusal> {
        let pc = self
            .participant(room, identity)
            .and_then(|p| p.subscriber)
            .ok_or_else(|| Refusal::new("bad_message", "no offer is pending"))?;
        let answer = SdpAnswer::from_sdp_string(sdp).map_err(|e| Refusal::new("bad_sdp", first_line(&e.to_string())))?;
        let Some(peer) = self.peers.get_mut(&pc) else { return Err(Refusal::new("bad_message", "no offer is pending")) };
        peer.relay_addrs.extend(crate::sdp::relay_addrs(sdp));
        let crate::core::Peer { rtc, role, .. } = peer;
        let Role::Downstream { pending, needs_offer, negotiated, outs, .. } = role else {
            return Err(Refusal::new("internal", "not a subscriber"));
        };
        let Some(pend) = pending.take() else { return Err(Refusal::new("bad_message", "no offer is pending")) };
        let again = std::mem::take(needs_offer);
        let first = !*negotiated;
        let result = rtc.sdp_api().accept_answer(pend, answer);
        match &result {
            Ok(()) => *negotiated = true,
            // The refused offer's new m-lines are gone; their tracks go out again in a fresh offer.
            Err(_) => outs.retain(|o| rtc.media(o.mid).is_some()),
        }
        self.drain(now, pc);
        if let Err(e) = result {
            if first {
                // Nothing was ever negotiated: start the connection over with a fresh offer.
                self.remove(now, pc, RemoveReason::Failed);
                self.open_subscriber(now, room, identity);
            } else {
                self.sync_subscriber(now, room, identity);
            }
            return Err(Refusal::new("bad_sdp", format!("{}; a fresh offer follows", first_line(&e.to_string()))));
        }
        if again {
            self.sync_subscriber(now, room, identity);
        }
        Ok(())
    }

    pub(super) fn on_publish(
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
                let mut rtc = self.new_rtc(now, room, false);
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
        if let Some(peer) = self.peers.get_mut(&pc) {
            peer.relay_addrs.extend(crate::sdp::relay_addrs(sdp));
        }
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
        let sdp = crate::sdp::tune_opus(&answer);
        self.send(conn, ServerMessage::PublishAnswer { sdp, tracks: answer_tracks });
        // A renegotiation may have given the page fresh senders: the pauses in force are repeated.
        let paused: Vec<(TrackId, Vec<String>)> = match self.peers.get(&pc).map(|p| &p.role) {
            Some(Role::Publisher { tracks, .. }) => tracks
                .values()
                .filter_map(|t| Some((t.track?, t.pause.paused())))
                .filter(|(_, rids)| !rids.is_empty())
                .map(|(id, rids)| (id, rids.iter().map(|r| r.to_string()).collect()))
                .collect(),
            _ => Vec::new(),
        };
        for (track, paused) in paused {
            self.send(conn, ServerMessage::Layers { track, paused });
        }
        for track in unpublished {
            self.announce(room, identity, ServerMessage::TrackUnpublished { participant: identity.clone(), track });
        }
        for track in &published {
            self.announce(room, identity, ServerMessage::TrackPublished { participant: identity.clone(), track: track.clone() });
        }
        let ids: Vec<TrackId> = published.iter().map(|t| t.id).collect();
        self.subscribe_others(now, room, identity, &ids);
        self.drain(now, pc);
        Ok(())
    }

    /// Sets a participant's tracks to `lines`, keeping the ids of sources it already had. Returns
    /// the tracks that are new and the ids of those gone.
    pub(super) fn update_tracks(
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
    pub(super) fn bind_track_ins(&mut self, room: &RoomName, identity: &Identity) {
        let Some(p) = self.rooms.get(room).and_then(|r| r.participants.get(identity)) else { return };
        if let Some(peer) = p.publisher.and_then(|pc| self.peers.get_mut(&pc)) {
            bind_tracks(&mut peer.role, p);
        }
    }

    /// Adds freshly published tracks to the subscriptions of everyone who receives automatically.
    pub(super) fn subscribe_others(&mut self, now: Instant, room: &RoomName, owner: &Identity, tracks: &[TrackId]) {
        let Some(r) = self.rooms.get_mut(room) else { return };
        // A hidden participant's tracks are never handed out unasked.
        let hidden_owner = r.participants.get(owner).is_some_and(|o| o.hidden);
        let mut changed = Vec::new();
        for p in r.participants.values_mut() {
            if &p.identity == owner || p.kind != ParticipantKind::Rtc {
                continue;
            }
            if p.auto_subscribe && p.permissions.subscribe && !tracks.is_empty() && !hidden_owner {
                p.subscriptions.extend(tracks.iter().copied());
            }
            changed.push(p.identity.clone());
        }
        for identity in changed {
            self.sync_subscriber(now, room, &identity);
        }
    }

    pub(super) fn on_subscribe(
        &mut self,
        now: Instant,
        room: &RoomName,
        identity: &Identity,
        tracks: &[TrackId],
        on: bool,
    ) -> Result<(), Refusal> {
        let r = self.rooms.get(room).ok_or_else(|| Refusal::new("internal", "room vanished"))?;
        let known: HashSet<TrackId> =
            r.participants.values().filter(|o| &o.identity != identity && !o.hidden).flat_map(|o| o.tracks.iter().map(|t| t.id)).collect();
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
}
