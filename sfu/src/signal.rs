//! The messages of the room signalling protocol (`PROTOCOL.md`, version 1), as serde types.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tongxin_common::rooms::{LeaveReason, Permissions, QualityRating, TrackSource};
use tongxin_common::{Identity, RoomName, RoomRole};

/// The protocol version this server speaks.
pub const PROTOCOL: u32 = 1;

/// A WebSocket connection's id, given by the shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// A track's id: unique on the server, kept across its owner's reconnects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrackId(pub u64);

impl Serialize for TrackId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("t{}", self.0))
    }
}

impl<'de> Deserialize<'de> for TrackId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.strip_prefix('t').and_then(|n| n.parse().ok()).map(TrackId).ok_or_else(|| serde::de::Error::custom("a track id looks like t7"))
    }
}

/// Which of a participant's two peer connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PcTarget {
    /// The client offers; it carries the client's tracks.
    Publisher,
    /// The server offers; it carries others' tracks and the data channel.
    Subscriber,
}

/// A trickled candidate (`RTCIceCandidateInit`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CandidateInit {
    /// The `candidate:` line.
    pub candidate: String,
    /// The m-line's mid.
    #[serde(default, rename = "sdpMid")]
    pub sdp_mid: Option<String>,
    /// The m-line's index.
    #[serde(default, rename = "sdpMLineIndex")]
    pub sdp_m_line_index: Option<u32>,
}

/// One track the client publishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishTrack {
    /// The m-line.
    pub mid: String,
    /// What it carries.
    pub source: TrackSource,
}

/// A frame from the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// The first frame.
    Join {
        /// Must be [`PROTOCOL`].
        protocol: u32,
        /// A join token.
        #[serde(default)]
        token: Option<String>,
        /// A resume credential from an earlier `joined`.
        #[serde(default)]
        resume: Option<String>,
        /// Receive every track without asking (default true).
        #[serde(default = "yes")]
        auto_subscribe: bool,
    },
    /// The answer to the server's latest offer.
    Answer {
        /// SDP.
        sdp: String,
    },
    /// An offer for the publisher connection.
    Publish {
        /// SDP.
        sdp: String,
        /// What each m-line carries.
        #[serde(default)]
        tracks: Vec<PublishTrack>,
    },
    /// A trickled candidate.
    Candidate {
        /// For which connection.
        target: PcTarget,
        /// The candidate.
        candidate: CandidateInit,
    },
    /// Receive these tracks.
    Subscribe {
        /// Track ids.
        tracks: Vec<TrackId>,
    },
    /// Stop receiving these tracks.
    Unsubscribe {
        /// Track ids.
        tracks: Vec<TrackId>,
    },
    /// Mute or unmute an own track.
    Mute {
        /// Which.
        source: TrackSource,
        /// Muted or not.
        muted: bool,
    },
    /// The highest simulcast layer wanted for one track (a small tile needs no 720p).
    VideoQuality {
        /// Which track.
        track: TrackId,
        /// `low`, `medium` or `high` (the default).
        max: VideoQuality,
    },
    /// The most the client wants to receive, kbit/s (`null`: no cap of its own).
    Budget {
        /// The cap.
        kbps: Option<u32>,
    },
    /// Leave now.
    Leave,
    /// Keep-alive.
    Ping,
}

impl ClientMessage {
    /// The frame's `type`.
    pub fn type_name(&self) -> &'static str {
        match self {
            ClientMessage::Join { .. } => "join",
            ClientMessage::Answer { .. } => "answer",
            ClientMessage::Publish { .. } => "publish",
            ClientMessage::Candidate { .. } => "candidate",
            ClientMessage::Subscribe { .. } => "subscribe",
            ClientMessage::Unsubscribe { .. } => "unsubscribe",
            ClientMessage::Mute { .. } => "mute",
            ClientMessage::VideoQuality { .. } => "video_quality",
            ClientMessage::Budget { .. } => "budget",
            ClientMessage::Leave => "leave",
            ClientMessage::Ping => "ping",
        }
    }
}

/// How good a simulcast track's picture may get, lowest layer first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VideoQuality {
    /// The lowest layer.
    Low,
    /// Up to the middle layer.
    Medium,
    /// Any layer.
    High,
}

impl VideoQuality {
    /// The highest layer index allowed (`None`: no limit).
    pub fn max_layer(self) -> Option<usize> {
        match self {
            VideoQuality::Low => Some(0),
            VideoQuality::Medium => Some(1),
            VideoQuality::High => None,
        }
    }
}

fn yes() -> bool {
    true
}

/// A track as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackView {
    /// Its id.
    pub id: TrackId,
    /// `audio` or `video`.
    pub kind: String,
    /// What it carries.
    pub source: TrackSource,
    /// Muted by its owner or a service.
    pub muted: bool,
}

/// A participant as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantView {
    /// Unique in the room.
    pub identity: Identity,
    /// The display name.
    pub name: Option<String>,
    /// The room role.
    pub role: RoomRole,
    /// Live rights.
    pub permissions: Permissions,
    /// Published tracks.
    pub tracks: Vec<TrackView>,
    /// `rtc`, `whip` or `whep`.
    pub kind: String,
}

/// The room in a `joined`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomView {
    /// Its name.
    pub name: RoomName,
    /// Everyone else (hidden participants are left out).
    pub participants: Vec<ParticipantView>,
}

/// A speaker in `speakers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Speaker {
    /// Who.
    pub identity: Identity,
    /// −dBov (0 loudest, 127 silence).
    pub level: u8,
}

/// One participant in `quality`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QualityView {
    /// Who.
    pub identity: Identity,
    /// Loss fraction, 0–1.
    pub loss: f32,
    /// Round trip, when known.
    pub rtt_ms: Option<u32>,
    /// Media kbit/s both ways.
    pub bitrate_kbps: u32,
    /// The summary.
    pub rating: QualityRating,
}

/// A frame from the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ServerMessage {
    /// The answer to `join`.
    Joined {
        /// [`PROTOCOL`].
        protocol: u32,
        /// Yourself.
        participant: ParticipantView,
        /// The credential to resume with.
        resume: String,
        /// Whether this was a resume.
        resumed: bool,
        /// The reconnect grace period.
        grace_seconds: u64,
        /// The room now.
        room: RoomView,
    },
    /// A (re)negotiation of the subscriber connection.
    Offer {
        /// SDP.
        sdp: String,
        /// mid → track id.
        tracks: BTreeMap<String, TrackId>,
    },
    /// The answer to `publish`.
    PublishAnswer {
        /// SDP.
        sdp: String,
        /// mid → track id of the client's own tracks.
        tracks: BTreeMap<String, TrackId>,
    },
    /// Someone arrived.
    ParticipantJoined {
        /// Who.
        participant: ParticipantView,
    },
    /// Someone left.
    ParticipantLeft {
        /// Who.
        identity: Identity,
        /// Why.
        reason: LeaveReason,
    },
    /// A track appeared.
    TrackPublished {
        /// Whose.
        participant: Identity,
        /// Which.
        track: TrackView,
    },
    /// A track is gone.
    TrackUnpublished {
        /// Whose.
        participant: Identity,
        /// Which.
        track: TrackId,
    },
    /// A track was muted or unmuted.
    TrackMuted {
        /// Whose.
        participant: Identity,
        /// Which.
        track: TrackId,
        /// Now muted or not.
        muted: bool,
    },
    /// Someone's rights changed.
    PermissionsChanged {
        /// Whose.
        participant: Identity,
        /// The new rights.
        permissions: Permissions,
    },
    /// Who speaks now, loudest first.
    Speakers {
        /// The speakers.
        speakers: Vec<Speaker>,
    },
    /// Link quality of everyone.
    Quality {
        /// One entry per participant.
        participants: Vec<QualityView>,
    },
    /// Which simulcast layers of one of your own tracks nobody receives: stop sending those
    /// (`RTCRtpEncodingParameters.active = false`) and send all the others.
    Layers {
        /// Your track.
        track: TrackId,
        /// The rids to pause, lowest layer first; empty: send every layer.
        paused: Vec<String>,
    },
    /// Whether your link (or the budget you set) carries video now: while `audio_only`, every
    /// camera and screen is paused for you and audio and data go on; video comes back by itself
    /// when the link recovers.
    Reception {
        /// No video now.
        audio_only: bool,
    },
    /// You were removed.
    Removed {
        /// Why.
        reason: LeaveReason,
    },
    /// A refused frame.
    Error {
        /// A stable code.
        code: String,
        /// Words for people.
        message: String,
        /// The type of the refused client frame (`data` for a data channel message), when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        refused: Option<String>,
    },
    /// The answer to `ping`.
    Pong,
}

impl ServerMessage {
    /// An `error` frame.
    pub fn error(code: &str, message: impl Into<String>) -> ServerMessage {
        ServerMessage::Error { code: code.to_owned(), message: message.into(), refused: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_frames_parse_as_documented() {
        let join: ClientMessage = serde_json::from_str(r#"{"type":"join","protocol":1,"token":"x"}"#).unwrap();
        assert_eq!(join, ClientMessage::Join { protocol: 1, token: Some("x".into()), resume: None, auto_subscribe: true });
        let sub: ClientMessage = serde_json::from_str(r#"{"type":"subscribe","tracks":["t3","t12"]}"#).unwrap();
        assert_eq!(sub, ClientMessage::Subscribe { tracks: vec![TrackId(3), TrackId(12)] });
        let mute: ClientMessage = serde_json::from_str(r#"{"type":"mute","source":"microphone","muted":true}"#).unwrap();
        assert_eq!(mute, ClientMessage::Mute { source: TrackSource::Microphone, muted: true });
        let cand = r#"{"type":"candidate","target":"publisher","candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0}}"#;
        assert!(matches!(
            serde_json::from_str::<ClientMessage>(cand).unwrap(),
            ClientMessage::Candidate { target: PcTarget::Publisher, .. }
        ));
        for bad in [r#"{"type":"subscribe","tracks":["x3"]}"#, r#"{"type":"fly"}"#, r#"{"protocol":1}"#, "[]"] {
            assert!(serde_json::from_str::<ClientMessage>(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn type_names_are_the_wire_types() {
        let frames = [
            ClientMessage::Join { protocol: 1, token: None, resume: None, auto_subscribe: true },
            ClientMessage::Answer { sdp: String::new() },
            ClientMessage::Publish { sdp: String::new(), tracks: vec![] },
            ClientMessage::Candidate {
                target: PcTarget::Subscriber,
                candidate: CandidateInit { candidate: String::new(), sdp_mid: None, sdp_m_line_index: None },
            },
            ClientMessage::Subscribe { tracks: vec![] },
            ClientMessage::Unsubscribe { tracks: vec![] },
            ClientMessage::Mute { source: TrackSource::Camera, muted: true },
            ClientMessage::Budget { kbps: Some(150) },
            ClientMessage::VideoQuality { track: TrackId(3), max: VideoQuality::Low },
            ClientMessage::Leave,
            ClientMessage::Ping,
        ];
        for f in frames {
            assert_eq!(serde_json::to_value(&f).unwrap()["type"], f.type_name());
        }
    }

    #[test]
    fn server_frames_serialize_as_documented() {
        let m = ServerMessage::TrackMuted { participant: Identity::parse("li").unwrap(), track: TrackId(4), muted: true };
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            serde_json::json!({"type":"track_muted","participant":"li","track":"t4","muted":true})
        );
        let offer = ServerMessage::Offer { sdp: "v=0".into(), tracks: BTreeMap::from([("1".to_owned(), TrackId(2))]) };
        assert_eq!(serde_json::to_value(&offer).unwrap(), serde_json::json!({"type":"offer","sdp":"v=0","tracks":{"1":"t2"}}));
        assert_eq!(serde_json::to_value(ServerMessage::Pong).unwrap(), serde_json::json!({"type":"pong"}));
        let layers = ServerMessage::Layers { track: TrackId(5), paused: vec!["h".into(), "f".into()] };
        assert_eq!(serde_json::to_value(&layers).unwrap(), serde_json::json!({"type":"layers","track":"t5","paused":["h","f"]}));
        let reception = ServerMessage::Reception { audio_only: true };
        assert_eq!(serde_json::to_value(&reception).unwrap(), serde_json::json!({"type":"reception","audio_only":true}));
    }
}
