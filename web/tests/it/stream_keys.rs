//! Stream keys: created by the API, usable as a WHIP bearer for their room only, revocable.

use axum::http::{Method, StatusCode};
use serde_json::json;
use tongxin_web::accounts::AccountRole;

use crate::harness::{TestApp, error_code, publish_offer};

pub async fn whip(app: &TestApp, room: &str, bearer: &str) -> StatusCode {
    let auth = format!("Bearer {bearer}");
    let (status, _, _) = app
        .raw(
            Method::POST,
            &format!("/whip/{room}"),
            None,
            Some(publish_offer()),
            &[("content-type", "application/sdp"), ("authorization", &auth)],
        )
        .await;
    status
}

#[tokio::test]
async fn a_stream_key_publishes_to_its_room_until_revoked() {
    for app in TestApp::each().await {
        let app = app.with_media().await;
        app.user("li.hua", AccountRole::Teacher, "chalk-and-board").await;
        let teacher = app.login("li.hua", "chalk-and-board").await;

        let (status, body) = app
            .call(
                Method::POST,
                "/api/v1/stream-keys",
                Some(&teacher),
                Some(json!({"room": "lesson-5", "identity": "li.hua", "name": "OBS 301"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let key = body["key"].as_str().unwrap().to_owned();
        assert!(key.starts_with("sk_") && key.len() > 40);
        let id = body["id"].as_str().unwrap().to_owned();

        // A teacher may not publish as someone else.
        let (status, b) =
            app.call(Method::POST, "/api/v1/stream-keys", Some(&teacher), Some(json!({"room": "lesson-5", "identity": "wang"}))).await;
        assert_eq!((status, error_code(&b)), (StatusCode::FORBIDDEN, "forbidden"));
        let (status, b) =
            app.call(Method::POST, "/api/v1/stream-keys", Some(&teacher), Some(json!({"room": "bad room", "identity": "li.hua"}))).await;
        assert_eq!((status, b["error"]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("room")));

        assert_eq!(whip(&app, "lesson-5", &key).await, StatusCode::CREATED, "{}", app.backend());
        assert_eq!(whip(&app, "lesson-6", &key).await, StatusCode::FORBIDDEN, "a key is for its own room");
        assert_eq!(whip(&app, "lesson-5", "sk_made-up").await, StatusCode::UNAUTHORIZED);

        let (_, list) = app.call(Method::GET, "/api/v1/stream-keys", Some(&teacher), None).await;
        assert_eq!(list.as_array().unwrap().len(), 1);
        assert!(list[0]["last_used_at"].is_i64(), "use is recorded: {list}");
        assert!(list[0].get("key").is_none(), "the key is never listed");

        let (status, _) = app.call(Method::DELETE, &format!("/api/v1/stream-keys/{id}"), Some(&teacher), None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(whip(&app, "lesson-5", &key).await, StatusCode::UNAUTHORIZED, "a revoked key no longer publishes");
        let (status, _) = app.call(Method::DELETE, &format!("/api/v1/stream-keys/{id}"), Some(&teacher), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        // Other roles cannot manage keys.
        app.user("doc", AccountRole::Doctor, "stethoscope").await;
        let doctor = app.login("doc", "stethoscope").await;
        assert_eq!(app.call(Method::GET, "/api/v1/stream-keys", Some(&doctor), None).await.0, StatusCode::FORBIDDEN);
    }
}

#[tokio::test]
async fn whip_accepts_join_tokens_from_the_api() {
    let app = TestApp::sqlite().await.with_media().await;
    let admin = app.admin_token().await;
    let (_, body) = app
        .call(
            Method::POST,
            "/api/v1/tokens/join",
            Some(&admin),
            Some(json!({"room": "consult-1", "identity": "dr-li", "role": "doctor", "can_publish": true})),
        )
        .await;
    let token = body["token"].as_str().unwrap();
    assert_eq!(whip(&app, "consult-1", token).await, StatusCode::CREATED);
    let (_, body) = app
        .call(Method::POST, "/api/v1/tokens/join", Some(&admin), Some(json!({"room": "consult-1", "identity": "p", "role": "patient"})))
        .await;
    assert_eq!(whip(&app, "consult-1", body["token"].as_str().unwrap()).await, StatusCode::FORBIDDEN, "no publish grant");
}
