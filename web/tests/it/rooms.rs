//! The admin view of live rooms, and room limits from the configuration.

use axum::http::{Method, StatusCode};
use serde_json::json;
use tongxin_web::accounts::AccountRole;

use crate::harness::{TestApp, error_code};
use crate::stream_keys::whip;

#[tokio::test]
async fn admins_see_rooms_participants_and_tracks_others_may_not() {
    let app = TestApp::sqlite().await.with_media().await;
    let admin = app.admin_token().await;
    app.user("li.hua", AccountRole::Teacher, "chalk-and-board").await;
    let teacher = app.login("li.hua", "chalk-and-board").await;

    let (status, body) = app.call(Method::GET, "/api/v1/rooms", Some(&admin), None).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"rooms": []})));

    let grant = json!({"room": "lesson-5", "identity": "li.hua", "name": "李老师", "role": "teacher", "can_publish": true});
    let (_, minted) = app.call(Method::POST, "/api/v1/tokens/join", Some(&admin), Some(grant)).await;
    assert_eq!(whip(&app, "lesson-5", minted["token"].as_str().unwrap()).await, StatusCode::CREATED);

    let (status, body) = app.call(Method::GET, "/api/v1/rooms", Some(&admin), None).await;
    assert_eq!(status, StatusCode::OK);
    let room = &body["rooms"][0];
    assert_eq!(room["name"], "lesson-5");
    assert_eq!(room["managed"], false);
    let who = &room["participants"][0];
    assert_eq!((who["identity"].as_str(), who["kind"].as_str(), who["role"].as_str()), (Some("li.hua"), Some("whip"), Some("teacher")));
    assert_eq!(who["permissions"], json!({"publish": true, "subscribe": true, "publish_data": true}));
    let mut sources: Vec<&str> = who["tracks"].as_array().unwrap().iter().map(|t| t["source"].as_str().unwrap()).collect();
    sources.sort();
    assert_eq!(sources, ["camera", "microphone"]);

    let (status, body) = app.call(Method::GET, "/api/v1/rooms", Some(&teacher), None).await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "forbidden"));
    let (status, body) = app.call(Method::GET, "/api/v1/rooms", None, None).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "unauthorized"));
}
