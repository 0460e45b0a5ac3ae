//! The relay with real UDP sockets on loopback: loss as configured and reproducible for a seed,
//! the cap holding the delivered rate, both directions, and a schedule changing the link.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tongxin_loadtests::relay::{Impairment, Relay, RelayConfig, Schedule};

async fn relay(upstream: SocketAddr, up: Impairment, down: Impairment, seed: u64, schedule: Schedule) -> Relay {
    Relay::start(RelayConfig { listen: "127.0.0.1:0".parse().unwrap(), upstream, up, down, seed, schedule }).await.unwrap()
}

/// Receives on `socket` until `quiet` passes without a packet; returns the sequence numbers
/// (first 4 bytes) and the byte count, and the time span from first to last packet.
async fn drain(socket: &UdpSocket, quiet: Duration) -> (BTreeSet<u32>, usize, Duration) {
    let mut seen = BTreeSet::new();
    let mut bytes = 0;
    let mut buf = [0u8; 2048];
    let (mut first, mut last) = (None, None);
    while let Ok(Ok((n, _))) = tokio::time::timeout(quiet, socket.recv_from(&mut buf)).await {
        seen.insert(u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]));
        bytes += n;
        let now = Instant::now();
        first.get_or_insert(now);
        last = Some(now);
    }
    let span = match (first, last) {
        (Some(f), Some(l)) => l.duration_since(f),
        _ => Duration::ZERO,
    };
    (seen, bytes, span)
}

async fn lost_with_seed(seed: u64) -> BTreeSet<u32> {
    let sink = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let r = relay(
        sink.local_addr().unwrap(),
        Impairment { loss: 0.1, ..Impairment::default() },
        Impairment::default(),
        seed,
        Schedule::default(),
    )
    .await;
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // Receive while sending, so arrival times are real and no socket buffer overflows.
    let receiver = tokio::spawn(async move { drain(&sink, Duration::from_millis(500)).await });
    for seq in 0u32..2000 {
        let mut p = seq.to_be_bytes().to_vec();
        p.resize(200, 7);
        client.send_to(&p, r.local_addr()).await.unwrap();
        if seq % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await; // stay far below socket buffers
        }
    }
    let (seen, _, _) = receiver.await.unwrap();
    let stats = r.stats();
    assert_eq!(stats.up.delivered as usize, seen.len(), "the relay's counters match what arrived");
    assert_eq!(stats.up.offered, 2000);
    (0..2000).filter(|s| !seen.contains(s)).collect()
}

#[tokio::test]
async fn loss_is_as_configured_and_a_seed_replays_it() {
    let a = lost_with_seed(42).await;
    let b = lost_with_seed(42).await;
    let c = lost_with_seed(7).await;
    let rate = a.len() as f64 / 2000.0;
    assert!((0.08..=0.12).contains(&rate), "configured 10 %, lost {:.1} %", rate * 100.0);
    assert_eq!(a, b, "the same seed drops the same packets");
    assert_ne!(a, c, "another seed drops others");
}

#[tokio::test]
async fn both_directions_and_a_schedule() {
    // An echo server as the upstream.
    let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let upstream = server.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = server.recv_from(&mut buf).await {
            let _ = server.send_to(&buf[..n], from).await;
        }
    });
    let schedule = Schedule::from_toml("[[step]]\nat = \"400ms\"\ndown = { loss = 1.0 }\n").unwrap();
    let r =
        relay(upstream, Impairment::default(), Impairment { delay: Duration::from_millis(30), ..Impairment::default() }, 3, schedule).await;
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let sent_at = Instant::now();
    for seq in 0u32..50 {
        client.send_to(&seq.to_be_bytes(), r.local_addr()).await.unwrap();
    }
    let (echoed, _, _) = drain(&client, Duration::from_millis(200)).await;
    assert_eq!(echoed.len(), 50, "everything comes back before the step");
    tokio::time::sleep_until((sent_at + Duration::from_millis(500)).into()).await;
    for seq in 100u32..150 {
        client.send_to(&seq.to_be_bytes(), r.local_addr()).await.unwrap();
    }
    let (after, _, _) = drain(&client, Duration::from_millis(300)).await;
    assert!(after.is_empty(), "after the step the downlink loses everything: {after:?}");
    assert_eq!(r.stats().up.delivered, 100, "the uplink was not affected");
}

#[test]
fn schedules_are_checked() {
    assert!(Schedule::from_toml("[[step]]\nat = \"1s\"\ndown = { loss = 2.0 }\n").is_err());
    assert!(Schedule::from_toml("[[step]]\nat = \"2s\"\n[[step]]\nat = \"1s\"\n").is_err());
    assert!(Schedule::from_toml("[[step]]\nat = \"soon\"\n").is_err());
    let s = Schedule::from_toml("[[step]]\nat = \"10s\"\nup = { rate_bps = 150000, loss = 0.05, delay = \"80ms\" }\n").unwrap();
    assert_eq!(s.steps[0].up.unwrap().rate_bps, Some(150_000));
}

mod netns;
mod participant;
/// Timing-sensitive: run one at a time with the media tests, not beside the parallel ones.
mod run;

mod serial {
    use super::*;

    /// Janus under the generator, in a namespace (root; CI installs Janus, skips elsewhere).
    mod janus;

    #[tokio::test]
    async fn the_cap_holds_the_delivered_rate() {
        let sink = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let r = relay(sink.local_addr().unwrap(), Impairment::cap(300_000), Impairment::default(), 1, Schedule::default()).await;
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let receiver = tokio::spawn(async move { drain(&sink, Duration::from_millis(600)).await });
        // 1.5 s at about 1 Mbit/s (1000-byte packets every 8 ms) into a 300 kbit/s cap.
        let start = tokio::time::Instant::now();
        for seq in 0u32..188 {
            let mut p = seq.to_be_bytes().to_vec();
            p.resize(1000, 1);
            client.send_to(&p, r.local_addr()).await.unwrap();
            tokio::time::sleep_until(start + Duration::from_millis(8 * u64::from(seq + 1))).await;
        }
        let (seen, bytes, span) = receiver.await.unwrap();
        let rate = (bytes - 1000) as f64 * 8.0 / span.as_secs_f64();
        assert!(rate <= 330_000.0, "delivered {rate:.0} bit/s through a 300 kbit/s cap");
        assert!(rate >= 200_000.0, "the cap delivers close to its rate, got {rate:.0} bit/s");
        assert!(seen.len() < 120, "the excess is dropped: {} of 188 arrived", seen.len());
        assert!(r.stats().up.queue_drops > 0);
    }
}
