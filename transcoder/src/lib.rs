//! Tongxin's server-side ladder: low-bitrate renditions of a publisher's single layer, so a
//! village classroom on 150 kbit/s can watch a teacher who streams 720p from OBS.
//!
//! - [`plan`] — the pure ladder planner: a [`SourceTrack`] and a [`LadderPolicy`] give the
//!   [`Rung`]s (short side kept, even sizes, nothing at or above the source).
//! - [`VideoJob`] — one track's live pipeline: RTP → depacketize (RFC 6184) → decode
//!   (OpenH264) → scale ([`Scaler`]) → encode per rung (OpenH264, Constrained Baseline, IDR every
//!   2 s) → packetize, keeping the source's RTP timestamps. Pushes never block; the codec work
//!   runs on the job's own thread.
//! - [`OpusReencoder`] / [`AudioJob`] — Opus at publisher rate → 16 kbit/s mono with in-band
//!   FEC and DTX, when [`AudioPolicy::should_reencode`] says so.
//! - [`testsrc`] and [`quality`] — a deterministic moving test picture, PSNR and SSIM, for tests
//!   and the `ladder_bench` example.
//!
//! # Threads, and what a codec crash does
//!
//! Jobs run **in the server's process**, each on a dedicated `std::thread` (never on the async
//! runtime, where a 10 ms encode would stall every other task). A Rust panic inside a job — a
//! bug of ours, or an assertion of a codec wrapper — is caught at the worker loop; the job starts
//! again with a fresh decoder and encoders, counts the restart, asks the publisher for a keyframe
//! and goes on. The forwarding path never notices.
//!
//! OpenH264 and libopus are C/C++. A memory error inside them (a segfault on a hostile bitstream)
//! cannot be caught: it **takes the whole server down**, every room with it. This is accepted
//! for now because both libraries are widely deployed on untrusted input in browsers and
//! conferencing servers, are fuzzed upstream, and are built here from pinned sources; and
//! because publishers must hold a valid join token or stream key, so the bitstreams come from
//! known accounts. What would change it: running each job in a child process (the same
//! [`VideoJob`] API over a pipe or shared memory, restarted by the server when it dies), at the
//! cost of a copy of every frame and a process per track — worth doing once the transcoder
//! takes streams from anonymous publishers, or if a crash is ever seen.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod audio;
pub mod h264;
mod job;
mod ladder;
mod media;
pub mod picture;
pub mod quality;
mod scale;
mod stats;
pub mod testsrc;
mod video;
mod worker;

pub use audio::{AudioJob, AudioJobStats, OpusReencoder, ReencodedPacket};
pub use job::{JobError, PushResult, VideoJob};
pub use ladder::{AudioPolicy, LadderPolicy, Rung, RungSpec, SourceCodec, SourceTrack, fit_short_side, plan};
pub use media::{AccessUnit, RtpPacket};
pub use scale::{ScaleFilter, Scaler};
pub use stats::{RungStats, VideoJobStats};
pub use video::{EncoderComplexity, PipelineError, RungFrame, VideoJobConfig, VideoPipeline};
