//! Classroom: schools, sites, courses, students and lessons over HTTP, and joining a lesson.

pub mod controls;
pub mod live;
pub mod manage;
pub mod reports;
pub mod schedule;

use axum::Router;

use crate::state::AppState;

/// The routes under `/api/v1`.
pub fn router() -> Router<AppState> {
    manage::router().merge(live::router()).merge(controls::router()).merge(reports::router())
}
