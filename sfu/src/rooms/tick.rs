//! The room tick: grace periods, speakers, quality samples and empty rooms.

use std::time::{Duration, Instant};

use str0m::media::MediaKind;
use tongxin_common::rooms::{LeaveReason, QualityRating, QualitySample, RoomEvent};
use tongxin_common::{Identity, RoomName};

use crate::core::{PeerId, Role, Sfu};
use crate::signal::{QualityView, ServerMessage, Speaker};

use super::ParticipantKind;

/// How often rooms are looked after (grace periods, speakers); quality goes out every fourth tick.
pub(super) const ROOM_TICK: Duration = Duration::from_millis(500);
const QUALITY_EVERY: u64 = 4;
/// The loudest level (−dBov) that still counts as silence, and how long a level stays fresh.
const SPEAKING_LEVEL: i8 = 60;
const LEVEL_FRESH: Duration = Duration::from_millis(1000);

impl Sfu {
    /// Grace periods, speakers, quality samples and empty rooms, every [`ROOM_TICK`].
    pub(crate) fn room_tick(&mut self, now: Instant) {
        self.room_ticks += 1;
        self.select_layers(now, ROOM_TICK.as_secs_f64());
        let quality_due = self.room_ticks.is_multiple_of(QUALITY_EVERY);
        let grace = self.config.reconnect_grace;
        let names: Vec<RoomName> = self.rooms.keys().cloned().collect();
        for name in names {
            let mut expired = Vec::new();
            let Some(room) = self.rooms.get(&name) else { continue };
            let healthy: Vec<(Identity, bool)> = room
                .participants
                .values()
                .filter(|p| p.kind == ParticipantKind::Rtc)
                .map(|p| {
                    // Healthy: the socket is open and the connections are up; a participant with
                    // tracks needs its publisher connection too (or must publish again in time).
                    let up = |pc: Option<PeerId>| pc.and_then(|pc| self.peers.get(&pc)).is_some_and(|x| x.disconnected_since.is_none());
                    (p.identity.clone(), p.conn.is_some() && up(p.subscriber) && (p.tracks.is_empty() || up(p.publisher)))
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

    pub(super) fn announce_speakers(&mut self, now: Instant, room: &RoomName) {
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

    pub(super) fn sample_quality(&mut self, room: &RoomName) {
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
}
