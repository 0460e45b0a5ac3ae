//! A player behind a lossy link (the seeded relay, 10 % loss each way): NACK/RTX between the SFU
//! and the player repair video, so nearly every access unit still arrives byte-identical.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tongxin_common::RoomRole;
use tongxin_loadtests::relay::{Impairment, Relay, RelayConfig, Schedule};

use crate::harness::{Connected, TestServer};
use crate::peer::{access_unit, opus_frame};

/// The answer with the server's candidate replaced by the relay's address.
fn via(answer: &str, server: std::net::SocketAddr, relay: std::net::SocketAddr) -> String {
    answer.replace(&format!("{} {}", server.ip(), server.port()), &format!("{} {}", relay.ip(), relay.port()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nack_and_rtx_repair_a_lossy_players_video() {
    let server = TestServer::start().await;
    let lossy = Impairment { loss: 0.10, ..Impairment::default() };
    let relay = Relay::start(RelayConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        upstream: server.media.local_addr(),
        up: lossy,
        down: lossy,
        seed: 2026,
        schedule: Schedule::default(),
    })
    .await
    .unwrap();
    let teacher = server.token("lesson-3", "teacher", RoomRole::Teacher, true, false);
    let class = server.token("lesson-3", "village-class", RoomRole::Classroom, false, true);

    let Connected { peer: publisher, .. } = server.connect_publisher("/whip/lesson-3", &teacher).await;

    let publisher = Arc::new(publisher);
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sender = {
        let (publisher, stop, sent) = (publisher.clone(), stop.clone(), sent.clone());
        tokio::spawn(async move {
            let mut i = 0u32;
            let start = tokio::time::Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let au = access_unit(i, i.is_multiple_of(60));
                publisher.send_video(au.clone(), Duration::from_millis(33)).await;
                sent.lock().unwrap().push(au);
                publisher.send_audio(opus_frame(2 * i)).await;
                publisher.send_audio(opus_frame(2 * i + 1)).await;
                i += 1;
                tokio::time::sleep_until(start + Duration::from_millis(33 * u64::from(i))).await;
            }
        })
    };

    let (media, relay_addr) = (server.media.candidate(), relay.local_addr());
    let Connected { peer: player, .. } = server.connect_player("/whep/lesson-3", &class, |a| via(a, media, relay_addr)).await;

    tokio::time::sleep(Duration::from_secs(6)).await;
    stop.store(true, Ordering::Relaxed);
    sender.await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let got = player.received.lock().unwrap().access_units.clone();
    let sent = sent.lock().unwrap().clone();
    assert!(!got.is_empty(), "the player behind the lossy link received nothing");
    let first = sent.iter().position(|au| au == &got[0]).expect("the first received unit was sent");
    // A receiver learns of a lost packet from the next one, so the last packets of a stream that
    // stops are never asked for again: the last half second (15 units) is left out (one run
    // here lost exactly the last four to that, and nothing else).
    let expected = &sent[first..sent.len() - 15];
    let delivered = expected.iter().filter(|au| got.contains(au)).count();
    let missing: Vec<usize> = expected.iter().enumerate().filter(|(_, au)| !got.contains(au)).map(|(i, _)| i).collect();
    let stats = relay.stats();
    let link_loss = stats.down.lost as f64 / stats.down.offered.max(1) as f64;
    let unit_loss = 1.0 - delivered as f64 / expected.len() as f64;
    eprintln!(
        "link lost {:.1} % of packets toward the player; {} of {} access units arrived intact ({:.1} % lost: {missing:?})",
        link_loss * 100.0,
        delivered,
        expected.len(),
        unit_loss * 100.0
    );
    assert!(link_loss > 0.07, "the relay really was lossy ({:.1} %)", link_loss * 100.0);
    // Without RTX this loses about 30 % of access units; with it, 0-2 % in runs here.
    assert!(unit_loss < 0.05, "with NACK/RTX, under 5 % of access units may be lost; lost {:.1} %", unit_loss * 100.0);
    assert!(got.iter().all(|au| sent.contains(au)), "nothing corrupt was delivered");
    for p in [&*publisher, &player] {
        p.close().await;
    }
}
