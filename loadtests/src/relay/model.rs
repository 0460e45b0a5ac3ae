//! The impairment model, sans-IO: given a packet's arrival time and size, decide whether it is
//! lost and when it leaves. Deterministic for a seed, so a test or a bug report can replay the
//! exact same drop pattern.

use std::time::{Duration, Instant};

/// What a link does to packets. Every field is optional in the sense that its neutral value
/// (no cap, 0 loss, 0 delay) leaves packets alone.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Impairment {
    /// Rate cap in bits per second (token bucket); `None` for no cap.
    pub rate_bps: Option<u64>,
    /// Bucket depth in bytes: how much may pass at line rate after an idle period.
    pub burst_bytes: u64,
    /// The longest a packet may wait for the cap before it is dropped (a router's queue).
    #[serde(with = "humantime_serde_opt")]
    pub queue_limit: Duration,
    /// Probability in 0..=1 that a packet is lost at random.
    pub loss: f64,
    /// One-way delay added to every packet.
    #[serde(with = "humantime_serde_opt")]
    pub delay: Duration,
    /// Extra delay uniformly drawn from 0..=jitter per packet (may reorder, as real jitter does).
    #[serde(with = "humantime_serde_opt")]
    pub jitter: Duration,
}

mod humantime_serde_opt {
    use std::time::Duration;

    use serde::Deserialize;

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

impl Impairment {
    /// A cap only, with a 4 KB bucket and a 200 ms queue (like `tc tbf ... burst 4kb latency 200ms`).
    pub fn cap(rate_bps: u64) -> Self {
        Impairment { rate_bps: Some(rate_bps), burst_bytes: 4096, queue_limit: Duration::from_millis(200), ..Self::default() }
    }

    /// Checks the values; returns the first bad field's name and why.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.loss) || self.loss.is_nan() {
            return Err(format!("loss must be between 0 and 1, got {}", self.loss));
        }
        if self.rate_bps == Some(0) {
            return Err("rate must be above 0 (leave it out for no cap)".into());
        }
        Ok(())
    }
}

/// SplitMix64: tiny, fast, and the same sequence on every platform and crate version.
#[derive(Debug, Clone)]
pub struct SeededRng(u64);

impl SeededRng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        SeededRng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform float in 0..1.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// What happens to one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Lost at random.
    Lost,
    /// Dropped because the queue behind the cap was full.
    QueueFull,
    /// Leaves at this instant.
    DeliverAt(Instant),
}

/// One direction of a link: an impairment plus the state it needs (bucket, queue, RNG).
#[derive(Debug, Clone)]
pub struct Link {
    impairment: Impairment,
    rng: SeededRng,
    /// The cap's theoretical arrival time (GCRA): when the line would be free without burst credit.
    tat: Option<Instant>,
    /// Counters.
    pub stats: LinkStats,
}

/// What a link did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Packets offered.
    pub offered: u64,
    /// Packets lost at random.
    pub lost: u64,
    /// Packets dropped at the full queue.
    pub queue_drops: u64,
    /// Packets delivered.
    pub delivered: u64,
    /// Bytes delivered.
    pub delivered_bytes: u64,
}

impl Link {
    /// A link with `impairment`, its randomness from `seed`.
    pub fn new(impairment: Impairment, seed: u64) -> Self {
        Link { impairment, rng: SeededRng::new(seed), tat: None, stats: LinkStats::default() }
    }

    /// Changes the impairment from now on (a schedule step); the RNG sequence continues.
    pub fn set(&mut self, impairment: Impairment) {
        self.impairment = impairment;
    }

    /// The impairment in force.
    pub fn impairment(&self) -> Impairment {
        self.impairment
    }

    /// Decides the fate of a `len`-byte packet arriving at `now`.
    pub fn on_packet(&mut self, now: Instant, len: usize) -> Verdict {
        self.stats.offered += 1;
        // Draw both random numbers for every packet, so the loss pattern for a seed does not
        // depend on the other settings.
        let loss_draw = self.rng.next_f64();
        let jitter_draw = self.rng.next_f64();
        if loss_draw < self.impairment.loss {
            self.stats.lost += 1;
            return Verdict::Lost;
        }
        let mut leaves = now;
        if let Some(rate) = self.impairment.rate_bps {
            // A token bucket as GCRA: each packet moves the line's virtual clock on by its
            // serialization time; up to `burst` bytes may run ahead of it; the rest waits in a
            // queue of at most `queue_limit`, and what would wait longer is dropped (drop-tail).
            let serialize = Duration::from_secs_f64(len as f64 * 8.0 / rate as f64);
            let credit = Duration::from_secs_f64(self.impairment.burst_bytes as f64 * 8.0 / rate as f64);
            let tat = self.tat.map_or(now, |t| t.max(now));
            let departs = tat.checked_sub(credit).map_or(now, |t| t.max(now));
            if departs.duration_since(now) > self.impairment.queue_limit {
                self.stats.queue_drops += 1;
                return Verdict::QueueFull;
            }
            self.tat = Some(tat + serialize);
            leaves = departs;
        }
        let jitter = self.impairment.jitter.mul_f64(jitter_draw);
        self.stats.delivered += 1;
        self.stats.delivered_bytes += len as u64;
        Verdict::DeliverAt(leaves + self.impairment.delay + jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Offers `count` packets of `len` bytes every `gap`; returns the verdicts.
    fn run(link: &mut Link, count: usize, len: usize, gap: Duration) -> (Instant, Vec<Verdict>) {
        let t0 = Instant::now();
        let verdicts = (0..count).map(|i| link.on_packet(t0 + gap * i as u32, len)).collect();
        (t0, verdicts)
    }

    #[test]
    fn a_seed_reproduces_the_same_drop_pattern() {
        let imp = Impairment { loss: 0.1, ..Impairment::default() };
        let pattern = |seed| {
            let mut link = Link::new(imp, seed);
            run(&mut link, 5000, 100, MS).1.iter().map(|v| *v == Verdict::Lost).collect::<Vec<_>>()
        };
        assert_eq!(pattern(42), pattern(42));
        assert_ne!(pattern(42), pattern(43));
        let lost = pattern(42).iter().filter(|l| **l).count() as f64 / 5000.0;
        assert!((0.09..=0.11).contains(&lost), "configured 10 %, lost {:.1} %", lost * 100.0);
    }

    #[test]
    fn the_cap_holds_the_delivered_rate() {
        // 1200-byte packets offered at 1 Mbit/s into a 300 kbit/s cap for 10 s.
        let mut link = Link::new(Impairment::cap(300_000), 1);
        let gap = Duration::from_secs_f64(1200.0 * 8.0 / 1_000_000.0);
        let (t0, verdicts) = run(&mut link, 1042, 1200, gap);
        let delivered: Vec<Instant> = verdicts.iter().filter_map(|v| if let Verdict::DeliverAt(t) = v { Some(*t) } else { None }).collect();
        let last = *delivered.iter().max().unwrap();
        let rate = delivered.len() as f64 * 1200.0 * 8.0 / last.duration_since(t0).as_secs_f64();
        assert!((285_000.0..=315_000.0).contains(&rate), "delivered {rate:.0} bit/s through a 300 kbit/s cap");
        assert!(link.stats.queue_drops > 500, "the excess is dropped at the queue: {:?}", link.stats);
        // Nothing waits longer than the queue allows (plus the bucket's credit).
        let max_wait = verdicts
            .iter()
            .zip(0..)
            .filter_map(|(v, i)| if let Verdict::DeliverAt(t) = v { Some(t.duration_since(t0 + gap * i)) } else { None })
            .max()
            .unwrap();
        assert!(max_wait <= Duration::from_millis(200), "{max_wait:?}");
    }

    #[test]
    fn under_the_cap_nothing_waits_and_delay_and_jitter_apply() {
        let imp =
            Impairment { rate_bps: Some(1_000_000), burst_bytes: 4096, queue_limit: 200 * MS, delay: 100 * MS, jitter: 20 * MS, loss: 0.0 };
        let mut link = Link::new(imp, 7);
        let (t0, verdicts) = run(&mut link, 500, 200, 10 * MS); // 160 kbit/s offered
        for (i, v) in verdicts.iter().enumerate() {
            let Verdict::DeliverAt(t) = v else { panic!("packet {i} dropped under the cap") };
            let extra = t.duration_since(t0 + 10 * MS * i as u32);
            assert!(extra >= 100 * MS && extra <= 122 * MS, "packet {i} delayed {extra:?}");
        }
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(Impairment { loss: 1.5, ..Impairment::default() }.validate().is_err());
        assert!(Impairment { rate_bps: Some(0), ..Impairment::default() }.validate().is_err());
        assert!(Impairment::cap(150_000).validate().is_ok());
    }
}
