//! A `webrtc`-crate publisher over WHIP and a `webrtc`-crate player over WHEP, through the SFU.

use std::time::Duration;

use tongxin_common::RoomRole;

use crate::harness::{Connected, TestServer, header};
use crate::peer::{access_unit, opus_frame};

const FRAMES: u32 = 150; // 5 s at 30 fps
const GOP: u32 = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_unit_after_the_first_keyframe_arrives_byte_identical_and_in_order() {
    let server = TestServer::start().await;
    let teacher = server.token("lesson-1", "teacher-li", RoomRole::Teacher, true, false);
    let class = server.token("lesson-1", "class-7", RoomRole::Classroom, false, true);

    let Connected { peer: publisher, headers, .. } = server.connect_publisher("/whip/lesson-1", &teacher).await;
    assert_eq!(header(&headers, "content-type"), Some("application/sdp"));
    let location = header(&headers, "location").expect("Location").to_owned();
    assert!(location.starts_with("/whip/lesson-1/") && location.len() > "/whip/lesson-1/".len() + 24, "unguessable Location: {location}");

    // Send 5 s of media; the player joins after about one second, mid-GOP.
    let publisher = std::sync::Arc::new(publisher);
    let sender = {
        let publisher = publisher.clone();
        tokio::spawn(async move {
            let mut sent_video = Vec::new();
            let mut sent_audio = Vec::new();
            let mut audio_at_video = Vec::new();
            let mut audio_index = 0;
            let start = tokio::time::Instant::now();
            for i in 0..FRAMES + 2 {
                let au = access_unit(i, i % GOP == 0);
                audio_at_video.push(sent_audio.len());
                publisher.send_video(au.clone(), Duration::from_millis(33)).await;
                sent_video.push(au);
                // Opus at 20 ms against video at 33 ms: keep audio's clock with wall time.
                while audio_index * 20 <= (i + 1) * 33 {
                    let f = opus_frame(audio_index);
                    publisher.send_audio(f.clone()).await;
                    sent_audio.push(f);
                    audio_index += 1;
                }
                tokio::time::sleep_until(start + Duration::from_millis(33 * u64::from(i + 1))).await;
            }
            (sent_video, sent_audio, audio_at_video)
        })
    };

    tokio::time::sleep(Duration::from_millis(1000)).await;
    let Connected { peer: player, headers, .. } = server.connect_player("/whep/lesson-1", &class, |a| a.to_owned()).await;
    assert!(header(&headers, "location").is_some_and(|l| l.starts_with("/whep/lesson-1/")));

    let (sent_video, sent_audio, audio_at_video) = sender.await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let (got, audio) = {
        let r = player.received.lock().unwrap();
        (r.access_units.clone(), r.opus_frames.clone())
    };
    assert!(!got.is_empty(), "the player received no access unit");
    let first = sent_video.iter().position(|au| au == &got[0]).expect("the first received unit was sent");
    assert_eq!(first as u32 % GOP, 0, "the player's first unit is a keyframe (index {first})");
    // The last two units are flush frames: a depacketizer emits a unit when the next one starts.
    let expected = &sent_video[first..sent_video.len() - 2];
    assert!(got.len() >= expected.len(), "lost units: got {} of {} after the first keyframe", got.len(), expected.len());
    for (i, (a, b)) in expected.iter().zip(got.iter()).enumerate() {
        assert!(a == b, "unit {} differs or is out of order ({} vs {} bytes)", first + i, a.len(), b.len());
    }

    assert!(!audio.is_empty(), "the player received no audio");
    let first_audio = sent_audio.iter().position(|f| f == &audio[0]).expect("the first received frame was sent");
    assert!(first_audio <= audio_at_video[first], "audio starts no later than the first keyframe");
    let expected_audio = &sent_audio[first_audio..sent_audio.len() - 2];
    assert!(audio.len() >= expected_audio.len(), "lost Opus frames: got {} of {}", audio.len(), expected_audio.len());
    for (i, (a, b)) in expected_audio.iter().zip(audio.iter()).enumerate() {
        assert!(a == b, "Opus frame {} differs or is out of order", first_audio + i);
    }
    eprintln!("forwarded {} access units and {} Opus frames byte-identical", expected.len(), expected_audio.len());

    // DELETE on the Location ends the publisher's session.
    let auth = format!("Bearer {teacher}");
    let (status, _, _) = server.request("DELETE", &location, &[("Authorization", &auth)], "").await;
    assert_eq!(status, 200);
    publisher.close().await;
    player.close().await;
}
