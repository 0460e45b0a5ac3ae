//! [`RoomControl`]: how services (classroom, clinic) drive live rooms without knowing the SFU.
//!
//! The media server implements it; a service holds an `Arc<dyn RoomControl>` and records the
//! [`RoomEvent`]s it cares about (attendance from joins and leaves, link quality).

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::grant::{Identity, RoomName, RoomRole};

/// A boxed future, so the trait stays usable as `dyn RoomControl`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a participant may do. Starts as the join grant's rights; services change it live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permissions {
    /// May publish audio and video.
    pub publish: bool,
    /// May receive others' tracks.
    pub subscribe: bool,
    /// May send chat and data messages.
    pub publish_data: bool,
}

/// Who receives a participant's tracks. A lesson keeps a remote classroom's camera for the
/// teacher until the teacher brings that classroom on stage.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", content = "roles", rename_all = "snake_case")]
pub enum Audience {
    /// Everyone who may subscribe (the default).
    #[default]
    Everyone,
    /// Only participants with one of these room roles.
    Roles(Vec<RoomRole>),
}

impl Audience {
    /// Whether a participant with `role` receives tracks this audience covers.
    pub fn admits(&self, role: RoomRole) -> bool {
        match self {
            Audience::Everyone => true,
            Audience::Roles(roles) => roles.contains(&role),
        }
    }
}

/// What a track carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackSource {
    /// A microphone (or any audio).
    Microphone,
    /// A camera.
    Camera,
    /// A shared screen or window (slides).
    Screen,
}

impl TrackSource {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            TrackSource::Microphone => "microphone",
            TrackSource::Camera => "camera",
            TrackSource::Screen => "screen",
        }
    }
}

impl fmt::Display for TrackSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Why a participant left a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    /// It said goodbye (`leave`, a WHIP/WHEP `DELETE`).
    Left,
    /// Its connection was gone for longer than the grace period.
    Timeout,
    /// A service removed it.
    Kicked,
    /// The same identity joined again from somewhere else.
    Replaced,
    /// A service closed the room.
    RoomClosed,
}

impl LeaveReason {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            LeaveReason::Left => "left",
            LeaveReason::Timeout => "timeout",
            LeaveReason::Kicked => "kicked",
            LeaveReason::Replaced => "replaced",
            LeaveReason::RoomClosed => "room_closed",
        }
    }
}

/// How a link is doing, in a word a teacher understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QualityRating {
    /// Under 2 % loss and 300 ms round trip.
    Good,
    /// Under 10 % loss and 600 ms.
    Fair,
    /// Worse than that, but connected.
    Poor,
    /// No connection right now (within the reconnect grace period).
    Lost,
}

impl QualityRating {
    /// The rating for a loss fraction and round-trip time.
    pub fn from_figures(loss: f32, rtt_ms: Option<u32>) -> QualityRating {
        let rtt = rtt_ms.unwrap_or(0);
        if loss < 0.02 && rtt < 300 {
            QualityRating::Good
        } else if loss < 0.10 && rtt < 600 {
            QualityRating::Fair
        } else {
            QualityRating::Poor
        }
    }
}

/// One participant's link as the server saw it over the last sample period.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct QualitySample {
    /// Fraction of packets lost (0–1), the worse of both directions.
    pub loss: f32,
    /// Round-trip time, when known.
    pub rtt_ms: Option<u32>,
    /// Media sent to and received from it, kbit/s.
    pub bitrate_kbps: u32,
    /// The summary.
    pub rating: QualityRating,
}

/// Something that happened in a room, for services to record.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RoomEvent {
    /// A participant joined (or a WHIP/WHEP session started).
    ParticipantJoined {
        /// Where.
        room: RoomName,
        /// Who.
        identity: Identity,
        /// As what.
        role: RoomRole,
    },
    /// A participant left.
    ParticipantLeft {
        /// Where.
        room: RoomName,
        /// Who.
        identity: Identity,
        /// Why.
        reason: LeaveReason,
    },
    /// A participant's link quality, every sample period.
    Quality {
        /// Where.
        room: RoomName,
        /// Who.
        identity: Identity,
        /// The figures.
        sample: QualitySample,
    },
    /// A room closed (by a service, or after staying empty).
    RoomClosed {
        /// Which.
        room: RoomName,
    },
}

/// A track as the admin view shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrackInfo {
    /// The server's id for it (stable across reconnects).
    pub id: String,
    /// `audio` or `video`.
    pub kind: &'static str,
    /// What it carries.
    pub source: TrackSource,
    /// Muted by its owner or a service.
    pub muted: bool,
}

/// A participant as the admin view shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParticipantInfo {
    /// Unique in the room.
    pub identity: Identity,
    /// The display name (personal data: shown to admins, never logged).
    pub name: Option<String>,
    /// The room role.
    pub role: RoomRole,
    /// `rtc`, `whip` or `whep`.
    pub kind: &'static str,
    /// The live rights.
    pub permissions: Permissions,
    /// Its tracks.
    pub tracks: Vec<TrackInfo>,
    /// Hidden from other participants.
    pub hidden: bool,
    /// The latest quality sample, once there is one.
    pub quality: Option<QualitySample>,
    /// How its media travels: `udp`, `tcp` (ICE over TCP) or `turn` (through a relay); none
    /// before it connects.
    pub path: Option<&'static str>,
}

/// A room as the admin view shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoomInfo {
    /// The name.
    pub name: RoomName,
    /// Created through [`RoomControl::create_room`] (lives until closed) rather than ad hoc.
    pub managed: bool,
    /// Everyone in it, hidden participants included.
    pub participants: Vec<ParticipantInfo>,
}

/// Why a room operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RoomError {
    /// No such room.
    #[error("no such room")]
    NoSuchRoom,
    /// No such participant in the room.
    #[error("no such participant in this room")]
    NoSuchParticipant,
    /// The participant has no such track.
    #[error("the participant has no such track")]
    NoSuchTrack,
    /// The server already runs as many rooms as it may.
    #[error("the server already runs its maximum number of rooms")]
    TooManyRooms,
    /// A data message that is not a JSON object or is too large.
    #[error("{0}")]
    BadData(String),
    /// The media server is gone or hit a bug.
    #[error("the media server is unavailable")]
    Unavailable,
}

/// The small interface services use to drive rooms.
pub trait RoomControl: Send + Sync {
    /// Creates a room that lives until [`RoomControl::close_room`] (an ad-hoc room, created by
    /// the first join, closes after staying empty for a minute). Creating an existing room
    /// makes it managed.
    fn create_room<'a>(&'a self, room: &'a RoomName) -> BoxFuture<'a, Result<(), RoomError>>;
    /// Closes a room: everyone in it leaves with [`LeaveReason::RoomClosed`].
    fn close_room<'a>(&'a self, room: &'a RoomName) -> BoxFuture<'a, Result<(), RoomError>>;
    /// Changes a participant's rights at once; taking `publish` away stops forwarding its tracks.
    fn set_permissions<'a>(
        &'a self,
        room: &'a RoomName,
        identity: &'a Identity,
        permissions: Permissions,
    ) -> BoxFuture<'a, Result<(), RoomError>>;
    /// Removes a participant ([`LeaveReason::Kicked`]).
    fn remove_participant<'a>(&'a self, room: &'a RoomName, identity: &'a Identity) -> BoxFuture<'a, Result<(), RoomError>>;
    /// Mutes or unmutes one of a participant's tracks.
    fn mute_track<'a>(
        &'a self,
        room: &'a RoomName,
        identity: &'a Identity,
        source: TrackSource,
        muted: bool,
    ) -> BoxFuture<'a, Result<(), RoomError>>;
    /// Sets who receives a participant's tracks, from now on and across its rejoins, whether or
    /// not it is in the room yet (a service sets it up before anyone joins). Participants left
    /// out stop receiving at once; those let in get the tracks offered.
    fn set_audience<'a>(&'a self, room: &'a RoomName, identity: &'a Identity, audience: Audience) -> BoxFuture<'a, Result<(), RoomError>>;
    /// Sends a JSON object to everyone in the room over the data channel (`from` is `null`).
    fn send_data<'a>(&'a self, room: &'a RoomName, message: serde_json::Value) -> BoxFuture<'a, Result<(), RoomError>>;
    /// Every room and who is in it.
    fn rooms(&self) -> BoxFuture<'_, Vec<RoomInfo>>;
    /// A stream of room events from now on. A receiver that falls far behind is told how many
    /// it missed (`RecvError::Lagged`).
    fn events(&self) -> broadcast::Receiver<RoomEvent>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratings_follow_loss_and_round_trip() {
        assert_eq!(QualityRating::from_figures(0.0, Some(40)), QualityRating::Good);
        assert_eq!(QualityRating::from_figures(0.0, None), QualityRating::Good);
        assert_eq!(QualityRating::from_figures(0.05, Some(40)), QualityRating::Fair);
        assert_eq!(QualityRating::from_figures(0.01, Some(450)), QualityRating::Fair);
        assert_eq!(QualityRating::from_figures(0.2, Some(40)), QualityRating::Poor);
        assert_eq!(QualityRating::from_figures(0.0, Some(900)), QualityRating::Poor);
    }

    #[test]
    fn an_audience_admits_its_roles() {
        assert!(Audience::Everyone.admits(RoomRole::Student));
        let teacher_only = Audience::Roles(vec![RoomRole::Teacher, RoomRole::Observer]);
        assert!(teacher_only.admits(RoomRole::Teacher) && teacher_only.admits(RoomRole::Observer));
        assert!(!teacher_only.admits(RoomRole::Student) && !teacher_only.admits(RoomRole::Classroom));
        assert_eq!(serde_json::to_value(&teacher_only).unwrap(), serde_json::json!({"kind": "roles", "roles": ["teacher", "observer"]}));
    }

    #[test]
    fn wire_names_match_serde() {
        for r in [LeaveReason::Left, LeaveReason::Timeout, LeaveReason::Kicked, LeaveReason::Replaced, LeaveReason::RoomClosed] {
            assert_eq!(serde_json::to_value(r).unwrap(), serde_json::json!(r.as_str()));
        }
        for s in [TrackSource::Microphone, TrackSource::Camera, TrackSource::Screen] {
            assert_eq!(serde_json::to_value(s).unwrap(), serde_json::json!(s.as_str()));
        }
    }
}
