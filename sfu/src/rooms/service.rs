//! What services do to rooms (`RoomControl`), and data relayed over the data channel.

use std::collections::HashSet;
use std::time::Instant;

use str0m::channel::ChannelData;
use str0m::media::{KeyframeRequestKind, MediaKind};
use tongxin_common::rooms::{Audience, LeaveReason, ParticipantInfo, Permissions, RoomError, RoomEvent, RoomInfo, TrackInfo, TrackSource};
use tongxin_common::{Identity, RoomName};

use crate::core::{Peer, PeerId, RemoveReason, Role, Sfu};
use crate::signal::{ServerMessage, TrackId};

use super::{MAX_DATA, ParticipantKind, Refusal, Signal, kind_str};

impl Sfu {
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
                self.announce(room, identity, ServerMessage::TrackUnpublished { participant: identity.clone(), track: *track });
            }
            if let Some(r) = self.rooms.get_mut(room) {
                for other in r.participants.values_mut() {
                    other.subscriptions.retain(|t| !gone.contains(t));
                }
            }
            self.subscribe_others(now, room, identity, &[]);
        }
        if kind == ParticipantKind::Whep && !permissions.subscribe {
            // A WHEP session is nothing but playing.
            self.leave(now, room, identity, LeaveReason::Kicked);
            return Ok(());
        }
        if before.subscribe != permissions.subscribe {
            let all: HashSet<TrackId> = self
                .rooms
                .get(room)
                .map(|r| {
                    let others = r.participants.values().filter(|o| &o.identity != identity && !o.hidden);
                    others.flat_map(|o| o.tracks.iter().map(|t| t.id)).collect()
                })
                .unwrap_or_default();
            if let Some(p) = self.participant_mut(room, identity) {
                p.subscriptions = if permissions.subscribe && p.auto_subscribe { all } else { HashSet::new() };
            }
            self.sync_subscriber(now, room, identity);
        }
        let message = ServerMessage::PermissionsChanged { participant: identity.clone(), permissions };
        self.announce(room, identity, message);
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
        let pc = p.publisher;
        self.bind_track_ins(room, identity);
        if !muted
            && kind == MediaKind::Video
            && let (Some(pc), Some(mid)) = (pc, mid)
        {
            // Subscribers wait for a keyframe before showing the track again.
            self.queue_keyframe_request(now, pc, mid, KeyframeRequestKind::Pli);
        }
        let message = ServerMessage::TrackMuted { participant: identity.clone(), track: id, muted };
        self.announce(room, identity, message);
        Ok(())
    }

    /// Sets who receives a participant's tracks; everyone else's subscriber connection follows
    /// at once (tracks taken away stop forwarding before the new offer is even answered).
    pub fn set_audience(&mut self, now: Instant, room: &RoomName, identity: &Identity, audience: Audience) -> Result<(), RoomError> {
        let r = self.rooms.get_mut(room).ok_or(RoomError::NoSuchRoom)?;
        if audience == Audience::Everyone {
            r.audiences.remove(identity);
        } else {
            r.audiences.insert(identity.clone(), audience);
        }
        let others: Vec<Identity> = r.participants.keys().filter(|i| *i != identity).cloned().collect();
        for other in others {
            self.sync_subscriber(now, room, &other);
        }
        self.attach_waiting_subscribers(now, room);
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

    /// How many rooms are open and how many participants are in them.
    pub fn room_counts(&self) -> (usize, usize) {
        (self.rooms.len(), self.rooms.values().map(|r| r.participants.len()).sum())
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
                        path: p.subscriber.or(p.publisher).and_then(|pc| self.peers.get(&pc)).and_then(Peer::path),
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

    pub(crate) fn on_channel_data(&mut self, now: Instant, pc: PeerId, data: ChannelData) {
        let Some(peer) = self.peers.get(&pc) else { return };
        let (room, identity) = (peer.room.clone(), peer.identity.clone());
        let Some(p) = self.participant(&room, &identity) else { return };
        let (conn, hidden) = (p.conn, p.hidden);
        let refuse = |sfu: &mut Sfu, code: &'static str, message: &str| {
            if let Some(conn) = conn {
                sfu.refuse(conn, "data", Refusal::new(code, message));
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
        // A hidden participant is never named, not even as a sender.
        let from = (!hidden).then_some(&identity);
        let bytes = serde_json::json!({ "from": from, "message": message }).to_string();
        self.relay_data(now, &room, Some(&identity), bytes.as_bytes());
    }

    pub(super) fn relay_data(&mut self, now: Instant, room: &RoomName, from: Option<&Identity>, bytes: &[u8]) {
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
}
