//! H.264 over RTP (RFC 6184): depacketizing, packetizing and the few NAL unit facts the
//! pipeline needs.

mod depacketize;
mod gate;
pub mod nal;
mod packetize;

pub use depacketize::{Depacketizer, DepacketizerStats};
pub(crate) use gate::IdrGate;
pub use packetize::{DEFAULT_MAX_PAYLOAD, packetize};
