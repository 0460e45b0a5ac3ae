//! Simulcast: measuring each incoming layer's rate and choosing, per subscriber m-line, the layer
//! it should carry ([`crate::layers::LayerSelector`]). Forwarding switches at the chosen layer's
//! next keyframe, which is asked of that layer alone. A room page is then told which of its
//! layers nobody wants ([`crate::layers::LayerPause`]), so it stops encoding and sending them.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use str0m::bwe::Bitrate;
use str0m::media::{KeyframeRequestKind, MediaKind, Mid, Rid};
use str0m::rtp::Ssrc;

use crate::core::{PeerId, Role, Sfu};
use crate::estimate::EstimatorRequest;
use crate::layers::{LayerRate, wanted_bps};
use crate::signal::{ServerMessage, TrackId};

/// Weight of the newest measurement in a layer's smoothed rate (keyframes make single
/// measurements jumpy).
const RATE_SMOOTHING: f64 = 0.25;
/// Kept for each audio m-line before video gets a share of the budget, bit/s (Opus with headers).
const AUDIO_RESERVE_BPS: f64 = 40_000.0;

/// A simulcast track's layers, lowest rate first.
struct Layers {
    publisher: PeerId,
    mid: Mid,
    rids: Vec<Rid>,
    ssrcs: Vec<Ssrc>,
    rates: Vec<LayerRate>,
}

impl Sfu {
    /// Updates the layers' rates from the bytes seen since `since`, then picks each subscriber
    /// m-line's layer from its budget: the subscriber's own cap, when it set one, and the send-side
    /// estimate ([`crate::estimate::SendSide`]), when there is one; without either it gets the
    /// lowest layer. Each subscriber connection's estimator is told what it could use.
    pub(crate) fn select_layers(&mut self, now: Instant, elapsed_secs: f64) {
        let mut by_track: HashMap<TrackId, Layers> = HashMap::new();
        let mut by_publisher: HashMap<PeerId, Layers> = HashMap::new();
        for (id, peer) in &mut self.peers {
            let Role::Publisher { tracks, .. } = &mut peer.role else { continue };
            for (mid, track) in tracks.iter_mut().filter(|(_, t)| t.kind == MediaKind::Video) {
                for layer in &mut track.layers {
                    // A paused layer keeps the rate it had: what resuming it would cost, and its
                    // place in the order (a silent top layer is not the new lowest).
                    if track.pause.is_paused(layer.rid) {
                        layer.bytes = 0;
                        continue;
                    }
                    let measured = layer.bytes as f64 * 8.0 / elapsed_secs.max(1e-3);
                    layer.bps = if layer.bps == 0.0 { measured } else { layer.bps + RATE_SMOOTHING * (measured - layer.bps) };
                    layer.bytes = 0;
                }
                if track.layers.len() < 2 {
                    continue;
                }
                let mut order: Vec<(Rid, Ssrc, f64)> = track.layers.iter().map(|l| (l.rid, l.ssrc, l.bps)).collect();
                order.sort_by(|a, b| a.2.total_cmp(&b.2).then_with(|| a.0.to_string().cmp(&b.0.to_string())));
                let rates = order.iter().enumerate().map(|(index, (_, _, bps))| LayerRate { index, bps: *bps }).collect();
                let rids = order.iter().map(|(r, _, _)| *r).collect();
                let ssrcs = order.iter().map(|(_, s, _)| *s).collect();
                let layers = Layers { publisher: *id, mid: *mid, rids, ssrcs, rates };
                match track.track {
                    Some(t) => by_track.insert(t, layers),
                    None => by_publisher.insert(*id, layers),
                };
            }
        }
        let mut requests = Vec::new();
        let mut reconfigured = Vec::new();
        // Per (publisher, mid): the layers some subscriber m-line is given or still carries.
        let mut wanted: HashMap<(PeerId, Mid), HashSet<Rid>> = HashMap::new();
        let subscribers: Vec<PeerId> = self.peers.keys().copied().collect();
        for sub in subscribers {
            let cap = self.budget_of(sub);
            let Some(peer) = self.peers.get_mut(&sub) else { continue };
            let estimate = peer.send_side.budget(now);
            let budget = match (cap, estimate) {
                (Some(c), Some(e)) => Some(c.min(e)),
                (c, e) => c.or(e),
            };
            let (outs, whep_source) = match &mut peer.role {
                Role::Downstream { outs, .. } => (outs, None),
                Role::Subscriber { outs, source, .. } => (outs, *source),
                Role::Publisher { .. } => continue,
            };
            let audio = outs.iter().filter(|o| o.kind == MediaKind::Audio && (o.track.is_some() || whep_source.is_some())).count();
            let layered = |o: &crate::core::TrackOut| match (o.track, whep_source) {
                (Some(t), _) => by_track.get(&t),
                (None, Some(p)) if o.kind == MediaKind::Video => {
                    by_publisher.get(&p).or_else(|| by_track.values().find(|l| l.publisher == p))
                }
                _ => None,
            };
            let video = outs.iter().filter(|o| layered(o).is_some()).count().max(1);
            let share = budget.map(|b| ((b - AUDIO_RESERVE_BPS * audio as f64) / video as f64).max(0.0));
            // What this subscriber could use: audio, and each m-line's best layer it may have.
            let mut desired = AUDIO_RESERVE_BPS * audio as f64;
            for out in outs.iter_mut() {
                let Some(layers) = layered(out) else { continue };
                desired += wanted_bps(&layers.rates, out.max_layer);
                let Some(index) = out.selector.choose(now, &layers.rates, share, out.max_layer) else { continue };
                let rid = layers.rids[index];
                let wants = wanted.entry((layers.publisher, layers.mid)).or_default();
                wants.insert(rid);
                // The layer forwarded now goes on until the chosen one's keyframe.
                if let Some((p, ssrc)) = out.source
                    && p == layers.publisher
                    && let Some(i) = layers.ssrcs.iter().position(|s| *s == ssrc)
                {
                    wants.insert(layers.rids[i]);
                }
                if out.target != Some(rid) {
                    out.target = Some(rid);
                    requests.push((layers.publisher, layers.mid, rid));
                }
            }
            // Never probe for more than the subscriber's own cap (a metered link).
            let desired = cap.map_or(desired, |c| desired.min(c));
            let carried = peer.send_side.carried();
            let request = peer.send_side.desired.update(now, desired, estimate, carried);
            // No minimum: padding up to a layer's rate all the time would spend a metered link's
            // data; str0m probes in short bursts instead.
            if let Some(rate) = request.desire {
                peer.rtc.bwe().set_bitrate(Bitrate::ZERO, Bitrate::bps(rate as u64));
            }
            if request != EstimatorRequest::default() {
                reconfigured.push((sub, request.restart_from));
            }
        }
        // One change to an `Rtc` at a time, each drained.
        for (sub, restart_from) in reconfigured {
            self.drain(now, sub);
            if let (Some(from), Some(peer)) = (restart_from, self.peers.get_mut(&sub)) {
                peer.rtc.bwe().reset(Bitrate::bps(from as u64));
                self.drain(now, sub);
            }
        }
        for (publisher, mid, rid) in requests {
            self.queue_layer_keyframe_request(now, publisher, mid, rid, KeyframeRequestKind::Pli);
        }
        self.pause_unwanted_layers(now, &by_track, &wanted);
    }

    /// Tells each room page which of its simulcast layers nobody wants (a `layers` frame, on
    /// change). A WHIP publisher cannot be told: its unwanted layers are only not forwarded.
    fn pause_unwanted_layers(&mut self, now: Instant, by_track: &HashMap<TrackId, Layers>, wanted: &HashMap<(PeerId, Mid), HashSet<Rid>>) {
        for (track_id, layers) in by_track {
            // Without its WebSocket (a reconnect under way) the page could not hear: decide later.
            let Some(conn) = self.pausable_publisher(layers.publisher) else { continue };
            let wants = wanted.get(&(layers.publisher, layers.mid));
            let flags: Vec<(Rid, bool)> = layers.rids.iter().map(|r| (*r, wants.is_some_and(|w| w.contains(r)))).collect();
            let Some(Role::Publisher { tracks, .. }) = self.peers.get_mut(&layers.publisher).map(|p| &mut p.role) else { continue };
            let Some(track) = tracks.get_mut(&layers.mid) else { continue };
            if let Some(paused) = track.pause.update(now, &flags, wants.is_some()) {
                tracing::debug!(track = track_id.0, paused = ?paused.iter().map(|r| r.to_string()).collect::<Vec<_>>(), "simulcast layers paused");
                self.send(conn, ServerMessage::Layers { track: *track_id, paused: paused.iter().map(|r| r.to_string()).collect() });
            }
        }
    }
}
