//! Simulcast and weak links: measuring each incoming video layer's rate; per subscriber, keeping
//! audio's share (with redundancy on a lossy link, [`crate::red`]), turning video off in the
//! shedding order when its budget no longer carries the lowest layers (its room page is told:
//! "audio only"), and choosing the layer each m-line carries ([`crate::layers::LayerSelector`]).
//! Forwarding switches at the chosen layer's next keyframe, which is asked of that layer alone. A
//! room page is then told which of its layers nobody wants ([`crate::layers::LayerPause`]), so it
//! stops encoding and sending them.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use str0m::bwe::Bitrate;
use str0m::media::{KeyframeRequestKind, MediaKind, Mid, Rid};
use tongxin_common::RoomRole;

use crate::core::{PeerId, Role, Sfu};
use crate::estimate::EstimatorRequest;
use crate::layers::{LayerRate, UP_HEADROOM, VideoDemand, VideoShare, share_video, wanted_bps};
use crate::renditions::{LayerKey, RenditionDemand};
use crate::signal::{ServerMessage, TrackId};

/// Weight of the newest measurement in a layer's smoothed rate (keyframes make single
/// measurements jumpy).
const RATE_SMOOTHING: f64 = 0.25;
/// Kept for each audio m-line before video gets a share of the budget, bit/s (Opus with headers).
const AUDIO_RESERVE_BPS: f64 = 40_000.0;
/// How long a subscriber's budget must stay below a lone layer before a transcoder job is started
/// for it: a new connection's estimate starts at 300 kbit/s and finds a clean link within
/// seconds.
const NEEDED_FOR: Duration = Duration::from_secs(5);
/// Reported loss that shows a link no longer carries what it is sent.
const CONGESTION_LOSS: f32 = 0.02;
/// What redundancy adds to it: the previous frame again in every packet, bit/s. It is sent only
/// when the budget carries it, and rides on top of audio's share without taking video's: it
/// replaces what a lossy link drops, and a lossy link's estimate reads below what it carries.
const RED_EXTRA_BPS: f64 = 24_000.0;

/// A subscriber whose budget is under this many times a publisher's audio rate gets that
/// audio re-encoded, when the transcoder makes it (OBS's 128 kbit/s would take more than a
/// quarter of its link), as does one whose video of that publisher is off or a rendition.
const LOW_AUDIO_BELOW: f64 = 4.0;

/// An audio track with a re-encoded layer: which layer is which.
struct AudioLayers {
    publisher: PeerId,
    source: LayerKey,
    low: LayerKey,
    source_bps: f64,
}

/// A video track's layers, lowest rate first: its simulcast encodings, or its one encoding with
/// the renditions the transcoder makes of it, or its one encoding alone.
struct Layers {
    publisher: PeerId,
    mid: Mid,
    /// Each layer and its rid (simulcast encodings only); empty for a lone encoding whose SSRC
    /// is not known yet.
    keys: Vec<LayerKey>,
    rids: Vec<Option<Rid>>,
    rates: Vec<LayerRate>,
    /// One encoding without renditions: nothing to choose, only on or off.
    single: bool,
    /// Whether the transcoder could make renditions of it (one H.264 encoding).
    transcodable: bool,
    /// Its place in the shedding order: 0 for a lesson's or consult's lead, else 1.
    priority: u8,
}

/// A rate smoothed with the bytes measured over the last `secs` (the first measurement as it is).
fn smoothed(bps: f64, bytes: u64, secs: f64) -> f64 {
    let measured = bytes as f64 * 8.0 / secs.max(1e-3);
    if bps == 0.0 { measured } else { bps + RATE_SMOOTHING * (measured - bps) }
}

impl Sfu {
    /// Updates the layers' rates from the bytes seen since `since`, then picks each subscriber
    /// m-line's layer from its budget: the subscriber's own cap, when it set one, and the send-side
    /// estimate ([`crate::estimate::SendSide`]), when there is one; without either it gets the
    /// lowest layer. Each subscriber connection's estimator is told what it could use.
    pub(crate) fn select_layers(&mut self, now: Instant, elapsed_secs: f64) {
        let mut by_track: HashMap<TrackId, Layers> = HashMap::new();
        let mut by_publisher: HashMap<PeerId, Layers> = HashMap::new();
        let mut audio_by_track: HashMap<TrackId, AudioLayers> = HashMap::new();
        let mut audio_by_publisher: HashMap<PeerId, AudioLayers> = HashMap::new();
        for (id, peer) in &mut self.peers {
            let Role::Publisher { tracks, .. } = &mut peer.role else { continue };
            for track in tracks.values_mut().filter(|t| t.kind == MediaKind::Audio) {
                track.bps = smoothed(track.bps, track.bytes, elapsed_secs);
                track.bytes = 0;
                let Some(r) = track.renditions.as_mut() else { continue };
                let (Some(ssrc), Some(low)) = (track.ssrc, r.layers.first_mut().filter(|l| l.live)) else { continue };
                low.bps = smoothed(low.bps, low.bytes, elapsed_secs);
                low.bytes = 0;
                let layers = AudioLayers {
                    publisher: *id,
                    source: LayerKey::Encoding(ssrc),
                    low: LayerKey::Rendition(r.job, 0),
                    source_bps: track.bps,
                };
                match track.track {
                    Some(t) => audio_by_track.insert(t, layers),
                    None => audio_by_publisher.insert(*id, layers),
                };
            }
            for (mid, track) in tracks.iter_mut().filter(|(_, t)| t.kind == MediaKind::Video) {
                for layer in &mut track.layers {
                    // A paused layer keeps the rate it had: what resuming it would cost, and its
                    // place in the order (a silent top layer is not the new lowest).
                    if track.pause.is_paused(layer.rid) {
                        layer.bytes = 0;
                        continue;
                    }
                    layer.bps = smoothed(layer.bps, layer.bytes, elapsed_secs);
                    layer.bytes = 0;
                }
                track.bps = smoothed(track.bps, track.bytes, elapsed_secs);
                track.bytes = 0;
                let priority = if matches!(peer.room_role, RoomRole::Teacher | RoomRole::Doctor) { 0 } else { 1 };
                // (layer, rid, rate) of each layer: simulcast encodings, or the one encoding (its
                // SSRC unknown before its first packet) and the renditions made of it.
                let mut order: Vec<(Option<LayerKey>, Option<Rid>, f64)> = if track.layers.len() >= 2 {
                    track.layers.iter().map(|l| (Some(LayerKey::Encoding(l.ssrc)), Some(l.rid), l.bps)).collect()
                } else {
                    let one = track.layers.first();
                    let mut order = vec![(
                        one.map(|l| l.ssrc).or(track.ssrc).map(LayerKey::Encoding),
                        one.map(|l| l.rid),
                        one.map_or(track.bps, |l| l.bps),
                    )];
                    if let Some(r) = track.renditions.as_mut() {
                        for (i, rendition) in r.layers.iter_mut().enumerate().filter(|(_, r)| r.live) {
                            // A rendition silent for a tick is a job restarting (or waiting for
                            // the publisher's keyframe): it keeps its rate. Decayed, the 360p one
                            // once looked cheap enough for a 150 kbit/s subscriber, which was
                            // switched to it at once (steps between renditions are not proved).
                            if rendition.bytes > 0 {
                                rendition.bps = smoothed(rendition.bps, rendition.bytes, elapsed_secs);
                            }
                            rendition.bytes = 0;
                            order.push((Some(LayerKey::Rendition(r.job, i)), None, rendition.bps));
                        }
                    }
                    order
                };
                order.sort_by(|a, b| a.2.total_cmp(&b.2).then_with(|| format!("{:?}", a.1).cmp(&format!("{:?}", b.1))));
                let keys: Vec<LayerKey> = order.iter().filter_map(|o| o.0).collect();
                let layers = Layers {
                    publisher: *id,
                    mid: *mid,
                    single: order.len() < 2 || keys.len() != order.len(),
                    keys,
                    rids: order.iter().map(|o| o.1).collect(),
                    rates: order.iter().enumerate().map(|(index, o)| LayerRate { index, bps: o.2 }).collect(),
                    transcodable: track.layers.len() < 2 && track.h264,
                    priority,
                };
                match track.track {
                    Some(t) => by_track.insert(t, layers),
                    None => by_publisher.insert(*id, layers),
                };
            }
        }
        let mut requests = Vec::new();
        let mut reconfigured = Vec::new();
        let mut told = Vec::new();
        let mut demand = RenditionDemand::default();
        // Per (publisher, mid): the layers some subscriber m-line is given or still carries.
        let mut wanted: HashMap<(PeerId, Mid), HashSet<Rid>> = HashMap::new();
        let subscribers: Vec<PeerId> = self.peers.keys().copied().collect();
        for sub in subscribers {
            let cap = self.budget_of(sub);
            let page = self.receiving_page(sub);
            let Some(peer) = self.peers.get_mut(&sub) else { continue };
            let estimate = peer.send_side.budget(now);
            let within_cap = |link: Option<f64>| match (cap, link) {
                (Some(c), Some(e)) => Some(c.min(e)),
                (c, e) => c.or(e),
            };
            // Layers are chosen by the estimate; what stays on (audio's redundancy, video at all)
            // by what the link carries, where what it delivered lately counts too.
            let budget = within_cap(estimate);
            let reading = peer.send_side.reading().and_then(|r| within_cap(Some(r)));
            let carries = within_cap(estimate.map(|e| peer.send_side.carries(now, e)));
            let loss = peer.send_side.loss(now);
            let (outs, whep_source) = match &mut peer.role {
                Role::Downstream { outs, .. } => (outs, None),
                Role::Subscriber { outs, source, .. } => (outs, *source),
                Role::Publisher { .. } => continue,
            };
            let audio = outs.iter().filter(|o| o.kind == MediaKind::Audio && (o.track.is_some() || whep_source.is_some())).count() as f64;
            // Audio first: its share, with redundancy on a lossy link when the budget carries it.
            let red = audio > 0.0 && peer.red.update(now, loss, carries.is_none_or(|b| b >= audio * (AUDIO_RESERVE_BPS + RED_EXTRA_BPS)));
            let audio_bps = audio * AUDIO_RESERVE_BPS;
            for out in outs.iter_mut().filter(|o| o.kind == MediaKind::Audio) {
                out.red_on = red;
            }
            let layered = |o: &crate::core::TrackOut| match (o.track, whep_source) {
                (Some(t), _) => by_track.get(&t),
                (None, Some(p)) if o.kind == MediaKind::Video => {
                    by_publisher.get(&p).or_else(|| by_track.values().find(|l| l.publisher == p))
                }
                _ => None,
            };
            // Video shares what audio leaves, the lesson's lead first (DESIGN.md §3).
            let video: Vec<usize> = (0..outs.len()).filter(|i| layered(&outs[*i]).is_some()).collect();
            let demands: Vec<VideoDemand> = video
                .iter()
                .map(|i| {
                    let (out, layers) = (&outs[*i], layered(&outs[*i]).expect("layered"));
                    let lowest_bps = layers.rates.first().map_or(0.0, |r| r.bps);
                    // A lone layer goes off only under the subscriber's own cap: str0m's estimate
                    // of a wide link that loses packets at random reads far below it (47 kbit/s
                    // with 10 % loss under a 220 kbit/s layer in `serial::lossy`), and nothing
                    // lower would show whether the link carries it; the transcoder's renditions
                    // are the way down for such a track.
                    let settled =
                        if layers.single { cap.is_some_and(|c| c - audio_bps < lowest_bps) } else { out.selector.settled_on_lowest(now) };
                    VideoDemand {
                        lowest_bps,
                        priority: layers.priority,
                        off: out.video_off,
                        may_resume: out.selector.may_resume(now),
                        settled,
                    }
                })
                .collect();
            // Video goes off under the subscriber's own cap, or when its link loses packets: an
            // estimate alone may still be finding its way up (a new connection, a recovered link).
            let lowest: f64 = demands.iter().map(|d| d.lowest_bps).sum();
            let may_shed = cap.is_some_and(|c| c - audio_bps < lowest) || loss >= CONGESTION_LOSS;
            let shares = share_video(carries, audio_bps, &demands, may_shed);
            let kept = shares.iter().filter(|s| **s != VideoShare::Off).count().max(1) as f64;
            let each = budget.map(|b| ((b - audio_bps) / kept).max(0.0));
            let each_read = reading.map(|b| ((b - audio_bps) / kept).max(0.0));
            // What this subscriber could use: audio, and each m-line's best layer it may have (only
            // the lowest while its video is off: enough to find out when it fits again).
            let mut desired = audio_bps;
            // While a step up is proved, the link is kept as full as the higher layer would keep it.
            let (mut proving, mut kept_bps) = (false, audio_bps);
            for (i, share) in video.into_iter().zip(shares) {
                let out = &mut outs[i];
                let Some(layers) = layered(out) else { continue };
                let key = (layers.publisher, layers.mid);
                // A lone H.264 encoding that this subscriber cannot take whole: the transcoder
                // could make a lower layer of it.
                if layers.single && layers.transcodable {
                    let short = out.video_off || each.is_some_and(|e| e < layers.rates[0].bps);
                    out.short_since = if short { Some(out.short_since.unwrap_or(now)) } else { None };
                    if out.short_since.is_some_and(|t| now.saturating_duration_since(t) >= NEEDED_FOR) {
                        demand.needed.insert(key);
                    }
                }
                if out.target.is_some_and(|t| matches!(t, LayerKey::Rendition(..))) {
                    demand.used.insert(key);
                }
                let share = match share {
                    VideoShare::Off => {
                        desired += layers.rates.first().map_or(0.0, |r| r.bps) * UP_HEADROOM;
                        if !out.video_off {
                            out.selector.switch_off(now);
                            out.turn_video_off();
                        }
                        continue;
                    }
                    VideoShare::Bps(_) => each,
                };
                desired += wanted_bps(&layers.rates, out.max_layer);
                if layers.single {
                    // Back on after it was off: from the publisher's next keyframe.
                    if out.video_off {
                        out.video_off = false;
                        out.selector.choose(now, &layers.rates, share, share, None);
                        requests.push((layers.publisher, layers.mid, layers.keys.first().copied()));
                    }
                    continue;
                }
                // A layer the pacer could not send in time is too much for this link, whatever the
                // estimate says (a probe that rode a policer's burst reads several times the link):
                // down to the lowest, and a failed step up makes the next try wait longer.
                let congested = std::mem::take(&mut out.congested);
                let share = if congested { Some(0.0) } else { share };
                // Steps between the transcoder's renditions are not proved: measured behind a
                // 150 kbit/s cap, the proofs' padding cost the 180p rendition more (6–8 fps) than
                // the false steps they prevent (14–15 fps without) — left for a later look.
                let renditions = layers.keys.iter().any(|k| matches!(k, LayerKey::Rendition(..)));
                let read = if congested {
                    share
                } else if renditions {
                    None
                } else {
                    each_read
                };
                let Some(index) = out.selector.choose(now, &layers.rates, share, read, out.max_layer) else { continue };
                proving |= out.selector.proving().is_some();
                kept_bps += layers.rates.get(out.selector.proving().unwrap_or(index)).map_or(0.0, |r| r.bps);
                out.video_off = false;
                let layer = layers.keys[index];
                let wants = wanted.entry(key).or_default();
                wants.extend(layers.rids[index]);
                let current =
                    out.source.filter(|(p, _)| *p == layers.publisher).and_then(|(_, k)| layers.keys.iter().position(|x| *x == k));
                if out.target != Some(layer) {
                    out.target = Some(layer);
                    requests.push((layers.publisher, layers.mid, Some(layer)));
                    // Going down, the layer forwarded now stops at once: the link that no longer
                    // carries it would queue it ahead of the lower layer's keyframe. Going up, it
                    // goes on until the chosen one's keyframe.
                    if current.is_some_and(|c| index < c) {
                        out.source = None;
                    }
                }
                if let Some(c) = current.filter(|_| out.source.is_some()) {
                    wants.extend(layers.rids[c]);
                }
            }
            // Audio re-encoded by the transcoder for a weak link: where this subscriber's video of
            // its publisher is off or a rendition, or its budget is small beside the original.
            let weak: HashSet<PeerId> = outs
                .iter()
                .filter(|o| o.kind == MediaKind::Video && (o.video_off || matches!(o.target, Some(LayerKey::Rendition(..)))))
                .filter_map(|o| layered(o).map(|l| l.publisher))
                .collect();
            for out in outs.iter_mut().filter(|o| o.kind == MediaKind::Audio) {
                let layers = match (out.track, whep_source) {
                    (Some(t), _) => audio_by_track.get(&t),
                    (None, Some(p)) => audio_by_publisher.get(&p).or_else(|| audio_by_track.values().find(|a| a.publisher == p)),
                    _ => None,
                };
                let Some(a) = layers else { continue };
                let low = weak.contains(&a.publisher) || budget.is_some_and(|b| b < LOW_AUDIO_BELOW * a.source_bps);
                out.target = Some(if low { a.low } else { a.source });
                // The re-encoded Opus carries its own redundancy (in-band FEC): RED on top would
                // only add load to a link that is already short (measured behind 150 kbit/s in
                // `serial::transcode`: with it, the 180p rendition lost packets all along).
                out.red_on &= !low;
            }
            let audio_only = outs.iter().any(|o| o.video_off);
            if let Some(conn) = page
                && audio_only != peer.told_audio_only
            {
                peer.told_audio_only = audio_only;
                told.push((conn, audio_only));
            }
            // Never probe for more than the subscriber's own cap (a metered link).
            let desired = cap.map_or(desired, |c| desired.min(c));
            let carried = peer.send_side.carried();
            let proving = peer.send_side.desired.prove(if proving { kept_bps } else { 0.0 });
            let request = peer.send_side.desired.update(now, desired, estimate, carried, loss);
            // A minimum only while a step up is proved: padding up to a layer's rate all the time
            // would spend a metered link's data; str0m probes in short bursts instead.
            if request.desire.is_some() || proving {
                let (minimum, desired) = (peer.send_side.desired.proving(), peer.send_side.desired.given());
                peer.rtc.bwe().set_bitrate(Bitrate::bps(minimum as u64), Bitrate::bps(desired.max(minimum) as u64));
            }
            if request != EstimatorRequest::default() || proving {
                reconfigured.push((sub, request.restart_from));
            }
        }
        for (conn, audio_only) in told {
            tracing::debug!(?conn, audio_only, "reception changed");
            self.send(conn, ServerMessage::Reception { audio_only });
        }
        // One change to an `Rtc` at a time, each drained.
        for (sub, restart_from) in reconfigured {
            self.drain(now, sub);
            if let (Some(from), Some(peer)) = (restart_from, self.peers.get_mut(&sub)) {
                peer.rtc.bwe().reset(Bitrate::bps(from as u64));
                self.drain(now, sub);
            }
        }
        for (publisher, mid, layer) in requests {
            match layer {
                Some(layer) => self.request_layer_keyframe(now, publisher, layer, KeyframeRequestKind::Pli),
                None => self.queue_keyframe_request(now, publisher, mid, KeyframeRequestKind::Pli),
            }
        }
        self.pause_unwanted_layers(now, &by_track, &wanted);
        self.manage_renditions(now, &demand);
    }

    /// Tells each room page which of its simulcast layers nobody wants (a `layers` frame, on
    /// change). A WHIP publisher cannot be told: its unwanted layers are only not forwarded.
    fn pause_unwanted_layers(&mut self, now: Instant, by_track: &HashMap<TrackId, Layers>, wanted: &HashMap<(PeerId, Mid), HashSet<Rid>>) {
        for (track_id, layers) in by_track {
            // Without its WebSocket (a reconnect under way) the page could not hear: decide later.
            let Some(conn) = self.pausable_publisher(layers.publisher) else { continue };
            // Only a simulcast publisher's own layers can be paused.
            let Some(rids) = layers.rids.iter().copied().collect::<Option<Vec<Rid>>>().filter(|r| r.len() >= 2) else { continue };
            let wants = wanted.get(&(layers.publisher, layers.mid));
            let flags: Vec<(Rid, bool)> = rids.iter().map(|r| (*r, wants.is_some_and(|w| w.contains(r)))).collect();
            let Some(Role::Publisher { tracks, .. }) = self.peers.get_mut(&layers.publisher).map(|p| &mut p.role) else { continue };
            let Some(track) = tracks.get_mut(&layers.mid) else { continue };
            if let Some(paused) = track.pause.update(now, &flags, wants.is_some()) {
                tracing::debug!(track = track_id.0, paused = ?paused.iter().map(|r| r.to_string()).collect::<Vec<_>>(), "simulcast layers paused");
                self.send(conn, ServerMessage::Layers { track: *track_id, paused: paused.iter().map(|r| r.to_string()).collect() });
            }
        }
    }
}
