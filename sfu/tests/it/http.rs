//! WHIP/WHEP status codes, headers and CORS, without media (offers come from a str0m client).

use std::time::Instant;

use str0m::RtcConfig;
use str0m::media::{Direction, MediaKind};
use tongxin_common::RoomRole;

use crate::harness::{TestServer, header};

/// An SDP offer from a str0m client: sendonly (publish) or recvonly (play) audio + video.
pub fn offer(config: RtcConfig, direction: Direction) -> String {
    let mut rtc = config.build(Instant::now());
    rtc.add_local_candidate(str0m::Candidate::host("127.0.0.1:40000".parse().unwrap(), "udp").unwrap());
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Audio, direction, None, None, None);
    api.add_media(MediaKind::Video, direction, None, None, None);
    let (offer, _pending) = api.apply().expect("an offer");
    offer.to_sdp_string()
}

fn publish_offer() -> String {
    offer(RtcConfig::new(), Direction::SendOnly)
}

#[tokio::test]
async fn whip_refuses_bad_requests_with_the_right_status() {
    let server = TestServer::start().await;
    let teacher = server.token("r1", "teacher", RoomRole::Teacher, true, false);
    let viewer = server.token("r1", "viewer", RoomRole::Student, false, true);
    let other_room = server.token("r2", "teacher", RoomRole::Teacher, true, false);
    let sdp = publish_offer();

    let auth = format!("Bearer {teacher}");
    let (status, _, _) = server.request("POST", "/whip/r1", &[("Content-Type", "text/plain"), ("Authorization", &auth)], &sdp).await;
    assert_eq!(status, 415);
    assert_eq!(server.post_offer("/whip/r1", &teacher, "hello, not SDP").await.0, 400);
    assert_eq!(server.post_offer("/whip/r1", &teacher, "").await.0, 400);

    // Parses, but offers only VP9 and PCMU: nothing this server can take.
    let vp9 = offer(RtcConfig::new().clear_codecs().enable_vp9(true).enable_pcmu(true, false), Direction::SendOnly);
    let (status, _, body) = server.post_offer("/whip/r1", &teacher, &vp9).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("\"code\":\"validation\""), "{body}");

    let (status, _, _) = server.request("POST", "/whip/r1", &[("Content-Type", "application/sdp")], &sdp).await;
    assert_eq!(status, 401, "no token");
    assert_eq!(server.post_offer("/whip/r1", "forged.token.value", &sdp).await.0, 401);
    assert_eq!(server.post_offer("/whip/r1", &other_room, &sdp).await.0, 403, "a token for another room");
    assert_eq!(server.post_offer("/whip/r1", &viewer, &sdp).await.0, 403, "no publish grant");
    assert_eq!(server.media.stats().await.peers, 0, "refused requests create nothing");
}

#[tokio::test]
async fn whep_without_a_publisher_says_when_to_retry() {
    let server = TestServer::start().await;
    let viewer = server.token("r1", "viewer", RoomRole::Student, false, true);
    let (status, headers, _) = server.post_offer("/whep/r1", &viewer, &offer(RtcConfig::new(), Direction::RecvOnly)).await;
    assert_eq!(status, 404);
    assert!(header(&headers, "retry-after").is_some(), "{headers:?}");
    let teacher = server.token("r1", "teacher", RoomRole::Teacher, true, false);
    assert_eq!(server.post_offer("/whep/r1", &teacher, &offer(RtcConfig::new(), Direction::RecvOnly)).await.0, 403, "no subscribe grant");
}

#[tokio::test]
async fn session_urls_accept_delete_only_from_their_owner() {
    let server = TestServer::start().await;
    let teacher = server.token("r1", "teacher", RoomRole::Teacher, true, false);
    let intruder = server.token("r1", "someone-else", RoomRole::Teacher, true, false);
    let (status, headers, answer) = server.post_offer("/whip/r1", &teacher, &publish_offer()).await;
    assert_eq!(status, 201, "{answer}");
    assert!(answer.starts_with("v=0"));
    let location = header(&headers, "location").unwrap().to_owned();

    for method in ["PATCH", "GET", "PUT", "POST"] {
        let (status, headers, _) = server.request(method, &location, &[], "").await;
        assert_eq!(status, 405, "{method}");
        assert_eq!(header(&headers, "allow"), Some("DELETE"), "{method}");
    }
    let bearer = |t: &str| format!("Bearer {t}");
    assert_eq!(server.request("DELETE", &location, &[("Authorization", &bearer(&intruder))], "").await.0, 403);
    assert_eq!(server.request("DELETE", "/whip/r1/0000", &[("Authorization", &bearer(&teacher))], "").await.0, 404);
    assert_eq!(server.media.stats().await.peers, 1);
    assert_eq!(server.request("DELETE", &location, &[("Authorization", &bearer(&teacher))], "").await.0, 200);
    assert_eq!(server.media.stats().await.peers, 0);
    assert_eq!(server.request("DELETE", &location, &[("Authorization", &bearer(&teacher))], "").await.0, 404);
}

#[tokio::test]
async fn a_second_publish_with_the_same_identity_replaces_the_first() {
    let server = TestServer::start().await;
    let teacher = server.token("r1", "teacher", RoomRole::Teacher, true, false);
    let (status, first, _) = server.post_offer("/whip/r1", &teacher, &publish_offer()).await;
    assert_eq!(status, 201);
    assert_eq!(server.post_offer("/whip/r1", &teacher, &publish_offer()).await.0, 201);
    assert_eq!(server.media.stats().await.peers, 1);
    // The replaced session's URL is gone once the removal event reaches the HTTP side. Probed
    // with another participant's token, which changes nothing: 403 while the URL exists, 404 after.
    let old = header(&first, "location").unwrap().to_owned();
    let probe = server.token("r1", "someone-else", RoomRole::Teacher, true, false);
    let auth = format!("Bearer {probe}");
    let mut status = 0;
    for _ in 0..100 {
        status = server.request("DELETE", &old, &[("Authorization", &auth)], "").await.0;
        if status == 404 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(status, 404, "a replaced session's URL no longer exists");
    let other = server.token("r1", "assistant", RoomRole::Teacher, true, false);
    assert_eq!(server.post_offer("/whip/r1", &other, &publish_offer()).await.0, 201);
    assert_eq!(server.media.stats().await.peers, 2);
}

#[tokio::test]
async fn cors_lets_another_origin_publish_and_read_the_location() {
    let server = TestServer::start().await;
    let (status, headers, _) = server
        .request(
            "OPTIONS",
            "/whip/r1",
            &[
                ("Origin", "http://school.example"),
                ("Access-Control-Request-Method", "POST"),
                ("Access-Control-Request-Headers", "authorization, content-type"),
            ],
            "",
        )
        .await;
    assert!(status == 200 || status == 204, "{status}");
    assert_eq!(header(&headers, "access-control-allow-origin"), Some("http://school.example"));
    let allowed = header(&headers, "access-control-allow-headers").unwrap_or_default().to_ascii_lowercase();
    assert!(allowed.contains("authorization"), "{allowed}");
    let methods = header(&headers, "access-control-allow-methods").unwrap_or_default();
    assert!(methods.contains("DELETE"), "{methods}");

    let teacher = server.token("r1", "teacher", RoomRole::Teacher, true, false);
    let auth = format!("Bearer {teacher}");
    let (status, headers, _) = server
        .request(
            "POST",
            "/whip/r1",
            &[("Origin", "http://school.example"), ("Content-Type", "application/sdp"), ("Authorization", &auth)],
            &publish_offer(),
        )
        .await;
    assert_eq!(status, 201);
    let exposed = header(&headers, "access-control-expose-headers").unwrap_or_default().to_ascii_lowercase();
    assert!(exposed.contains("location"), "{exposed}");
}

#[tokio::test]
async fn full_rooms_and_a_full_server_refuse_newcomers_clearly() {
    let server = TestServer::start_with(tongxin_sfu::SfuConfig { max_participants: 1, max_rooms: 1, ..Default::default() }).await;
    let teacher = server.token("r1", "teacher", RoomRole::Teacher, true, false);
    assert_eq!(server.post_offer("/whip/r1", &teacher, &publish_offer()).await.0, 201);
    let assistant = server.token("r1", "assistant", RoomRole::Teacher, true, false);
    let (status, _, body) = server.post_offer("/whip/r1", &assistant, &publish_offer()).await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("\"room_full\"") && body.contains("1 participants"), "{body}");
    // The same identity again replaces rather than counts.
    assert_eq!(server.post_offer("/whip/r1", &teacher, &publish_offer()).await.0, 201);
    let other_room = server.token("r2", "teacher", RoomRole::Teacher, true, false);
    let (status, headers, body) = server.post_offer("/whip/r2", &other_room, &publish_offer()).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"too_many_rooms\""), "{body}");
    assert_eq!(header(&headers, "retry-after"), Some("30"));
    assert_eq!(server.media.stats().await.participants, 1, "refusals changed nothing");
}

#[tokio::test]
async fn services_see_room_events_and_drive_rooms_through_room_control() {
    use tongxin_common::rooms::{LeaveReason, RoomControl, RoomError, RoomEvent};
    use tongxin_common::{Identity, RoomName};

    let server = TestServer::start().await;
    let control: &dyn RoomControl = &server.media;
    let mut events = control.events();
    let room = RoomName::parse("r1").unwrap();
    control.create_room(&room).await.unwrap();
    assert!(control.rooms().await[0].managed, "a created room is managed");

    let teacher = server.token("r1", "teacher", RoomRole::Teacher, true, false);
    let (status, headers, _) = server.post_offer("/whip/r1", &teacher, &publish_offer()).await;
    assert_eq!(status, 201);
    let joined = tokio::time::timeout(std::time::Duration::from_secs(5), events.recv()).await.unwrap().unwrap();
    assert_eq!(
        joined,
        RoomEvent::ParticipantJoined { room: room.clone(), identity: Identity::parse("teacher").unwrap(), role: RoomRole::Teacher }
    );

    let who = Identity::parse("teacher").unwrap();
    assert_eq!(control.remove_participant(&room, &Identity::parse("nobody").unwrap()).await, Err(RoomError::NoSuchParticipant));
    control.mute_track(&room, &who, tongxin_common::rooms::TrackSource::Camera, true).await.unwrap();
    assert!(control.rooms().await[0].participants[0].tracks.iter().any(|t| t.muted), "the mute shows in the room view");
    assert!(matches!(control.send_data(&room, serde_json::json!("not an object")).await, Err(RoomError::BadData(_))));

    let auth = format!("Bearer {teacher}");
    assert_eq!(server.request("DELETE", header(&headers, "location").unwrap(), &[("Authorization", &auth)], "").await.0, 200);
    let left = tokio::time::timeout(std::time::Duration::from_secs(5), events.recv()).await.unwrap().unwrap();
    assert_eq!(left, RoomEvent::ParticipantLeft { room: room.clone(), identity: who, reason: LeaveReason::Left });

    control.close_room(&room).await.unwrap();
    let closed = tokio::time::timeout(std::time::Duration::from_secs(5), events.recv()).await.unwrap().unwrap();
    assert_eq!(closed, RoomEvent::RoomClosed { room: room.clone() });
    assert_eq!(control.close_room(&room).await, Err(RoomError::NoSuchRoom));
    assert!(control.rooms().await.is_empty());
}

#[tokio::test]
async fn publishers_are_asked_for_speech_sized_opus_with_dtx_and_fec() {
    let server = TestServer::start().await;
    let teacher = server.token("r1", "teacher", RoomRole::Teacher, true, false);
    let (status, _, answer) = server.post_offer("/whip/r1", &teacher, &publish_offer()).await;
    assert_eq!(status, 201);
    let opus_fmtp: Vec<&str> = answer.lines().filter(|l| l.starts_with("a=fmtp:") && l.contains("useinbandfec")).collect();
    assert!(!opus_fmtp.is_empty(), "{answer}");
    for line in opus_fmtp {
        assert!(line.contains("usedtx=1") && line.contains("maxaveragebitrate=24000"), "{line}");
    }
    let viewer = server.token("r1", "viewer", RoomRole::Student, false, true);
    let (status, _, answer) = server.post_offer("/whep/r1", &viewer, &offer(RtcConfig::new(), Direction::RecvOnly)).await;
    assert_eq!(status, 201);
    assert!(!answer.contains("maxaveragebitrate"), "a player's answer leaves its own decoding alone: {answer}");
}
