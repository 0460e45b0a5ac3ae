//! What a load run does: rooms, publishers and subscribers per room (a ramp of steps), media,
//! timing, and the subscribers' emulated link. Read from TOML, overridden by flags.

use serde::Deserialize;

use crate::relay::Impairment;
use crate::report::{Limit, StepReport};

/// A load scenario. Every field has a default, so `name = "smoke"` alone is a scenario.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Scenario {
    /// A name for the report.
    pub name: String,
    /// Rooms, each with its own publishers and subscribers.
    pub rooms: u32,
    /// WHIP publishers per room (players follow the first).
    pub publishers_per_room: u32,
    /// WHEP subscribers per room at each step, rising (a ramp); each step is measured apart.
    pub subscribers: Vec<u32>,
    /// The publishers' video bitrate, kbit/s (ignored with `simulcast`).
    pub video_kbps: u32,
    /// The publishers' video size (ignored with `simulcast`).
    pub width: u32,
    /// The publishers' video size (ignored with `simulcast`).
    pub height: u32,
    /// Every publisher sends simulcast: the three layers of
    /// [`VideoSpec::simulcast_ladder`](crate::media::VideoSpec::simulcast_ladder) (`q` 320×180
    /// 90 kbit/s, `h` 640×360 350 kbit/s, `f` 1280×720 1.2 Mbit/s) by rid on one m-line, instead
    /// of one stream of `video_kbps` at `width`×`height`.
    pub simulcast: bool,
    /// The measuring window of each step, seconds.
    pub seconds: u32,
    /// Quiet time between the last join of a step and its window, seconds.
    pub settle_seconds: u32,
    /// New subscribers per second.
    pub join_rate: f64,
    /// Every subscriber's link, through the seeded relay; none for a clean loopback.
    pub link: Option<LinkSpec>,
    /// After the steps of `subscribers`, add steps until a limit is reached.
    pub ramp: Option<RampSpec>,
}

/// A ramp after the fixed steps: `step` more subscribers per room at a time, up to `max`, until
/// frame loss passes `max_frame_loss`, the server uses `saturated_cpu_percent` of a core, or
/// the generator is bound.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RampSpec {
    /// Subscribers per room added at each ramp step.
    pub step: u32,
    /// Subscribers per room at most.
    pub max: u32,
    /// Frame loss (0–1) above which the ramp stops.
    pub max_frame_loss: f64,
    /// Server CPU, % of one core, at which its core counts as saturated.
    pub saturated_cpu_percent: f64,
}

impl Default for RampSpec {
    fn default() -> Self {
        RampSpec { step: 50, max: 400, max_frame_loss: 0.01, saturated_cpu_percent: 90.0 }
    }
}

impl RampSpec {
    /// The limit `step` reached, if any. The generator comes first: once it is bound the other
    /// figures describe it, not the server.
    pub fn limit(&self, step: &StepReport) -> Option<Limit> {
        if step.generator.bound {
            Some(Limit::Generator)
        } else if step.server.cpu_percent_of_core >= self.saturated_cpu_percent {
            Some(Limit::ServerCpu)
        } else if step.totals.frame_loss > self.max_frame_loss {
            Some(Limit::FrameLoss)
        } else {
            None
        }
    }
}

/// A subscriber's emulated link (both directions).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinkSpec {
    /// Random loss, 0–1.
    pub loss: f64,
    /// One-way delay, ms.
    pub delay_ms: u32,
    /// Extra random delay up to this, ms.
    pub jitter_ms: u32,
    /// Rate cap towards the subscriber, kbit/s.
    pub cap_kbps: Option<u32>,
    /// Seed of every random decision.
    pub seed: u64,
}

impl Default for LinkSpec {
    fn default() -> Self {
        LinkSpec { loss: 0.0, delay_ms: 0, jitter_ms: 0, cap_kbps: None, seed: 1 }
    }
}

impl LinkSpec {
    /// The relay's impairment towards the subscriber, and back.
    pub fn impairments(&self) -> (Impairment, Impairment) {
        let base = Impairment {
            loss: self.loss,
            delay: std::time::Duration::from_millis(u64::from(self.delay_ms)),
            jitter: std::time::Duration::from_millis(u64::from(self.jitter_ms)),
            ..Impairment::default()
        };
        let down = match self.cap_kbps {
            Some(kbps) => Impairment { rate_bps: Some(u64::from(kbps) * 1000), ..Impairment::cap(1) }.with(base),
            None => base,
        };
        (down, base)
    }
}

impl Impairment {
    /// This cap with `other`'s loss, delay and jitter.
    fn with(self, other: Impairment) -> Impairment {
        Impairment { loss: other.loss, delay: other.delay, jitter: other.jitter, ..self }
    }
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            name: "fan-out".into(),
            rooms: 1,
            publishers_per_room: 1,
            subscribers: vec![10],
            video_kbps: 1000,
            width: 1280,
            height: 720,
            simulcast: false,
            seconds: 20,
            settle_seconds: 3,
            join_rate: 10.0,
            link: None,
            ramp: None,
        }
    }
}

impl Scenario {
    /// Parses a TOML scenario and checks it.
    pub fn from_toml(text: &str) -> Result<Scenario, String> {
        let s: Scenario = toml::from_str(text).map_err(|e| e.to_string())?;
        s.validate()?;
        Ok(s)
    }

    /// Checks every field; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        let bad = |field: &str, why: &str| Err(format!("{field}: {why}"));
        if !(1..=20).contains(&self.rooms) {
            return bad("rooms", "1 to 20");
        }
        if !(1..=4).contains(&self.publishers_per_room) {
            return bad("publishers_per_room", "1 to 4");
        }
        if self.subscribers.is_empty() || self.subscribers.iter().any(|n| !(1..=400).contains(n)) {
            return bad("subscribers", "one or more steps of 1 to 400 per room");
        }
        if self.subscribers.windows(2).any(|w| w[1] < w[0]) {
            return bad("subscribers", "steps must not fall (a ramp)");
        }
        if self.rooms * self.subscribers.last().copied().unwrap_or(0) > 400 {
            return bad("subscribers", "at most 400 subscribers in all rooms");
        }
        if let Some(ramp) = &self.ramp {
            if ramp.step == 0 {
                return bad("ramp", "step: at least 1");
            }
            if ramp.max * self.rooms > 400 {
                return bad("ramp", "max: at most 400 subscribers in all rooms");
            }
            if !(ramp.max_frame_loss > 0.0 && ramp.max_frame_loss < 1.0) {
                return bad("ramp", "max_frame_loss: between 0 and 1");
            }
            if !(ramp.saturated_cpu_percent > 0.0 && ramp.saturated_cpu_percent <= 100.0) {
                return bad("ramp", "saturated_cpu_percent: above 0, at most 100");
            }
        }
        if !(50..=5000).contains(&self.video_kbps) {
            return bad("video_kbps", "50 to 5000");
        }
        if !(1..=600).contains(&self.seconds) {
            return bad("seconds", "1 to 600");
        }
        if self.settle_seconds > 60 {
            return bad("settle_seconds", "at most 60");
        }
        if !(self.join_rate > 0.0 && self.join_rate <= 200.0) {
            return bad("join_rate", "above 0, at most 200 per second");
        }
        if let Some(link) = &self.link {
            let (down, up) = link.impairments();
            down.validate().and(up.validate()).map_err(|e| format!("link: {e}"))?;
        }
        crate::media::VideoSpec {
            width: self.width,
            height: self.height,
            fps: 30,
            bitrate_bps: self.video_kbps * 1000,
            seconds: 10,
            keyframe_interval_frames: 60,
        }
        .validate()
        .map_err(|e| format!("width/height: {e}"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::RampOutcome;
    use crate::report::tests::four_step_report;

    #[test]
    fn the_ramp_names_the_generator_first_then_a_saturated_core_then_loss() {
        let ramp = RampSpec::default();
        let mut steps = four_step_report().steps;
        assert_eq!(ramp.limit(&steps[0]), None, "9 % CPU, 0.04 % loss, generator at 12 %");
        assert_eq!(ramp.limit(&steps[3]), Some(Limit::Generator));
        steps[3].server.cpu_percent_of_core = 99.0;
        assert_eq!(ramp.limit(&steps[3]), Some(Limit::Generator), "a bound generator explains the rest");
        steps[1].server.cpu_percent_of_core = 95.0;
        assert_eq!(ramp.limit(&steps[1]), Some(Limit::ServerCpu));
        steps[2].totals.frame_loss = 0.02;
        assert_eq!(ramp.limit(&steps[2]), Some(Limit::FrameLoss));
        let outcome = RampOutcome::new(&steps[2], Limit::FrameLoss, 90.0);
        assert_eq!((outcome.subscribers, outcome.limited_by()), (50, "generator"), "generator 61 % of 85 beats server 33 % of 90");
        assert!(outcome.describe().starts_with("frame loss 2.00 % at 50 subscribers"), "{}", outcome.describe());
        steps[2].server.cpu_percent_of_core = 80.0;
        assert_eq!(RampOutcome::new(&steps[2], Limit::FrameLoss, 90.0).limited_by(), "server");
        assert_eq!(RampOutcome::new(&steps[3], Limit::Generator, 90.0).limited_by(), "generator");
    }

    #[test]
    fn toml_scenarios_parse_and_bad_ones_name_the_field() {
        let s = Scenario::from_toml("name = \"ramp\"\nsubscribers = [10, 25, 50]\n[link]\nloss = 0.1\ncap_kbps = 300\n").unwrap();
        assert_eq!(s.subscribers, [10, 25, 50]);
        assert!(!s.simulcast);
        assert!(Scenario::from_toml("simulcast = true").unwrap().simulcast);
        let (down, up) = s.link.unwrap().impairments();
        assert_eq!((down.rate_bps, down.loss, up.rate_bps, up.loss), (Some(300_000), 0.1, None, 0.1));
        for (text, field) in [
            ("subscribers = [5, 3]", "subscribers"),
            ("subscribers = []", "subscribers"),
            ("rooms = 0", "rooms"),
            ("video_kbps = 1", "video_kbps"),
            ("join_rate = 0.0", "join_rate"),
            ("[link]\nloss = 2.0", "link"),
            ("width = 7", "width"),
        ] {
            let e = Scenario::from_toml(text).unwrap_err();
            assert!(e.starts_with(field), "{text}: {e}");
        }
        assert!(Scenario::from_toml("colour = 1").unwrap_err().contains("unknown field"));
        let ramp = Scenario::from_toml("[ramp]\nstep = 25").unwrap().ramp.unwrap();
        assert_eq!((ramp.step, ramp.max, ramp.max_frame_loss), (25, 400, 0.01));
        assert!(Scenario::from_toml("rooms = 2\n[ramp]\nmax = 300").unwrap_err().starts_with("ramp"));
        assert!(Scenario::from_toml("[ramp]\nstep = 0").unwrap_err().starts_with("ramp"));
    }
}
