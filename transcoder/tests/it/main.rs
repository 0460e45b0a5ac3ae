//! The transcoder's integration tests. `serial::` holds the CPU-heavy ones, which `make test`
//! runs one at a time.

mod audio;
mod faults;
mod high_profile;
mod pipeline;
mod rtp;
mod serial;
mod support;
