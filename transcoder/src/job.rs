//! [`VideoJob`]: one source track's ladder, running on its own thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::h264::{Depacketizer, IdrGate};
use crate::ladder::Rung;
use crate::media::{AccessUnit, RtpPacket};
use crate::stats::{JobCounters, VideoJobStats, bump, read};
use crate::video::{PipelineError, RungFrame, VideoJobConfig, VideoPipeline};
use crate::worker::{Offer, Task, Worker};

/// Why a job could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// The ladder is empty: there is nothing to make.
    #[error("the ladder has no rungs")]
    NoRungs,
    /// The operating system refused a thread.
    #[error("could not start the worker thread")]
    Thread(#[source] std::io::Error),
}

/// What a push tells the caller.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[must_use]
pub struct PushResult {
    /// Ask the publisher for a keyframe (send a PLI): the job lost a frame (a sequence gap, a
    /// corrupt frame, a full queue, a decode error, a restart) and waits for the next IDR. Raised
    /// again every second of media time while it still waits; the caller throttles as it does
    /// for subscribers' requests.
    pub request_keyframe: bool,
}

/// State shared between the handle and the worker thread.
#[derive(Debug)]
struct Shared {
    counters: Arc<JobCounters>,
    /// Per rung: a keyframe was asked for.
    rung_keyframe: Vec<AtomicBool>,
    /// The worker wants a keyframe from the publisher.
    publisher_keyframe: AtomicBool,
    /// Test hook: the worker panics on its next frame.
    panic_next: AtomicBool,
}

/// The server-side ladder for one H.264 track: RTP packets (or whole frames) in, encoded frames
/// of every rung out.
///
/// The caller (the SFU's forwarding path) pushes without ever waiting: packets are put together
/// into frames on the caller's thread (a copy, no codec work), and whole frames go through a
/// bounded queue to a dedicated thread that decodes, scales and encodes. When the queue is full
/// the frame is dropped and counted, and the job waits for the next IDR (a decoder cannot skip a
/// reference frame) — [`PushResult::request_keyframe`] says when to ask the publisher for one.
///
/// Encoded frames go to the `sink` given to [`VideoJob::start`], called on the worker thread;
/// it should hand them on without blocking (e.g. a channel to the media task).
///
/// A panic in the worker (a bug, or a codec wrapper's assertion) restarts it with a fresh
/// decoder and encoders; the handle and the caller are unaffected. See the crate docs for what
/// a crash inside the C codecs would do.
#[derive(Debug)]
pub struct VideoJob {
    rungs: Vec<Rung>,
    depacketizer: Depacketizer,
    /// Drops frames after one was dropped at the queue, until the next IDR.
    queue_gate: IdrGate,
    frames_dropped_before_queue: u64,
    shared: Arc<Shared>,
    worker: Worker<AccessUnit>,
}

impl VideoJob {
    /// Starts the worker thread for `config`'s rungs; `sink` receives every encoded frame.
    ///
    /// # Errors
    ///
    /// [`JobError::NoRungs`] for an empty ladder, [`JobError::Thread`] if no thread could be made.
    pub fn start(config: VideoJobConfig, sink: impl FnMut(RungFrame) + Send + 'static) -> Result<Self, JobError> {
        if config.rungs.is_empty() {
            return Err(JobError::NoRungs);
        }
        let counters = Arc::new(JobCounters::new(config.rungs.len()));
        let shared = Arc::new(Shared {
            counters: Arc::clone(&counters),
            rung_keyframe: config.rungs.iter().map(|_| AtomicBool::new(false)).collect(),
            publisher_keyframe: AtomicBool::new(false),
            panic_next: AtomicBool::new(false),
        });
        let rungs = config.rungs.clone();
        let capacity = config.queue_frames;
        let worker = {
            let (shared_start, shared_step, shared_restart) = (Arc::clone(&shared), Arc::clone(&shared), Arc::clone(&shared));
            let mut sink = sink;
            Worker::spawn(
                "tongxin-transcode",
                capacity,
                Task {
                    start: move || {
                        VideoPipeline::with_counters(&config, Arc::clone(&shared_start.counters)).map(|pipeline| WorkerState {
                            pipeline,
                            // The decoder is new: it needs an IDR before anything else.
                            gate: IdrGate::new(true),
                        })
                    },
                    step: move |state: &mut WorkerState, unit: AccessUnit| step(&shared_step, state, unit, &mut sink),
                    restarted: move || {
                        bump(&shared_restart.counters.restarts);
                        ask_publisher(&shared_restart);
                    },
                },
            )
            .map_err(JobError::Thread)?
        };
        Ok(Self {
            rungs,
            depacketizer: Depacketizer::new(),
            queue_gate: IdrGate::new(false),
            frames_dropped_before_queue: 0,
            shared,
            worker,
        })
    }

    /// The job's rungs, in the order [`RungFrame::rung`] indexes.
    #[must_use]
    pub fn rungs(&self) -> &[Rung] {
        &self.rungs
    }

    /// Takes one RTP packet of the source track (H.264, RFC 6184). Never blocks.
    pub fn push_rtp(&mut self, packet: RtpPacket) -> PushResult {
        let mut frames = Vec::new();
        self.depacketizer.push(packet, &mut frames);
        let mut result = PushResult { request_keyframe: self.depacketizer.take_keyframe_request() };
        for frame in frames {
            result.request_keyframe |= self.push_access_unit(frame).request_keyframe;
        }
        result
    }

    /// Takes one whole access unit (Annex B) of the source track, for callers that
    /// depacketize themselves. Never blocks.
    pub fn push_access_unit(&mut self, unit: AccessUnit) -> PushResult {
        let timestamp = unit.rtp_timestamp;
        if self.queue_gate.admit(timestamp, unit.keyframe) {
            match self.worker.offer(unit) {
                Offer::Queued => bump(&self.shared.counters.frames_queued),
                Offer::Dropped => {
                    bump(&self.shared.counters.frames_dropped_queue_full);
                    self.queue_gate.lose(Some(timestamp));
                }
            }
        } else {
            self.frames_dropped_before_queue += 1;
        }
        let from_worker = self.shared.publisher_keyframe.swap(false, Ordering::Relaxed);
        PushResult { request_keyframe: self.queue_gate.take_request() | from_worker }
    }

    /// Asks rung `rung` for an IDR at its next output frame (a subscriber switched to it or
    /// lost packets). Out-of-range indexes are ignored.
    pub fn request_keyframe(&self, rung: usize) {
        if let Some(flag) = self.shared.rung_keyframe.get(rung) {
            flag.store(true, Ordering::Relaxed);
        }
    }

    /// Whether the worker asked for a keyframe from the publisher since the last push (for a
    /// caller that polls between pushes; pushes report it too).
    pub fn take_publisher_keyframe_request(&mut self) -> bool {
        self.shared.publisher_keyframe.swap(false, Ordering::Relaxed)
            | self.queue_gate.take_request()
            | self.depacketizer.take_keyframe_request()
    }

    /// A snapshot of the counters.
    #[must_use]
    pub fn stats(&self) -> VideoJobStats {
        let c = &self.shared.counters;
        let depacketized = self.depacketizer.stats();
        VideoJobStats {
            packets_in: depacketized.packets,
            packets_lost: depacketized.lost_packets,
            frames_in: read(&c.frames_queued),
            frames_dropped_queue_full: read(&c.frames_dropped_queue_full),
            frames_dropped_before_queue: depacketized.corrupt_frames
                + depacketized.frames_waiting_for_idr
                + self.frames_dropped_before_queue,
            frames_processed: read(&c.frames_processed),
            frames_decoded: read(&c.frames_decoded),
            decode_errors: read(&c.decode_errors),
            frames_skipped_after_error: read(&c.frames_skipped_after_error),
            keyframe_requests: depacketized.keyframe_requests + self.queue_gate.requests() + read(&c.publisher_keyframe_requests),
            restarts: read(&c.restarts),
            rungs: c.rungs.iter().map(crate::stats::RungCounters::snapshot).collect(),
        }
    }

    /// Makes the worker panic on its next frame, to test that it restarts.
    #[cfg(feature = "testing")]
    pub fn inject_panic(&self) {
        self.shared.panic_next.store(true, Ordering::Relaxed);
    }

    /// Closes the queue and waits until the worker has encoded what was queued. Dropping the
    /// job instead does not wait (the worker finishes on its own).
    pub fn stop(self) {
        self.worker.stop();
    }
}

/// The worker's state: rebuilt from scratch after a panic.
struct WorkerState {
    pipeline: VideoPipeline,
    /// Closed after a decode error or a restart, until the next IDR.
    gate: IdrGate,
}

fn ask_publisher(shared: &Shared) {
    bump(&shared.counters.publisher_keyframe_requests);
    shared.publisher_keyframe.store(true, Ordering::Relaxed);
}

/// Counts a frame as processed however its processing ends, a panic included.
struct ProcessedOnDrop<'a>(&'a JobCounters);

impl Drop for ProcessedOnDrop<'_> {
    fn drop(&mut self) {
        bump(&self.0.frames_processed);
    }
}

fn step(shared: &Shared, state: &mut WorkerState, unit: AccessUnit, sink: &mut impl FnMut(RungFrame)) {
    let _processed = ProcessedOnDrop(&shared.counters);
    if shared.panic_next.swap(false, Ordering::Relaxed) {
        panic!("panic injected by a test");
    }
    for (rung, flag) in shared.rung_keyframe.iter().enumerate() {
        if flag.swap(false, Ordering::Relaxed) {
            state.pipeline.force_keyframe(rung);
        }
    }
    if !state.gate.admit(unit.rtp_timestamp, unit.keyframe) {
        bump(&shared.counters.frames_skipped_after_error);
        if state.gate.take_request() {
            ask_publisher(shared);
        }
        return;
    }
    match state.pipeline.process(&unit, sink) {
        Ok(()) => {}
        Err(PipelineError::Decode(error)) => {
            bump(&shared.counters.decode_errors);
            tracing::debug!(%error, "dropping frames until the next IDR");
            state.gate.lose(Some(unit.rtp_timestamp));
            if state.gate.take_request() {
                ask_publisher(shared);
            }
        }
        Err(error) => {
            // Anything else means the pipeline itself is broken: start it afresh.
            panic!("transcoder pipeline failed: {error}");
        }
    }
}
