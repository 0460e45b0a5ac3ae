//! The send-side bandwidth estimate towards one subscriber connection as the layer choice sees it
//! ([`SendSide`]), and what str0m's estimator is asked to do ([`DesiredRate`]). Pure: time and
//! figures are arguments, str0m is driven by the caller.
//!
//! str0m's estimator (GoogCC over TWCC feedback) is the source; around it sit three guards, each
//! against a failure seen in `tests/it/estimate.rs`:
//! - a probe whose packets rode a router's burst allowance reads far above the link, and str0m's
//!   smoothed estimate keeps such a reading for seconds: the lower of the smoothed and the latest
//!   estimate counts, and a rise counts only once it has held for [`STEADY_FOR`];
//! - after a burst of heavy loss the estimate can stay where it was while the receiver reports
//!   most packets lost: above [`HIGH_LOSS`] reported by the receiver, the budget is what was sent
//!   less half the loss (libwebrtc's classic loss rule, with a threshold twice its 10 %, so that a
//!   link's random loss is left to the estimator, which tells it from congestion);
//! - a subscriber held on a low layer sends too little for the estimate to grow again when the
//!   link recovers: its estimator starts over (which makes str0m probe) once it has got less than
//!   it wants for [`RESTART_EVERY`], then every [`RESTART_AT_MOST_EVERY`] while that lasts, and at
//!   once, from what the link carried lately, when it asks for much more.
//!
//! Known limit: a probe whose packets pass a token-bucket policer's burst allowance (`tc tbf
//! burst 4kb`) can read several times the link's rate, and nothing contradicts that reading for as
//! long as the subscriber sends little; when it holds past [`STEADY_FOR`], the subscriber tries the
//! next layer for a couple of seconds and comes back down.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use str0m::media::Mid;

/// How long a rise of the estimate must hold before layers are chosen by it.
const STEADY_FOR: Duration = Duration::from_secs(2);
/// Reported loss above which the estimate is not trusted.
const HIGH_LOSS: f32 = 0.20;
/// How long a receiver's loss report counts (they come every second while media flows).
const LOSS_FRESH: Duration = Duration::from_secs(3);
/// Reported loss below which what was sent counts as carried by the link.
const LOW_LOSS: f32 = 0.05;
/// How long a rate the link carried is remembered.
const CARRIED_FOR: Duration = Duration::from_secs(60);
/// The relative change in what a subscriber could use before str0m's estimator is told: layer
/// rates wobble every tick, and every rise starts another probe.
const DESIRED_CHANGE: f64 = 0.2;
/// While a subscriber gets less than it could use, its estimator starts over after this long,
/// then twice as long between restarts, up to [`RESTART_AT_MOST_EVERY`]: on a link that stays
/// weak, each restart's probes cost a few lost packets.
pub const RESTART_EVERY: Duration = Duration::from_secs(5);
const RESTART_AT_MOST_EVERY: Duration = Duration::from_secs(8);
/// A rise of what a subscriber could use by this factor (a tile enlarged, a camera added) makes
/// its estimator start over at once; smaller rises are layer rates settling.
const ASKED_MORE: f64 = 2.0;

/// What the server knows of its link towards one subscriber connection.
#[derive(Debug, Clone, Default)]
pub struct SendSide {
    /// str0m's smoothed estimate (its `EgressBitrateEstimate` events), bit/s.
    smoothed: Option<f64>,
    /// Its latest estimate (its peer stats, every second), bit/s.
    latest: Option<f64>,
    /// The bytes of media sent so far and when (peer stats), and the rate between two samples.
    sent: Option<(Instant, u64)>,
    sent_bps: Option<f64>,
    /// The highest rate sent with little loss reported, and when: what the link carried lately.
    carried: Option<(Instant, f64)>,
    /// The loss the receiver reported last for each m-line (RTCP receiver reports), and when.
    reported_loss: HashMap<Mid, (Instant, f32)>,
    /// The estimates of the last [`STEADY_FOR`] (and the one in force when it began).
    recent: VecDeque<(Instant, f64)>,
    /// What str0m's estimator is asked to find room for.
    pub desired: DesiredRate,
}

impl SendSide {
    /// The highest rate the link carried with little loss in the last minute, bit/s.
    pub fn carried(&self) -> Option<f64> {
        self.carried.map(|(_, c)| c)
    }

    /// Whether str0m gives an estimate (the receiver sends TWCC feedback).
    pub fn has_estimate(&self) -> bool {
        self.smoothed.is_some()
    }

    /// str0m's smoothed estimate changed.
    pub fn on_estimate(&mut self, bps: f64) {
        self.smoothed = Some(bps);
    }

    /// str0m's peer stats: its latest estimate and the media bytes sent so far.
    pub fn on_stats(&mut self, at: Instant, latest: Option<f64>, bytes_sent: u64) {
        self.latest = latest;
        if let Some((then, bytes)) = self.sent {
            let secs = at.saturating_duration_since(then).as_secs_f64();
            if secs > 0.0 {
                self.sent_bps = Some(bytes_sent.saturating_sub(bytes) as f64 * 8.0 / secs);
            }
        }
        self.sent = Some((at, bytes_sent));
    }

    /// The receiver reported `loss` (a fraction) on m-line `mid` at `at`.
    pub fn on_reported_loss(&mut self, at: Instant, mid: Mid, loss: f32) {
        self.reported_loss.insert(mid, (at, loss));
    }

    /// The estimate to choose layers by at `now`, bit/s: `None` until str0m has one (a receiver
    /// without TWCC feedback never gives one).
    pub fn budget(&mut self, now: Instant) -> Option<f64> {
        let smoothed = self.smoothed?;
        let mut estimate = self.latest.map_or(smoothed, |l| smoothed.min(l));
        self.reported_loss.retain(|_, (at, _)| now.saturating_duration_since(*at) < LOSS_FRESH);
        let loss = self.reported_loss.values().map(|(_, l)| *l).fold(0.0, f32::max);
        if loss > HIGH_LOSS
            && let Some(sent) = self.sent_bps
        {
            estimate = estimate.min(sent * (1.0 - 0.5 * f64::from(loss)));
        }
        self.carried = self.carried.filter(|(at, _)| now.saturating_duration_since(*at) < CARRIED_FOR && loss <= HIGH_LOSS);
        if let Some(sent) = self.sent_bps.filter(|_| loss < LOW_LOSS)
            && self.carried.is_none_or(|(_, c)| sent >= c)
        {
            self.carried = Some((now, sent));
        }
        // Each reading stands until the next: keep the one in force when the window began.
        while self.recent.get(1).is_some_and(|(t, _)| now.saturating_duration_since(*t) >= STEADY_FOR) {
            self.recent.pop_front();
        }
        self.recent.push_back((now, estimate));
        Some(self.recent.iter().map(|(_, e)| *e).fold(estimate, f64::min))
    }
}

/// What to tell a subscriber connection's estimator at a room tick.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EstimatorRequest {
    /// Find room for this rate, bit/s (str0m's "desired" bitrate; a rise above the estimate may
    /// start a probe).
    pub desire: Option<f64>,
    /// Start over from this estimate, bit/s: str0m then probes at three and six times it.
    pub restart_from: Option<f64>,
}

/// Per subscriber connection: the rate str0m's estimator should try to find room for, and when to
/// make it look again.
///
/// A subscriber held on a low layer sends little: too little for the estimate to grow by itself
/// (it stays within 1.5 times what is acknowledged), and often too much to count as
/// application-limited, which is when str0m would probe on its own; after a lossy spell its
/// estimator may also stay in a state where it does not probe at all. So the estimator starts over
/// from the estimate it has (two short probes, no padding sent all the time: a metered link pays
/// for every byte) once the subscriber has stayed below what it wants for [`RESTART_EVERY`] (not
/// at the moment a link falls, when the estimator is busy finding the new rate), then every
/// [`RESTART_AT_MOST_EVERY`] while it stays there; and at once when the subscriber asks for much
/// more ([`ASKED_MORE`]: a tile enlarged, a camera added), from what the link carried in the last
/// minute if that is more.
#[derive(Debug, Clone, Default)]
pub struct DesiredRate {
    given: Option<f64>,
    restarted: Option<Instant>,
    /// The time between two restarts while the subscriber stays below what it wants.
    interval: Duration,
    /// Since when the estimate has been below what the subscriber wants.
    short_since: Option<Instant>,
}

impl DesiredRate {
    /// Takes in what the subscriber could use now (`wanted`, bit/s), the estimate it gets and the
    /// highest rate its link carried lately; returns what to tell the estimator at this update.
    /// Asked for more, the estimator starts from what the link carried lately, up to what is
    /// wanted (a viewer who shrank a tile and enlarges it again gets it back in seconds).
    pub fn update(&mut self, now: Instant, wanted: f64, estimate: Option<f64>, carried: Option<f64>) -> EstimatorRequest {
        let mut request = EstimatorRequest::default();
        if wanted <= 0.0 {
            return request;
        }
        let short = estimate.filter(|e| *e < wanted);
        self.short_since = short.map(|_| self.short_since.unwrap_or(now));
        if short.is_none() {
            self.interval = RESTART_EVERY;
        }
        let asked_more = self.given.is_some_and(|g| wanted > g * ASKED_MORE);
        if self.given.is_none_or(|g| (wanted - g).abs() > DESIRED_CHANGE * g) {
            self.given = Some(wanted);
            request.desire = Some(wanted);
        }
        let long_ago = |t: Option<Instant>| t.is_none_or(|t| now.saturating_duration_since(t) >= RESTART_EVERY);
        let interval = self.interval.max(RESTART_EVERY);
        let held = self.short_since.is_some_and(|since| long_ago(Some(since)))
            && self.restarted.is_none_or(|t| now.saturating_duration_since(t) >= interval);
        if let Some(e) = short
            && (asked_more || held)
        {
            if held {
                self.interval = (interval * 2).min(RESTART_AT_MOST_EVERY);
            }
            self.restarted = Some(now);
            let remembered = carried.filter(|_| asked_more).map_or(0.0, |c| c.min(wanted));
            request.restart_from = Some(e.max(remembered));
        }
        request
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rise_counts_once_it_has_held_and_a_fall_counts_at_once() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut side = SendSide::default();
        assert_eq!(side.budget(t0), None, "no estimate before str0m gives one");
        // (ms, smoothed, latest, what the layer choice sees)
        let steps: &[(u64, f64, f64, f64)] = &[
            (0, 300_000.0, 300_000.0, 300_000.0),
            (500, 150_000.0, 150_000.0, 150_000.0),       // a fall: at once
            (1_000, 900_000.0, 1_600_000.0, 150_000.0),   // a probe's spike: not yet
            (1_500, 700_000.0, 160_000.0, 150_000.0),     // the smoothed one keeps the spike: the latest counts
            (2_500, 1_200_000.0, 1_200_000.0, 150_000.0), // a rise; 150 kbit/s stood when the window began
            (3_000, 1_300_000.0, 1_300_000.0, 160_000.0),
            (4_000, 1_250_000.0, 1_250_000.0, 160_000.0),
            (4_500, 1_400_000.0, 1_400_000.0, 1_200_000.0), // the rise held for two seconds
            (5_000, 100_000.0, 1_400_000.0, 100_000.0),
        ];
        for (ms, smoothed, latest, want) in steps {
            side.on_estimate(*smoothed);
            side.on_stats(at(*ms), Some(*latest), 0);
            assert_eq!(side.budget(at(*ms)), Some(*want), "at {ms} ms");
        }
    }

    #[test]
    fn asked_for_more_the_estimator_starts_from_what_the_link_carried_lately() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut side = SendSide::default();
        side.on_estimate(1_500_000.0);
        side.on_stats(t0, None, 0);
        side.on_stats(at(1), None, 125_000); // 1 Mbit/s carried, nothing reported lost
        side.budget(at(1));
        side.on_stats(at(2), None, 140_000); // then 120 kbit/s (a small tile)
        side.budget(at(2));
        assert_eq!(side.carried(), Some(1_000_000.0), "the best rate of the last minute");
        let mut rate = DesiredRate::default();
        rate.update(at(2), 150_000.0, Some(200_000.0), side.carried());
        let bigger = rate.update(at(3), 1_300_000.0, Some(200_000.0), side.carried());
        assert_eq!(bigger.restart_from, Some(1_000_000.0), "a bigger tile: from what the link carried");
        side.on_reported_loss(at(5), Mid::from("1"), 0.3);
        side.on_stats(at(5), None, 150_000);
        side.budget(at(5));
        assert_eq!(side.carried(), None, "heavy loss: the link no longer carries what it did");
    }

    #[test]
    fn heavy_reported_loss_caps_an_estimate_that_did_not_fall() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let (video, audio) = (Mid::from("1"), Mid::from("0"));
        let mut side = SendSide::default();
        side.on_estimate(500_000.0);
        side.on_stats(t0, Some(500_000.0), 0);
        side.on_stats(at(1_000), Some(500_000.0), 50_000); // 400 kbit/s sent
        side.on_reported_loss(at(1_000), audio, 0.05);
        side.on_reported_loss(at(1_000), video, 0.15);
        assert_eq!(side.budget(at(1_000)), Some(500_000.0), "loss up to 20 % is left to the estimator");
        side.on_reported_loss(at(1_500), video, 0.5);
        assert_eq!(side.budget(at(1_500)), Some(300_000.0), "half lost: what was sent less a quarter");
        side.on_stats(at(4_500), Some(500_000.0), 150_000);
        assert_eq!(side.budget(at(4_500)), Some(300_000.0), "the fall is in the window");
        side.on_stats(at(6_500), Some(500_000.0), 250_000);
        assert_eq!(side.budget(at(6_500)), Some(500_000.0), "no fresh report of loss (the m-line went away)");
    }

    #[test]
    fn a_subscriber_below_what_it_wants_has_its_estimator_look_again() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let ask = |desire: Option<f64>, restart_from: Option<f64>| EstimatorRequest { desire, restart_from };
        let mut rate = DesiredRate::default();
        // (ms, wanted, estimate, what the estimator is told)
        let steps: &[(u64, f64, Option<f64>, EstimatorRequest)] = &[
            (0, 40_000.0, None, ask(Some(40_000.0), None)), // audio only so far
            (500, 1_300_000.0, Some(300_000.0), ask(Some(1_300_000.0), Some(300_000.0))), // a camera: look now
            (1_000, 1_350_000.0, Some(300_000.0), ask(None, None)), // a wobble is not passed on
            (1_500, 1_700_000.0, Some(300_000.0), ask(Some(1_700_000.0), None)), // rates settling: str0m probes
            (5_000, 1_700_000.0, Some(300_000.0), ask(None, None)), // below since 500 ms
            (5_500, 1_700_000.0, Some(320_000.0), ask(None, Some(320_000.0))), // for 5 s: look again
            (10_500, 1_700_000.0, Some(300_000.0), ask(None, None)), // then longer
            (13_000, 1_700_000.0, Some(300_000.0), ask(None, None)),
            (13_500, 1_700_000.0, Some(300_000.0), ask(None, Some(300_000.0))),
            (16_000, 1_700_000.0, Some(2_000_000.0), ask(None, None)), // it gets what it wants: quiet
            (20_000, 1_700_000.0, Some(2_000_000.0), ask(None, None)),
            (20_500, 1_700_000.0, Some(150_000.0), ask(None, None)), // the link falls: the estimator is busy
            (25_000, 1_700_000.0, Some(150_000.0), ask(None, None)),
            (25_500, 1_700_000.0, Some(150_000.0), ask(None, Some(150_000.0))), // held below for 5 s again
            (26_000, 100_000.0, Some(150_000.0), ask(Some(100_000.0), None)),   // wants less (a small tile)
            (32_000, 100_000.0, Some(150_000.0), ask(None, None)),              // and has it
            (32_500, 1_700_000.0, Some(150_000.0), ask(Some(1_700_000.0), Some(150_000.0))), // asks for more: look now
            (33_000, 0.0, None, ask(None, None)),                               // nothing to receive
        ];
        for (ms, wanted, estimate, want) in steps {
            assert_eq!(rate.update(at(*ms), *wanted, *estimate, None), *want, "at {ms} ms");
        }
    }
}
