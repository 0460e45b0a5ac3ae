//! Frame counters carried in H.264 SEI NAL units (`user_data_unregistered`, payload type 5).
//!
//! The SEI goes before the first slice of an access unit, where decoders skip SEI messages they do
//! not know, and an SFU that rewrites RTP headers (sequence numbers, timestamps, SSRC) forwards it
//! untouched inside the payload.

use bytes::Bytes;

/// The UUID that marks our counter SEI: a random version 4 UUID
/// (`8c0aa65b-d904-4e93-adca-e15e79bd72c0`), so that no other SEI is mistaken for it.
pub const COUNTER_SEI_UUID: [u8; 16] = [0x8c, 0x0a, 0xa6, 0x5b, 0xd9, 0x04, 0x4e, 0x93, 0xad, 0xca, 0xe1, 0x5e, 0x79, 0xbd, 0x72, 0xc0];

/// NAL unit type of an SEI.
const NAL_SEI: u8 = 6;
/// NAL unit type of an IDR slice.
pub(super) const NAL_IDR: u8 = 5;
/// SEI payload type `user_data_unregistered`.
const USER_DATA_UNREGISTERED: usize = 5;
/// UUID then the counter, 8 bytes big-endian.
const COUNTER_PAYLOAD_LEN: usize = 16 + 8;

/// Returns `au` with an SEI NAL unit carrying `counter` inserted before its first slice (after
/// any access unit delimiter, SPS and PPS). `au` is an Annex B access unit (3- or 4-byte start
/// codes); an access unit without a slice gets the SEI at its end, and input without any start
/// code is taken as one bare NAL unit and given one.
#[must_use]
pub fn with_counter(au: &[u8], counter: u64) -> Bytes {
    let sei = counter_sei(counter);
    let mut out = Vec::with_capacity(au.len() + sei.len() + 4);
    let Some(first) = find_nal(au, 0) else {
        out.extend_from_slice(&sei);
        if !au.is_empty() {
            out.extend_from_slice(&[0, 0, 0, 1]);
            out.extend_from_slice(au);
        }
        return Bytes::from(out);
    };
    let insert_at = std::iter::successors(Some(first), |nal| find_nal(au, nal.body))
        .find(|nal| au.get(nal.body).is_some_and(|&header| is_vcl(header)))
        .map_or(au.len(), |nal| nal.start_code);
    out.extend_from_slice(&au[..insert_at]);
    out.extend_from_slice(&sei);
    out.extend_from_slice(&au[insert_at..]);
    Bytes::from(out)
}

/// Finds the counter that [`with_counter`] put into an access unit, as a depacketizer
/// reassembles it (Annex B, 3- or 4-byte start codes). `None` if the access unit has no SEI with
/// [`COUNTER_SEI_UUID`] before its first slice.
#[must_use]
pub fn read_counter(au: &[u8]) -> Option<u64> {
    let Some(mut nal) = find_nal(au, 0) else {
        // A bare NAL unit.
        let (&header, rest) = au.split_first()?;
        return if header & 0x1f == NAL_SEI { parse_counter_sei(rest) } else { None };
    };
    loop {
        let header = *au.get(nal.body)?;
        // SEI must precede the first slice: stop there rather than scan the slice data.
        if is_vcl(header) {
            return None;
        }
        let next = find_nal(au, nal.body);
        if header & 0x1f == NAL_SEI {
            let end = next.map_or(au.len(), |next| next.start_code);
            if let Some(counter) = au.get(nal.body + 1..end).and_then(parse_counter_sei) {
                return Some(counter);
            }
        }
        nal = next?;
    }
}

/// The NAL unit types of an Annex B access unit, in order.
pub(super) fn nal_types(au: &[u8]) -> impl Iterator<Item = u8> + '_ {
    std::iter::successors(find_nal(au, 0), move |nal| find_nal(au, nal.body)).filter_map(move |nal| au.get(nal.body).map(|h| h & 0x1f))
}

/// Where a NAL unit starts in an Annex B stream.
#[derive(Debug, Clone, Copy)]
struct NalStart {
    /// Offset of its start code, leading zero bytes included.
    start_code: usize,
    /// Offset of its header byte, just after the start code.
    body: usize,
}

/// The first NAL unit whose `00 00 01` starts at or after `from`.
fn find_nal(data: &[u8], from: usize) -> Option<NalStart> {
    let at = from + data.get(from..)?.windows(3).position(|w| w == [0, 0, 1])?;
    let zeros = data[from..at].iter().rev().take_while(|&&b| b == 0).count();
    Some(NalStart { start_code: at - zeros, body: at + 3 })
}

/// Slices (types 1 to 5) are the video coding layer.
fn is_vcl(header: u8) -> bool {
    (1..=5).contains(&(header & 0x1f))
}

/// A complete SEI NAL unit with a 4-byte start code, emulation prevention applied.
fn counter_sei(counter: u64) -> Vec<u8> {
    let mut rbsp = Vec::with_capacity(3 + COUNTER_PAYLOAD_LEN);
    // Both fit in one byte (< 255), so no 0xFF extension bytes.
    rbsp.push(USER_DATA_UNREGISTERED as u8);
    rbsp.push(COUNTER_PAYLOAD_LEN as u8);
    rbsp.extend_from_slice(&COUNTER_SEI_UUID);
    rbsp.extend_from_slice(&counter.to_be_bytes());
    // rbsp_trailing_bits: the stop bit, then alignment zeros.
    rbsp.push(0x80);

    // nal_ref_idc 0: nothing refers to an SEI.
    let mut nal = vec![0, 0, 0, 1, NAL_SEI];
    let mut zeros = 0;
    for &byte in &rbsp {
        if zeros >= 2 && byte <= 3 {
            nal.push(3);
            zeros = 0;
        }
        nal.push(byte);
        zeros = if byte == 0 { zeros + 1 } else { 0 };
    }
    nal
}

/// Parses the SEI messages of one SEI NAL unit (after its header byte, still escaped) and
/// returns the counter of the first one that is ours.
fn parse_counter_sei(escaped: &[u8]) -> Option<u64> {
    let rbsp = unescape(escaped);
    let mut pos = 0;
    // more_rbsp_data(): anything but the final stop-bit byte.
    while rbsp.get(pos..).is_some_and(|rest| !rest.is_empty() && rest != [0x80]) {
        let (payload_type, len) = read_ff_coded(&rbsp[pos..])?;
        pos += len;
        let (size, len) = read_ff_coded(rbsp.get(pos..)?)?;
        pos += len;
        let payload = rbsp.get(pos..pos.checked_add(size)?)?;
        if payload_type == USER_DATA_UNREGISTERED && size >= COUNTER_PAYLOAD_LEN && payload[..16] == COUNTER_SEI_UUID {
            let counter: [u8; 8] = payload[16..24].try_into().ok()?;
            return Some(u64::from_be_bytes(counter));
        }
        pos += size;
    }
    None
}

/// An SEI payload type or size: 0xFF bytes adding 255 each, then a last byte.
fn read_ff_coded(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut value = 0usize;
    for (i, &byte) in bytes.iter().enumerate() {
        value = value.checked_add(usize::from(byte))?;
        if byte != 0xff {
            return Some((value, i + 1));
        }
    }
    None
}

/// Removes emulation prevention: the `03` in every `00 00 03`.
fn unescape(escaped: &[u8]) -> Vec<u8> {
    let mut rbsp = Vec::with_capacity(escaped.len());
    let mut zeros = 0;
    for &byte in escaped {
        if zeros >= 2 && byte == 3 {
            zeros = 0;
            continue;
        }
        rbsp.push(byte);
        zeros = if byte == 0 { zeros + 1 } else { 0 };
    }
    rbsp
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPS: &[u8] = &[0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1e, 0xda, 0x02, 0x80, 0xbf, 0xe5, 0x84];
    const PPS: &[u8] = &[0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80];
    // Slice data with an emulation-prevented `00 00 03 00` of its own.
    const IDR: &[u8] = &[0, 0, 0, 1, 0x65, 0x88, 0x84, 0x00, 0x00, 0x03, 0x00, 0x21, 0xff, 0x12];
    const P_SLICE: &[u8] = &[0, 0, 1, 0x41, 0x9a, 0x24, 0x6c, 0x00, 0x00, 0x03, 0x01, 0x7f];
    const AUD: &[u8] = &[0, 0, 0, 1, 0x09, 0xf0];
    // A foreign user_data_unregistered SEI: same shape as ours, another UUID, counter 7.
    #[rustfmt::skip]
    const FOREIGN_SEI: &[u8] = &[
        0, 0, 0, 1, 0x06, 0x05, 0x18,
        0xdc, 0x45, 0xe9, 0xbd, 0xe6, 0xd9, 0x48, 0xb7, 0x96, 0x2c, 0xd8, 0x20, 0xd9, 0x23, 0xee, 0xef,
        0x00, 0x00, 0x03, 0x00, 0x00, 0x03, 0x00, 0x00, 0x03, 0x00, 0x07, 0x80,
    ];

    fn access_units() -> Vec<(&'static str, Vec<u8>, usize)> {
        // (name, access unit, offset where the SEI must go)
        vec![
            ("sps+pps+idr", [SPS, PPS, IDR].concat(), SPS.len() + PPS.len()),
            ("p slice, 3-byte start code", P_SLICE.to_vec(), 0),
            ("aud+p", [AUD, P_SLICE].concat(), AUD.len()),
            ("sps+pps+idr+idr (two slices)", [SPS, PPS, IDR, IDR].concat(), SPS.len() + PPS.len()),
            ("foreign sei+p", [FOREIGN_SEI, P_SLICE].concat(), FOREIGN_SEI.len()),
        ]
    }

    /// Counters with zero bytes and small bytes in every position, so that emulation prevention
    /// is needed in many places.
    fn counters() -> Vec<u64> {
        let mut counters = vec![0, 1, 2, 3, 0x0300, 0x0000_0001_0000_0000, 0x0100_0000_0000_0000, 0x0000_0300_0002_0000, u64::MAX];
        let mut state = 0x243f_6a88_85a3_08d3u64;
        for _ in 0..2000 {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let mut bytes = (state ^ (state >> 29)).to_be_bytes();
            for (i, byte) in bytes.iter_mut().enumerate() {
                match (state >> (i * 3 + 20)) & 7 {
                    0..=2 => *byte = 0,
                    3 => *byte &= 3,
                    _ => {}
                }
            }
            counters.push(u64::from_be_bytes(bytes));
        }
        counters
    }

    #[test]
    fn counters_round_trip_and_the_sei_goes_before_the_first_slice() {
        for (name, au, insert_at) in access_units() {
            for counter in counters() {
                let out = with_counter(&au, counter);
                let sei = counter_sei(counter);
                assert_eq!(&out[..insert_at], &au[..insert_at], "{name}");
                assert_eq!(&out[insert_at..insert_at + sei.len()], &sei[..], "{name}");
                assert_eq!(&out[insert_at + sei.len()..], &au[insert_at..], "{name}");
                assert_eq!(read_counter(&out), Some(counter), "{name} {counter:#x}");
            }
        }
    }

    #[test]
    fn emulation_prevention_is_applied_and_read_back() {
        // Counter 0 ends the payload with eight zero bytes: they must be escaped.
        let sei = counter_sei(0);
        assert!(sei.windows(3).any(|w| w == [0, 0, 3]));
        for counter in counters() {
            let sei = counter_sei(counter);
            // Inside the NAL unit (after the start code) no 00 00 0x with x <= 2 may appear.
            assert!(!sei[4..].windows(3).any(|w| w[0] == 0 && w[1] == 0 && w[2] <= 2), "{counter:#x}: {sei:02x?}");
            assert_eq!(read_counter(&sei), Some(counter));
        }
    }

    #[test]
    fn three_byte_start_codes_and_bare_nal_units_are_read() {
        let four = with_counter(&[SPS, PPS, IDR].concat(), 0x0000_0000_0000_0300);
        // What a depacketizer might produce: 3-byte start codes everywhere.
        let mut three = Vec::new();
        let starts: Vec<_> = std::iter::successors(find_nal(&four, 0), |n| find_nal(&four, n.body)).collect();
        for (i, start) in starts.iter().enumerate() {
            let end = starts.get(i + 1).map_or(four.len(), |n| n.start_code);
            three.extend_from_slice(&[0, 0, 1]);
            three.extend_from_slice(&four[start.body..end]);
        }
        assert!(three.len() < four.len());
        assert_eq!(read_counter(&three), Some(0x300));

        let bare = with_counter(&P_SLICE[3..], 42);
        assert_eq!(nal_types(&bare).collect::<Vec<_>>(), [6, 1]);
        assert_eq!(read_counter(&bare), Some(42));
        assert_eq!(read_counter(&counter_sei(9)[4..]), Some(9));
    }

    #[test]
    fn no_counter_without_our_sei() {
        for (name, au, _) in access_units() {
            assert_eq!(read_counter(&au), None, "{name}");
        }
        // The foreign SEI is well-formed: with our UUID in it, it would count.
        let mut ours = FOREIGN_SEI.to_vec();
        ours[7..23].copy_from_slice(&COUNTER_SEI_UUID);
        assert_eq!(read_counter(&[&ours[..], P_SLICE].concat()), Some(7));
        // Our SEI after the first slice is not where a counter belongs.
        assert_eq!(read_counter(&[IDR, &counter_sei(5)].concat()), None);
        // Truncated: the payload size says 24 but the NAL unit ends early.
        let sei = counter_sei(5);
        assert_eq!(read_counter(&[&sei[..20], P_SLICE].concat()), None);
        for junk in [&[][..], &[0], &[0, 0, 1], &[0, 0, 0, 1, 0x06], &[0, 0, 1, 0x06, 0xff, 0xff], &[0x06, 0x05, 0xff]] {
            assert_eq!(read_counter(junk), None, "{junk:02x?}");
        }
    }

    #[test]
    fn a_counter_after_another_sei_message_in_the_same_nal_unit_is_found() {
        // recovery_point (type 6, 1 byte), then our user data, in one SEI NAL unit.
        let ours = counter_sei(77);
        let mut nal = vec![0, 0, 0, 1, 0x06, 0x06, 0x01, 0xc4];
        nal.extend_from_slice(&ours[5..]);
        assert_eq!(read_counter(&[&nal[..], P_SLICE].concat()), Some(77));
    }
}
