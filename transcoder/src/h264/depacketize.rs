//! RFC 6184 depacketization: RTP packets of one H.264 stream become whole access units.
//!
//! Packets are put back in sequence order within a small window; a frame is complete at its
//! marker bit or when the timestamp moves on. A lost packet (a gap the window cannot close)
//! spoils the frame it belonged to and everything after it until the next complete IDR, and asks
//! the publisher for a keyframe: a decoder fed a P frame whose reference is missing would only
//! smear the picture.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::gate::IdrGate;
use super::nal::{is_idr, nal_type, push_annex_b, unit_type};
use crate::{AccessUnit, RtpPacket};

/// How many packets may wait for a missing one before it counts as lost. Small, so a loss costs
/// little latency; reordering on real paths is a few packets at most.
const REORDER_WINDOW: usize = 10;
/// A frame larger than this is refused (corrupt input must not grow memory without bound).
const MAX_ACCESS_UNIT_BYTES: usize = 4 << 20;

/// Counters of what the depacketizer saw and threw away.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DepacketizerStats {
    /// Packets taken in.
    pub packets: u64,
    /// Packets declared lost (sequence gaps the reorder window did not close).
    pub lost_packets: u64,
    /// Packets that came too late or twice, and were ignored.
    pub late_packets: u64,
    /// Whole access units handed on.
    pub frames: u64,
    /// Frames thrown away because a packet of theirs was lost or malformed.
    pub corrupt_frames: u64,
    /// Intact frames thrown away while waiting for an IDR after a loss.
    pub frames_waiting_for_idr: u64,
    /// Times a keyframe was asked of the publisher.
    pub keyframe_requests: u64,
}

/// Reassembles access units from the RTP packets of one H.264 stream (packetization mode 0 or
/// 1: single NAL unit, STAP-A and FU-A packets).
#[derive(Debug)]
pub struct Depacketizer {
    /// Extended sequence number of the next packet to process.
    expected: Option<u64>,
    /// Highest sequence number seen, extended, for unwrapping the next one.
    highest: Option<u64>,
    pending: BTreeMap<u64, RtpPacket>,
    frame: Option<FrameInProgress>,
    /// The frame after a gap may be missing its head: it is spoiled too.
    after_gap: bool,
    /// Frames are dropped until a complete IDR arrives; closed at the start, as a job joins a
    /// stream at any point.
    gate: IdrGate,
    stats: DepacketizerStats,
}

#[derive(Debug)]
struct FrameInProgress {
    timestamp: u32,
    annex_b: Vec<u8>,
    /// An FU-A unit being put together (its reconstructed header first).
    fragment: Option<Vec<u8>>,
    corrupt: bool,
}

impl Default for Depacketizer {
    fn default() -> Self {
        Self::new()
    }
}

impl Depacketizer {
    /// A depacketizer that waits for the stream's first IDR.
    #[must_use]
    pub fn new() -> Self {
        Self {
            expected: None,
            highest: None,
            pending: BTreeMap::new(),
            frame: None,
            after_gap: false,
            gate: IdrGate::new(true),
            stats: DepacketizerStats::default(),
        }
    }

    /// Takes one RTP packet; appends any access units it completes to `out`, oldest first.
    pub fn push(&mut self, packet: RtpPacket, out: &mut Vec<AccessUnit>) {
        self.stats.packets += 1;
        let ext = self.extend(packet.sequence);
        let expected = *self.expected.get_or_insert(ext);
        if ext < expected || self.pending.contains_key(&ext) {
            self.stats.late_packets += 1;
            return;
        }
        self.pending.insert(ext, packet);
        self.drain(out);
    }

    /// Whether a keyframe should be asked of the publisher since the last call (after a loss,
    /// a corrupt frame, a frame that cannot be used, and again every second while still
    /// waiting).
    pub fn take_keyframe_request(&mut self) -> bool {
        self.gate.take_request()
    }

    /// Whether frames are being dropped until the next IDR.
    #[must_use]
    pub const fn waiting_for_idr(&self) -> bool {
        self.gate.waiting()
    }

    /// Counters so far.
    #[must_use]
    pub const fn stats(&self) -> DepacketizerStats {
        DepacketizerStats { keyframe_requests: self.gate.requests(), ..self.stats }
    }

    fn extend(&mut self, sequence: u16) -> u64 {
        let Some(highest) = self.highest else {
            // Start well above zero so that a packet from just before the first is not negative.
            let ext = (1 << 32) + u64::from(sequence);
            self.highest = Some(ext);
            return ext;
        };
        let delta = i64::from(sequence.wrapping_sub(highest as u16) as i16);
        let ext = highest.saturating_add_signed(delta);
        if ext > highest {
            self.highest = Some(ext);
        }
        ext
    }

    fn drain(&mut self, out: &mut Vec<AccessUnit>) {
        loop {
            // Set by `push` before the first call.
            let Some(expected) = self.expected else { return };
            if let Some(packet) = self.pending.remove(&expected) {
                self.expected = Some(expected + 1);
                self.process(packet, out);
                continue;
            }
            if self.pending.len() <= REORDER_WINDOW {
                return;
            }
            // The window is full: whatever is missing before the oldest waiting packet is lost.
            let Some(&oldest) = self.pending.keys().next() else { return };
            self.stats.lost_packets += oldest - expected;
            self.expected = Some(oldest);
            self.on_loss();
        }
    }

    fn on_loss(&mut self) {
        if let Some(frame) = &mut self.frame {
            frame.corrupt = true;
        }
        self.after_gap = true;
        self.gate.lose(self.frame.as_ref().map(|f| f.timestamp));
    }

    fn process(&mut self, packet: RtpPacket, out: &mut Vec<AccessUnit>) {
        if self.frame.as_ref().is_some_and(|f| f.timestamp != packet.timestamp) {
            self.finish(out);
        }
        let after_gap = std::mem::take(&mut self.after_gap);
        let frame = self.frame.get_or_insert_with(|| FrameInProgress {
            timestamp: packet.timestamp,
            annex_b: Vec::new(),
            fragment: None,
            corrupt: after_gap,
        });
        if !frame.corrupt {
            frame.corrupt = !append_payload(frame, &packet.payload);
        }
        if frame.annex_b.len() > MAX_ACCESS_UNIT_BYTES {
            frame.corrupt = true;
            frame.annex_b = Vec::new();
        }
        if packet.marker {
            self.finish(out);
        }
    }

    fn finish(&mut self, out: &mut Vec<AccessUnit>) {
        let Some(frame) = self.frame.take() else { return };
        let corrupt = frame.corrupt || frame.fragment.is_some();
        if corrupt {
            self.stats.corrupt_frames += 1;
            // A gap already asked; a malformed packet without a gap asks here.
            if !self.gate.waiting() {
                self.gate.lose(Some(frame.timestamp));
            }
            return;
        }
        if frame.annex_b.is_empty() {
            return;
        }
        let keyframe = is_idr(&frame.annex_b);
        if !self.gate.admit(frame.timestamp, keyframe) {
            self.stats.frames_waiting_for_idr += 1;
            return;
        }
        self.stats.frames += 1;
        out.push(AccessUnit { rtp_timestamp: frame.timestamp, data: Bytes::from(frame.annex_b), keyframe });
    }
}

/// Adds the NAL units of one RTP payload to the frame. False when the payload is malformed or
/// does not fit with what came before (an FU-A piece without its start).
fn append_payload(frame: &mut FrameInProgress, payload: &[u8]) -> bool {
    let Some(&header) = payload.first() else { return true };
    match unit_type(header) {
        1..=23 => {
            if frame.fragment.is_some() {
                return false;
            }
            push_annex_b(&mut frame.annex_b, payload);
            true
        }
        nal_type::STAP_A => {
            let mut rest = &payload[1..];
            while !rest.is_empty() {
                let Some((size, body)) = rest.split_first_chunk::<2>() else { return false };
                let size = usize::from(u16::from_be_bytes(*size));
                if size == 0 || size > body.len() {
                    return false;
                }
                push_annex_b(&mut frame.annex_b, &body[..size]);
                rest = &body[size..];
            }
            true
        }
        nal_type::FU_A => {
            let Some(&fu_header) = payload.get(1) else { return false };
            let (start, end) = (fu_header & 0x80 != 0, fu_header & 0x40 != 0);
            let piece = &payload[2..];
            if start {
                if frame.fragment.is_some() {
                    return false;
                }
                let mut unit = Vec::with_capacity(piece.len() * 4 + 1);
                unit.push((header & 0xe0) | (fu_header & 0x1f));
                frame.fragment = Some(unit);
            }
            let Some(unit) = &mut frame.fragment else { return false };
            unit.extend_from_slice(piece);
            if end {
                // Just checked to be Some.
                let unit = frame.fragment.take().unwrap_or_default();
                push_annex_b(&mut frame.annex_b, &unit);
            }
            true
        }
        // Types 0, 30 and 31 are unspecified: receivers ignore them (RFC 6184 § 5.4).
        0 | 30 | 31 => true,
        // STAP-B, MTAP and FU-B belong to interleaved mode, which is never negotiated.
        _ => false,
    }
}
