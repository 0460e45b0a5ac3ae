//! The per-track video pipeline without threads: decode → scale → encode per rung → packetize.
//!
//! [`crate::VideoJob`] runs it on a worker thread; it is a plain struct so that it can also be
//! driven directly (tests, files).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use openh264::OpenH264API;
use openh264::Timestamp;
use openh264::decoder::{Decoder, DecoderConfig};
use openh264::encoder::{
    BitRate, Complexity, Encoder, EncoderConfig, FrameRate, FrameType, IntraFramePeriod, Profile, RateControlMode, UsageType,
};

use crate::AccessUnit;
use crate::h264::nal::push_annex_b;
use crate::h264::packetize;
use crate::ladder::Rung;
use crate::media::RtpPacket;
use crate::picture::{I420Ref, Picture};
use crate::scale::{ScaleFilter, Scaler};
use crate::stats::{JobCounters, add, bump};

/// 90 kHz RTP clock ticks per millisecond.
const TICKS_PER_MS: i64 = 90;

/// What the pipeline does, fixed for a job's life.
#[derive(Debug, Clone)]
pub struct VideoJobConfig {
    /// The renditions to make, as [`crate::plan`] gave them.
    pub rungs: Vec<Rung>,
    /// An IDR this often in every rung, in milliseconds (2 s: a subscriber switching to a rung
    /// waits at most that long even if its keyframe request is lost).
    pub idr_interval_ms: u32,
    /// The scaler's kernel.
    pub filter: ScaleFilter,
    /// Largest RTP payload of the output packets.
    pub max_payload: usize,
    /// Frames the worker's queue holds before new ones are dropped.
    pub queue_frames: usize,
    /// OpenH264's speed/quality trade-off for the rung encoders.
    pub complexity: EncoderComplexity,
}

/// OpenH264's encoder complexity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EncoderComplexity {
    /// Fastest.
    Low,
    /// The default.
    #[default]
    Medium,
    /// Best quality per bit.
    High,
}

impl VideoJobConfig {
    /// Defaults for `rungs`: IDR every 2 s, triangle filter, 1200-byte payloads, a queue of 8
    /// frames (about a quarter second at 30 fps).
    #[must_use]
    pub fn new(rungs: Vec<Rung>) -> Self {
        Self {
            rungs,
            idr_interval_ms: 2000,
            filter: ScaleFilter::default(),
            max_payload: crate::h264::DEFAULT_MAX_PAYLOAD,
            queue_frames: 8,
            complexity: EncoderComplexity::default(),
        }
    }
}

/// One encoded frame of one rung.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RungFrame {
    /// Index of the rung in the job's configuration.
    pub rung: usize,
    /// The source frame's RTP timestamp, unchanged.
    pub rtp_timestamp: u32,
    /// Picture width.
    pub width: u32,
    /// Picture height.
    pub height: u32,
    /// Whether this is an IDR (with SPS and PPS before it).
    pub keyframe: bool,
    /// The access unit in Annex B form.
    pub access_unit: Bytes,
    /// The same access unit as RTP packets (RFC 6184, packetization mode 1), with this rung's
    /// own running sequence numbers and the source's timestamp; the last has the marker bit.
    pub packets: Vec<RtpPacket>,
}

/// Why the pipeline could not use a frame.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// The decoder refused the frame (corrupt, or its references are missing).
    #[error("H.264 decoder refused a frame")]
    Decode(#[source] openh264::Error),
    /// The decoder could not be set up.
    #[error("H.264 decoder could not start")]
    DecoderStart(#[source] openh264::Error),
}

/// Turns RTP timestamps into a monotonic 64-bit count from the first one.
#[derive(Debug, Default)]
struct Unwrapper {
    last: Option<(u32, i64)>,
}

impl Unwrapper {
    fn unwrap(&mut self, ts: u32) -> i64 {
        let ext = match self.last {
            None => 0,
            Some((last_ts, last_ext)) => last_ext + i64::from(ts.wrapping_sub(last_ts) as i32),
        };
        self.last = Some((ts, ext));
        ext
    }
}

/// Decode → scale → encode → packetize for one source track.
pub struct VideoPipeline {
    decoder: Decoder,
    rungs: Vec<RungEncoder>,
    clock: Unwrapper,
    counters: Arc<JobCounters>,
}

impl std::fmt::Debug for VideoPipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoPipeline").field("rungs", &self.rungs.len()).finish_non_exhaustive()
    }
}

impl VideoPipeline {
    /// A pipeline for `config`, to be driven directly (a [`crate::VideoJob`] runs one on its
    /// thread).
    ///
    /// # Errors
    ///
    /// [`PipelineError::DecoderStart`] if OpenH264 refuses to start.
    pub fn new(config: &VideoJobConfig) -> Result<Self, PipelineError> {
        Self::with_counters(config, Arc::new(JobCounters::new(config.rungs.len())))
    }

    /// Per-rung counters so far.
    #[must_use]
    pub fn rung_stats(&self) -> Vec<crate::RungStats> {
        self.counters.rungs.iter().map(crate::stats::RungCounters::snapshot).collect()
    }

    /// A pipeline for `config`, reporting into `counters`.
    pub(crate) fn with_counters(config: &VideoJobConfig, counters: Arc<JobCounters>) -> Result<Self, PipelineError> {
        let decoder = Decoder::with_api_config(OpenH264API::from_source(), DecoderConfig::new()).map_err(PipelineError::DecoderStart)?;
        let rungs = config.rungs.iter().cloned().enumerate().map(|(index, rung)| RungEncoder::new(index, rung, config)).collect();
        Ok(Self { decoder, rungs, clock: Unwrapper::default(), counters })
    }

    /// Asks rung `rung` for an IDR at its next output frame.
    pub fn force_keyframe(&mut self, rung: usize) {
        if let Some(r) = self.rungs.get_mut(rung) {
            r.force_idr = true;
        }
    }

    /// Decodes one access unit and encodes it for every rung whose frame rate wants it; the
    /// encoded frames go to `out`. A decode error is returned (the frame is lost, nothing
    /// else); encode errors are counted per rung.
    pub fn process(&mut self, unit: &AccessUnit, out: &mut impl FnMut(RungFrame)) -> Result<(), PipelineError> {
        let ticks = self.clock.unwrap(unit.rtp_timestamp);
        let decoded = self.decoder.decode(&unit.data).map_err(PipelineError::Decode)?;
        let Some(picture) = decoded else { return Ok(()) };
        bump(&self.counters.frames_decoded);
        let source = I420Ref::from_source(&picture);
        for rung in &mut self.rungs {
            let counters = &self.counters.rungs[rung.index];
            if !rung.wants(ticks) {
                bump(&counters.dropped_for_fps);
                continue;
            }
            let started = Instant::now();
            let frame = rung.encode(source, ticks, unit.rtp_timestamp);
            add(&counters.encode_micros, u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
            match frame {
                Ok(Some(frame)) => {
                    bump(&counters.frames_out);
                    if frame.keyframe {
                        bump(&counters.keyframes_out);
                    }
                    let bytes: usize = frame.packets.iter().map(|p| p.payload.len()).sum();
                    add(&counters.bytes_out, bytes as u64);
                    out(frame);
                }
                Ok(None) => bump(&counters.skipped_by_encoder),
                Err(error) => {
                    bump(&counters.encode_errors);
                    tracing::warn!(rung = rung.index, %error, "encoder failed on a frame; starting it afresh");
                    rung.encoder = None;
                }
            }
        }
        Ok(())
    }
}

/// One rung: its scaler, encoder, frame-rate gate and IDR rhythm.
struct RungEncoder {
    index: usize,
    rung: Rung,
    complexity: EncoderComplexity,
    max_payload: usize,
    idr_interval_ticks: i64,
    scaler: Scaler,
    scaled: Picture,
    encoder: Option<Encoder>,
    encoded_size: (u32, u32),
    /// The earliest (unwrapped) timestamp the next frame may have, with a quarter-interval
    /// tolerance for jitter.
    next_due: Option<i64>,
    last_idr: Option<i64>,
    force_idr: bool,
    sequence: u16,
    buffer: Vec<u8>,
}

impl RungEncoder {
    fn new(index: usize, rung: Rung, config: &VideoJobConfig) -> Self {
        Self {
            index,
            complexity: config.complexity,
            max_payload: config.max_payload,
            idr_interval_ticks: i64::from(config.idr_interval_ms) * TICKS_PER_MS,
            scaler: Scaler::new(config.filter),
            scaled: Picture::new(rung.width as usize, rung.height as usize),
            encoder: None,
            encoded_size: (0, 0),
            next_due: None,
            last_idr: None,
            force_idr: true,
            sequence: 0,
            buffer: Vec::new(),
            rung,
        }
    }

    /// The frame-rate gate: takes a frame when it is due on the rung's frame grid, and keeps
    /// the grid from drifting.
    fn wants(&mut self, ticks: i64) -> bool {
        let interval = 90_000 / i64::from(self.rung.fps.max(1));
        let tolerance = interval / 4;
        match self.next_due {
            Some(due) if ticks < due - tolerance && due - ticks <= 4 * interval => false,
            Some(due) if ticks <= due + interval => {
                self.next_due = Some(due + interval);
                true
            }
            // First frame, a gap in the source, or time going backwards: start the grid anew.
            _ => {
                self.next_due = Some(ticks + interval);
                true
            }
        }
    }

    fn encode(&mut self, source: I420Ref<'_>, ticks: i64, rtp_timestamp: u32) -> Result<Option<RungFrame>, openh264::Error> {
        let (source_width, source_height) = (source.width() as u32, source.height() as u32);
        // A source that shrank to the rung's size or below (a browser lowering its resolution)
        // is encoded at its own size, rounded down to even: never scaled up.
        let (width, height) =
            self.rung.fit(source_width, source_height).unwrap_or(((source_width / 2 * 2).max(2), (source_height / 2 * 2).max(2)));
        if self.encoder.is_none() || self.encoded_size != (width, height) {
            self.encoder = Some(self.start_encoder()?);
            self.encoded_size = (width, height);
            self.force_idr = true;
        }
        self.scaler.scale_into(source, width as usize, height as usize, &mut self.scaled);
        if self.last_idr.is_none_or(|last| ticks - last >= self.idr_interval_ticks || ticks < last) {
            self.force_idr = true;
        }
        // Set just above.
        let Some(encoder) = self.encoder.as_mut() else { return Ok(None) };
        if self.force_idr {
            // Repeated until an IDR comes out: the rate control may skip the frame it was asked on.
            encoder.force_intra_frame();
        }
        let timestamp = Timestamp::from_millis(u64::try_from(ticks / TICKS_PER_MS).unwrap_or(0));
        let stream = encoder.encode_at(&self.scaled, timestamp)?;
        if matches!(stream.frame_type(), FrameType::Skip | FrameType::Invalid) {
            return Ok(None);
        }
        self.buffer.clear();
        let mut keyframe = false;
        for layer in (0..stream.num_layers()).filter_map(|i| stream.layer(i)) {
            for unit in (0..layer.nal_count()).filter_map(|i| layer.nal_unit(i)) {
                // OpenH264 writes each unit with its start code already.
                let body = strip_start_code(unit);
                if let Some(&header) = body.first() {
                    keyframe |= crate::h264::nal::unit_type(header) == crate::h264::nal::nal_type::IDR;
                    push_annex_b(&mut self.buffer, body);
                }
            }
        }
        if self.buffer.is_empty() {
            return Ok(None);
        }
        if keyframe {
            self.force_idr = false;
            self.last_idr = Some(ticks);
        }
        let access_unit = Bytes::copy_from_slice(&self.buffer);
        let payloads = packetize(&access_unit, self.max_payload);
        let count = payloads.len();
        let packets = payloads
            .into_iter()
            .enumerate()
            .map(|(i, payload)| {
                let sequence = self.sequence;
                self.sequence = self.sequence.wrapping_add(1);
                RtpPacket { sequence, timestamp: rtp_timestamp, marker: i + 1 == count, payload }
            })
            .collect();
        Ok(Some(RungFrame { rung: self.index, rtp_timestamp, width, height, keyframe, access_unit, packets }))
    }

    fn start_encoder(&self) -> Result<Encoder, openh264::Error> {
        let complexity = match self.complexity {
            EncoderComplexity::Low => Complexity::Low,
            EncoderComplexity::Medium => Complexity::Medium,
            EncoderComplexity::High => Complexity::High,
        };
        let config = EncoderConfig::new()
            // Constrained Baseline: every browser and phone decodes it in hardware or software.
            .profile(Profile::Baseline)
            .usage_type(UsageType::CameraVideoRealTime)
            .rate_control_mode(RateControlMode::Bitrate)
            .bitrate(BitRate::from_bps(self.rung.bitrate_bps))
            .max_frame_rate(FrameRate::from_hz(self.rung.fps as f32))
            // Skipping is how the rate control holds a low bitrate on a busy picture.
            .skip_frames(true)
            // IDRs come on our clock (every `idr_interval_ms`, and on request), not on a count
            // of frames that skipping would stretch, nor on scene cuts.
            .intra_frame_period(IntraFramePeriod::from_num_frames(0))
            .scene_change_detect(false)
            .complexity(complexity)
            // One thread per encoder: a job's rungs already run side by side with other jobs.
            .num_threads(1);
        Encoder::with_api_config(OpenH264API::from_source(), config)
    }
}

fn strip_start_code(unit: &[u8]) -> &[u8] {
    if unit.starts_with(&[0, 0, 0, 1]) {
        &unit[4..]
    } else if unit.starts_with(&[0, 0, 1]) {
        &unit[3..]
    } else {
        unit
    }
}
