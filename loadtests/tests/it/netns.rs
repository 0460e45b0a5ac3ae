//! The namespace helper as root: a UDP stream from the root namespace into the namespace is
//! delivered at the `tbf` cap, at a new cap after a change, and at the offered rate once the cap
//! is lifted; everything is gone after drop. Counted by the kernel at the namespace's end of the
//! veth pair, so no receiver process is needed.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tongxin_loadtests::netns::{Netns, root_or_skip};

/// Sends `offered_bps` of 1000-byte UDP datagrams into the namespace; after 1 s (the queue has
/// filled) counts what the namespace receives over 3 s. Returns the delivered bit/s.
async fn delivered_bps(ns: &Netns, offered_bps: u64) -> f64 {
    let socket = UdpSocket::bind("0.0.0.0:0").await.unwrap();
    // The discard port: nothing listens, the kernel counts the bytes all the same.
    let to = SocketAddr::new(ns.ns_addr().into(), 9);
    let packet = [0x5au8; 1000];
    let per_tick = offered_bps / 8 / 1000 / 100; // datagrams per 10 ms
    let start = tokio::time::Instant::now();
    let mut window = None;
    let mut first = None;
    for tick in 1u32.. {
        for _ in 0..per_tick.max(1) {
            // A refused or dropped datagram is the link's business, not the sender's.
            let _ = socket.send_to(&packet, to).await;
        }
        let elapsed = start.elapsed();
        if elapsed >= Duration::from_secs(1) && first.is_none() {
            first = Some((Instant::now(), ns.ns_rx_bytes().unwrap()));
        }
        if elapsed >= Duration::from_secs(4) {
            let (t0, b0) = first.unwrap();
            let b1 = ns.ns_rx_bytes().unwrap();
            window = Some(((b1 - b0) as f64 * 8.0) / t0.elapsed().as_secs_f64());
            break;
        }
        tokio::time::sleep_until(start + Duration::from_millis(10) * tick).await;
    }
    window.unwrap()
}

mod serial {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_cap_holds_changes_and_lifts_and_drop_cleans_up() {
        if !root_or_skip("the_cap_holds_changes_and_lifts_and_drop_cleans_up") {
            return;
        }
        let ns = Netns::create().unwrap();
        let other = Netns::create().unwrap();
        assert_ne!(ns.name(), other.name());
        assert_ne!(ns.host_addr(), other.host_addr(), "each namespace has its own /30");
        drop(other);

        ns.set_cap(150_000).unwrap();
        let capped = delivered_bps(&ns, 1_000_000).await;
        ns.set_cap(600_000).unwrap();
        let raised = delivered_bps(&ns, 2_000_000).await;
        ns.lift_cap().unwrap();
        let lifted = delivered_bps(&ns, 20_000_000).await;
        eprintln!(
            "delivered: {:.0} kbit/s at a 150 kbit/s cap (1 Mbit/s offered), {:.0} kbit/s at 600 kbit/s (2 Mbit/s offered), \
             {:.0} kbit/s uncapped (20 Mbit/s offered)",
            capped / 1000.0,
            raised / 1000.0,
            lifted / 1000.0
        );
        assert!((120_000.0..=180_000.0).contains(&capped), "150 kbit/s ± 20 %: {capped:.0} bit/s");
        assert!((480_000.0..=720_000.0).contains(&raised), "600 kbit/s ± 20 %: {raised:.0} bit/s");
        assert!(lifted > 16_000_000.0, "without the cap the 20 Mbit/s offered arrive: {lifted:.0} bit/s");

        // Packets to the namespace run through processes it started, too.
        let out = ns.command("ip").args(["-4", "-o", "addr", "show"]).output().unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).contains(&ns.ns_addr().to_string()), "ip netns exec sees the namespace");

        let (name, host_addr) = (ns.name().to_owned(), ns.host_addr());
        drop(ns);
        let list = std::process::Command::new("ip").args(["netns", "list"]).output().unwrap();
        assert!(!String::from_utf8_lossy(&list.stdout).contains(&name), "the namespace is gone");
        let addrs = std::process::Command::new("ip").args(["-4", "-o", "addr", "show"]).output().unwrap();
        assert!(!String::from_utf8_lossy(&addrs.stdout).contains(&host_addr.to_string()), "and its root-side link");
    }
}
