//! RFC 6184 packetizing and depacketizing, and what a loss does to the stream.

use bytes::Bytes;
use tongxin_transcoder::h264::{Depacketizer, nal};
use tongxin_transcoder::{AccessUnit, RtpPacket};

use crate::support::to_rtp;

/// An access unit of NAL units of the given sizes (the first byte of each is its header).
fn unit(ts: u32, sizes: &[(u8, usize)]) -> AccessUnit {
    let mut data = Vec::new();
    for (i, &(header, size)) in sizes.iter().enumerate() {
        data.extend_from_slice(&nal::START_CODE);
        data.push(header);
        // Deterministic bytes that never form a start code.
        data.extend((1..size).map(|k| (((k * 7 + i * 13) % 250) + 3) as u8));
    }
    AccessUnit { rtp_timestamp: ts, keyframe: nal::is_idr(&data), data: Bytes::from(data) }
}

fn idr(ts: u32) -> AccessUnit {
    unit(ts, &[(0x67, 12), (0x68, 4), (0x65, 5000)])
}

fn p_frame(ts: u32, size: usize) -> AccessUnit {
    unit(ts, &[(0x41, size)])
}

fn depacketize(packets: impl IntoIterator<Item = RtpPacket>) -> (Vec<AccessUnit>, Depacketizer) {
    let mut depacketizer = Depacketizer::new();
    let mut out = Vec::new();
    for packet in packets {
        depacketizer.push(packet, &mut out);
    }
    (out, depacketizer)
}

#[test]
fn packets_fit_the_mtu_and_come_back_whole() {
    let units = vec![idr(1000), p_frame(4000, 800), p_frame(7000, 3000), unit(10_000, &[(0x06, 20), (0x41, 1199), (0x41, 1)])];
    let packets = to_rtp(&units, u16::MAX - 3);
    let idr_packets = &packets[0];
    // SPS and PPS share a STAP-A; the 5000-byte IDR slice becomes FU-A fragments.
    assert_eq!(idr_packets[0].payload[0] & 0x1f, nal::nal_type::STAP_A);
    assert!(idr_packets[1..].iter().all(|p| p.payload[0] & 0x1f == nal::nal_type::FU_A));
    assert!(packets.iter().flatten().all(|p| p.payload.len() <= 1200));
    assert!(packets.iter().all(|frame| frame.iter().filter(|p| p.marker).count() == 1 && frame.last().is_some_and(|p| p.marker)));
    let (out, depacketizer) = depacketize(packets.into_iter().flatten());
    assert_eq!(out, units, "sequence numbers wrapped and every unit came back");
    assert_eq!(depacketizer.stats().lost_packets, 0);
}

#[test]
fn reordered_packets_are_put_back_in_order() {
    let units = vec![idr(0), p_frame(3000, 4000), p_frame(6000, 4000)];
    let mut packets: Vec<RtpPacket> = to_rtp(&units, 100).into_iter().flatten().collect();
    packets.swap(3, 5);
    packets.swap(8, 9);
    let (out, depacketizer) = depacketize(packets);
    assert_eq!(out, units);
    assert!(!depacketizer.waiting_for_idr());
}

#[test]
fn a_lost_packet_drops_frames_until_the_next_idr_and_asks_for_one() {
    let units: Vec<AccessUnit> = (0..40u32).map(|i| if i % 20 == 0 { idr(i * 3000) } else { p_frame(i * 3000, 2500) }).collect();
    let packets = to_rtp(&units, 0);
    let mut depacketizer = Depacketizer::new();
    let mut out = Vec::new();
    let mut asked_at = Vec::new();
    for (i, frame) in packets.into_iter().enumerate() {
        for (k, packet) in frame.into_iter().enumerate() {
            // Frame 5 loses its middle packet.
            if i == 5 && k == 1 {
                continue;
            }
            depacketizer.push(packet, &mut out);
            if depacketizer.take_keyframe_request() {
                asked_at.push(i);
            }
        }
    }
    let got: Vec<u32> = out.iter().map(|u| u.rtp_timestamp / 3000).collect();
    let want: Vec<u32> = (0..5).chain(20..40).collect();
    assert_eq!(got, want, "frames 5..20 are lost: 5 is broken, the rest reference it");
    assert!(!asked_at.is_empty() && asked_at[0] <= 10, "a keyframe was asked for within the reorder window: {asked_at:?}");
    let stats = depacketizer.stats();
    assert!(stats.lost_packets >= 1 && stats.corrupt_frames >= 1 && stats.frames_waiting_for_idr >= 10, "{stats:?}");
}

#[test]
fn malformed_payloads_spoil_only_their_frame_and_its_dependants() {
    let units: Vec<AccessUnit> = (0..6u32).map(|i| if i % 3 == 0 { idr(i * 3000) } else { p_frame(i * 3000, 300) }).collect();
    let mut packets: Vec<Vec<RtpPacket>> = to_rtp(&units, 7);
    // Frame 1: a STAP-A whose size field runs past the end.
    packets[1][0].payload = Bytes::from_static(&[24, 0, 200, 0x41, 1, 2]);
    let (out, depacketizer) = depacketize(packets.into_iter().flatten());
    let got: Vec<u32> = out.iter().map(|u| u.rtp_timestamp / 3000).collect();
    assert_eq!(got, [0, 3, 4, 5]);
    assert_eq!(depacketizer.stats().corrupt_frames, 1);
}

#[test]
fn the_stream_starts_at_its_first_idr() {
    let units: Vec<AccessUnit> = (0..4u32).map(|i| if i == 2 { idr(i * 3000) } else { p_frame(i * 3000, 100) }).collect();
    let mut depacketizer = Depacketizer::new();
    let mut out = Vec::new();
    let mut asked = false;
    for packet in to_rtp(&units, 0).into_iter().flatten() {
        depacketizer.push(packet, &mut out);
        asked |= depacketizer.take_keyframe_request();
    }
    assert!(asked, "joining mid-stream asks for a keyframe");
    assert_eq!(out.iter().map(|u| u.rtp_timestamp).collect::<Vec<_>>(), [6000, 9000]);
}
