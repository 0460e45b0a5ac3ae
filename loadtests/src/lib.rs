//! Tongxin's measuring instruments: the load generator (`run`: simulated participants on the
//! `webrtc` crate sending pre-encoded H.264 with frame counters, measured per subscriber, per
//! server and per generator, reported as JSON and HTML) and the seeded UDP impairment relay that
//! emulates weak rural links (rate caps, loss, delay, jitter, changing over time) without netem;
//! and, for root, a network namespace behind a kernel rate cap (`netns`), and the side-by-side
//! comparison with Janus, each server alone in a namespace (`janus`, `bench_net`, `compare`).
#![forbid(unsafe_code)]

pub mod bench_net;
pub mod compare;
pub mod janus;
pub mod media;
pub mod netns;
pub mod participant;
pub mod probe;
pub mod relay;
pub mod report;
pub mod run;
pub mod scenario;
