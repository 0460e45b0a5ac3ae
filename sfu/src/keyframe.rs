//! Recognising keyframes in RTP payloads, so a subscriber starts (or switches source) on one.

use str0m::format::{Codec, PayloadParams};

/// True if an RTP payload starts an H.264 IDR (or carries SPS) or a VP8 keyframe.
pub fn is_keyframe(params: PayloadParams, payload: &[u8]) -> bool {
    match params.spec().codec {
        Codec::H264 => h264_has_keyframe(payload),
        Codec::Vp8 => vp8_is_keyframe(payload),
        _ => true,
    }
}

fn h264_has_keyframe(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else { return false };
    match first & 0x1f {
        5 | 7 => true,
        // STAP-A: a list of (16-bit size, NAL).
        24 => {
            let mut rest = &payload[1..];
            while rest.len() > 2 {
                let size = u16::from_be_bytes([rest[0], rest[1]]) as usize;
                let Some(nal) = rest.get(2..2 + size) else { return false };
                if nal.first().is_some_and(|b| matches!(b & 0x1f, 5 | 7)) {
                    return true;
                }
                rest = &rest[2 + size..];
            }
            false
        }
        // FU-A: the start fragment of an IDR.
        28 => payload.get(1).is_some_and(|h| h & 0x80 != 0 && h & 0x1f == 5),
        _ => false,
    }
}

fn vp8_is_keyframe(payload: &[u8]) -> bool {
    // RFC 7741: skip the payload descriptor, then the VP8 frame tag's P bit is 0 for keyframes.
    let Some(&b0) = payload.first() else { return false };
    let start = b0 & 0x10 != 0 && b0 & 0x07 == 0;
    if !start {
        return false;
    }
    let mut i = 1;
    if b0 & 0x80 != 0 {
        let Some(&x) = payload.get(1) else { return false };
        i += 1;
        if x & 0x80 != 0 {
            let Some(&m) = payload.get(i) else { return false };
            i += if m & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1;
        }
        if x & 0x30 != 0 {
            i += 1;
        }
    }
    payload.get(i).is_some_and(|tag| tag & 0x01 == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h264_keyframes_are_recognised() {
        assert!(h264_has_keyframe(&[0x65, 1, 2]));
        assert!(h264_has_keyframe(&[0x67, 1]));
        assert!(!h264_has_keyframe(&[0x41, 1]));
        // STAP-A holding SPS
        assert!(h264_has_keyframe(&[0x78, 0, 2, 0x67, 0x42, 0, 1, 0x68]));
        // FU-A start of IDR, and a middle fragment
        assert!(h264_has_keyframe(&[0x7c, 0x85, 1]));
        assert!(!h264_has_keyframe(&[0x7c, 0x05, 1]));
        assert!(!h264_has_keyframe(&[]));
        assert!(!h264_has_keyframe(&[0x78, 0, 200, 1]));
    }

    #[test]
    fn vp8_keyframes_are_recognised() {
        assert!(vp8_is_keyframe(&[0x10, 0x00]));
        assert!(!vp8_is_keyframe(&[0x10, 0x01]));
        assert!(!vp8_is_keyframe(&[0x00, 0x00]));
        // extended descriptor with a 15-bit picture id
        assert!(vp8_is_keyframe(&[0x90, 0x80, 0x81, 0x02, 0x00]));
        assert!(!vp8_is_keyframe(&[0x90]));
    }
}
