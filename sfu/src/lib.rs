//! Tongxin's media path: a sans-IO selective forwarding unit on str0m ([`core`]) with its rooms,
//! participants, simulcast layers and the transcoder's renditions ([`renditions`]), the UDP shell
//! that runs it and its transcoder jobs ([`shell`], which also implements `RoomControl`; ICE over
//! TCP in [`tcp`]), the room signalling protocol ([`signal`], served by [`ws`] at `/api/v1/rtc`),
//! and the WHIP/WHEP endpoints ([`http`]).
#![forbid(unsafe_code)]

pub mod core;
mod estimate;
pub mod http;
mod keyframe;
pub mod layers;
mod red;
pub mod renditions;
mod rooms;
mod sdp;
pub mod shell;
pub mod signal;
mod simulcast;
pub mod stun;
pub mod tcp;
pub mod ws;

pub use crate::core::{CodecPolicy, PeerId, Session, Sfu, SfuConfig, SfuError, SfuEvent};
pub use crate::rooms::Signal;
pub use crate::shell::MediaServer;
