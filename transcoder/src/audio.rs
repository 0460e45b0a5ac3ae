//! Opus re-encoding for weak links: a publisher's music-grade Opus (OBS sends 128 kbit/s
//! stereo) becomes 16 kbit/s mono speech with in-band FEC and DTX, at the same RTP timestamps.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use opus::{Application, Bitrate, Channels};

use crate::job::JobError;
use crate::media::RtpPacket;
use crate::stats::{bump, read};
use crate::worker::{Offer, Task, Worker};

/// Opus's RTP clock and the rate everything is decoded at.
const SAMPLE_RATE: u32 = 48_000;
/// Samples in the longest Opus packet (120 ms).
const MAX_PACKET_SAMPLES: usize = 5760;
/// Frame sizes the encoder takes, in samples at 48 kHz (2.5 to 60 ms).
const FRAME_SIZES: [usize; 6] = [120, 240, 480, 960, 1920, 2880];
/// Output packets of at most 2 bytes are DTX silence markers: not sent (RFC 7587 § 3.1.3).
const DTX_MAX_BYTES: usize = 2;
/// Expected loss the encoder's FEC is sized for, in percent.
const FEC_LOSS_PERCENT: i32 = 10;

/// One re-encoded Opus packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReencodedPacket {
    /// RTP timestamp (48 kHz): the source packet's, or later within it when a long source packet
    /// was split.
    pub rtp_timestamp: u32,
    /// The Opus packet.
    pub payload: Bytes,
}

/// Counters of a re-encoder.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AudioJobStats {
    /// Source packets taken in.
    pub packets_in: u64,
    /// Packets dropped because the worker's queue was full.
    pub dropped_queue_full: u64,
    /// Packets produced.
    pub packets_out: u64,
    /// Bytes produced.
    pub bytes_out: u64,
    /// Source packets the decoder refused.
    pub decode_errors: u64,
    /// Lost source packets recovered from the next packet's in-band FEC.
    pub recovered_by_fec: u64,
    /// Silent frames not sent (DTX).
    pub dtx_frames: u64,
    /// Worker restarts after a panic.
    pub restarts: u64,
}

/// Decodes a publisher's Opus and encodes it again at a low bitrate, packet by packet, keeping
/// the RTP timestamps.
pub struct OpusReencoder {
    decoder: opus::Decoder,
    encoder: opus::Encoder,
    pcm: Vec<i16>,
    out: Vec<u8>,
    /// The previous packet's timestamp and duration, to notice a single lost packet.
    previous: Option<(u32, u32)>,
    stats: AudioJobStats,
}

impl std::fmt::Debug for OpusReencoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusReencoder").field("stats", &self.stats).finish_non_exhaustive()
    }
}

impl OpusReencoder {
    /// A re-encoder to `target_bps` mono (16 000 is the policy's default).
    ///
    /// # Errors
    ///
    /// libopus's, if it refuses a setting.
    pub fn new(target_bps: u32) -> Result<Self, opus::Error> {
        // Decoding straight to mono lets libopus downmix a stereo source.
        let decoder = opus::Decoder::new(SAMPLE_RATE, Channels::Mono)?;
        let mut encoder = opus::Encoder::new(SAMPLE_RATE, Channels::Mono, Application::Voip)?;
        encoder.set_bitrate(Bitrate::Bits(i32::try_from(target_bps).unwrap_or(i32::MAX)))?;
        encoder.set_inband_fec(true)?;
        encoder.set_packet_loss_perc(FEC_LOSS_PERCENT)?;
        encoder.set_dtx(true)?;
        Ok(Self { decoder, encoder, pcm: vec![0; MAX_PACKET_SAMPLES], out: vec![0; 1500], previous: None, stats: AudioJobStats::default() })
    }

    /// Re-encodes one source packet; the result (usually one packet, none for DTX silence, more
    /// when a long source packet is split) goes to `out`.
    ///
    /// # Errors
    ///
    /// libopus's, for a packet it cannot decode or a frame it cannot encode. The re-encoder stays
    /// usable.
    pub fn reencode(&mut self, rtp_timestamp: u32, payload: &[u8], out: &mut Vec<ReencodedPacket>) -> Result<(), opus::Error> {
        self.stats.packets_in += 1;
        // One packet lost just before this one: its audio is in this packet's FEC data.
        if let Some((last_ts, last_duration)) = self.previous {
            let gap = rtp_timestamp.wrapping_sub(last_ts);
            if last_duration > 0 && gap == 2 * last_duration {
                let samples = last_duration as usize;
                if samples <= MAX_PACKET_SAMPLES && self.decoder.decode(payload, &mut self.pcm[..samples], true).is_ok() {
                    self.stats.recovered_by_fec += 1;
                    self.encode(last_ts.wrapping_add(last_duration), samples, out)?;
                }
            }
        }
        let samples = match self.decoder.decode(payload, &mut self.pcm, false) {
            Ok(samples) => samples,
            Err(error) => {
                self.stats.decode_errors += 1;
                self.previous = None;
                return Err(error);
            }
        };
        self.previous = Some((rtp_timestamp, u32::try_from(samples).unwrap_or(0)));
        self.encode(rtp_timestamp, samples, out)
    }

    /// Counters so far.
    #[must_use]
    pub const fn stats(&self) -> AudioJobStats {
        self.stats
    }

    /// Encodes `self.pcm[..samples]` starting at `rtp_timestamp`.
    fn encode(&mut self, rtp_timestamp: u32, samples: usize, out: &mut Vec<ReencodedPacket>) -> Result<(), opus::Error> {
        let mut offset = 0;
        while offset < samples {
            let remaining = samples - offset;
            // The whole packet when its length is one the encoder takes, else 20 ms pieces.
            let frame = if FRAME_SIZES.contains(&remaining) { remaining } else { remaining.min(960) };
            if !FRAME_SIZES.contains(&frame) {
                // A tail shorter than any frame size (a malformed source): not worth a packet.
                break;
            }
            let len = self.encoder.encode(&self.pcm[offset..offset + frame], &mut self.out)?;
            let timestamp = rtp_timestamp.wrapping_add(u32::try_from(offset).unwrap_or(0));
            if len <= DTX_MAX_BYTES {
                self.stats.dtx_frames += 1;
            } else {
                self.stats.packets_out += 1;
                self.stats.bytes_out += len as u64;
                out.push(ReencodedPacket { rtp_timestamp: timestamp, payload: Bytes::copy_from_slice(&self.out[..len]) });
            }
            offset += frame;
        }
        Ok(())
    }
}

/// Counters shared with the audio worker.
#[derive(Debug, Default)]
struct AudioShared {
    packets_in: AtomicU64,
    dropped_queue_full: AtomicU64,
    packets_out: AtomicU64,
    bytes_out: AtomicU64,
    decode_errors: AtomicU64,
    recovered_by_fec: AtomicU64,
    dtx_frames: AtomicU64,
    restarts: AtomicU64,
    panic_next: AtomicBool,
}

/// An [`OpusReencoder`] on its own thread, fed without blocking like [`crate::VideoJob`].
#[derive(Debug)]
pub struct AudioJob {
    shared: Arc<AudioShared>,
    worker: Worker<RtpPacket>,
}

impl AudioJob {
    /// Starts a re-encoder to `target_bps`; `sink` gets every packet, on the worker thread.
    ///
    /// # Errors
    ///
    /// [`JobError::Thread`] if no thread could be made.
    pub fn start(target_bps: u32, queue_packets: usize, sink: impl FnMut(ReencodedPacket) + Send + 'static) -> Result<Self, JobError> {
        let shared = Arc::new(AudioShared::default());
        let (step_shared, restart_shared) = (Arc::clone(&shared), Arc::clone(&shared));
        let mut sink = sink;
        let mut produced = Vec::new();
        let worker = Worker::spawn(
            "tongxin-opus",
            queue_packets,
            Task {
                start: move || OpusReencoder::new(target_bps),
                step: move |reencoder: &mut OpusReencoder, packet: RtpPacket| {
                    if step_shared.panic_next.swap(false, Ordering::Relaxed) {
                        panic!("panic injected by a test");
                    }
                    let before = reencoder.stats();
                    // A bad packet is counted and skipped; the next one decodes on its own.
                    let _ = reencoder.reencode(packet.timestamp, &packet.payload, &mut produced);
                    let after = reencoder.stats();
                    let s = &step_shared;
                    s.packets_out.fetch_add(after.packets_out - before.packets_out, Ordering::Relaxed);
                    s.bytes_out.fetch_add(after.bytes_out - before.bytes_out, Ordering::Relaxed);
                    s.decode_errors.fetch_add(after.decode_errors - before.decode_errors, Ordering::Relaxed);
                    s.recovered_by_fec.fetch_add(after.recovered_by_fec - before.recovered_by_fec, Ordering::Relaxed);
                    s.dtx_frames.fetch_add(after.dtx_frames - before.dtx_frames, Ordering::Relaxed);
                    for packet in produced.drain(..) {
                        sink(packet);
                    }
                },
                restarted: move || bump(&restart_shared.restarts),
            },
        )
        .map_err(JobError::Thread)?;
        Ok(Self { shared, worker })
    }

    /// Takes one RTP packet of the source's Opus. Never blocks; a full queue drops it.
    pub fn push_rtp(&self, packet: RtpPacket) {
        bump(&self.shared.packets_in);
        if self.worker.offer(packet) == Offer::Dropped {
            bump(&self.shared.dropped_queue_full);
        }
    }

    /// A snapshot of the counters.
    #[must_use]
    pub fn stats(&self) -> AudioJobStats {
        let s = &self.shared;
        AudioJobStats {
            packets_in: read(&s.packets_in),
            dropped_queue_full: read(&s.dropped_queue_full),
            packets_out: read(&s.packets_out),
            bytes_out: read(&s.bytes_out),
            decode_errors: read(&s.decode_errors),
            recovered_by_fec: read(&s.recovered_by_fec),
            dtx_frames: read(&s.dtx_frames),
            restarts: read(&s.restarts),
        }
    }

    /// Makes the worker panic on its next packet, to test that it restarts.
    #[cfg(feature = "testing")]
    pub fn inject_panic(&self) {
        self.shared.panic_next.store(true, Ordering::Relaxed);
    }

    /// Closes the queue and waits until everything queued is re-encoded.
    pub fn stop(self) {
        self.worker.stop();
    }
}
