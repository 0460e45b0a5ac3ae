//! The OpenAPI document, generated from the handlers' annotations and served at
//! `/api/openapi.json`.

use axum::Json;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::classroom::{controls, live, manage, reports};
use crate::{accounts, auth, error, ops, rooms, stream_keys, tokens, turn};

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(title = "Tongxin API", description = "Live lessons and consultations on weak rural networks.", version = env!("CARGO_PKG_VERSION")),
    paths(
        auth::login, auth::logout, auth::me, auth::set_locale, auth::change_password,
        accounts::api::list_users, accounts::api::create_user, accounts::api::get_user, accounts::api::update_user,
        tokens::mint_join_token, turn::for_join_token,
        stream_keys::create, stream_keys::list, stream_keys::revoke,
        rooms::list_rooms,
        ops::healthz, ops::readyz, ops::metrics,
        manage::list_accounts, manage::list_schools, manage::create_school, manage::get_school, manage::update_school,
        manage::list_sites, manage::create_site, manage::get_site, manage::update_site,
        manage::list_courses, manage::create_course, manage::get_course,
        manage::list_students, manage::create_student,
        manage::course_students, manage::enroll, manage::unenroll, manage::create_link, manage::revoke_link,
        manage::list_lessons, manage::create_lessons, manage::get_lesson, manage::cancel_lesson,
        live::join_lesson, live::join_by_link, live::look_up_link, live::link_state,
        controls::get_state, controls::set_stage, controls::set_hand, controls::lower_hand, controls::set_chat_lock, controls::set_page,
        controls::mute_all, controls::end_lesson, controls::set_headcount, reports::lesson_json, reports::lesson_csv,
        reports::course_json, reports::course_csv,
        controls::upload_deck, controls::slide_page,
    ),
    components(schemas(error::ErrorBody, error::ErrorDetail, turn::IceServers, turn::IceServer,
        manage::AccountChoice, manage::School, manage::Site, manage::Course, manage::Student, manage::LinkInfo, manage::EnrolledStudent, manage::CreatedLink,
        manage::Lesson, manage::CreateSchool, manage::UpdateSchool, manage::CreateSite, manage::UpdateSite, manage::CreateCourse,
        manage::CreateStudent, manage::EnrollStudent, manage::RepeatRequest, manage::CreateLessons, live::LessonJoin, live::SiteName,
        live::LinkSecret, live::LinkLobby, live::LinkStudent, live::LinkCourse, live::LinkLesson,
        controls::StageRequest, controls::HandRequest, controls::ChatLockRequest, controls::PageRequest, controls::HeadcountRequest)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "auth", description = "Logging in and the current user"),
        (name = "admin", description = "Account administration"),
        (name = "tokens", description = "Join tokens for rooms"),
        (name = "ops", description = "Health and metrics"),
        (name = "classroom", description = "Schools, classroom sites, courses, students and lessons"),
    )
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()));
        components.add_security_scheme("session", SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(crate::auth::SESSION_COOKIE))));
    }
}

/// `GET /api/openapi.json`
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
