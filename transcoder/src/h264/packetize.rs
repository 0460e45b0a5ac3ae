//! RFC 6184 packetization (mode 1, non-interleaved): an access unit becomes RTP payloads.
//!
//! Small units that fit together (SPS and PPS before an IDR) share one STAP-A packet, a unit
//! that fits alone is a single NAL unit packet, a larger one is split into FU-A fragments.

use bytes::{BufMut, Bytes, BytesMut};

use super::nal::{nal_type, split_annex_b};

/// The RTP payload size used unless the caller picks another: leaves room for the RTP header,
/// header extensions and SRTP's tag within a 1280-byte path MTU.
pub const DEFAULT_MAX_PAYLOAD: usize = 1200;

/// Splits one Annex B access unit into RTP payloads of at most `max_payload` bytes (at least
/// 16). The last payload carries the marker bit.
#[must_use]
pub fn packetize(access_unit: &[u8], max_payload: usize) -> Vec<Bytes> {
    let max_payload = max_payload.max(16);
    let mut payloads = Vec::new();
    let units: Vec<&[u8]> = split_annex_b(access_unit).collect();
    let mut i = 0;
    while i < units.len() {
        // Aggregate a run of units that fit one STAP-A together (1 header byte + 2-byte sizes).
        let mut run_len = 1;
        let mut stap_size = 1 + 2 + units[i].len();
        while i + run_len < units.len() && stap_size + 2 + units[i + run_len].len() <= max_payload {
            stap_size += 2 + units[i + run_len].len();
            run_len += 1;
        }
        if run_len > 1 {
            let run = &units[i..i + run_len];
            let mut stap = BytesMut::with_capacity(stap_size);
            // F is the OR of the units' F bits, NRI their maximum (RFC 6184 § 5.7.1).
            let f = run.iter().fold(0, |acc, u| acc | (u[0] & 0x80));
            let nri = run.iter().map(|u| u[0] & 0x60).max().unwrap_or(0);
            stap.put_u8(f | nri | nal_type::STAP_A);
            for unit in run {
                // Fits in u16: the whole STAP-A is at most `max_payload`, which fit in the check above.
                stap.put_u16(unit.len() as u16);
                stap.put_slice(unit);
            }
            payloads.push(stap.freeze());
        } else if units[i].len() <= max_payload {
            payloads.push(Bytes::copy_from_slice(units[i]));
        } else {
            fragment(units[i], max_payload, &mut payloads);
        }
        i += run_len;
    }
    payloads
}

/// FU-A fragments of one NAL unit: each is an FU indicator, an FU header and a piece of the
/// unit's payload (its own header byte travels split across indicator and header).
fn fragment(unit: &[u8], max_payload: usize, out: &mut Vec<Bytes>) {
    let header = unit[0];
    let indicator = (header & 0xe0) | nal_type::FU_A;
    let body = &unit[1..];
    let piece = max_payload - 2;
    let count = body.len().div_ceil(piece);
    for (index, chunk) in body.chunks(piece).enumerate() {
        let mut fu_header = header & 0x1f;
        if index == 0 {
            fu_header |= 0x80;
        }
        if index + 1 == count {
            fu_header |= 0x40;
        }
        let mut packet = BytesMut::with_capacity(chunk.len() + 2);
        packet.put_u8(indicator);
        packet.put_u8(fu_header);
        packet.put_slice(chunk);
        out.push(packet.freeze());
    }
}
