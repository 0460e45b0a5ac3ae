//! Types that more than one Tongxin crate needs, and nothing else: join grants (the one
//! credential the media server accepts), PII redaction for logs, and the database handle.
#![forbid(unsafe_code)]

pub mod clock;
pub mod db;
pub mod grant;
pub mod pii;
pub mod rooms;
#[cfg(feature = "testing")]
pub mod testing;

pub use clock::Clock;
pub use db::{Backend, Db, DbError};
pub use grant::{Identity, JoinGrant, RoomName, RoomRole, TokenKey, VerifiedGrant};
pub use pii::Pii;

/// Milliseconds since the Unix epoch for `t`; the unit every table stores times in.
pub fn unix_millis(t: std::time::SystemTime) -> i64 {
    match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}
