//! Pre-encoded media for the load generator's simulated publishers.
//!
//! A publisher must not spend its CPU encoding: the generator would then measure itself. So the
//! media is encoded once, ahead of time, and looped:
//!
//! - **Video**: [`encode_pattern`] encodes a synthetic moving pattern with OpenH264 into one
//!   Annex B access unit per frame slot (Constrained Baseline, single slice, SPS/PPS before every
//!   IDR), which suits RTP packetization-mode 1. [`VideoSpec::simulcast_ladder`] gives the three
//!   simulcast layers `q`/`h`/`f`.
//! - **Frame counters**: [`with_counter`] puts a frame counter into an SEI NAL unit of an access
//!   unit just before sending; [`read_counter`] finds it in the access unit a subscriber
//!   reassembles. The generator maps counter → send time to measure per-frame latency and loss
//!   through an SFU that rewrites RTP headers but forwards payloads untouched.
//! - **Audio**: [`encode_tone`] encodes 20 ms Opus frames of a speech-like tone.
//! - **Cache**: [`cached_video`] and [`cached_tone`] encode once per spec and keep the result in a
//!   small self-describing file under [`default_cache_dir`] (or a directory the caller picks).

use std::f32::consts::TAU;
use std::time::Duration;

use bytes::Bytes;
use openh264::encoder::{BitRate, Complexity, Encoder, EncoderConfig, FrameRate, IntraFramePeriod, Profile, RateControlMode, UsageType};
use openh264::formats::YUVSource;
use openh264::{OpenH264API, Timestamp};

mod cache;
mod sei;

pub use cache::{cached_tone, cached_video, default_cache_dir};
pub use sei::{COUNTER_SEI_UUID, read_counter, with_counter};

/// What can go wrong while making media.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// The requested video or audio parameters are out of range.
    #[error("invalid media spec: {0}")]
    InvalidSpec(String),
    /// OpenH264 refused to set up or to encode.
    #[error("H.264 encoder failed while {doing}")]
    H264 {
        /// What the encoder was asked to do.
        doing: &'static str,
        /// OpenH264's error.
        #[source]
        source: openh264::Error,
    },
    /// OpenH264 returned something other than the one access unit a frame slot needs (an empty
    /// output for a skipped frame, or a frame of the wrong type). Frame skipping is disabled, so
    /// this means the encoder did not behave as configured.
    #[error("H.264 encoder produced an unusable access unit for frame {index}: {problem}")]
    UnexpectedFrame {
        /// The frame slot.
        index: u32,
        /// What was wrong with it.
        problem: &'static str,
    },
    /// libopus refused to set up or to encode.
    #[error("Opus encoder failed")]
    Opus(#[from] opus::Error),
}

/// The highest frame rate a [`VideoSpec`] may ask for.
pub const MAX_FPS: u32 = 120;
/// The longest clip a spec may ask for, in seconds; clips are looped, so long ones buy nothing.
pub const MAX_SECONDS: u32 = 600;

/// What to encode: a clip of `seconds` at `fps` frames per second, looped by the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VideoSpec {
    /// Width in pixels; even, 16 to 3840.
    pub width: u32,
    /// Height in pixels; even, 16 to 2160.
    pub height: u32,
    /// Frames per second, 1 to [`MAX_FPS`].
    pub fps: u32,
    /// Target bitrate in bits per second (the encoder's rate control aims at it).
    pub bitrate_bps: u32,
    /// Length of the clip in seconds, 1 to [`MAX_SECONDS`].
    pub seconds: u32,
    /// An IDR every this many frames, starting with frame 0. A value that divides
    /// `fps * seconds` keeps the IDR rhythm regular when the clip loops.
    pub keyframe_interval_frames: u32,
}

/// One simulcast layer: its RTP stream id and what it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SimulcastLayer {
    /// The `rid` the layer is announced with (`q`, `h` or `f`).
    pub rid: &'static str,
    /// The layer's encoding.
    pub spec: VideoSpec,
}

impl VideoSpec {
    /// The three simulcast layers a browser would send for a 720p camera, lowest first:
    /// `q` 320×180 at 90 kbit/s, `h` 640×360 at 350 kbit/s, `f` 1280×720 at 1.2 Mbit/s, all at
    /// 30 fps.
    #[must_use]
    pub const fn simulcast_ladder(seconds: u32, keyframe_interval_frames: u32) -> [SimulcastLayer; 3] {
        const fn layer(rid: &'static str, width: u32, height: u32, bitrate_bps: u32, seconds: u32, kf: u32) -> SimulcastLayer {
            SimulcastLayer { rid, spec: VideoSpec { width, height, fps: 30, bitrate_bps, seconds, keyframe_interval_frames: kf } }
        }
        [
            layer("q", 320, 180, 90_000, seconds, keyframe_interval_frames),
            layer("h", 640, 360, 350_000, seconds, keyframe_interval_frames),
            layer("f", 1280, 720, 1_200_000, seconds, keyframe_interval_frames),
        ]
    }

    /// How many frames the clip has (`fps × seconds`).
    #[must_use]
    pub const fn frame_count(&self) -> u32 {
        self.fps.saturating_mul(self.seconds)
    }

    /// The time between two frames.
    #[must_use]
    pub fn frame_duration(&self) -> Duration {
        Duration::from_secs(1) / self.fps.max(1)
    }

    /// Checks that OpenH264 can encode this spec.
    ///
    /// # Errors
    ///
    /// [`MediaError::InvalidSpec`] naming the first field out of range.
    pub fn validate(&self) -> Result<(), MediaError> {
        let problem = if !(16..=3840).contains(&self.width) || !self.width.is_multiple_of(2) {
            "width must be even and 16..=3840"
        } else if !(16..=2160).contains(&self.height) || !self.height.is_multiple_of(2) {
            "height must be even and 16..=2160"
        } else if !(1..=MAX_FPS).contains(&self.fps) {
            "fps must be 1..=120"
        } else if !(10_000..=100_000_000).contains(&self.bitrate_bps) {
            "bitrate_bps must be 10 000..=100 000 000"
        } else if !(1..=MAX_SECONDS).contains(&self.seconds) {
            "seconds must be 1..=600"
        } else if self.keyframe_interval_frames == 0 {
            "keyframe_interval_frames must be at least 1"
        } else {
            return Ok(());
        };
        Err(MediaError::InvalidSpec(format!("{problem} (got {self:?})")))
    }
}

/// One encoded frame slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedFrame {
    /// One access unit in Annex B form (start code before every NAL unit).
    pub data: Bytes,
    /// Whether the access unit is an IDR (and so carries SPS and PPS too).
    pub keyframe: bool,
}

/// An encoded clip: exactly one access unit per frame slot, the first an IDR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedVideo {
    /// What was encoded.
    pub spec: VideoSpec,
    /// `spec.frame_count()` frames, in order.
    pub frames: Vec<EncodedFrame>,
}

impl EncodedVideo {
    /// The frame to send in slot `index`, looping over the clip: slot `frames.len()` is frame 0
    /// (an IDR) again. `None` only for an empty clip.
    #[must_use]
    pub fn frame(&self, index: u64) -> Option<&EncodedFrame> {
        let len = u64::try_from(self.frames.len()).ok().filter(|&len| len > 0)?;
        usize::try_from(index % len).ok().and_then(|i| self.frames.get(i))
    }

    /// The clip's average bitrate in bits per second, from the encoded sizes.
    #[must_use]
    pub fn bitrate_bps(&self) -> f64 {
        let bytes: usize = self.frames.iter().map(|f| f.data.len()).sum();
        let seconds = self.frames.len() as f64 / f64::from(self.spec.fps.max(1));
        if seconds > 0.0 { bytes as f64 * 8.0 / seconds } else { 0.0 }
    }
}

/// Encodes `spec.frame_count()` frames of a moving test pattern (panning bars over a textured
/// gradient, and a bouncing white box) with OpenH264.
///
/// The output is Constrained Baseline (profile-level-id `42c0xx`), one slice per picture, with
/// SPS and PPS before every IDR; frame 0 and every `keyframe_interval_frames`-th frame are IDRs
/// and no other frame is. Frames are fed with their real timestamps and frame skipping is off,
/// so every slot gets exactly one access unit; the rate control then follows the target on
/// average but may overshoot on single frames.
///
/// # Errors
///
/// [`MediaError::InvalidSpec`] for an out-of-range spec, [`MediaError::H264`] if OpenH264 fails,
/// [`MediaError::UnexpectedFrame`] if it skips a frame or misplaces an IDR anyway.
pub fn encode_pattern(spec: &VideoSpec) -> Result<EncodedVideo, MediaError> {
    spec.validate()?;
    let config = EncoderConfig::new()
        .profile(Profile::Baseline)
        .usage_type(UsageType::CameraVideoRealTime)
        .rate_control_mode(RateControlMode::Bitrate)
        .bitrate(BitRate::from_bps(spec.bitrate_bps))
        .max_frame_rate(FrameRate::from_hz(spec.fps as f32))
        .skip_frames(false)
        // IDRs come only where we force them: no periodic ones, none on "scene changes".
        .intra_frame_period(IntraFramePeriod::from_num_frames(0))
        .scene_change_detect(false)
        .complexity(Complexity::Medium)
        // One thread: deterministic output, and the machine's other core stays free.
        .num_threads(1);
    let mut encoder =
        Encoder::with_api_config(OpenH264API::from_source(), config).map_err(|source| MediaError::H264 { doing: "starting", source })?;

    let mut pattern = Pattern::new(spec);
    let mut frames = Vec::with_capacity(usize::try_from(spec.frame_count()).unwrap_or(0));
    for index in 0..spec.frame_count() {
        pattern.draw(index);
        let want_idr = index % spec.keyframe_interval_frames == 0;
        // Frame 0 is an IDR anyway, and the encoder is only set up by the first encode.
        if want_idr && index > 0 {
            encoder.force_intra_frame();
        }
        let timestamp = Timestamp::from_millis(u64::from(index) * 1000 / u64::from(spec.fps));
        let stream = encoder.encode_at(&pattern, timestamp).map_err(|source| MediaError::H264 { doing: "encoding", source })?;
        let data = stream.to_vec();
        if data.is_empty() {
            return Err(MediaError::UnexpectedFrame { index, problem: "the encoder skipped it" });
        }
        let keyframe = sei::nal_types(&data).any(|t| t == sei::NAL_IDR);
        if keyframe != want_idr {
            let problem = if want_idr { "an IDR was forced but not produced" } else { "an IDR where none was asked for" };
            return Err(MediaError::UnexpectedFrame { index, problem });
        }
        frames.push(EncodedFrame { data: Bytes::from(data), keyframe });
    }
    Ok(EncodedVideo { spec: *spec, frames })
}

/// A synthetic I420 picture that moves from frame to frame.
///
/// The background is periodic in x with period `width`, so it is drawn once at double width and
/// each frame copies a window out of it: a pan costs one `memcpy` per row.
struct Pattern {
    width: usize,
    height: usize,
    fps: usize,
    /// `height` rows of `2 × width` luma samples.
    luma_background: Vec<u8>,
    /// `height / 2` rows of `width` samples (2 × the chroma width), for U and for V.
    u_background: Vec<u8>,
    v_background: Vec<u8>,
    y: Vec<u8>,
    u: Vec<u8>,
    v: Vec<u8>,
}

impl Pattern {
    fn new(spec: &VideoSpec) -> Self {
        // Validated: 16..=3840 and even, so these conversions and halvings are exact.
        let width = spec.width as usize;
        let height = spec.height as usize;
        let (cw, ch) = (width / 2, height / 2);
        let mut luma_background = vec![0; 2 * width * height];
        for (y, row) in luma_background.chunks_exact_mut(2 * width).enumerate() {
            for (x, sample) in row.iter_mut().enumerate() {
                let x = x % width;
                let gradient = (x * 255 / width + y * 64 / height) % 256;
                let bar = if (x * 8 / width).is_multiple_of(2) { 0 } else { 48 };
                // Static texture (it pans with the rest) so that the encoder has detail to spend
                // its bits on, as it would on camera noise.
                let texture = texture(x, y) % 24;
                *sample = (16 + gradient * 5 / 8 + bar + texture).min(235) as u8;
            }
        }
        let mut u_background = vec![0; 2 * cw * ch];
        let mut v_background = vec![0; 2 * cw * ch];
        for y in 0..ch {
            for x in 0..2 * cw {
                let cx = x % cw;
                u_background[y * 2 * cw + x] = (64 + cx * 128 / cw) as u8;
                v_background[y * 2 * cw + x] = (192 - y * 128 / ch) as u8;
            }
        }
        Self {
            width,
            height,
            fps: spec.fps as usize,
            luma_background,
            u_background,
            v_background,
            y: vec![0; width * height],
            u: vec![0; cw * ch],
            v: vec![0; cw * ch],
        }
    }

    fn draw(&mut self, index: u32) {
        let index = index as usize;
        let (width, height, cw) = (self.width, self.height, self.width / 2);
        // Pan a quarter of the width per second, in even steps so that chroma follows luma.
        let shift = ((index * width / (4 * self.fps)) % width) & !1;
        for (dst, src) in self.y.chunks_exact_mut(width).zip(self.luma_background.chunks_exact(2 * width)) {
            dst.copy_from_slice(&src[shift..shift + width]);
        }
        for (plane, background) in [(&mut self.u, &self.u_background), (&mut self.v, &self.v_background)] {
            for (dst, src) in plane.chunks_exact_mut(cw).zip(background.chunks_exact(2 * cw)) {
                dst.copy_from_slice(&src[shift / 2..shift / 2 + cw]);
            }
        }
        // A white box a quarter of the height tall bouncing around, crossing the picture in about
        // two seconds horizontally and three vertically. Even position and size keep it on the
        // chroma grid.
        let size = (height / 4).max(2) & !1;
        let bx = bounce(index * width / (2 * self.fps), width - size) & !1;
        let by = bounce(index * height / (3 * self.fps), height - size) & !1;
        for row in self.y.chunks_exact_mut(width).skip(by).take(size) {
            row[bx..bx + size].fill(235);
        }
        for plane in [&mut self.u, &mut self.v] {
            for row in plane.chunks_exact_mut(cw).skip(by / 2).take(size / 2) {
                row[bx / 2..(bx + size) / 2].fill(128);
            }
        }
    }
}

impl YUVSource for Pattern {
    fn dimensions(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    fn strides(&self) -> (usize, usize, usize) {
        (self.width, self.width / 2, self.width / 2)
    }

    fn y(&self) -> &[u8] {
        &self.y
    }

    fn u(&self) -> &[u8] {
        &self.u
    }

    fn v(&self) -> &[u8] {
        &self.v
    }
}

/// A cheap deterministic hash of a pixel position.
fn texture(x: usize, y: usize) -> usize {
    let mut h = (x as u32).wrapping_mul(0x9e37_79b1) ^ (y as u32).wrapping_mul(0x85eb_ca77);
    h ^= h >> 15;
    h = h.wrapping_mul(0x2c1b_3c6d);
    h ^= h >> 12;
    h as usize
}

/// A triangle wave: `position` travelling back and forth over `0..=range`.
fn bounce(position: usize, range: usize) -> usize {
    if range == 0 {
        return 0;
    }
    let phase = position % (2 * range);
    if phase <= range { phase } else { 2 * range - phase }
}

/// Opus's sample rate; the generator's audio is 48 kHz mono.
pub const OPUS_SAMPLE_RATE: u32 = 48_000;
/// The duration of one Opus frame from [`encode_tone`].
pub const OPUS_FRAME_DURATION: Duration = Duration::from_millis(20);
/// Samples in one 20 ms frame at 48 kHz.
pub const OPUS_FRAME_SAMPLES: usize = 960;

/// Encodes `seconds` of a speech-like signal as 20 ms Opus frames (48 kHz, mono, VBR, no DTX):
/// a harmonic tone whose pitch wanders around 180 Hz, switched on and off about three times a
/// second like syllables. Every 20 ms slot gets a frame, silent gaps included.
///
/// # Errors
///
/// [`MediaError::InvalidSpec`] unless `1 ≤ seconds ≤` [`MAX_SECONDS`] and 6 000 ≤
/// `bitrate_bps` ≤ 510 000; [`MediaError::Opus`] if libopus fails.
pub fn encode_tone(seconds: u32, bitrate_bps: u32) -> Result<Vec<Bytes>, MediaError> {
    if !(1..=MAX_SECONDS).contains(&seconds) || !(6_000..=510_000).contains(&bitrate_bps) {
        return Err(MediaError::InvalidSpec(format!(
            "tone needs 1..=600 seconds and 6 000..=510 000 bit/s (got {seconds} s, {bitrate_bps} bit/s)"
        )));
    }
    let mut encoder = opus::Encoder::new(OPUS_SAMPLE_RATE, opus::Channels::Mono, opus::Application::Voip)?;
    // Checked above: fits in i32.
    encoder.set_bitrate(opus::Bitrate::Bits(bitrate_bps as i32))?;
    encoder.set_dtx(false)?;

    let frames_per_second = OPUS_SAMPLE_RATE as usize / OPUS_FRAME_SAMPLES;
    let frame_count = seconds as usize * frames_per_second;
    let rate = OPUS_SAMPLE_RATE as f32;
    let mut pcm = [0i16; OPUS_FRAME_SAMPLES];
    let mut phase = 0.0f32;
    let mut frames = Vec::with_capacity(frame_count);
    for frame in 0..frame_count {
        for (i, sample) in pcm.iter_mut().enumerate() {
            let t = (frame * OPUS_FRAME_SAMPLES + i) as f32 / rate;
            let pitch = 180.0 + 40.0 * (TAU * 0.7 * t).sin();
            phase = (phase + TAU * pitch / rate) % TAU;
            let tone = phase.sin() + 0.5 * (2.0 * phase).sin() + 0.25 * (3.0 * phase).sin();
            // Syllables: a 3 Hz sine rectified into bumps, a little over half of the time on.
            let envelope = ((TAU * 3.0 * t).sin() + 0.2).max(0.0) / 1.2;
            *sample = (tone * envelope * 0.35 * f32::from(i16::MAX)) as i16;
        }
        frames.push(Bytes::from(encoder.encode_vec(&pcm, 4000)?));
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openh264::decoder::Decoder;

    /// Tiny, so that the test encodes take milliseconds.
    pub(super) const TINY: VideoSpec =
        VideoSpec { width: 160, height: 90, fps: 30, bitrate_bps: 150_000, seconds: 1, keyframe_interval_frames: 10 };

    fn nal_types(au: &[u8]) -> Vec<u8> {
        sei::nal_types(au).collect()
    }

    #[test]
    fn pattern_has_one_access_unit_per_slot_and_idrs_exactly_where_asked() {
        let video = encode_pattern(&TINY).unwrap();
        assert_eq!(video.frames.len(), 30);
        for (i, frame) in video.frames.iter().enumerate() {
            let types = nal_types(&frame.data);
            let is_idr = i % 10 == 0;
            assert_eq!(frame.keyframe, is_idr, "frame {i}: {types:?}");
            assert_eq!(types.contains(&5), is_idr, "frame {i}: {types:?}");
            assert!(types.iter().any(|t| matches!(t, 1 | 5)), "frame {i} has a slice: {types:?}");
            if is_idr {
                // A subscriber joining at any IDR can start decoding there.
                assert!(types.starts_with(&[7, 8]), "frame {i}: {types:?}");
                assert!(frame.data.starts_with(&[0, 0, 0, 1]));
                // profile_idc 66 with constraint_set0 and constraint_set1: Constrained Baseline.
                let sps = &frame.data[5..8];
                assert_eq!(&sps[..2], &[0x42, 0xc0], "profile-level-id {sps:02x?}");
            }
        }
        assert_eq!(video.frame(30), video.frame(0));
        assert_eq!(video.frame(61), video.frame(1));
    }

    #[test]
    fn access_units_with_counters_decode_to_the_right_size_and_carry_their_counters() {
        let video = encode_pattern(&TINY).unwrap();
        let mut decoder = Decoder::new().unwrap();
        let mut decoded = 0;
        for (i, frame) in video.frames.iter().enumerate() {
            let counter = 1_000_000 + i as u64;
            let au = with_counter(&frame.data, counter);
            assert_eq!(read_counter(&au), Some(counter));
            assert_eq!(read_counter(&frame.data), None);
            if let Some(picture) = decoder.decode(&au).unwrap() {
                assert_eq!(picture.dimensions(), (160, 90));
                decoded += 1;
            }
        }
        assert_eq!(decoded, 30);
    }

    #[test]
    fn the_pattern_moves() {
        let mut pattern = Pattern::new(&TINY);
        pattern.draw(0);
        let first = (pattern.y.clone(), pattern.u.clone());
        pattern.draw(1);
        assert_ne!(first.0, pattern.y);
        pattern.draw(15);
        assert_ne!(first.1, pattern.u);
    }

    #[test]
    fn bitrate_is_roughly_the_target() {
        for spec in [TINY, VideoSpec { width: 320, height: 180, bitrate_bps: 90_000, seconds: 2, keyframe_interval_frames: 60, ..TINY }] {
            let video = encode_pattern(&spec).unwrap();
            let ratio = video.bitrate_bps() / f64::from(spec.bitrate_bps);
            assert!((0.3..=2.0).contains(&ratio), "{spec:?}: {} bit/s", video.bitrate_bps());
        }
    }

    #[test]
    fn out_of_range_specs_are_refused() {
        for spec in [
            VideoSpec { width: 161, ..TINY },
            VideoSpec { height: 0, ..TINY },
            VideoSpec { fps: 0, ..TINY },
            VideoSpec { keyframe_interval_frames: 0, ..TINY },
            VideoSpec { seconds: 0, ..TINY },
        ] {
            assert!(matches!(encode_pattern(&spec), Err(MediaError::InvalidSpec(_))), "{spec:?}");
        }
        assert!(matches!(encode_tone(0, 32_000), Err(MediaError::InvalidSpec(_))));
    }

    #[test]
    fn simulcast_ladder_is_valid_and_ordered() {
        let ladder = VideoSpec::simulcast_ladder(10, 60);
        assert_eq!(ladder.map(|l| l.rid), ["q", "h", "f"]);
        for layer in &ladder {
            layer.spec.validate().unwrap();
            assert_eq!(layer.spec.fps, 30);
        }
        assert!(ladder.windows(2).all(|w| w[0].spec.width < w[1].spec.width && w[0].spec.bitrate_bps < w[1].spec.bitrate_bps));
    }

    #[test]
    fn opus_tone_is_50_frames_a_second_of_960_samples_and_not_silent() {
        let frames = encode_tone(1, 24_000).unwrap();
        assert_eq!(frames.len(), 50);
        let mut decoder = opus::Decoder::new(OPUS_SAMPLE_RATE, opus::Channels::Mono).unwrap();
        let mut pcm = [0i16; 5760];
        let mut loud_frames = 0;
        for frame in &frames {
            assert_eq!(decoder.decode(frame, &mut pcm, false).unwrap(), OPUS_FRAME_SAMPLES);
            if pcm[..OPUS_FRAME_SAMPLES].iter().any(|s| s.unsigned_abs() > 2000) {
                loud_frames += 1;
            }
        }
        // About half of the frames are "syllables", the rest gaps.
        assert!((15..=40).contains(&loud_frames), "{loud_frames} loud frames");
        let bytes: usize = frames.iter().map(Bytes::len).sum();
        assert!(bytes * 8 > 24_000 / 3, "{bytes} bytes in a second");
    }
}
