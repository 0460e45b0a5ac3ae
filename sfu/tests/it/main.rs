//! Integration tests of the media path with real, independent WebRTC peers. Modules under
//! `serial` carry media and run one at a time.

mod harness;
mod peer;
mod serial;
