//! Simulcast: measuring each incoming layer's rate and choosing, per subscriber m-line, the layer
//! it should carry ([`crate::layers::LayerSelector`]). Forwarding switches at the chosen layer's
//! next keyframe, which is asked of that layer alone.

use std::collections::HashMap;
use std::time::Instant;

use str0m::media::{KeyframeRequestKind, MediaKind, Mid, Rid};

use crate::core::{PeerId, Role, Sfu};
use crate::layers::LayerRate;
use crate::signal::TrackId;

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
    rates: Vec<LayerRate>,
}

impl Sfu {
    /// Updates the layers' rates from the bytes seen since `since`, then picks each subscriber
    /// m-line's layer from its budget: the subscriber's own cap, when it set one, and the send-side
    /// estimate, when there is one; without either it gets the lowest layer.
    pub(crate) fn select_layers(&mut self, now: Instant, elapsed_secs: f64) {
        let mut by_track: HashMap<TrackId, Layers> = HashMap::new();
        let mut by_publisher: HashMap<PeerId, Layers> = HashMap::new();
        for (id, peer) in &mut self.peers {
            let Role::Publisher { tracks, .. } = &mut peer.role else { continue };
            for (mid, track) in tracks.iter_mut().filter(|(_, t)| t.kind == MediaKind::Video) {
                for layer in &mut track.layers {
                    let measured = layer.bytes as f64 * 8.0 / elapsed_secs.max(1e-3);
                    layer.bps = if layer.bps == 0.0 { measured } else { layer.bps + RATE_SMOOTHING * (measured - layer.bps) };
                    layer.bytes = 0;
                }
                if track.layers.len() < 2 {
                    continue;
                }
                let mut order: Vec<(Rid, f64)> = track.layers.iter().map(|l| (l.rid, l.bps)).collect();
                order.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.to_string().cmp(&b.0.to_string())));
                let rates = order.iter().enumerate().map(|(index, (_, bps))| LayerRate { index, bps: *bps }).collect();
                let layers = Layers { publisher: *id, mid: *mid, rids: order.iter().map(|(r, _)| *r).collect(), rates };
                match track.track {
                    Some(t) => by_track.insert(t, layers),
                    None => by_publisher.insert(*id, layers),
                };
            }
        }
        if by_track.is_empty() && by_publisher.is_empty() {
            return;
        }
        let mut requests = Vec::new();
        let subscribers: Vec<PeerId> = self.peers.keys().copied().collect();
        for sub in subscribers {
            let cap = self.budget_of(sub);
            let Some(peer) = self.peers.get_mut(&sub) else { continue };
            let budget = match (cap, peer.estimate) {
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
            for out in outs.iter_mut() {
                let Some(layers) = layered(out) else { continue };
                let Some(index) = out.selector.choose(now, &layers.rates, share, out.max_layer) else { continue };
                let rid = layers.rids[index];
                if out.target != Some(rid) {
                    out.target = Some(rid);
                    requests.push((layers.publisher, layers.mid, rid));
                }
            }
        }
        for (publisher, mid, rid) in requests {
            self.queue_layer_keyframe_request(now, publisher, mid, rid, KeyframeRequestKind::Pli);
        }
    }
}
