//! Choosing a simulcast layer for one subscriber: a pure model, fed with the layers' measured
//! bitrates and the subscriber's bandwidth budget, with hysteresis so a link that wobbles around a
//! layer's rate does not make the picture flip back and forth.

use std::time::{Duration, Instant};

/// Go up only when the budget exceeds the next layer's rate by this factor.
const UP_HEADROOM: f64 = 1.25;
/// After a switch down, stay down at least this long before trying up again.
const HOLD_AFTER_DOWN: Duration = Duration::from_secs(8);
/// Never switch more often than this.
const MIN_INTERVAL: Duration = Duration::from_secs(2);

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
}
