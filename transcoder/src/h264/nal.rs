//! H.264 NAL unit helpers: Annex B splitting and joining, unit types, SPS profile.

/// NAL unit types this crate looks at (ITU-T H.264 table 7-1, RFC 6184 § 5.2).
pub mod nal_type {
    /// A coded slice of a non-IDR picture.
    pub const SLICE: u8 = 1;
    /// A coded slice of an IDR picture.
    pub const IDR: u8 = 5;
    /// Supplemental enhancement information.
    pub const SEI: u8 = 6;
    /// Sequence parameter set.
    pub const SPS: u8 = 7;
    /// Picture parameter set.
    pub const PPS: u8 = 8;
    /// Access unit delimiter.
    pub const AUD: u8 = 9;
    /// RFC 6184 single-time aggregation packet.
    pub const STAP_A: u8 = 24;
    /// RFC 6184 fragmentation unit.
    pub const FU_A: u8 = 28;
}

/// The Annex B start code written before every NAL unit.
pub const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// The type of a NAL unit from its first byte.
#[must_use]
pub const fn unit_type(header: u8) -> u8 {
    header & 0x1f
}

/// The NAL units of an Annex B byte stream (start codes of 3 or 4 bytes), without their start
/// codes. Empty units are skipped. Bytes before the first start code are ignored.
pub fn split_annex_b(stream: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = match find_start_code(stream) {
        Some((at, len)) => &stream[at + len..],
        None => &[][..],
    };
    std::iter::from_fn(move || {
        while !rest.is_empty() {
            let (unit, next) = match find_start_code(rest) {
                Some((at, len)) => (&rest[..at], &rest[at + len..]),
                None => (rest, &[][..]),
            };
            rest = next;
            // A 4-byte start code leaves the zero that precedes "0 0 1" at the end of the
            // previous unit; trailing zeros are never part of a NAL unit (they are padding).
            let end = unit.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
            if end > 0 {
                return Some(&unit[..end]);
            }
        }
        None
    })
}

/// Where the next `0 0 1` start code begins, and its length (3, or 4 with a leading zero).
fn find_start_code(data: &[u8]) -> Option<(usize, usize)> {
    let at = data.windows(3).position(|w| w == [0, 0, 1])?;
    if at > 0 && data[at - 1] == 0 { Some((at - 1, 4)) } else { Some((at, 3)) }
}

/// Appends `unit` to `out` with a 4-byte start code.
pub fn push_annex_b(out: &mut Vec<u8>, unit: &[u8]) {
    out.extend_from_slice(&START_CODE);
    out.extend_from_slice(unit);
}

/// Whether an Annex B access unit holds an IDR slice.
#[must_use]
pub fn is_idr(access_unit: &[u8]) -> bool {
    split_annex_b(access_unit).any(|unit| unit_type(unit[0]) == nal_type::IDR)
}

/// The `profile_idc` of the first SPS in an Annex B stream (66 Baseline, 77 Main, 100 High).
#[must_use]
pub fn sps_profile_idc(stream: &[u8]) -> Option<u8> {
    split_annex_b(stream).find(|unit| unit_type(unit[0]) == nal_type::SPS).and_then(|sps| sps.get(1).copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_three_and_four_byte_start_codes() {
        let stream = [0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4, 0, 0];
        let units: Vec<&[u8]> = split_annex_b(&stream).collect();
        assert_eq!(units, [&[0x67, 1, 2][..], &[0x68, 3][..], &[0x65, 4][..]]);
        assert!(is_idr(&stream));
        assert_eq!(sps_profile_idc(&stream), Some(1));
        assert_eq!(split_annex_b(&[1, 2, 3]).count(), 0, "no start code, no units");
        assert_eq!(split_annex_b(&[0, 0, 1, 0, 0, 1]).count(), 0, "empty units are skipped");
    }
}
