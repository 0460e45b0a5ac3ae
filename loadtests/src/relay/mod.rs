//! A seeded UDP impairment relay: the weak link between a simulated participant and the SFU.
//!
//! The [`model`] decides each packet's fate; [`shell`] moves real datagrams. A schedule changes
//! the impairment over time (a classroom's link degrading during a lesson).

pub mod model;
pub mod shell;

pub use model::{Impairment, Link, LinkStats, SeededRng, Verdict};
pub use shell::{Relay, RelayConfig, Schedule, Step};
