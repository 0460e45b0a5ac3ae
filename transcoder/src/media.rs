//! The media units that cross the crate's boundary.

use bytes::Bytes;

/// One RTP packet of a source track, as the SFU received it (header fields the transcoder
/// needs, and the payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPacket {
    /// RTP sequence number.
    pub sequence: u16,
    /// RTP timestamp (90 kHz for video, 48 kHz for Opus).
    pub timestamp: u32,
    /// The marker bit: last packet of a video frame.
    pub marker: bool,
    /// The RTP payload (after the header, extensions and padding).
    pub payload: Bytes,
}

/// One whole H.264 access unit (a frame) in Annex B form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessUnit {
    /// The source's RTP timestamp of the frame (90 kHz).
    pub rtp_timestamp: u32,
    /// NAL units, each after a start code.
    pub data: Bytes,
    /// Whether it holds an IDR picture.
    pub keyframe: bool,
}
