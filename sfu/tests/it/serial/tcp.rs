//! ICE over TCP with `webrtc`-crate peers: the server announces a passive TCP candidate and no
//! UDP one (RFC 6544), a WHIP publisher and a WHEP player both dial it, and the player receives
//! the publisher's media through the SFU, byte for byte.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rtc::peer_connection::transport::{RTCIceProtocol, RTCIceTcpCandidateType};
use tongxin_common::RoomRole;

use crate::harness::{Connected, TestServer};
use crate::peer::{IceTransport, Peer, SelectedPair, access_unit, opus_frame, passive_tcp_candidates};

const FRAMES: u32 = 90; // 3 s at 30 fps
const GOP: u32 = 30;

/// The port of the one candidate in `answer`, which must be a passive TCP one.
fn only_passive_tcp_port(answer: &str) -> u16 {
    let all: Vec<&str> = answer.lines().filter(|l| l.trim().starts_with("a=candidate:")).collect();
    let tcp = passive_tcp_candidates(answer);
    assert!(all.len() == 1 && tcp.len() == 1, "expected one passive TCP candidate and nothing else, got {all:?}");
    // candidate:<foundation> <component> <transport> <priority> <address> <port> typ host tcptype passive
    tcp[0].split_whitespace().nth(5).and_then(|p| p.parse().ok()).expect("candidate port")
}

/// Polls the peer's ICE transport until it reports a selected pair (bounded, generous).
async fn selected_pair(peer: &Peer, who: &str) -> SelectedPair {
    for _ in 0..300 {
        if let Some(pair) = peer.selected_pair().await {
            return pair;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the {who} reports no selected candidate pair within 30 s");
}

/// Whether `got` holds as many items as `sent` has from `got`'s first one on, bar the last two.
fn all_arrived(sent: &[Bytes], got: &[Bytes]) -> bool {
    let first = got.first().and_then(|g| sent.iter().position(|s| s == g));
    first.is_some_and(|f| got.len() + f + 2 >= sent.len())
}

fn assert_tcp_to(pair: &SelectedPair, port: u16, who: &str) {
    let (local, remote) = (&pair.local, &pair.remote);
    assert_eq!((local.protocol, remote.protocol), (RTCIceProtocol::Tcp, RTCIceProtocol::Tcp), "{who}: {local} <-> {remote}");
    assert_eq!(
        (local.tcp_type, remote.tcp_type),
        (RTCIceTcpCandidateType::Active, RTCIceTcpCandidateType::Passive),
        "{who}: {local} <-> {remote}"
    );
    assert_eq!(remote.port, port, "{who} dials the server's ICE-TCP port: {remote}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_peers_publish_and_play_through_a_tcp_only_server() {
    let server = TestServer::start_tcp_only().await;
    let teacher = server.token("lesson-tcp", "teacher-li", RoomRole::Teacher, true, false);
    let class = server.token("lesson-tcp", "class-7", RoomRole::Classroom, false, true);

    let Connected { peer: publisher, answer, .. } =
        server.connect_peer(Peer::publisher_over(IceTransport::Tcp).await, "/whip/lesson-tcp", &teacher).await;
    let tcp_port = only_passive_tcp_port(&answer);
    assert_tcp_to(&selected_pair(&publisher, "publisher").await, tcp_port, "publisher");

    let Connected { peer: player, answer, .. } =
        server.connect_peer(Peer::player_over(IceTransport::Tcp).await, "/whep/lesson-tcp", &class).await;
    assert_eq!(only_passive_tcp_port(&answer), tcp_port, "both sessions share the one ICE-TCP port");
    // The player's pair is checked after the media: a receive-only webrtc peer may expose its
    // transport (and so its selected pair) only once a track arrived.

    let publisher = Arc::new(publisher);
    let sender = {
        let publisher = publisher.clone();
        tokio::spawn(async move {
            let (mut video, mut audio) = (Vec::new(), Vec::new());
            let start = tokio::time::Instant::now();
            for i in 0..FRAMES + 2 {
                let au = access_unit(i, i % GOP == 0);
                publisher.send_video(au.clone(), Duration::from_millis(33)).await;
                video.push(au);
                // Opus at 20 ms against video at 33 ms: keep audio's clock with wall time.
                while audio.len() as u32 * 20 <= (i + 1) * 33 {
                    let frame = opus_frame(audio.len() as u32);
                    publisher.send_audio(frame.clone()).await;
                    audio.push(frame);
                }
                tokio::time::sleep_until(start + Duration::from_millis(33 * u64::from(i + 1))).await;
            }
            (video, audio)
        })
    };
    let (sent_video, sent_audio) = sender.await.unwrap();

    // Wait (bounded) until everything after the first unit received has arrived; the last two
    // of each kind only flush the depacketizers.
    let (mut got, mut audio) = (Vec::new(), Vec::new());
    for _ in 0..100 {
        {
            let r = player.received.lock().unwrap();
            (got, audio) = (r.access_units.clone(), r.opus_frames.clone());
        }
        if all_arrived(&sent_video, &got) && all_arrived(&sent_audio, &audio) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    assert!(!got.is_empty(), "the player received no access unit over TCP");
    let first = sent_video.iter().position(|au| au == &got[0]).expect("the first received unit was sent");
    assert_eq!(first as u32 % GOP, 0, "the player's first unit is a keyframe (index {first})");
    let expected = &sent_video[first..sent_video.len() - 2];
    assert!(got.len() >= expected.len(), "lost units over TCP: got {} of {} after the first keyframe", got.len(), expected.len());
    for (i, (a, b)) in expected.iter().zip(got.iter()).enumerate() {
        assert!(a == b, "unit {} differs or is out of order ({} vs {} bytes)", first + i, a.len(), b.len());
    }

    assert!(!audio.is_empty(), "the player received no Opus frame over TCP");
    let first_audio = sent_audio.iter().position(|f| f == &audio[0]).expect("the first received frame was sent");
    let expected_audio = &sent_audio[first_audio..sent_audio.len() - 2];
    assert!(audio.len() >= expected_audio.len(), "lost Opus frames over TCP: got {} of {}", audio.len(), expected_audio.len());
    for (i, (a, b)) in expected_audio.iter().zip(audio.iter()).enumerate() {
        assert!(a == b, "Opus frame {} differs or is out of order", first_audio + i);
    }

    // Still on TCP after the media; the transports' statistics count what crossed them.
    let (sent, played) = (selected_pair(&publisher, "publisher").await, selected_pair(&player, "player").await);
    assert_tcp_to(&sent, tcp_port, "publisher");
    assert_tcp_to(&played, tcp_port, "player");
    eprintln!(
        "over ICE-TCP: {} access units (from index {first}) and {} Opus frames byte-identical; \
         the publisher's transport sent {} packets, the player's received {}",
        expected.len(),
        expected_audio.len(),
        sent.packets_sent,
        played.packets_received,
    );
    publisher.close().await;
    player.close().await;
}
