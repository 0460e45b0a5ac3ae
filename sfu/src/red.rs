//! Audio redundancy for subscribers on lossy links: RFC 2198 RED payloads that carry each Opus
//! frame again in the next packet ([`RedStream`]), and when a subscriber gets them ([`RedPolicy`]).
//!
//! The server adds it per subscriber, after its link: a publisher's own link is usually clean, so
//! what it sends carries no redundancy, and a subscriber that loses one packet in twenty hears a
//! gap in every second of speech without it. One level (the previous frame) recovers any single
//! loss at the cost of about one more Opus stream.

use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::rtp::{RedEncoder, RedundantBlock};

/// Reported loss from which a subscriber gets redundant audio.
const LOSSY: f32 = 0.02;
/// It keeps getting it until its link has reported less than [`LOSSY`] for this long.
const CLEAN_FOR: Duration = Duration::from_secs(20);

/// Per subscriber connection: whether its audio goes out with redundancy.
#[derive(Debug, Clone, Default)]
pub struct RedPolicy {
    /// When its link last reported loss of [`LOSSY`] or more.
    lossy_at: Option<Instant>,
}

impl RedPolicy {
    /// Takes in the loss its receiver reports now (the highest over its m-lines, a fraction) and
    /// whether its budget carries redundant audio besides the plain one; returns whether to send
    /// redundancy. Redundancy never takes from audio itself: on a link too narrow for both, plain
    /// audio goes on.
    pub fn update(&mut self, now: Instant, loss: f32, affordable: bool) -> bool {
        if loss >= LOSSY {
            self.lossy_at = Some(now);
        }
        affordable && self.lossy_at.is_some_and(|t| now.saturating_duration_since(t) < CLEAN_FOR)
    }
}

/// Per subscriber audio m-line: the previous frame sent, to go out again with the next one.
#[derive(Debug, Clone, Default)]
pub struct RedStream {
    previous: Option<(u32, Arc<[u8]>)>,
}

impl RedStream {
    /// Forgets the previous frame (a new source: its frames do not belong to this timeline).
    pub fn reset(&mut self) {
        self.previous = None;
    }

    /// Takes in the frame sent with RTP timestamp `ts`; returns it as a RED payload whose blocks
    /// are both of payload type `pt`, the previous frame first when RFC 2198's fields can carry it
    /// (after a DTX pause beyond a third of a second they cannot), else alone.
    pub fn wrap(&mut self, pt: u8, ts: u32, frame: &Arc<[u8]>) -> Vec<u8> {
        let previous = self.previous.replace((ts, frame.clone()));
        let redundant: Vec<RedundantBlock> = previous
            .map(|(t, f)| RedundantBlock { pt, timestamp_offset: ts.wrapping_sub(t), payload: f.to_vec() })
            .filter(|b| b.timestamp_offset > 0)
            .into_iter()
            .collect();
        RedEncoder::encode(pt, frame, &redundant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The blocks of a RED payload as (pt, timestamp offset, bytes), primary last.
    fn blocks(payload: &[u8]) -> Vec<(u8, u32, Vec<u8>)> {
        let blocks = str0m::rtp::RedDecoder::decode(payload).expect("a RED payload");
        blocks.into_iter().map(|b| (b.pt, b.timestamp_offset, b.payload.to_vec())).collect()
    }

    #[test]
    fn each_frame_goes_out_again_with_the_next_one() {
        let mut red = RedStream::default();
        let frame = |b: u8, n: usize| Arc::<[u8]>::from(vec![b; n]);
        assert_eq!(blocks(&red.wrap(111, 960, &frame(1, 60))), vec![(111, 0, vec![1; 60])], "the first frame alone");
        assert_eq!(blocks(&red.wrap(111, 1920, &frame(2, 70))), vec![(111, 960, vec![1; 60]), (111, 0, vec![2; 70])]);
        // A DTX pause: the frame after it follows 400 ms later, beyond 14 bits of 48 kHz.
        assert_eq!(blocks(&red.wrap(111, 1920 + 19_200, &frame(3, 10))), vec![(111, 0, vec![3; 10])]);
        // A frame too long for 10 bits is not repeated.
        red.wrap(111, 30_000, &frame(4, 1100));
        assert_eq!(blocks(&red.wrap(111, 30_960, &frame(5, 5))), vec![(111, 0, vec![5; 5])]);
        red.reset();
        assert_eq!(blocks(&red.wrap(111, 40_000, &frame(6, 5))), vec![(111, 0, vec![6; 5])], "after a reset, alone");
        // Timestamps that wrap around 2^32.
        red.wrap(111, u32::MAX - 479, &frame(7, 3));
        assert_eq!(blocks(&red.wrap(111, 480, &frame(8, 3))), vec![(111, 960, vec![7; 3]), (111, 0, vec![8; 3])]);
    }

    #[test]
    fn redundancy_follows_reported_loss_and_never_crowds_out_audio() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut policy = RedPolicy::default();
        // (seconds, loss, affordable, redundancy)
        let steps: &[(u64, f32, bool, bool)] = &[
            (0, 0.0, true, false),
            (1, 0.01, true, false), // one in a hundred: plain Opus conceals it
            (2, 0.05, true, true),
            (3, 0.05, false, false), // the budget does not carry both
            (4, 0.0, true, true),    // a clean second is not a clean link
            (22, 0.0, true, true),
            (23, 0.0, true, false), // 20 s since the last lossy report
        ];
        for (s, loss, affordable, want) in steps {
            assert_eq!(policy.update(at(*s), *loss, *affordable), *want, "at {s} s");
        }
    }
}
