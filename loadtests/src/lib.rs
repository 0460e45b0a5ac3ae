//! Tongxin's measuring instruments: the seeded UDP impairment relay that emulates weak rural
//! links (rate caps, loss, delay, jitter, changing over time) without the kernel's netem, and
//! the 1 → N fan-out measurement with `webrtc`-crate participants.
#![forbid(unsafe_code)]

pub mod fanout;
pub mod relay;
