//! The lesson scheduler: opens each lesson's room when its window opens (`classroom.open_before`
//! ahead of the start), so terminals and teachers find it ready, and closes it when the window
//! closes (the overrun ran out, or the lesson was cancelled), disconnecting whoever is left.
//!
//! Joining opens a room too, so a join in the seconds before the next pass, or after a restart,
//! never waits for the scheduler.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::json;
use tongxin_classroom::model::Lesson;
use tongxin_classroom::rules::{self, Phase};
use tongxin_classroom::store::LessonFilter;
use tongxin_common::rooms::RoomControl as _;
use tongxin_common::{RoomName, unix_millis};

use super::live::open_room;
use crate::error::ApiError;
use crate::state::AppState;

/// How often the scheduler looks at the lessons.
pub const PASS_EVERY: Duration = Duration::from_secs(10);

/// The longest a lesson's room can stay open after its start: the longest lesson (8 h) and the
/// longest overrun the configuration allows (12 h).
const LONGEST_OPEN: Duration = Duration::from_secs(20 * 3600);

/// What one pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pass {
    /// Rooms of lessons whose window is open that were not running (opened now).
    pub opened: Vec<String>,
    /// Rooms of lessons that are over or cancelled, or no longer exist (closed now).
    pub closed: Vec<String>,
}

/// Runs a pass every [`PASS_EVERY`] for as long as the media server runs.
pub async fn run(state: AppState) {
    let mut every = tokio::time::interval(PASS_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if let Err(e) = pass(&state).await {
            tracing::warn!(error = %e, "the lesson scheduler's pass failed; trying again shortly");
        }
    }
}

/// One look at the lessons: opens the rooms of open lessons, closes the rooms of the rest.
pub async fn pass(state: &AppState) -> Result<Pass, ApiError> {
    let Some(media) = &state.media else { return Ok(Pass::default()) };
    let timing = state.config.classroom.timing();
    let now_time = state.clock.now();
    let now = unix_millis(now_time);
    let running: HashSet<String> = media.rooms().await.into_iter().map(|r| r.name.as_str().to_owned()).collect();
    let mut done = Pass::default();

    for room in &running {
        let Some(id) = room.strip_prefix("lesson-") else { continue };
        let lesson = state.classroom.lesson(id).await?;
        if lesson.is_none_or(|l| rules::phase(&l, &timing, now) != Phase::Open) {
            close_room(state, room).await;
            done.closed.push(room.clone());
        }
    }

    let filter = LessonFilter {
        from: Some(unix_millis(now_time - LONGEST_OPEN)),
        to: Some(unix_millis(now_time + timing.open_before) + 1),
        ..LessonFilter::default()
    };
    for lesson in state.classroom.list_lessons(&filter).await? {
        if rules::phase(&lesson, &timing, now) == Phase::Open && !running.contains(lesson.room().as_str()) {
            open(state, &lesson).await?;
            done.opened.push(lesson.room().as_str().to_owned());
        }
    }
    Ok(done)
}

async fn open(state: &AppState, lesson: &Lesson) -> Result<(), ApiError> {
    let live = state.classroom.live(&lesson.id).await?.unwrap_or_default();
    open_room(state, lesson, &live).await?;
    tracing::info!(lesson = %lesson.id, "lesson room opened");
    Ok(())
}

/// Tells everyone in a lesson's room that the lesson is over and closes the room. A room that
/// never opened (or already emptied out) is no error.
pub(super) async fn close_room(state: &AppState, room: &str) {
    let Some(media) = &state.media else { return };
    let Ok(room) = RoomName::parse(room) else { return };
    let _ = media.send_data(&room, json!({"type": "lesson_ended"})).await;
    let _ = media.close_room(&room).await;
    tracing::info!(%room, "lesson room closed");
}
