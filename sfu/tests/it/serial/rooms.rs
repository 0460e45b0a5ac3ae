//! Rooms over the signalling WebSocket (`sfu/PROTOCOL.md`), with independent `webrtc`-crate
//! participants: joining, media and chat between participants, why participants leave,
//! reconnecting within the grace period, and rights taken away live at the SFU.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rtc::rtp_transceiver::RTCRtpTransceiverDirection;
use serde_json::{Value, json};
use tokio::time::Instant;
use tongxin_common::rooms::{Permissions, RoomControl as _};
use tongxin_common::{Identity, RoomName, RoomRole};
use tongxin_sfu::SfuConfig;

use crate::harness::{Connected, TestServer};
use crate::peer::{Peer, access_unit};
use crate::room_client::{GOP, Pump, RoomClient, Sent, identity_in, media_sections, type_of, wait_until};

const ROOM: &str = "lesson-9";
/// The reconnect grace period of the reconnect tests: short, so a timeout comes quickly.
const GRACE: Duration = Duration::from_secs(2);

fn room() -> RoomName {
    RoomName::parse(ROOM).unwrap()
}

fn id(identity: &str) -> Identity {
    Identity::parse(identity).unwrap()
}

/// A token that may publish and subscribe.
fn speaker(server: &TestServer, identity: &str) -> String {
    server.token(ROOM, identity, RoomRole::Teacher, true, true)
}

/// A token that may only subscribe.
fn listener(server: &TestServer, identity: &str) -> String {
    server.token(ROOM, identity, RoomRole::Student, false, true)
}

/// `identity` joins, publishes camera and microphone and keeps sending; returns it, its track ids
/// and the pump.
async fn publishing(server: &TestServer, identity: &str) -> (RoomClient, HashMap<String, String>, Pump) {
    let mut client = RoomClient::join(server, &speaker(server, identity)).await;
    let ids = client.publish().await;
    let pump = Pump::start(client.publisher(), 0);
    (client, ids, pump)
}

fn left(identity: &'static str) -> impl Fn(&Value) -> bool {
    move |m| type_of(m) == "participant_left" && identity_in(m, "identity") == identity
}

/// A `track_published` of `identity`'s, or its `participant_joined` listing tracks (a WHIP
/// session arrives with its tracks).
fn announces_tracks_of(identity: &'static str) -> impl Fn(&Value) -> bool {
    move |m| match type_of(m) {
        "track_published" => identity_in(m, "participant") == identity,
        "participant_joined" => {
            identity_in(m, "participant") == identity && m["participant"]["tracks"].as_array().is_some_and(|t| !t.is_empty())
        }
        _ => false,
    }
}

/// The frame counters of `got`, failing on a unit that `sent` does not hold.
fn counters(who: &str, sent: &Sent, got: &[Bytes]) -> Vec<u32> {
    got.iter()
        .enumerate()
        .map(|(i, au)| {
            sent.counter_of(au).unwrap_or_else(|| panic!("{who}: unit #{i} ({} bytes) was never sent by the publisher", au.len()))
        })
        .collect()
}

/// Fails unless `counters` start with a keyframe and go up one by one (no loss on loopback).
fn assert_complete_in_order(who: &str, first_counter: u32, counters: &[u32]) {
    assert!(!counters.is_empty(), "{who} received no access unit");
    assert_eq!((counters[0] - first_counter) % GOP, 0, "{who}: the first unit received is not a keyframe (counter {})", counters[0]);
    for w in counters.windows(2) {
        assert_eq!(w[1], w[0] + 1, "{who}: unit {} came right after unit {} (lost or out of order); counters {counters:?}", w[1], w[0]);
    }
}

/// Counts units on `mid` at +0.5 s and +2 s, while `pump` keeps sending: they must be equal.
async fn assert_forwarding_stopped(client: &RoomClient, mid: &str, pump: &Pump, why: &str) {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (at_half, sent_at_half) = (client.received_on(mid).len(), pump.video_sent());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (at_two, sent_at_two) = (client.received_on(mid).len(), pump.video_sent());
    assert!(sent_at_two > sent_at_half + 20, "the publisher kept sending ({sent_at_half} → {sent_at_two} units)");
    assert_eq!(
        at_half,
        at_two,
        "{why}, yet {} kept receiving on m-line {mid}: {at_half} units at +0.5 s, {at_two} at +2 s, while the publisher sent {} more",
        client.identity,
        sent_at_two - sent_at_half
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_returns_the_room_as_it_is_and_announces_the_newcomer() {
    let server = TestServer::start().await;

    let refused = RoomClient::try_join(&server, json!({"type": "join", "protocol": 2, "token": speaker(&server, "A")})).await;
    let refused = refused.err().expect("a join with protocol 2 was accepted");
    assert_eq!((&refused["code"], &refused["refused"]), (&json!("unsupported_protocol"), &json!("join")), "{refused}");

    let mut a = RoomClient::join(&server, &speaker(&server, "A")).await;
    let joined = &a.joined;
    assert_eq!(joined["protocol"], 1, "{joined}");
    assert_eq!(joined["participant"]["identity"], "A", "{joined}");
    assert_eq!(joined["participant"]["kind"], "rtc", "{joined}");
    assert_eq!(joined["participant"]["permissions"], json!({"publish": true, "subscribe": true, "publish_data": true}), "{joined}");
    assert_eq!(joined["resumed"], false, "{joined}");
    assert!(joined["resume"].as_str().is_some_and(|r| r.len() >= 16), "a resume credential of some length: {joined}");
    assert_eq!(joined["room"]["name"], ROOM, "{joined}");
    assert_eq!(joined["room"]["participants"], json!([]), "nobody else is here yet: {joined}");

    let ids = a.publish().await;
    let pump = Pump::start(a.publisher(), 0);

    let b = RoomClient::join(&server, &listener(&server, "B")).await;
    let others = b.joined["room"]["participants"].as_array().expect("joined.room.participants").clone();
    assert_eq!(others.len(), 1, "B sees A and not itself: {others:?}");
    let seen_a = &others[0];
    assert_eq!(seen_a["identity"], "A");
    assert_eq!(seen_a["kind"], "rtc");
    let tracks = seen_a["tracks"].as_array().expect("A's tracks");
    assert_eq!(tracks.len(), 2, "A's camera and microphone: {tracks:?}");
    for (source, kind) in [("camera", "video"), ("microphone", "audio")] {
        let expected = json!({"id": ids[source], "kind": kind, "source": source, "muted": false});
        assert!(
            tracks.iter().any(|t| ["id", "kind", "source", "muted"].iter().all(|f| t[f] == expected[f])),
            "{expected} among {tracks:?}"
        );
    }
    assert_ne!(b.resume_credential(), a.resume_credential());

    let announced =
        a.wait_for("participant_joined for B", |m| type_of(m) == "participant_joined" && identity_in(m, "participant") == "B").await;
    assert_eq!(announced["participant"]["permissions"]["publish"], false, "{announced}");

    pump.stop().await;
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_and_chat_flow_between_two_participants() {
    let server = TestServer::start().await;
    let (a, ids, pump) = publishing(&server, "A").await;
    let (camera, microphone) = (ids["camera"].clone(), ids["microphone"].clone());
    let b = RoomClient::join(&server, &speaker(&server, "B")).await;

    // Two seconds of A's media reach B on the m-lines B's offer mapped to A's tracks.
    b.wait_received(&camera, 60).await;
    b.wait_received(&microphone, 60).await;
    let sent = pump.stop().await;
    // The newest unit leaves a depacketizer only when the next one starts: wait for the one before.
    let last = sent.video[sent.video.len() - 2].1.clone();
    wait_until("B to receive A's last units", || b.received(&camera).contains(&last), || b.describe()).await;

    let got = b.received(&camera);
    let video = counters("B", &sent, &got);
    assert_complete_in_order("B (A's camera)", 0, &video);
    assert_eq!(*video.last().unwrap(), sent.video[sent.video.len() - 2].0);
    let audio = b.received(&microphone);
    let positions: Vec<usize> = audio
        .iter()
        .map(|f| sent.audio.iter().position(|s| s == f).unwrap_or_else(|| panic!("B received an Opus frame A never sent")))
        .collect();
    assert!(positions.windows(2).all(|w| w[1] == w[0] + 1), "Opus frames lost or out of order: {positions:?}");
    let video_mid = b.mid_of(&camera).unwrap();
    eprintln!(
        "B received {} of A's access units on m-line {video_mid} and {} Opus frames, complete and in order",
        video.len(),
        audio.len()
    );

    // The data channel relays B's chat to A, naming B.
    b.send_chat("你好, A").await;
    let relayed = a.wait_for_data("B's chat", |m| m["from"] == "B").await;
    assert_eq!(relayed["message"], json!({"kind": "chat", "text": "你好, A"}), "{relayed}");
    // A service message reaches both with `from: null`. It is relayed after B's chat, on an
    // ordered channel, so had B's chat come back to B it would be there by now.
    server.media.send_data(&room(), json!({"kind": "notice", "text": "five minutes left"})).await.expect("send_data");
    for client in [&a, &b] {
        let notice = client.wait_for_data("the service's notice", |m| m["message"]["kind"] == "notice").await;
        assert_eq!(notice["from"], Value::Null, "{notice}");
    }
    assert!(!b.data_messages().iter().any(|m| m["from"] == "B"), "B got its own chat back: {:?}", b.data_messages());

    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_kicking_and_replacing_tell_everyone_why() {
    let server = TestServer::start().await;
    let a = RoomClient::join(&server, &speaker(&server, "A")).await;
    let b = RoomClient::join(&server, &listener(&server, "B")).await;
    let c = RoomClient::join(&server, &listener(&server, "C")).await;
    let d = RoomClient::join(&server, &listener(&server, "D")).await;

    // `leave`: the server closes C's socket and tells the others.
    c.leave().await;
    let m = a.wait_for("C to leave", left("C")).await;
    assert_eq!(m["reason"], "left", "{m}");

    // A service removes B.
    server.media.remove_participant(&room(), &id("B")).await.expect("remove B");
    let m = a.wait_for("B to be kicked", left("B")).await;
    assert_eq!(m["reason"], "kicked", "{m}");
    let m = b.wait_for("B's removal", |m| type_of(m) == "removed").await;
    assert_eq!(m["reason"], "kicked", "{m}");
    b.wait_socket_closed().await;
    let rooms = server.media.rooms().await;
    let info = rooms.iter().find(|r| r.name.as_str() == ROOM).expect("the room");
    assert!(!info.participants.iter().any(|p| p.identity.as_str() == "B"), "B is gone from rooms(): {info:?}");

    // A joins again from somewhere else, with a fresh token and no resume credential.
    let a2 = RoomClient::join(&server, &speaker(&server, "A")).await;
    assert_eq!(a2.joined["resumed"], false, "{}", a2.joined);
    let m = d.wait_for("A to be replaced", left("A")).await;
    assert_eq!(m["reason"], "replaced", "{m}");
    let m = a.wait_for("the old A's removal", |m| type_of(m) == "removed").await;
    assert_eq!(m["reason"], "replaced", "{m}");
    a.wait_socket_closed().await;
    let rooms = server.media.rooms().await;
    let info = rooms.iter().find(|r| r.name.as_str() == ROOM).expect("the room");
    assert_eq!(info.participants.iter().filter(|p| p.identity.as_str() == "A").count(), 1, "one A in rooms(): {info:?}");
    // D was never told about the new A leaving.
    assert_eq!(d.messages().iter().filter(|m| left("A")(m)).count(), 1, "{}", d.describe());

    for client in [&a, &b, &a2, &d] {
        client.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_socket_times_out_after_the_grace_period() {
    let server = TestServer::start_with(SfuConfig { reconnect_grace: GRACE, ..SfuConfig::default() }).await;
    let a = RoomClient::join(&server, &speaker(&server, "A")).await;
    assert_eq!(a.joined["grace_seconds"], GRACE.as_secs(), "{}", a.joined);
    let b = RoomClient::join(&server, &listener(&server, "B")).await;

    let resume = a.resume_credential();
    let dropped = Instant::now();
    a.drop_socket();
    let m = b.wait_for("A to time out", left("A")).await;
    let after = dropped.elapsed();
    assert_eq!(m["reason"], "timeout", "{m}");
    // A lower bound only: the server may be late, never early.
    assert!(
        after >= GRACE - Duration::from_millis(300),
        "A timed out {after:?} after its socket closed, before the {GRACE:?} grace period"
    );
    let rooms = server.media.rooms().await;
    assert!(rooms.iter().all(|r| r.participants.iter().all(|p| p.identity.as_str() != "A")), "A is gone from rooms(): {rooms:?}");

    // The credential died with the participant: the same join is a fresh one now.
    let again = RoomClient::join_resume(&server, &speaker(&server, "A"), &resume).await;
    assert_eq!(again.joined["resumed"], false, "{}", again.joined);

    for client in [&a, &b, &again] {
        client.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_within_the_grace_period_keeps_identity_tracks_and_media() {
    let server = TestServer::start_with(SfuConfig { reconnect_grace: GRACE, ..SfuConfig::default() }).await;
    let token = speaker(&server, "A");
    let mut a = RoomClient::join(&server, &token).await;
    let ids = a.publish().await;
    let camera = ids["camera"].clone();
    let pump = Pump::start(a.publisher(), 0);
    let b = RoomClient::join(&server, &listener(&server, "B")).await;
    b.wait_received(&camera, 30).await;
    let mid = b.mid_of(&camera).expect("B's m-line for A's camera");
    let sent_before = pump.stop().await;

    // A's network goes: the socket drops; a moment later A is back with its credential.
    let resume = a.resume_credential();
    let dropped = Instant::now();
    a.drop_socket();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut a2 = RoomClient::join_resume(&server, &token, &resume).await;
    a.close().await;
    let joined = a2.joined.clone();
    assert_eq!(joined["resumed"], true, "{joined}");
    assert_eq!(joined["participant"]["identity"], "A", "{joined}");
    assert_ne!(a2.resume_credential(), resume, "each joined issues a new credential");
    let kept: HashMap<String, String> = joined["participant"]["tracks"]
        .as_array()
        .expect("joined.participant.tracks")
        .iter()
        .map(|t| (t["source"].as_str().unwrap_or("").to_owned(), t["id"].as_str().unwrap_or("").to_owned()))
        .collect();
    assert_eq!(kept, ids, "the tracks keep their ids: {joined}");
    assert!(joined["room"]["participants"].as_array().is_some_and(|p| p.iter().any(|p| p["identity"] == "B")), "{joined}");

    // A publishes again on a fresh connection: same ids, and B's player goes on on the same m-line.
    let ids2 = a2.publish().await;
    assert_eq!(ids2, ids, "publish after resume keeps the track ids");
    let pump = Pump::start(a2.publisher(), 10_000);
    let arrived_after = || {
        let sent = pump.sent();
        b.received_on(&mid).iter().filter(|au| sent.counter_of(au).is_some()).count()
    };
    wait_until("B to receive A's units sent after the resume", || arrived_after() > 30, || b.describe()).await;
    assert_eq!(b.mid_of(&camera).as_deref(), Some(mid.as_str()), "A's camera moved to another m-line");

    // Past the end of the old grace period: nobody saw A go.
    tokio::time::sleep_until(dropped + GRACE + Duration::from_secs(1)).await;
    assert!(!b.saw(left("A")), "B was told A left although A resumed: {}", b.describe());
    assert!(!b.saw(|m| type_of(m) == "track_unpublished"), "B saw A's tracks go although A resumed: {}", b.describe());
    let n = arrived_after();
    wait_until("media to keep flowing after the old grace period", || arrived_after() > n + 15, || b.describe()).await;
    let sent_after = pump.stop().await;

    // What B got on that m-line: units from before and after the reconnection, each run in order.
    let all = [sent_before.video.clone(), sent_after.video.clone()].concat();
    let both = Sent { video: all, audio: Vec::new() };
    let got = counters("B", &both, &b.received_on(&mid));
    assert!(got.windows(2).all(|w| w[1] > w[0]), "B's units are out of order: {got:?}");
    eprintln!(
        "B received {} units before and {} after A resumed",
        got.iter().filter(|c| **c < 10_000).count(),
        got.iter().filter(|c| **c >= 10_000).count()
    );

    a2.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taking_publish_away_stops_forwarding_at_once_and_data_needs_its_grant() {
    let server = TestServer::start().await;
    let (mut a, ids, pump) = publishing(&server, "A").await;
    let camera = ids["camera"].clone();
    let b = RoomClient::join(&server, &listener(&server, "B")).await;
    b.wait_received(&camera, 30).await;
    let mid = b.mid_of(&camera).expect("B's m-line for A's camera");

    let mark = b.mark();
    let no_publish = Permissions { publish: false, subscribe: true, publish_data: true };
    server.media.set_permissions(&room(), &id("A"), no_publish).await.expect("set_permissions");
    let changed = b
        .wait_for_since(mark, "permissions_changed for A", |m| type_of(m) == "permissions_changed" && identity_in(m, "participant") == "A")
        .await;
    assert_eq!(changed["permissions"], json!({"publish": false, "subscribe": true, "publish_data": true}), "{changed}");
    b.wait_for_since(mark, "A's camera unpublished", |m| type_of(m) == "track_unpublished" && m["track"] == camera.as_str()).await;
    assert_forwarding_stopped(&b, &mid, &pump, "publish was taken from A").await;

    // A may not publish again.
    let refused = a.try_publish().await.expect_err("A published without the publish right");
    assert_eq!(refused["code"], "not_allowed", "{refused}");
    pump.stop().await;

    // B's chat needs publish_data: refused and not relayed while B lacks it.
    b.send_chat("before").await;
    a.wait_for_data("B's first chat", |m| m["message"]["text"] == "before").await;
    let silenced = Permissions { publish: false, subscribe: true, publish_data: false };
    server.media.set_permissions(&room(), &id("B"), silenced).await.expect("set_permissions");
    a.wait_for("B's rights changed", |m| type_of(m) == "permissions_changed" && identity_in(m, "participant") == "B").await;
    let mark = b.mark();
    b.send_chat("while silenced").await;
    let error = b.wait_for_since(mark, "an error for B's data", |m| type_of(m) == "error").await;
    assert_eq!((&error["code"], &error["refused"]), (&json!("not_allowed"), &json!("data")), "{error}");
    server.media.set_permissions(&room(), &id("B"), Permissions { publish_data: true, ..silenced }).await.expect("set_permissions");
    a.wait_for("B's rights back", |m| {
        type_of(m) == "permissions_changed" && identity_in(m, "participant") == "B" && m["permissions"]["publish_data"] == true
    })
    .await;
    b.send_chat("after").await;
    // The channel is ordered: had the refused chat been relayed, it would be here before this one.
    a.wait_for_data("B's chat after its right came back", |m| m["message"]["text"] == "after").await;
    assert!(
        !a.data_messages().iter().any(|m| m["message"]["text"] == "while silenced"),
        "a chat sent without publish_data was relayed: {:?}",
        a.data_messages()
    );

    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn muting_a_track_stops_its_forwarding_until_unmuted() {
    let server = TestServer::start().await;
    let (a, ids, pump) = publishing(&server, "A").await;
    let (camera, microphone) = (ids["camera"].clone(), ids["microphone"].clone());
    let b = RoomClient::join(&server, &listener(&server, "B")).await;
    b.wait_received(&camera, 30).await;
    let mid = b.mid_of(&camera).expect("B's m-line for A's camera");

    let mark = b.mark();
    a.mute("camera", true);
    let muted = b.wait_for_since(mark, "A's camera muted", |m| type_of(m) == "track_muted" && m["track"] == camera.as_str()).await;
    assert_eq!(muted["muted"], true, "{muted}");
    assert_eq!(identity_in(&muted, "participant"), "A", "{muted}");
    let audio_before = b.received(&microphone).len();
    assert_forwarding_stopped(&b, &mid, &pump, "A muted its camera").await;
    assert!(b.received(&microphone).len() > audio_before + 25, "A's microphone stopped too");

    let mark = b.mark();
    let stopped_at = b.received_on(&mid).len();
    a.mute("camera", false);
    let unmuted = b.wait_for_since(mark, "A's camera unmuted", |m| type_of(m) == "track_muted" && m["track"] == camera.as_str()).await;
    assert_eq!(unmuted["muted"], false, "{unmuted}");
    wait_until("A's camera to reach B again after unmuting", || b.received_on(&mid).len() > stopped_at + 15, || b.describe()).await;

    pump.stop().await;
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_publish_right_nothing_is_received_or_forwarded() {
    let server = TestServer::start().await;

    // Over the room protocol: `publish` is refused.
    let mut c = RoomClient::join(&server, &listener(&server, "C")).await;
    let refused = c.try_publish().await.expect_err("a subscribe-only participant published");
    assert_eq!(refused["code"], "not_allowed", "{refused}");

    // Over WHEP: a player offering sendrecv with a subscribe-only token. A WHIP teacher publishes.
    let Connected { peer: teacher, .. } = server.connect_publisher(&format!("/whip/{ROOM}"), &speaker(&server, "teacher")).await;
    let pump = Pump::start(Arc::new(teacher), 0);
    c.wait_for("the WHIP teacher's tracks", announces_tracks_of("teacher")).await;

    let mut rogue = Peer::sending(RTCRtpTransceiverDirection::Sendrecv).await;
    let offer = rogue.offer().await;
    let (status, _, answer) = server.post_offer(&format!("/whep/{ROOM}"), &listener(&server, "rogue"), &offer).await;
    assert_eq!(status, 201, "WHEP answered {status}: {answer}");
    for m in media_sections(&answer).iter().filter(|m| m.kind == "audio" || m.kind == "video") {
        let direction = m.direction.as_deref().unwrap_or("sendrecv");
        assert!(matches!(direction, "sendonly" | "inactive"), "the WHEP answer accepts media from a subscribe-only player: m-line {m:?}");
    }
    rogue.accept_answer(&answer).await;
    rogue.wait_connected().await;
    // Try to send anyway; the webrtc crate may refuse after that answer, which is fine.
    let rogue = Arc::new(rogue);
    let rogue_sender = {
        let rogue = rogue.clone();
        tokio::spawn(async move {
            let mut errors = 0;
            for i in 0..90u32 {
                if rogue.try_send_video(access_unit(1_000_000 + i, i.is_multiple_of(GOP)), Duration::from_millis(33)).await.is_err() {
                    errors += 1;
                }
                tokio::time::sleep(Duration::from_millis(33)).await;
            }
            errors
        })
    };

    let Connected { peer: player, .. } =
        server.connect_player(&format!("/whep/{ROOM}"), &listener(&server, "class"), |a| a.to_owned()).await;
    let units = || player.received.lock().unwrap().access_units.clone();
    wait_until("the WHEP player to receive the teacher's video", || units().len() > 30, || format!("got {}", units().len())).await;
    let errors = rogue_sender.await.unwrap();
    let sent = pump.stop().await;
    let got = units();
    let foreign = got.iter().filter(|au| sent.counter_of(au).is_none()).count();
    assert_eq!(foreign, 0, "the player received {foreign} of {} units that the teacher never sent (the rogue's)", got.len());
    assert!(!c.saw(announces_tracks_of("rogue")), "the rogue player's tracks were announced: {}", c.describe());
    let rooms = server.media.rooms().await;
    let rogue_info = rooms.iter().flat_map(|r| &r.participants).find(|p| p.identity.as_str() == "rogue");
    assert!(rogue_info.is_some_and(|p| p.tracks.is_empty()), "the rogue player is in the room with no tracks: {rogue_info:?}");
    eprintln!("the rogue's send attempts: {} of 90 failed locally; the player got {} units, all the teacher's", errors, got.len());

    rogue.close().await;
    player.close().await;
    c.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audience_keeps_a_classroom_for_the_teacher_until_it_is_on_stage() {
    use tongxin_common::rooms::Audience;
    let server = TestServer::start().await;
    server.media.create_room(&room()).await.expect("create_room");
    // Set before the classroom joins: its camera never reaches the other classroom unasked.
    let backstage = Audience::Roles(vec![RoomRole::Teacher, RoomRole::Observer]);
    server.media.set_audience(&room(), &id("classroom:a"), backstage.clone()).await.expect("set_audience");

    let teacher = RoomClient::join(&server, &server.token(ROOM, "teacher:t", RoomRole::Teacher, true, true)).await;
    let other = RoomClient::join(&server, &server.token(ROOM, "classroom:b", RoomRole::Classroom, true, true)).await;
    let student = RoomClient::join(&server, &server.token(ROOM, "student:s", RoomRole::Student, false, true)).await;
    let mut a = RoomClient::join(&server, &server.token(ROOM, "classroom:a", RoomRole::Classroom, true, true)).await;
    let ids = a.publish().await;
    let pump = Pump::start(a.publisher(), 0);
    let camera = ids["camera"].clone();

    teacher.wait_received(&camera, 30).await;
    for (who, c) in [("the other classroom", &other), ("the student", &student)] {
        assert!(c.mid_of(&camera).is_none() && c.received(&camera).is_empty(), "{who} got classroom a's camera while off stage");
    }

    // On stage: everyone receives it.
    server.media.set_audience(&room(), &id("classroom:a"), Audience::Everyone).await.expect("on stage");
    other.wait_received(&camera, 30).await;
    student.wait_received(&camera, 30).await;
    let (other_mid, student_mid) = (other.mid_of(&camera).unwrap(), student.mid_of(&camera).unwrap());

    // Off stage: forwarding to the others stops at once; the teacher keeps it.
    server.media.set_audience(&room(), &id("classroom:a"), backstage).await.expect("off stage");
    assert_forwarding_stopped(&other, &other_mid, &pump, "classroom a went off stage").await;
    assert_forwarding_stopped(&student, &student_mid, &pump, "classroom a went off stage").await;
    let before = teacher.received(&camera).len();
    teacher.wait_received(&camera, before + 10).await;

    pump.stop().await;
    for c in [&a, &teacher, &other, &student] {
        c.close().await;
    }
}
