//! Tongxin's measuring instruments. Today: the seeded UDP impairment relay that emulates weak
//! rural links (rate caps, loss, delay, jitter, changing over time) without the kernel's netem.
#![forbid(unsafe_code)]

pub mod relay;
