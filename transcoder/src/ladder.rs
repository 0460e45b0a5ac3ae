//! The ladder planner: which renditions a source gets, as a pure function of the source and a
//! policy. No codec is touched here.

use serde::Deserialize;

/// The codec of a publisher's track, as the SFU negotiated it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum SourceCodec {
    /// H.264, the only video codec the transcoder decodes.
    H264,
    /// VP8 (browsers' simulcast already brings its own low layers).
    Vp8,
    /// VP9.
    Vp9,
    /// AV1.
    Av1,
    /// Opus audio.
    Opus,
}

impl SourceCodec {
    /// Whether this is a video codec.
    #[must_use]
    pub const fn is_video(self) -> bool {
        !matches!(self, Self::Opus)
    }
}

/// What the publisher sends on one track.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SourceTrack {
    /// The negotiated codec.
    pub codec: SourceCodec,
    /// Picture width in pixels (0 for audio).
    pub width: u32,
    /// Picture height in pixels (0 for audio).
    pub height: u32,
    /// Frames per second the publisher sends (0 when not known yet).
    pub fps: f32,
    /// The measured or announced bitrate, bits per second (0 when not known yet).
    pub bitrate_bps: u32,
}

/// One rung a policy asks for, before it meets a source.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RungSpec {
    /// A short name the SFU can turn into a layer id, such as `"360p"`.
    pub name: String,
    /// The short side of the picture in pixels (the height of a landscape picture, the width of
    /// a portrait one), so a phone held upright gets the same pixel budget as a laptop.
    pub short_side: u32,
    /// Target bitrate in bits per second.
    pub bitrate_bps: u32,
    /// Frame rate in frames per second.
    pub fps: u32,
}

/// How a room kind wants its server-side ladder made. Deserializable, so it can sit in the
/// server's configuration, one per room kind:
///
/// ```toml
/// [transcoder.ladder.lesson]
/// rungs = [
///   { name = "360p", short_side = 360, bitrate_bps = 350000, fps = 15 },
///   { name = "180p", short_side = 180, bitrate_bps = 80000, fps = 15 },
/// ]
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LadderPolicy {
    /// Rungs, any order; the plan lists them highest first.
    pub rungs: Vec<RungSpec>,
    /// A rung's bitrate is capped at this share of the source's bitrate (when that is known), so
    /// a starved source is not re-encoded at more bits than it carries.
    pub max_share_of_source: f32,
    /// A rung whose (capped) bitrate falls below this is left out.
    pub min_rung_bitrate_bps: u32,
}

impl Default for LadderPolicy {
    /// 360p at 350 kbit/s and 180p at 80 kbit/s, both 15 fps: 180p + 16 kbit/s Opus (with its
    /// redundancy on a lossy link) + RTP overhead fits a 150 kbit/s classroom link with room to
    /// spare (at 90 kbit/s a policed 150 kbit/s link overflowed and video went off for stretches;
    /// at 80 the quality test reads 27.5 dB, 14.3 fps).
    fn default() -> Self {
        Self {
            rungs: vec![
                RungSpec { name: "360p".into(), short_side: 360, bitrate_bps: 350_000, fps: 15 },
                RungSpec { name: "180p".into(), short_side: 180, bitrate_bps: 80_000, fps: 15 },
            ],
            max_share_of_source: 0.75,
            min_rung_bitrate_bps: 30_000,
        }
    }
}

/// One rendition to make: the policy's rung fitted to a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rung {
    /// The policy's name for it.
    pub name: String,
    /// Width in pixels, even.
    pub width: u32,
    /// Height in pixels, even.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// Target bitrate in bits per second.
    pub bitrate_bps: u32,
    /// The policy's short side, kept so the size can be fitted again when the source's
    /// resolution changes (a phone turned on its side).
    pub short_side: u32,
}

impl Rung {
    /// This rung's picture size for a source of `width × height`: the short side becomes
    /// `short_side`, the aspect ratio is kept, both sides even. `None` when the source is not
    /// larger than the rung.
    #[must_use]
    pub fn fit(&self, width: u32, height: u32) -> Option<(u32, u32)> {
        fit_short_side(width, height, self.short_side)
    }
}

/// Scales `width × height` so that its short side is `short_side`, keeping the aspect ratio
/// and rounding both sides to even numbers (I420 needs them even). `None` when the source's
/// short side is not above `short_side`, or a side would come out below 2.
#[must_use]
pub fn fit_short_side(width: u32, height: u32, short_side: u32) -> Option<(u32, u32)> {
    let (short, long) = if width <= height { (width, height) } else { (height, width) };
    if short_side < 2 || short <= short_side {
        return None;
    }
    let even = |v: u32| (v / 2 * 2).max(2);
    let target_short = even(short_side);
    // Round to the nearest even number: long × short_side / short, in integers.
    let scaled_long = (u64::from(long) * u64::from(target_short) + u64::from(short)) / (2 * u64::from(short)) * 2;
    let target_long = u32::try_from(scaled_long).ok()?.max(2);
    Some(if width <= height { (target_short, target_long) } else { (target_long, target_short) })
}

/// Plans the ladder for a source: every rung of the policy whose short side is below the
/// source's, highest first, at no more than the source's frame rate and a bitrate capped by the
/// source's. Audio, codecs the transcoder cannot decode, and sources of unknown size get none.
#[must_use]
pub fn plan(source: &SourceTrack, policy: &LadderPolicy) -> Vec<Rung> {
    if source.codec != SourceCodec::H264 || source.width == 0 || source.height == 0 {
        return Vec::new();
    }
    let mut rungs: Vec<Rung> = policy
        .rungs
        .iter()
        .filter_map(|spec| {
            let (width, height) = fit_short_side(source.width, source.height, spec.short_side)?;
            let fps = if source.fps >= 1.0 { spec.fps.min(source.fps.round() as u32) } else { spec.fps };
            let mut bitrate_bps = spec.bitrate_bps;
            if source.bitrate_bps > 0 {
                let cap = (source.bitrate_bps as f32 * policy.max_share_of_source) as u32;
                bitrate_bps = bitrate_bps.min(cap);
            }
            (bitrate_bps >= policy.min_rung_bitrate_bps && fps >= 1).then(|| Rung {
                name: spec.name.clone(),
                width,
                height,
                fps,
                bitrate_bps,
                short_side: spec.short_side,
            })
        })
        .collect();
    rungs.sort_by_key(|rung| std::cmp::Reverse(rung.short_side));
    rungs.dedup_by_key(|rung| rung.short_side);
    rungs
}

/// When a publisher's Opus is re-encoded for weak links.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AudioPolicy {
    /// Publishers above this bitrate are re-encoded (OBS sends 128 kbit/s stereo); the room
    /// page's speech-sized Opus (≈ 20–24 kbit/s) stays as it is.
    pub reencode_above_bps: u32,
    /// The re-encoded bitrate: mono speech with in-band FEC and DTX.
    pub target_bps: u32,
}

impl Default for AudioPolicy {
    fn default() -> Self {
        Self { reencode_above_bps: 32_000, target_bps: 16_000 }
    }
}

impl AudioPolicy {
    /// Whether a publisher's audio at `publisher_bps` (measured or from its SDP) should be
    /// re-encoded.
    #[must_use]
    pub const fn should_reencode(&self, publisher_bps: u32) -> bool {
        publisher_bps > self.reencode_above_bps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h264(width: u32, height: u32, bitrate_bps: u32) -> SourceTrack {
        SourceTrack { codec: SourceCodec::H264, width, height, fps: 30.0, bitrate_bps }
    }

    /// Width, height and bitrate of each rung.
    type Sizes = [(u32, u32, u32)];

    fn sizes(rungs: &[Rung]) -> Vec<(u32, u32, u32)> {
        rungs.iter().map(|r| (r.width, r.height, r.bitrate_bps)).collect()
    }

    #[test]
    fn plans_follow_the_table() {
        let policy = LadderPolicy::default();
        let cases: &[(&str, SourceTrack, &Sizes)] = &[
            ("720p teacher", h264(1280, 720, 2_500_000), &[(640, 360, 350_000), (320, 180, 80_000)]),
            ("1080p OBS", h264(1920, 1080, 6_000_000), &[(640, 360, 350_000), (320, 180, 80_000)]),
            ("portrait phone", h264(720, 1280, 1_500_000), &[(360, 640, 350_000), (180, 320, 80_000)]),
            ("360p source: only 180p", h264(640, 360, 600_000), &[(320, 180, 80_000)]),
            ("between the rungs", h264(480, 270, 400_000), &[(320, 180, 80_000)]),
            ("180p source: nothing", h264(320, 180, 150_000), &[]),
            ("tiny source: nothing", h264(160, 90, 50_000), &[]),
            ("odd 4:3 size, even dims", h264(1023, 767, 1_000_000), &[(480, 360, 350_000), (240, 180, 80_000)]),
            ("odd ultra-wide", h264(1279, 541, 1_000_000), &[(852, 360, 350_000), (426, 180, 80_000)]),
            ("starved source caps bitrates", h264(1280, 720, 200_000), &[(640, 360, 150_000), (320, 180, 80_000)]),
            ("very starved: rungs below the floor go", h264(1280, 720, 30_000), &[]),
            ("unknown bitrate keeps targets", h264(1280, 720, 0), &[(640, 360, 350_000), (320, 180, 80_000)]),
            ("audio only", SourceTrack { codec: SourceCodec::Opus, width: 0, height: 0, fps: 0.0, bitrate_bps: 128_000 }, &[]),
            ("VP8 is not decoded", SourceTrack { codec: SourceCodec::Vp8, ..h264(1280, 720, 1_000_000) }, &[]),
        ];
        for (what, source, want) in cases {
            let got = plan(source, &policy);
            assert_eq!(sizes(&got), *want, "{what}");
            for rung in &got {
                assert!(rung.width % 2 == 0 && rung.height % 2 == 0, "{what}: odd size {rung:?}");
                assert!(rung.width.min(rung.height) < source.width.min(source.height), "{what}: rung not below source");
            }
        }
    }

    #[test]
    fn frame_rate_never_exceeds_the_source() {
        let source = SourceTrack { fps: 10.0, ..h264(1280, 720, 1_000_000) };
        let rungs = plan(&source, &LadderPolicy::default());
        assert!(rungs.iter().all(|r| r.fps == 10), "{rungs:?}");
        let unknown = SourceTrack { fps: 0.0, ..h264(1280, 720, 1_000_000) };
        assert!(plan(&unknown, &LadderPolicy::default()).iter().all(|r| r.fps == 15));
    }

    #[test]
    fn default_180p_fits_a_150_kbit_link_with_audio() {
        let rungs = plan(&h264(1280, 720, 2_500_000), &LadderPolicy::default());
        let lowest = rungs.last().expect("a 720p source gets rungs");
        // Video + 16 kbit/s Opus + ~15 % RTP/UDP/IP overhead.
        let needed = f64::from(lowest.bitrate_bps + AudioPolicy::default().target_bps) * 1.15;
        assert!(needed <= 150_000.0, "{needed}");
    }

    #[test]
    fn a_resized_source_refits_the_rung() {
        let rung = &plan(&h264(1280, 720, 0), &LadderPolicy::default())[0];
        assert_eq!(rung.fit(720, 1280), Some((360, 640)));
        assert_eq!(rung.fit(640, 360), None);
    }

    #[test]
    fn policy_reads_from_toml_with_defaults() {
        let policy: LadderPolicy = toml::from_str(
            r#"
            max_share_of_source = 0.5
            rungs = [{ name = "240p", short_side = 240, bitrate_bps = 150000, fps = 12 }]
            "#,
        )
        .expect("valid policy");
        assert_eq!(policy.min_rung_bitrate_bps, LadderPolicy::default().min_rung_bitrate_bps);
        let rungs = plan(&h264(1280, 720, 1_000_000), &policy);
        assert_eq!(sizes(&rungs), [(426, 240, 150_000)]);
        assert_eq!(rungs[0].fps, 12);
        let empty: LadderPolicy = toml::from_str("").expect("all defaults");
        assert_eq!(empty, LadderPolicy::default());
        assert!(toml::from_str::<LadderPolicy>("rung = []").is_err(), "unknown keys are refused");
    }

    #[test]
    fn audio_is_reencoded_only_when_fat() {
        let policy = AudioPolicy::default();
        assert!(policy.should_reencode(128_000), "OBS");
        assert!(!policy.should_reencode(24_000), "room page");
        assert!(!policy.should_reencode(32_000), "at the threshold");
        let custom: AudioPolicy = toml::from_str("reencode_above_bps = 48000").expect("valid");
        assert_eq!(custom.target_bps, 16_000);
        assert!(!custom.should_reencode(40_000));
    }
}
