//! Classroom: live lessons from an urban school to remote classrooms.
//!
//! - [`model`]: schools, classroom sites, courses, students, lessons — the records and their ids.
//! - [`rules`]: pure decisions with time as an argument: lesson windows, who may join which
//!   lesson when, and the join grant each kind of attendee gets.
//! - [`attendance`]: classifying attendance from the room events recorded for a lesson.
//! - [`store`]: the sqlx store (SQLite and PostgreSQL) with its own migrations.
//! - [`slides`]: decks from PDFs or images, rasterized into small pages at content-hashed names.
#![forbid(unsafe_code)]

pub mod attendance;
pub mod model;
pub mod rules;
pub mod slides;
pub mod store;
