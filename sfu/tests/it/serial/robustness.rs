//! Hostile input while media flows: garbage and truncated STUN/DTLS/RTP/RTCP datagrams on the
//! media port and hostile SDP on WHIP/WHEP must neither stop a receiving player nor keep a new
//! peer from connecting — and must not panic the core (a caught panic is counted, and fails).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tongxin_common::RoomRole;

use crate::harness::{Connected, TestServer};
use crate::peer::{Peer, access_unit, opus_frame};

fn hostile_datagrams(server_ufrag: &str) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = vec![vec![], vec![0], vec![0xff; 1500], vec![0x80; 12], vec![0x80, 200, 0, 1]];
    // STUN binding requests that name the server's real ufrag but carry no valid integrity.
    let user = format!("{server_ufrag}:evil");
    let mut stun = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42];
    stun.extend_from_slice(&[9; 12]);
    stun.extend_from_slice(&[0x00, 0x06]);
    stun.extend_from_slice(&(user.len() as u16).to_be_bytes());
    stun.extend_from_slice(user.as_bytes());
    while stun.len() % 4 != 0 {
        stun.push(0);
    }
    let body = (stun.len() - 20) as u16;
    stun[2..4].copy_from_slice(&body.to_be_bytes());
    for cut in [1, 4, 8, 19, 20, 24, stun.len() - 1, stun.len()] {
        out.push(stun[..cut].to_vec());
    }
    let mut lying = stun.clone();
    lying[2] = 0xff;
    out.push(lying);
    // DTLS records (content type 22, handshake) that are truncated or nonsense.
    out.push(vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 1, 0x40, 0x00, 1]);
    out.push(vec![22, 0xfe, 0xfd]);
    out.push([vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 200], vec![1; 200]].concat());
    // RTP and RTCP headers with lengths that lie.
    out.push(vec![0x90, 102, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0xbe, 0xde, 0xff, 0xff]);
    out.push(vec![0x8f, 201, 0xff, 0xff, 0, 0, 0, 1]);
    out.push([vec![0x80, 111, 0x12, 0x34], vec![0xaa; 300]].concat());
    // Pseudo-random noise of every first byte.
    for seed in 0u32..256 {
        let len = 1 + (seed.wrapping_mul(2654435761) % 1400) as usize;
        let mut v: Vec<u8> = (0..len).map(|i| ((i as u32).wrapping_mul(seed | 1).wrapping_add(seed) % 256) as u8).collect();
        v[0] = seed as u8;
        out.push(v);
    }
    out
}

fn hostile_offers(valid: &str) -> Vec<String> {
    let no_fingerprint: String = valid.lines().filter(|l| !l.starts_with("a=fingerprint")).map(|l| format!("{l}\r\n")).collect();
    let no_ice: String = valid.lines().filter(|l| !l.starts_with("a=ice-")).map(|l| format!("{l}\r\n")).collect();
    let dup_mid: String = valid.replace("a=mid:1", "a=mid:0");
    let huge = format!("v=0\r\n{}", "a=x:y\r\n".repeat(100_000));
    let many_lines = format!("{valid}{}", "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:x\r\n".repeat(500));
    vec![
        "garbage".into(),
        "v=0\r\n".into(),
        no_fingerprint,
        no_ice,
        dup_mid,
        huge,
        many_lines,
        valid[..valid.len() / 2].to_owned(),
        "v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF\r\n".into(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_does_not_stop_media_or_new_peers() {
    let server = TestServer::start().await;
    let teacher = server.token("lesson-2", "teacher", RoomRole::Teacher, true, false);
    let class = server.token("lesson-2", "class-1", RoomRole::Classroom, false, true);

    let Connected { peer: publisher, answer, .. } = server.connect_publisher("/whip/lesson-2", &teacher).await;
    let server_ufrag = answer.lines().find_map(|l| l.strip_prefix("a=ice-ufrag:")).expect("ufrag in the answer").trim().to_owned();

    let publisher = Arc::new(publisher);
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (publisher, stop) = (publisher.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) {
                publisher.send_video(access_unit(i, i.is_multiple_of(15)), Duration::from_millis(33)).await;
                publisher.send_audio(opus_frame(2 * i)).await;
                publisher.send_audio(opus_frame(2 * i + 1)).await;
                i += 1;
                tokio::time::sleep(Duration::from_millis(33)).await;
            }
        })
    };

    let Connected { peer: player, offer, .. } = server.connect_player("/whep/lesson-2", &class, |a| a.to_owned()).await;
    let frames = |p: &Peer| p.received.lock().unwrap().access_units.len();
    wait_for("the player's first frames", || frames(&player) > 10).await;

    // Attack the media port from several sockets, and WHIP/WHEP with hostile SDP.
    let media = server.media.local_addr();
    for _ in 0..4 {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        for d in hostile_datagrams(&server_ufrag) {
            let _ = socket.send_to(&d, media).await;
        }
    }
    for bad in hostile_offers(&offer) {
        for path in ["/whip/lesson-2", "/whep/lesson-2"] {
            let token = if path.starts_with("/whip") { &teacher } else { &class };
            let (status, _, body) = server.post_offer(path, token, &bad).await;
            assert!((400..500).contains(&status), "{path} answered {status} to hostile SDP ({} bytes): {body}", bad.len());
        }
    }

    // The player keeps receiving...
    let before = frames(&player);
    wait_for("frames to keep arriving after the attack", || frames(&player) > before + 30).await;
    // ...and a new peer can still connect and receive.
    let class2 = server.token("lesson-2", "class-2", RoomRole::Classroom, false, true);
    let Connected { peer: second, .. } = server.connect_player("/whep/lesson-2", &class2, |a| a.to_owned()).await;
    wait_for("the new player's frames", || frames(&second) > 10).await;

    let stats = server.media.stats().await;
    assert_eq!(stats.panics, 0, "the media core panicked on hostile input");
    assert!(stats.dropped > 100, "hostile datagrams were dropped before reaching a peer: {stats:?}");
    stop.store(true, Ordering::Relaxed);
    sender.await.unwrap();
    for p in [&*publisher, &player, &second] {
        p.close().await;
    }
}

/// Polls `cond` every 50 ms; fails with a clear message after a generous 30 s.
async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..600 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} did not happen within 30 s");
}
