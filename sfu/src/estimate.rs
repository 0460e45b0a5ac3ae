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
//!   most packets lost: above [`HIGH_LOSS`] measured over enough packets ([`LOSS_PACKETS`]; one
//!   report's interval of a weak link's video holds a dozen, where one random loss reads 25 %) or
//!   by transport-wide feedback, the budget is what was sent less half the loss (libwebrtc's
//!   classic loss rule, with a threshold twice its 10 %, so that a link's random loss is left to
//!   the estimator, which tells it from congestion);
//! - a subscriber held on a low layer sends too little for the estimate to grow again when the
//!   link recovers: its estimator starts over (which makes str0m probe) once it has got less than
//!   it wants for [`RESTART_EVERY`], then every [`RESTART_AT_MOST_EVERY`] while that lasts, at once
//!   from what the link carried lately when it asks for much more, and once a lossy link has
//!   reported clean for [`CLEAR_FOR`]; never while a step up is proved.
//!
//! A probe whose packets pass a token-bucket policer's burst allowance (`tc tbf burst 4kb`) can
//! read several times the link's rate, and nothing contradicts that reading for as long as the
//! subscriber sends little. The layer choice therefore proves a step up between a publisher's
//! simulcast layers before it takes it ([`crate::layers::PROVE_FOR`]): str0m is told to keep the
//! link as full as the higher layer would ([`DesiredRate::prove`]: its padding makes up the
//! difference), which a policer answers with loss and a falling estimate, before any keyframe of
//! the higher layer is spent on it.

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
/// weak, each restart's probes cost a few lost packets (a reading they raise is proved before a
/// simulcast layer is switched to), and on a healthy one a restart can knock the estimate down.
pub const RESTART_EVERY: Duration = Duration::from_secs(5);
const RESTART_AT_MOST_EVERY: Duration = Duration::from_secs(16);
/// Reported loss that marks a link as lossy, and below which a lossy link counts as cleared: a
/// sign it changed, worth a look at once.
const LOSSY: f32 = 0.02;
const CLEARED: f32 = 0.01;
/// How long a lossy link must report under [`CLEARED`] to count as cleared: a link that loses
/// packets at random reports a clean second now and then, and each restart's probes cost it.
const CLEAR_FOR: Duration = Duration::from_secs(1);
/// A rise of what a subscriber could use by this factor (a tile enlarged, a camera added) makes
/// its estimator start over at once; smaller rises are layer rates settling.
const ASKED_MORE: f64 = 2.0;
/// Loss is measured over the receiver's reports that span at least this many packets: the
/// fraction lost in one report's interval counts the few packets of a weak link's video (a dozen
/// in half a second), where one random loss reads as 10 or 25 %. Back at most [`LOSS_FRESH`].
const LOSS_PACKETS: u64 = 30;

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
    /// The loss the receiver reported lately for each m-line (RTCP receiver reports), and when:
    /// the fraction of its last interval, and the loss measured over enough packets to tell a
    /// link that is overrun from one that loses a packet at random, when known.
    reported_loss: HashMap<Mid, (Instant, f32, Option<f32>)>,
    /// The share of packets that transport-wide feedback (TWCC) reported lost over the last
    /// second, and when: every packet of every m-line counts, fresh each second.
    transport_loss: Option<(Instant, f32)>,
    /// Each m-line's recent reports: when, the packets expected (its highest sequence number)
    /// and the packets lost so far.
    reports: HashMap<Mid, VecDeque<(Instant, u64, u64)>>,
    /// The estimates of the last [`STEADY_FOR`] (and the one in force when it began).
    recent: VecDeque<(Instant, f64)>,
    /// The latest of them: a rise before it has held.
    reading: Option<f64>,
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

    /// The estimate [`Self::budget`] read last, before a rise has held: a step up is proved
    /// from it ([`crate::layers::PROVE_FOR`]).
    pub fn reading(&self) -> Option<f64> {
        self.reading
    }

    /// str0m's smoothed estimate changed.
    pub fn on_estimate(&mut self, bps: f64) {
        self.smoothed = Some(bps);
    }

    /// str0m's peer stats: its latest estimate, the media bytes sent so far and the loss that
    /// transport-wide feedback showed over the last second.
    pub fn on_stats(&mut self, at: Instant, latest: Option<f64>, bytes_sent: u64, transport_loss: Option<f32>) {
        self.latest = latest;
        if let Some(loss) = transport_loss {
            self.transport_loss = Some((at, loss));
        }
        if let Some((then, bytes)) = self.sent {
            let secs = at.saturating_duration_since(then).as_secs_f64();
            if secs > 0.0 {
                self.sent_bps = Some(bytes_sent.saturating_sub(bytes) as f64 * 8.0 / secs);
            }
        }
        self.sent = Some((at, bytes_sent));
    }

    /// The receiver reported on m-line `mid` at `at`: the fraction lost in its last interval and,
    /// when known, its highest sequence number received and the packets lost so far. With the
    /// counts, the loss is measured over the last [`LOSS_PACKETS`] packets or more.
    pub fn on_reported_loss(&mut self, at: Instant, mid: Mid, fraction: f32, counts: Option<(u64, u64)>) {
        let Some((expected, lost)) = counts else {
            self.reported_loss.insert(mid, (at, fraction, Some(fraction)));
            return;
        };
        let reports = self.reports.entry(mid).or_default();
        if reports.back().is_some_and(|(_, e, _)| *e == expected) {
            // No packet since the last report: nothing new to measure.
            return;
        }
        reports.push_back((at, expected, lost));
        while reports.front().is_some_and(|(t, _, _)| at.saturating_duration_since(*t) > LOSS_FRESH) {
            reports.pop_front();
        }
        let base = reports.iter().rev().skip(1).find(|(_, e, _)| expected.saturating_sub(*e) >= LOSS_PACKETS);
        // Without an earlier report that far back in the last few seconds there is nothing to
        // measure: too few packets yet, or the first report after video was off, which spans
        // the pause.
        let measured = base.map(|(_, e, l)| (lost.saturating_sub(*l) as f64 / expected.saturating_sub(*e).max(1) as f64).min(1.0) as f32);
        self.reported_loss.insert(mid, (at, fraction, measured));
    }

    /// Forgets reports older than [`LOSS_FRESH`], and the m-lines that sent none since (one that
    /// went away keeps nothing).
    fn forget_stale_reports(&mut self, now: Instant) {
        let fresh = |at: &Instant| now.saturating_duration_since(*at) < LOSS_FRESH;
        self.reported_loss.retain(|_, (at, _, _)| fresh(at));
        self.reports.retain(|_, r| r.back().is_some_and(|(at, _, _)| fresh(at)));
        self.transport_loss = self.transport_loss.filter(|(at, _)| fresh(at));
    }

    /// The loss measured over enough packets lately (the highest over the m-lines, and what
    /// transport-wide feedback showed): what the budget is cut by when a link is overrun.
    fn measured_loss(&mut self, now: Instant) -> f32 {
        self.forget_stale_reports(now);
        let transport = self.transport_loss.map_or(0.0, |(_, l)| l);
        self.reported_loss.values().filter_map(|(_, _, m)| *m).fold(transport, f32::max)
    }

    /// The highest loss the receiver reported lately over its m-lines (a fraction).
    pub fn loss(&mut self, now: Instant) -> f32 {
        self.forget_stale_reports(now);
        let transport = self.transport_loss.map_or(0.0, |(_, l)| l);
        self.reported_loss.values().map(|(_, l, _)| *l).fold(transport, f32::max)
    }

    /// What the link carries as far as keeping media on at all goes, bit/s, given the `budget`
    /// layers are chosen by ([`Self::budget`]): at least what it delivered lately (what was sent
    /// less what the receiver reports lost), which str0m's estimate of a link that loses packets
    /// at random reads below — unless the receiver reports more than [`HIGH_LOSS`]: that link is
    /// overrun. Loss reports lag a fall by a second or two, which is why layers are not chosen by
    /// this.
    pub fn carries(&mut self, now: Instant, budget: f64) -> f64 {
        let loss = self.loss(now);
        match self.sent_bps {
            Some(sent) if loss <= HIGH_LOSS => budget.max(sent * (1.0 - f64::from(loss))),
            _ => budget,
        }
    }

    /// The estimate to choose layers by at `now`, bit/s: `None` until str0m has one (a receiver
    /// without TWCC feedback never gives one).
    pub fn budget(&mut self, now: Instant) -> Option<f64> {
        let smoothed = self.smoothed?;
        let mut estimate = self.latest.map_or(smoothed, |l| smoothed.min(l));
        let measured = self.measured_loss(now);
        if measured > HIGH_LOSS
            && let Some(sent) = self.sent_bps
        {
            estimate = estimate.min(sent * (1.0 - 0.5 * f64::from(measured)));
        }
        let loss = self.loss(now);
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
        self.reading = Some(estimate);
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
/// [`RESTART_AT_MOST_EVERY`] while it stays there (each restart's probes cost a weak link a few
/// packets, audio's among them); at once when a lossy link stops losing packets (a link that
/// recovered: a village's uplink freed, a tower back), and when the subscriber asks for much more
/// ([`ASKED_MORE`]: a tile enlarged, a camera added), from what the link carried in the last
/// minute if that is more.
#[derive(Debug, Clone, Default)]
pub struct DesiredRate {
    given: Option<f64>,
    restarted: Option<Instant>,
    /// The time between two restarts while the subscriber stays below what it wants.
    interval: Duration,
    /// Since when the estimate has been below what the subscriber wants.
    short_since: Option<Instant>,
    /// Whether its receiver reported [`LOSSY`] loss lately, and since when a lossy link has
    /// reported under [`CLEARED`].
    lossy: bool,
    clear_since: Option<Instant>,
    /// The rate the link is kept at while a step up is proved (media and padding), bit/s.
    proving: f64,
}

impl DesiredRate {
    /// The rate the estimator was last told to find room for, bit/s.
    pub fn given(&self) -> f64 {
        self.given.unwrap_or(0.0)
    }

    /// The rate the link is kept at while a step up is proved, bit/s (0: none).
    pub fn proving(&self) -> f64 {
        self.proving
    }

    /// The rate to keep the link at while a step up is proved (0: none, no padding beyond
    /// str0m's own); returns whether the estimator must be told.
    pub fn prove(&mut self, bps: f64) -> bool {
        let changed = (bps - self.proving).abs() > DESIRED_CHANGE * self.proving.max(1.0) || (bps == 0.0) != (self.proving == 0.0);
        if changed {
            self.proving = bps;
        }
        changed
    }

    /// A lossy link cleared and was looked at: lossy no more.
    fn settle_clear(&mut self) {
        self.lossy = false;
        self.clear_since = None;
    }

    /// Takes in what the subscriber could use now (`wanted`, bit/s), the estimate it gets, the
    /// highest rate its link carried lately and the loss its receiver reports now; returns what to
    /// tell the estimator at this update. Asked for more, the estimator starts from what the link
    /// carried lately, up to what is wanted (a viewer who shrank a tile and enlarges it again gets
    /// it back in seconds).
    pub fn update(&mut self, now: Instant, wanted: f64, estimate: Option<f64>, carried: Option<f64>, loss: f32) -> EstimatorRequest {
        let mut request = EstimatorRequest::default();
        self.clear_since = if self.lossy && loss < CLEARED { Some(self.clear_since.unwrap_or(now)) } else { None };
        let cleared = self.clear_since.is_some_and(|t| now.saturating_duration_since(t) >= CLEAR_FOR);
        if loss >= LOSSY {
            self.lossy = true;
        }
        // A cleared link stays marked lossy until it has been looked at (a restart may have to
        // wait for the last one to be RESTART_EVERY ago), or there is nothing to look for.
        if wanted <= 0.0 {
            if cleared {
                self.settle_clear();
            }
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
        // Never while a step up is proved: a restart would throw away the reading it stands on.
        let proving = self.proving > 0.0;
        if let Some(e) = short
            && !proving
            && (asked_more || held || (cleared && long_ago(self.restarted)))
        {
            if held {
                self.interval = (interval * 2).min(RESTART_AT_MOST_EVERY);
            }
            self.restarted = Some(now);
            let remembered = carried.filter(|_| asked_more).map_or(0.0, |c| c.min(wanted));
            request.restart_from = Some(e.max(remembered));
        }
        if cleared && (short.is_none() || request.restart_from.is_some()) {
            self.settle_clear();
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
            side.on_stats(at(*ms), Some(*latest), 0, None);
            assert_eq!(side.budget(at(*ms)), Some(*want), "at {ms} ms");
        }
    }

    #[test]
    fn asked_for_more_the_estimator_starts_from_what_the_link_carried_lately() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut side = SendSide::default();
        side.on_estimate(1_500_000.0);
        side.on_stats(t0, None, 0, None);
        side.on_stats(at(1), None, 125_000, None); // 1 Mbit/s carried, nothing reported lost
        side.budget(at(1));
        side.on_stats(at(2), None, 140_000, None); // then 120 kbit/s (a small tile)
        side.budget(at(2));
        assert_eq!(side.carried(), Some(1_000_000.0), "the best rate of the last minute");
        let mut rate = DesiredRate::default();
        rate.update(at(2), 150_000.0, Some(200_000.0), side.carried(), 0.0);
        let bigger = rate.update(at(3), 1_300_000.0, Some(200_000.0), side.carried(), 0.0);
        assert_eq!(bigger.restart_from, Some(1_000_000.0), "a bigger tile: from what the link carried");
        side.on_reported_loss(at(5), Mid::from("1"), 0.3, None);
        side.on_stats(at(5), None, 150_000, None);
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
        side.on_stats(t0, Some(500_000.0), 0, None);
        side.on_stats(at(1_000), Some(500_000.0), 50_000, None); // 400 kbit/s sent
        side.on_reported_loss(at(1_000), audio, 0.05, None);
        side.on_reported_loss(at(1_000), video, 0.15, None);
        assert_eq!(side.budget(at(1_000)), Some(500_000.0), "loss up to 20 % is left to the estimator");
        side.on_reported_loss(at(1_500), video, 0.5, None);
        assert_eq!(side.budget(at(1_500)), Some(300_000.0), "half lost: what was sent less a quarter");
        side.on_stats(at(4_500), Some(500_000.0), 150_000, None);
        assert_eq!(side.budget(at(4_500)), Some(300_000.0), "the fall is in the window");
        side.on_stats(at(6_500), Some(500_000.0), 250_000, None);
        assert_eq!(side.budget(at(6_500)), Some(500_000.0), "no fresh report of loss (the m-line went away)");
    }

    #[test]
    fn loss_cuts_the_budget_only_when_measured_over_enough_packets() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let video = Mid::from("1");
        let mut side = SendSide::default();
        side.on_estimate(300_000.0);
        side.on_stats(t0, Some(300_000.0), 0, None);
        side.on_stats(at(1_000), Some(300_000.0), 12_500, None); // 100 kbit/s sent
        // (ms, highest sequence number, lost so far, the fraction of the report's own interval):
        // a dozen packets a report, and one lost reads as a quarter of an interval.
        let reports: &[(u64, u64, u64, f32)] = &[(0, 1_000, 0, 0.0), (500, 1_008, 2, 0.25), (1_000, 1_016, 2, 0.0), (1_500, 1_024, 2, 0.0)];
        for (ms, seq, lost, fraction) in reports {
            side.on_reported_loss(at(*ms), video, *fraction, Some((*seq, *lost)));
        }
        assert_eq!(side.measured_loss(at(1_500)), 0.0, "24 packets are too few to measure");
        assert_eq!(side.budget(at(1_500)), Some(300_000.0));
        assert_eq!(side.loss(at(1_500)), 0.0, "the last interval lost nothing");
        side.on_reported_loss(at(2_000), video, 0.0, Some((1_032, 2)));
        assert_eq!(side.measured_loss(at(2_000)), 2.0 / 32.0, "two of 32");
        // A heavy loss measured over enough packets cuts the budget to what was sent less half.
        side.on_reported_loss(at(2_500), video, 0.5, Some((1_064, 18)));
        assert_eq!(side.measured_loss(at(2_500)), 0.5, "16 of the last 32");
        assert_eq!(side.budget(at(2_500)), Some(75_000.0));
        // The first report after five silent seconds (video off) spans the pause.
        side.on_reported_loss(at(8_000), video, 0.6, Some((1_100, 40)));
        assert_eq!(side.measured_loss(at(8_000)), 0.0, "nothing to measure against");
        assert_eq!(side.loss(at(8_000)), 0.6, "the receiver's own fraction still marks the link lossy");
        // Transport-wide feedback counts every packet, fresh each second.
        side.on_stats(at(8_500), Some(300_000.0), 25_000, Some(0.3));
        assert_eq!(side.measured_loss(at(8_500)), 0.3);
    }

    #[test]
    fn no_restart_while_a_step_up_is_proved() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut rate = DesiredRate::default();
        rate.update(at(0), 1_300_000.0, Some(150_000.0), None, 0.0);
        assert!(rate.prove(415_000.0), "the estimator is told to keep the link that full");
        assert!(!rate.prove(420_000.0), "a wobble is not passed on");
        assert_eq!(rate.proving(), 415_000.0);
        assert_eq!(rate.update(at(6_000), 1_300_000.0, Some(150_000.0), None, 0.0).restart_from, None, "proving");
        assert!(rate.prove(0.0));
        assert_eq!(rate.update(at(6_500), 1_300_000.0, Some(150_000.0), None, 0.0).restart_from, Some(150_000.0));
    }

    #[test]
    fn a_subscriber_below_what_it_wants_has_its_estimator_look_again() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let ask = |desire: Option<f64>, restart_from: Option<f64>| EstimatorRequest { desire, restart_from };
        let mut rate = DesiredRate::default();
        // (ms, wanted, estimate, reported loss, what the estimator is told)
        let steps: &[(u64, f64, Option<f64>, f32, EstimatorRequest)] = &[
            (0, 40_000.0, None, 0.0, ask(Some(40_000.0), None)), // audio only so far
            (500, 1_300_000.0, Some(300_000.0), 0.0, ask(Some(1_300_000.0), Some(300_000.0))), // a camera: look now
            (1_000, 1_350_000.0, Some(300_000.0), 0.0, ask(None, None)), // a wobble is not passed on
            (1_500, 1_700_000.0, Some(300_000.0), 0.0, ask(Some(1_700_000.0), None)), // rates settling: str0m probes
            (5_000, 1_700_000.0, Some(300_000.0), 0.0, ask(None, None)), // below since 500 ms
            (5_500, 1_700_000.0, Some(320_000.0), 0.0, ask(None, Some(320_000.0))), // for 5 s: look again
            (10_500, 1_700_000.0, Some(300_000.0), 0.0, ask(None, None)), // then twice as long
            (15_000, 1_700_000.0, Some(300_000.0), 0.0, ask(None, None)),
            (15_500, 1_700_000.0, Some(300_000.0), 0.0, ask(None, Some(300_000.0))),
            (31_000, 1_700_000.0, Some(300_000.0), 0.0, ask(None, None)), // and at most 16 s
            (31_500, 1_700_000.0, Some(300_000.0), 0.0, ask(None, Some(300_000.0))),
            (36_000, 1_700_000.0, Some(300_000.0), 0.05, ask(None, None)), // a lossy link
            (37_000, 1_700_000.0, Some(300_000.0), 0.015, ask(None, None)), // a little better is not cleared
            (37_500, 1_700_000.0, Some(300_000.0), 0.0, ask(None, None)),  // nor is a clean report
            (38_000, 1_700_000.0, Some(300_000.0), 0.05, ask(None, None)), // among lossy ones
            (38_500, 1_700_000.0, Some(300_000.0), 0.0, ask(None, None)),
            (40_000, 1_700_000.0, Some(300_000.0), 0.0, ask(None, Some(300_000.0))), // clean for a second: look now
            (41_000, 1_700_000.0, Some(300_000.0), 0.0, ask(None, None)),
            (41_500, 1_700_000.0, Some(2_000_000.0), 0.0, ask(None, None)), // it gets what it wants: quiet
            (44_000, 1_700_000.0, Some(2_000_000.0), 0.0, ask(None, None)),
            (44_500, 1_700_000.0, Some(150_000.0), 0.0, ask(None, None)), // the link falls: the estimator is busy
            (49_000, 1_700_000.0, Some(150_000.0), 0.0, ask(None, None)),
            (49_500, 1_700_000.0, Some(150_000.0), 0.0, ask(None, Some(150_000.0))), // held below for 5 s again
            (50_000, 100_000.0, Some(150_000.0), 0.0, ask(Some(100_000.0), None)),   // wants less (a small tile)
            (56_000, 100_000.0, Some(150_000.0), 0.0, ask(None, None)),              // and has it
            (56_500, 1_700_000.0, Some(150_000.0), 0.0, ask(Some(1_700_000.0), Some(150_000.0))), // asks for more: look now
            (57_000, 0.0, None, 0.0, ask(None, None)),                               // nothing to receive
        ];
        for (ms, wanted, estimate, loss, want) in steps {
            assert_eq!(rate.update(at(*ms), *wanted, *estimate, None, *loss), *want, "at {ms} ms");
        }
    }
}
