//! Simulcast layers as pure models: choosing a layer for one subscriber ([`LayerSelector`], fed
//! with the layers' measured bitrates and the subscriber's bandwidth budget, with hysteresis so a
//! link that wobbles around a layer's rate does not make the picture flip back and forth), and
//! deciding which of a publisher's layers nobody watches, so it can stop sending them
//! ([`LayerPause`]).

use std::time::{Duration, Instant};

use str0m::media::Rid;

/// Go up only when the budget exceeds the next layer's rate by this factor.
const UP_HEADROOM: f64 = 1.25;
/// After a switch down, stay down at least this long before trying up again.
const HOLD_AFTER_DOWN: Duration = Duration::from_secs(8);
/// Never switch more often than this.
const MIN_INTERVAL: Duration = Duration::from_secs(2);

/// How long nobody must have wanted a layer before its publisher is asked to pause it: long
/// enough that a subscriber stepping down and back up, or a layer switch waiting for its
/// keyframe, does not stop and restart an encoder.
pub const PAUSE_AFTER: Duration = Duration::from_secs(5);

/// One layer a publisher sends, lowest first in the slice given to [`LayerSelector::choose`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerRate {
    /// Its index among the publisher's layers, lowest quality first.
    pub index: usize,
    /// Its measured rate, bit/s (0 while unknown: it is then treated as unaffordable, unless it
    /// is the lowest).
    pub bps: f64,
}

/// Per subscriber m-line: the layer it should get now.
#[derive(Debug, Clone, Default)]
pub struct LayerSelector {
    current: Option<usize>,
    last_switch: Option<Instant>,
    last_down: Option<Instant>,
}

impl LayerSelector {
    /// The layer chosen last.
    pub fn current(&self) -> Option<usize> {
        self.current
    }

    /// The layer to forward given `layers` (ascending), the `budget` in bit/s for this m-line
    /// (`None`: no estimate yet, start from the lowest) and an optional highest layer allowed.
    pub fn choose(&mut self, now: Instant, layers: &[LayerRate], budget: Option<f64>, max: Option<usize>) -> Option<usize> {
        let allowed: Vec<LayerRate> = layers.iter().copied().filter(|l| max.is_none_or(|m| l.index <= m)).collect();
        let lowest = allowed.first()?.index;
        let Some(budget) = budget else {
            return Some(*self.current.get_or_insert(lowest));
        };
        // The best layer the budget carries, and the best it carries with headroom.
        let fits = |factor: f64| allowed.iter().rev().find(|l| l.bps > 0.0 && l.bps * factor <= budget).map_or(lowest, |l| l.index);
        let (fit, fit_up) = (fits(1.0), fits(UP_HEADROOM));
        let current = match self.current {
            Some(c) if allowed.iter().any(|l| l.index == c) => c,
            _ => {
                self.current = Some(fit);
                self.last_switch = Some(now);
                return self.current;
            }
        };
        let since = |t: Option<Instant>, d: Duration| t.is_none_or(|t| now.saturating_duration_since(t) >= d);
        let next = if fit < current {
            fit
        } else if fit_up > current && since(self.last_down, HOLD_AFTER_DOWN) {
            fit_up
        } else {
            current
        };
        if next != current && since(self.last_switch, MIN_INTERVAL) {
            if next < current {
                self.last_down = Some(now);
            }
            self.current = Some(next);
            self.last_switch = Some(now);
        }
        self.current
    }
}

/// The rate a subscriber m-line needs, bit/s, to be given the best layer it may have (the highest
/// measured one up to `max`): that layer's rate with the headroom [`LayerSelector`] asks before
/// going up. What the send-side estimator should try to find room for.
pub fn wanted_bps(layers: &[LayerRate], max: Option<usize>) -> f64 {
    let best = layers.iter().filter(|l| l.bps > 0.0 && max.is_none_or(|m| l.index <= m)).map(|l| l.bps).next_back();
    best.unwrap_or(0.0) * UP_HEADROOM
}

/// Per publisher track: which of its simulcast layers the publisher should pause because nobody
/// has wanted them for [`PAUSE_AFTER`]. A layer someone wants again is resumed at once. The lowest
/// layer is everyone's fallback, so it counts as wanted while anyone receives the track.
#[derive(Debug, Clone, Default)]
pub struct LayerPause {
    layers: Vec<PauseState>,
}

#[derive(Debug, Clone, Copy)]
struct PauseState {
    rid: Rid,
    /// Since when nobody has wanted it (`None`: someone wants it now).
    unwanted_since: Option<Instant>,
    paused: bool,
}

impl LayerPause {
    /// Whether the publisher was asked to pause `rid`.
    pub fn is_paused(&self, rid: Rid) -> bool {
        self.layers.iter().any(|l| l.rid == rid && l.paused)
    }

    /// The layers the publisher was asked to pause, in the order last given to [`Self::update`].
    pub fn paused(&self) -> Vec<Rid> {
        self.layers.iter().filter(|l| l.paused).map(|l| l.rid).collect()
    }

    /// Takes in the track's layers, lowest first, each with whether some subscriber wants it now,
    /// and whether anyone receives the track at all. Returns the layers to pause, lowest first,
    /// when that set changed (an empty list resumes everything).
    pub fn update(&mut self, now: Instant, layers: &[(Rid, bool)], subscribed: bool) -> Option<Vec<Rid>> {
        let before = self.paused();
        let next = layers
            .iter()
            .enumerate()
            .map(|(i, &(rid, wanted))| {
                let old = self.layers.iter().find(|l| l.rid == rid).copied();
                let wanted = wanted || (i == 0 && subscribed);
                let unwanted_since = if wanted { None } else { Some(old.and_then(|l| l.unwanted_since).unwrap_or(now)) };
                let paused = unwanted_since.is_some_and(|t| now.saturating_duration_since(t) >= PAUSE_AFTER);
                PauseState { rid, unwanted_since, paused }
            })
            .collect();
        self.layers = next;
        let after = self.paused();
        (after != before).then_some(after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ladder() -> Vec<LayerRate> {
        vec![LayerRate { index: 0, bps: 90_000.0 }, LayerRate { index: 1, bps: 350_000.0 }, LayerRate { index: 2, bps: 1_200_000.0 }]
    }

    #[test]
    fn the_budget_picks_the_layer_and_hysteresis_keeps_it_steady() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut sel = LayerSelector::default();
        // (seconds, budget, expected layer)
        let steps: &[(u64, Option<f64>, usize)] = &[
            (0, None, 0),               // no estimate: start low
            (1, Some(2_000_000.0), 2),  // plenty: straight to the top
            (2, Some(1_000_000.0), 2),  // within MIN_INTERVAL of the last switch: hold
            (4, Some(1_000_000.0), 1),  // too little for the top: down
            (5, Some(150_000.0), 1),    // MIN_INTERVAL again
            (6, Some(150_000.0), 0),    // down to the lowest
            (8, Some(600_000.0), 0),    // fits layer 1 but HOLD_AFTER_DOWN
            (14, Some(600_000.0), 1),   // held long enough: up with headroom
            (20, Some(1_300_000.0), 1), // fits layer 2, but not with 25 % headroom
            (22, Some(1_600_000.0), 2), // with headroom
            (30, Some(40_000.0), 0),    // nothing fits: the lowest, never nothing
        ];
        for (s, budget, want) in steps {
            assert_eq!(sel.choose(at(*s), &ladder(), *budget, None), Some(*want), "at {s} s with {budget:?}");
        }
    }

    #[test]
    fn a_maximum_layer_and_unknown_rates_are_respected() {
        let t0 = Instant::now();
        let mut sel = LayerSelector::default();
        assert_eq!(sel.choose(t0, &ladder(), Some(5_000_000.0), Some(1)), Some(1), "a small tile needs no 720p");
        let unknown = vec![LayerRate { index: 0, bps: 90_000.0 }, LayerRate { index: 1, bps: 0.0 }];
        let mut sel = LayerSelector::default();
        assert_eq!(sel.choose(t0, &unknown, Some(5_000_000.0), None), Some(0), "a layer not measured yet is not chosen");
        assert_eq!(LayerSelector::default().choose(t0, &[], Some(1.0), None), None);
    }

    #[test]
    fn the_wanted_rate_is_the_best_allowed_layer_with_headroom() {
        let unmeasured_top =
            [LayerRate { index: 0, bps: 90_000.0 }, LayerRate { index: 1, bps: 350_000.0 }, LayerRate { index: 2, bps: 0.0 }];
        // (layers, max layer, wanted bit/s)
        let cases: &[(&[LayerRate], Option<usize>, f64)] = &[
            (&ladder(), None, 1_500_000.0),     // the top layer, with 25 % to go up
            (&ladder(), Some(1), 437_500.0),    // a medium tile
            (&ladder(), Some(0), 112_500.0),    // a small tile: the lowest is enough
            (&unmeasured_top, None, 437_500.0), // a layer never measured is not aimed at
            (&[], None, 0.0),
        ];
        for (layers, max, want) in cases {
            assert_eq!(wanted_bps(layers, *max), *want, "max {max:?}");
        }
    }

    #[test]
    fn a_layer_nobody_wants_is_paused_after_a_while_and_resumed_at_once() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let [q, h, f] = ["q", "h", "f"].map(Rid::from);
        let mut pause = LayerPause::default();
        let names = |v: Option<Vec<Rid>>| v.map(|v| v.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(","));
        // (ms, wanted q/h/f, anyone subscribed, the change expected: Some("h,f") pauses h and f)
        let steps: &[(u64, [bool; 3], bool, Option<&str>)] = &[
            (0, [false, false, true], true, None),          // one viewer on the top layer: nothing paused yet
            (4_500, [false, false, true], true, None),      // h unwanted for 4.5 s: still sent
            (5_000, [false, false, true], true, Some("h")), // 5 s: h paused; q is the fallback, never
            (5_500, [false, false, true], true, None),      // sent only on change
            (6_000, [true, false, false], true, None),      // the viewer steps down to q: f unwanted from now
            (8_000, [false, true, false], true, Some("")),  // someone wants h again: resumed at once
            (10_999, [false, true, false], true, None),     // f unwanted for 4.999 s
            (11_000, [false, true, false], true, Some("f")),
            (11_500, [false, true, true], true, Some("")), // f wanted again at once
            (12_000, [false, false, false], false, None),  // nobody receives the track any more
            (16_999, [false, false, false], false, None),
            (17_000, [false, false, false], false, Some("q,h,f")), // then even the lowest pauses
            (17_100, [false, false, false], true, Some("h,f")),    // a new viewer: the fallback is back at once
        ];
        for (ms, wanted, subscribed, want) in steps {
            let layers = [(q, wanted[0]), (h, wanted[1]), (f, wanted[2])];
            assert_eq!(names(pause.update(at(*ms), &layers, *subscribed)).as_deref(), *want, "at {ms} ms");
        }
        assert!(pause.is_paused(f) && !pause.is_paused(q));
    }

    #[test]
    fn a_layer_that_disappears_takes_its_pause_with_it() {
        let t0 = Instant::now();
        let [q, h] = ["q", "h"].map(Rid::from);
        let mut pause = LayerPause::default();
        assert_eq!(pause.update(t0, &[(q, true), (h, false)], true), None);
        assert_eq!(pause.update(t0 + PAUSE_AFTER, &[(q, true), (h, false)], true), Some(vec![h]));
        assert_eq!(pause.update(t0 + PAUSE_AFTER * 2, &[(q, true)], true), Some(vec![]), "h is gone: nothing is paused");
        assert_eq!(pause.update(t0 + PAUSE_AFTER * 2, &[(q, true), (h, false)], true), None, "h back: its clock starts over");
    }
}
