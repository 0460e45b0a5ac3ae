//! Renditions: lower layers the transcoder makes of a publisher's single H.264 layer (a teacher
//! on OBS, a doctor's phone), served to subscribers like simulcast layers of the same track; and,
//! while it makes them, speech-sized Opus of a publisher whose audio is music-sized (OBS sends
//! 128 kbit/s), for the subscribers on weak links.
//!
//! The core stays sans-IO: it decides when a track needs renditions (a subscriber whose budget
//! does not carry the publisher's one layer, or a publisher whose room role has them made from
//! the start: a lesson's teacher) and when they are no longer used, and says so as
//! [`TranscodeOp`]s, with a copy of every packet of the track for the job; the media task runs the
//! jobs (`tongxin-transcoder`, each on its own thread) and hands their frames back through
//! [`Sfu::handle_rendition`]. A keyframe request for a rendition reaches the job's encoder
//! ([`TranscodeOp::Keyframe`]), never the publisher; the job asks the publisher itself when it
//! lost its place in the source ([`Sfu::rendition_lost_source`]).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use str0m::format::Codec;
use str0m::media::{KeyframeRequestKind, MediaKind, Mid};
use str0m::rtp::Ssrc;
use tongxin_common::RoomRole;
use tongxin_transcoder::{AudioPolicy, LadderPolicy, ReencodedPacket, Rung, RungFrame, SourceCodec, SourceTrack};

use crate::core::{Outgoing, PeerId, Role, Sfu};

/// A transcoder job's id, unique in the server's life.
pub type JobId = u64;

/// Which of a track's layers, and so who makes its keyframes: one of its publisher's encodings
/// (by SSRC), or a rendition (by job and rung).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LayerKey {
    /// What the publisher sends (a simulcast rid, or its only encoding).
    Encoding(Ssrc),
    /// What a transcoder job makes of it: its rung's index.
    Rendition(JobId, usize),
}

/// What the media task must do with the transcoder, in order.
#[derive(Debug)]
pub enum TranscodeOp {
    /// Start a job making these rungs (highest first).
    Start {
        /// The job.
        job: JobId,
        /// Its renditions.
        rungs: Vec<Rung>,
    },
    /// Start a job re-encoding an Opus track to this bitrate (mono, in-band FEC, DTX).
    StartAudio {
        /// The job.
        job: JobId,
        /// Its bitrate, bit/s.
        target_bps: u32,
    },
    /// A packet of the job's source track.
    Packet {
        /// The job.
        job: JobId,
        /// The packet as the publisher sent it.
        packet: tongxin_transcoder::RtpPacket,
    },
    /// A subscriber needs a keyframe of this rendition.
    Keyframe {
        /// The job.
        job: JobId,
        /// The rung (index in [`TranscodeOp::Start`]'s `rungs`).
        rung: usize,
    },
    /// Nobody uses the job's renditions any more, or its track went away.
    Stop {
        /// The job.
        job: JobId,
    },
}

/// `[transcode]`: when renditions are made.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TranscodeConfig {
    /// Make renditions at all.
    pub enabled: bool,
    /// The most jobs at once (each takes 0.1-0.3 of a core for a 720p30 source, by machine: three
    /// leave two cores room to forward); past it a subscriber that needs a rendition gets audio
    /// only, and the refusal is counted.
    pub max_jobs: usize,
    /// The renditions of a 1280×720 source (a portrait or smaller source is fitted by the job).
    pub ladder: LadderPolicy,
    /// Publishers in these room roles get renditions of their lone layer as soon as its rate is
    /// measured, before a subscriber needs them (a lesson's teacher: a classroom that joins on a
    /// weak link is served at once). Their jobs run while they publish and count against
    /// `max_jobs` like any other.
    pub always_for: Vec<RoomRole>,
    /// Whose Opus is re-encoded, and to what, while their video has renditions.
    pub audio: AudioPolicy,
}

/// Off unless the server is configured (`tongxin serve` turns it on): a core without a media
/// task to run its jobs (the sans-IO tests) would wait for renditions that never come.
impl Default for TranscodeConfig {
    fn default() -> Self {
        TranscodeConfig {
            enabled: false,
            max_jobs: 3,
            ladder: LadderPolicy::default(),
            always_for: vec![RoomRole::Teacher],
            audio: AudioPolicy::default(),
        }
    }
}

/// A job stops once none of its renditions has been needed or carried for this long.
const IDLE_STOP: Duration = Duration::from_secs(30);
/// The source size rungs are planned for before the job has decoded a frame (it fits them to the
/// real size: a phone's portrait picture keeps its shape).
const ASSUMED_SOURCE: (u32, u32) = (1280, 720);

/// A track's renditions while its job runs.
#[derive(Debug)]
pub(crate) struct Renditions {
    pub(crate) job: JobId,
    pub(crate) layers: Vec<RenditionIn>,
    /// When a subscriber last needed or carried one of them.
    used_at: Instant,
}

/// One rendition as the layer choice sees it.
#[derive(Debug)]
pub(crate) struct RenditionIn {
    /// Bytes since the last rate measurement, and the rate (bit/s; the rung's target until
    /// measured).
    pub(crate) bytes: u64,
    pub(crate) bps: f64,
    /// The next sequence number of its packets (the job's own restart with each job).
    next_seq: u64,
    /// Whether the job has made a frame of it yet: only then is it offered to subscribers.
    pub(crate) live: bool,
}

/// Per room tick: which single-layer tracks some subscriber needs renditions of, and which
/// carry one now.
#[derive(Debug, Default)]
pub(crate) struct RenditionDemand {
    pub(crate) needed: HashSet<(PeerId, Mid)>,
    pub(crate) used: HashSet<(PeerId, Mid)>,
}

impl Sfu {
    /// The transcoder's next instruction for the media task.
    pub fn poll_transcode(&mut self) -> Option<TranscodeOp> {
        self.transcode_ops.pop_front()
    }

    /// Jobs refused for want of a free slot (`max_jobs`), since the start.
    pub fn transcode_refusals(&self) -> u64 {
        self.transcode_refusals
    }

    /// A rendition's frame from job `job`: forwarded to the subscribers given that rendition.
    pub fn handle_rendition(&mut self, now: Instant, job: JobId, frame: &RungFrame) {
        let Some((publisher, mid)) = self.job_track(job) else { return };
        let Some(peer) = self.peers.get_mut(&publisher) else { return };
        let room = peer.room.clone();
        let params = peer.rtc.codec_config().find(|p| p.spec().codec == Codec::H264).copied();
        let Role::Publisher { tracks, .. } = &mut peer.role else { return };
        let Some(track) = tracks.get_mut(&mid) else { return };
        let Some(params) = params else { return };
        let track_id = track.track;
        if !track.forwarding {
            return;
        }
        let Some(renditions) = track.renditions.as_mut() else { return };
        let mut keys: Vec<_> = (0..renditions.layers.len()).map(|r| LayerKey::Rendition(job, r)).collect();
        keys.extend(track.ssrc.map(LayerKey::Encoding));
        let Some(layer) = renditions.layers.get_mut(frame.rung) else { return };
        let mut packets = Vec::with_capacity(frame.packets.len());
        for (i, p) in frame.packets.iter().enumerate() {
            layer.bytes += p.payload.len() as u64;
            layer.live = true;
            layer.next_seq += 1;
            let payload: Arc<[u8]> = Arc::from(&p.payload[..]);
            packets.push((layer.next_seq, p.marker, payload, frame.keyframe && i == 0));
        }
        let mut wants_keyframe = false;
        for (seq, marker, payload, first_of_keyframe) in packets {
            let packet = Outgoing {
                from: publisher,
                track: track_id,
                kind: MediaKind::Video,
                params,
                layer: LayerKey::Rendition(job, frame.rung),
                layers: &keys,
                seq,
                ts: frame.rtp_timestamp,
                marker,
                payload,
                keyframe: first_of_keyframe,
                ext: Default::default(),
                wallclock: now,
            };
            wants_keyframe |= self.fan_out(now, &room, &packet);
        }
        if wants_keyframe {
            self.request_layer_keyframe(now, publisher, LayerKey::Rendition(job, frame.rung), KeyframeRequestKind::Pli);
        }
    }

    /// A re-encoded Opus packet from job `job`: forwarded to the subscribers given it.
    pub fn handle_audio_rendition(&mut self, now: Instant, job: JobId, packet: &ReencodedPacket) {
        let Some((publisher, mid)) = self.job_track(job) else { return };
        let Some(peer) = self.peers.get_mut(&publisher) else { return };
        let room = peer.room.clone();
        let Some(params) = peer.rtc.codec_config().find(|p| p.spec().codec == Codec::Opus).copied() else { return };
        let Role::Publisher { tracks, .. } = &mut peer.role else { return };
        let Some(track) = tracks.get_mut(&mid).filter(|t| t.forwarding) else { return };
        let track_id = track.track;
        let Some(renditions) = track.renditions.as_mut() else { return };
        let mut keys = vec![LayerKey::Rendition(job, 0)];
        keys.extend(track.ssrc.map(LayerKey::Encoding));
        let Some(layer) = renditions.layers.first_mut() else { return };
        layer.bytes += packet.payload.len() as u64;
        layer.live = true;
        layer.next_seq += 1;
        let outgoing = Outgoing {
            from: publisher,
            track: track_id,
            kind: MediaKind::Audio,
            params,
            layer: LayerKey::Rendition(job, 0),
            layers: &keys,
            seq: layer.next_seq,
            ts: packet.rtp_timestamp,
            marker: false,
            payload: Arc::from(&packet.payload[..]),
            keyframe: false,
            ext: Default::default(),
            wallclock: now,
        };
        self.fan_out(now, &room, &outgoing);
    }

    /// Asks whoever makes layer `key` of `publisher`'s track for a keyframe: the publisher for
    /// its own encodings, the job's encoder for a rendition.
    pub(crate) fn request_layer_keyframe(&mut self, now: Instant, publisher: PeerId, key: LayerKey, kind: KeyframeRequestKind) {
        match key {
            LayerKey::Encoding(ssrc) => {
                let Some(Role::Publisher { ssrc_mid, tracks, .. }) = self.peers.get(&publisher).map(|p| &p.role) else { return };
                let Some(mid) = ssrc_mid.get(&ssrc).copied() else { return };
                let rid = tracks.get(&mid).and_then(|t| t.layers.iter().find(|l| l.ssrc == ssrc)).map(|l| l.rid);
                match rid {
                    Some(rid) => self.queue_layer_keyframe_request(now, publisher, mid, rid, kind),
                    None => self.queue_keyframe_request(now, publisher, mid, kind),
                }
            }
            LayerKey::Rendition(job, rung) => {
                // As for a publisher's layers: at most one request per interval (a burst of
                // subscriber PLIs is one IDR).
                let interval = self.config.keyframe_request_interval;
                let due = self.rendition_keyframes.get(&(job, rung)).is_none_or(|t| now.saturating_duration_since(*t) >= interval);
                if due {
                    self.rendition_keyframes.insert((job, rung), now);
                    self.transcode_ops.push_back(TranscodeOp::Keyframe { job, rung });
                }
            }
        }
    }

    /// Job `job` lost its place in the source (a gap, a full queue, a restart): its publisher is
    /// asked for a keyframe.
    pub fn rendition_lost_source(&mut self, now: Instant, job: JobId) {
        if let Some((publisher, mid)) = self.job_track(job) {
            self.queue_keyframe_request(now, publisher, mid, KeyframeRequestKind::Pli);
        }
    }

    /// The publisher track job `job` transcodes.
    fn job_track(&self, job: JobId) -> Option<(PeerId, Mid)> {
        self.peers.iter().find_map(|(id, p)| match &p.role {
            Role::Publisher { tracks, .. } => {
                tracks.iter().find(|(_, t)| t.renditions.as_ref().is_some_and(|r| r.job == job)).map(|(mid, _)| (*id, *mid))
            }
            _ => None,
        })
    }

    /// Starts jobs for tracks some subscriber needs renditions of (while slots are free) and
    /// stops those nobody needed or carried for [`IDLE_STOP`]. Called every room tick.
    pub(crate) fn manage_renditions(&mut self, now: Instant, demand: &RenditionDemand) {
        if !self.config.transcode.enabled {
            return;
        }
        let mut running = 0;
        let mut eager = HashSet::new();
        let mut start = Vec::new();
        let mut stopped = Vec::new();
        for (id, peer) in &mut self.peers {
            let Role::Publisher { tracks, .. } = &mut peer.role else { continue };
            // A lesson's teacher (by policy): from the moment the lone layer's rate is known.
            let always = self.config.transcode.always_for.contains(&peer.room_role);
            for (mid, track) in tracks.iter_mut().filter(|(_, t)| t.kind == MediaKind::Video) {
                let key = (*id, *mid);
                let lone = track.h264 && track.layers.len() < 2 && track.ssrc.is_some();
                if always && lone && track.bps > 0.0 {
                    eager.insert(key);
                }
                let needed = demand.needed.contains(&key) || eager.contains(&key);
                match track.renditions.as_mut() {
                    Some(r) if needed || demand.used.contains(&key) => {
                        r.used_at = now;
                        running += 1;
                    }
                    Some(r) if now.saturating_duration_since(r.used_at) >= IDLE_STOP => {
                        stopped.push((key, r.job));
                        track.renditions = None;
                    }
                    Some(_) => running += 1,
                    None if needed && track.h264 => start.push((key, track.bps)),
                    None => {}
                }
            }
        }
        // A refusal counts once while the track keeps needing a job.
        self.transcode_refused.retain(|key| demand.needed.contains(key) || eager.contains(key));
        for ((publisher, mid), job) in stopped {
            tracing::info!(job, "transcoder job stops: nobody needs its renditions");
            self.rendition_keyframes.retain(|(j, _), _| *j != job);
            self.transcode_ops.push_back(TranscodeOp::Stop { job });
            self.forget_renditions(now, publisher, mid);
        }
        start.sort_by_key(|((p, m), _)| (p.0, m.to_string()));
        for ((publisher, mid), bps) in start {
            if running >= self.config.transcode.max_jobs {
                if self.transcode_refused.insert((publisher, mid)) {
                    self.transcode_refusals += 1;
                    tracing::warn!(max_jobs = self.config.transcode.max_jobs, "no transcoder slot: a subscriber gets audio only");
                }
                continue;
            }
            let source = SourceTrack {
                codec: SourceCodec::H264,
                width: ASSUMED_SOURCE.0,
                height: ASSUMED_SOURCE.1,
                fps: 30.0,
                bitrate_bps: bps as u32,
            };
            let rungs = tongxin_transcoder::plan(&source, &self.config.transcode.ladder);
            if rungs.is_empty() {
                continue;
            }
            let job = self.next_job;
            self.next_job += 1;
            running += 1;
            self.transcode_refused.remove(&(publisher, mid));
            let Some(Role::Publisher { tracks, .. }) = self.peers.get_mut(&publisher).map(|p| &mut p.role) else { continue };
            let Some(track) = tracks.get_mut(&mid) else { continue };
            let layers = rungs.iter().map(|r| RenditionIn { bytes: 0, bps: f64::from(r.bitrate_bps), next_seq: 0, live: false }).collect();
            track.renditions = Some(Renditions { job, layers, used_at: now });
            tracing::info!(job, rungs = ?rungs.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), "transcoder job starts");
            self.transcode_ops.push_back(TranscodeOp::Start { job, rungs });
            // The job starts decoding at a keyframe.
            self.queue_keyframe_request(now, publisher, mid, KeyframeRequestKind::Pli);
        }
        self.manage_audio_renditions(now);
    }

    /// A publisher's Opus louder than the policy's threshold (OBS's music-sized audio) is
    /// re-encoded while one of its video tracks has renditions: the subscribers that need those
    /// are on weak links. Such jobs are light (a few percent of a core) and not counted against
    /// `max_jobs`; one lasts as long as its publisher's video job, through pauses in speech
    /// (DTX drops the measured rate).
    fn manage_audio_renditions(&mut self, now: Instant) {
        let policy = self.config.transcode.audio;
        let mut start = Vec::new();
        let mut stopped = Vec::new();
        for (id, peer) in &mut self.peers {
            let Role::Publisher { tracks, .. } = &mut peer.role else { continue };
            let video_job = tracks.values().any(|t| t.kind == MediaKind::Video && t.renditions.is_some());
            for (mid, track) in tracks.iter_mut().filter(|(_, t)| t.kind == MediaKind::Audio) {
                match &track.renditions {
                    Some(r) if !video_job => {
                        stopped.push(((*id, *mid), r.job));
                        track.renditions = None;
                    }
                    None if video_job && track.ssrc.is_some() && policy.should_reencode(track.bps as u32) => {
                        let job = self.next_job;
                        self.next_job += 1;
                        let layer = RenditionIn { bytes: 0, bps: f64::from(policy.target_bps), next_seq: 0, live: false };
                        track.renditions = Some(Renditions { job, layers: vec![layer], used_at: now });
                        start.push((job, track.bps));
                    }
                    _ => {}
                }
            }
        }
        for (job, source_bps) in start {
            tracing::info!(job, source_bps, target_bps = policy.target_bps, "opus re-encoding starts");
            self.transcode_ops.push_back(TranscodeOp::StartAudio { job, target_bps: policy.target_bps });
        }
        for ((publisher, mid), job) in stopped {
            tracing::info!(job, "opus re-encoding stops");
            self.transcode_ops.push_back(TranscodeOp::Stop { job });
            self.forget_renditions(now, publisher, mid);
        }
    }

    /// Stops the jobs of a publisher that went away.
    pub(crate) fn stop_renditions_of(&mut self, tracks: &std::collections::HashMap<Mid, crate::core::TrackIn>) {
        for r in tracks.values().filter_map(|t| t.renditions.as_ref()) {
            self.transcode_ops.push_back(TranscodeOp::Stop { job: r.job });
            self.rendition_keyframes.retain(|(j, _), _| *j != r.job);
        }
    }

    /// Subscriber m-lines given one of a stopped job's renditions go back to the source (video
    /// from its next keyframe).
    fn forget_renditions(&mut self, now: Instant, publisher: PeerId, mid: Mid) {
        let (track_id, kind) = match self.peers.get(&publisher).map(|p| &p.role) {
            Some(Role::Publisher { tracks, .. }) => match tracks.get(&mid) {
                Some(t) => (t.track, t.kind),
                None => return,
            },
            _ => return,
        };
        let mut any = false;
        for peer in self.peers.values_mut() {
            let (outs, whep_source) = match &mut peer.role {
                Role::Subscriber { outs, source, .. } => (outs, *source),
                Role::Downstream { outs, .. } => (outs, None),
                Role::Publisher { .. } => continue,
            };
            for out in outs.iter_mut().filter(|o| o.kind == kind) {
                let of_track = (track_id.is_some() && out.track == track_id) || whep_source == Some(publisher);
                let on_rendition =
                    matches!(out.target, Some(LayerKey::Rendition(..))) || matches!(out.source, Some((_, LayerKey::Rendition(..))));
                if of_track && on_rendition {
                    out.source = None;
                    out.target = None;
                    any = true;
                }
            }
        }
        if any && kind == MediaKind::Video {
            self.queue_keyframe_request(now, publisher, mid, KeyframeRequestKind::Pli);
        }
    }
}
