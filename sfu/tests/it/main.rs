//! Integration tests of the media path with real, independent WebRTC peers. Modules under
//! `serial` carry media and run one at a time.

mod core;
mod estimate;
mod harness;
mod http;
mod peer;
mod room_client;
mod serial;
