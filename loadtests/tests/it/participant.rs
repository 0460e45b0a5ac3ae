//! The generator's participants on their own: what a simulcast publisher offers.

use tongxin_loadtests::participant::Peer;

#[tokio::test]
async fn a_simulcast_publisher_offers_its_rids_on_one_video_m_line() {
    let mut peer = Peer::simulcast_publisher(&["q", "h", "f"]).await.unwrap();
    let offer = peer.offer().await.unwrap();
    peer.close().await;
    let video: Vec<&str> = offer.split("\r\nm=").find(|m| m.starts_with("video")).expect("a video m-line").lines().map(str::trim).collect();
    assert_eq!(offer.matches("m=video").count(), 1, "one m-line for all layers:\n{offer}");
    for line in ["a=rid:q send", "a=rid:h send", "a=rid:f send", "a=simulcast:send q;h;f", "a=sendonly"] {
        assert!(video.contains(&line), "{line} missing:\n{offer}");
    }
    for uri in ["urn:ietf:params:rtp-hdrext:sdes:mid", "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"] {
        assert!(video.iter().any(|l| l.starts_with("a=extmap:") && l.ends_with(uri)), "{uri} missing:\n{offer}");
    }
    assert!(offer.contains("m=audio"), "and Opus:\n{offer}");
    assert!(Peer::simulcast_publisher(&["q"]).await.is_err(), "one rid is no simulcast");
}
