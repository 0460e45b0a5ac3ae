//! Counters a job keeps while it runs, readable from any thread without locking.

use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters of one rung (updated by the worker).
#[derive(Debug, Default)]
pub(crate) struct RungCounters {
    pub frames_out: AtomicU64,
    pub keyframes_out: AtomicU64,
    pub bytes_out: AtomicU64,
    pub skipped_by_encoder: AtomicU64,
    pub dropped_for_fps: AtomicU64,
    pub encode_micros: AtomicU64,
    pub encode_errors: AtomicU64,
}

/// Live counters of one video job.
#[derive(Debug)]
pub(crate) struct JobCounters {
    pub frames_queued: AtomicU64,
    pub frames_dropped_queue_full: AtomicU64,
    pub frames_processed: AtomicU64,
    pub frames_decoded: AtomicU64,
    pub decode_errors: AtomicU64,
    pub frames_skipped_after_error: AtomicU64,
    pub restarts: AtomicU64,
    pub publisher_keyframe_requests: AtomicU64,
    pub rungs: Vec<RungCounters>,
}

impl JobCounters {
    pub fn new(rungs: usize) -> Self {
        Self {
            frames_queued: AtomicU64::new(0),
            frames_dropped_queue_full: AtomicU64::new(0),
            frames_processed: AtomicU64::new(0),
            frames_decoded: AtomicU64::new(0),
            decode_errors: AtomicU64::new(0),
            frames_skipped_after_error: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            publisher_keyframe_requests: AtomicU64::new(0),
            rungs: (0..rungs).map(|_| RungCounters::default()).collect(),
        }
    }
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn add(counter: &AtomicU64, value: u64) {
    counter.fetch_add(value, Ordering::Relaxed);
}

pub(crate) fn read(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// A snapshot of one rung's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RungStats {
    /// Encoded frames handed to the sink.
    pub frames_out: u64,
    /// Of those, IDR frames.
    pub keyframes_out: u64,
    /// Encoded bytes handed to the sink, as RTP payload bytes (without RTP headers).
    pub bytes_out: u64,
    /// Frames the encoder's rate control skipped (no output for them).
    pub skipped_by_encoder: u64,
    /// Decoded frames not offered to this rung's encoder because its frame rate is lower.
    pub dropped_for_fps: u64,
    /// Time spent scaling and encoding, in microseconds.
    pub encode_micros: u64,
    /// Frames the encoder failed on.
    pub encode_errors: u64,
}

/// A snapshot of a video job's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct VideoJobStats {
    /// RTP packets pushed.
    pub packets_in: u64,
    /// Packets declared lost (sequence gaps).
    pub packets_lost: u64,
    /// Whole frames put in the worker's queue.
    pub frames_in: u64,
    /// Frames dropped because the worker's queue was full (the caller never waits).
    pub frames_dropped_queue_full: u64,
    /// Frames dropped before the queue: corrupt, or waiting for an IDR after a loss.
    pub frames_dropped_before_queue: u64,
    /// Frames the worker has finished with.
    pub frames_processed: u64,
    /// Frames decoded to pictures.
    pub frames_decoded: u64,
    /// Frames the decoder refused.
    pub decode_errors: u64,
    /// Frames skipped by the worker while waiting for an IDR after a decode error or restart.
    pub frames_skipped_after_error: u64,
    /// Keyframes asked of the publisher.
    pub keyframe_requests: u64,
    /// Times the worker was restarted after a panic.
    pub restarts: u64,
    /// Per rung, in the job's rung order.
    pub rungs: Vec<RungStats>,
}

impl VideoJobStats {
    /// Frames waiting in the worker's queue right now.
    #[must_use]
    pub const fn queued(&self) -> u64 {
        self.frames_in.saturating_sub(self.frames_processed)
    }
}

impl RungCounters {
    pub fn snapshot(&self) -> RungStats {
        RungStats {
            frames_out: read(&self.frames_out),
            keyframes_out: read(&self.keyframes_out),
            bytes_out: read(&self.bytes_out),
            skipped_by_encoder: read(&self.skipped_by_encoder),
            dropped_for_fps: read(&self.dropped_for_fps),
            encode_micros: read(&self.encode_micros),
            encode_errors: read(&self.encode_errors),
        }
    }
}
