//! The HTTP API over SQLite and PostgreSQL: login, sessions, role guards, join tokens, errors.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde_json::json;
use tongxin_common::grant::GrantError;
use tongxin_web::accounts::AccountRole;

use crate::harness::{TestApp, error_code};

#[tokio::test]
async fn login_success_and_failure() {
    for app in TestApp::each().await {
        app.user("li.teacher", AccountRole::Teacher, "chalk-and-board").await;
        let (status, headers, body) = app
            .raw(
                Method::POST,
                "/api/v1/auth/login",
                None,
                Some(json!({"username": "LI.Teacher", "password": "chalk-and-board"}).to_string()),
                &[],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{}", app.backend());
        let cookie = headers.get("set-cookie").unwrap().to_str().unwrap();
        assert!(cookie.starts_with("tongxin_session="), "{cookie}");
        for attr in ["HttpOnly", "SameSite=Lax", "Path=/"] {
            assert!(cookie.contains(attr), "cookie lacks {attr}: {cookie}");
        }
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["user"]["role"], "teacher");
        assert!(body["user"].get("password_hash").is_none());

        // The cookie alone authenticates the UI.
        let session = cookie.split(';').next().unwrap();
        let (status, _, me) = app.raw(Method::GET, "/api/v1/me", None, None, &[("cookie", session)]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(serde_json::from_slice::<serde_json::Value>(&me).unwrap()["username"], "li.teacher");

        for (user, pw) in [("li.teacher", "wrong-password"), ("nobody", "chalk-and-board"), ("x", "y")] {
            let (status, body) = app.call(Method::POST, "/api/v1/auth/login", None, Some(json!({"username": user, "password": pw}))).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{user}/{pw}");
            assert_eq!(error_code(&body), "unauthorized");
            assert_eq!(body["error"]["message"], "wrong username or password", "no hint which half was wrong");
        }
    }
}

#[tokio::test]
async fn logout_revokes_the_session() {
    for app in TestApp::each().await {
        app.user("wang", AccountRole::Doctor, "stethoscope").await;
        let a = app.login("wang", "stethoscope").await;
        let b = app.login("wang", "stethoscope").await;
        let (status, _) = app.call(Method::POST, "/api/v1/auth/logout", Some(&a), None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, body) = app.call(Method::GET, "/api/v1/me", Some(&a), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{}", app.backend());
        assert_eq!(error_code(&body), "unauthorized");
        let (status, _) = app.call(Method::GET, "/api/v1/me", Some(&b), None).await;
        assert_eq!(status, StatusCode::OK, "the other session lives on");
    }
}

#[tokio::test]
async fn sessions_expire() {
    let app = TestApp::sqlite().await;
    app.user("zhao", AccountRole::Organizer, "timetable").await;
    let t = app.login("zhao", "timetable").await;
    app.clock.advance(Duration::from_secs(12 * 3600 - 1));
    assert_eq!(app.call(Method::GET, "/api/v1/me", Some(&t), None).await.0, StatusCode::OK);
    app.clock.advance(Duration::from_secs(1));
    assert_eq!(app.call(Method::GET, "/api/v1/me", Some(&t), None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(app.state.accounts.purge_expired_sessions(app.now()).await.unwrap(), 1);
}

#[tokio::test]
async fn disabling_or_resetting_an_account_ends_its_sessions() {
    for app in TestApp::each().await {
        let admin = app.admin_token().await;
        let user = app.user("assist", AccountRole::Assistant, "hands-up-1").await;
        let t = app.login("assist", "hands-up-1").await;
        let path = format!("/api/v1/admin/users/{}", user.id);
        let (status, body) = app.call(Method::PATCH, &path, Some(&admin), Some(json!({"disabled": true}))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["disabled"], true);
        assert_eq!(app.call(Method::GET, "/api/v1/me", Some(&t), None).await.0, StatusCode::UNAUTHORIZED);
        let (status, _) =
            app.call(Method::POST, "/api/v1/auth/login", None, Some(json!({"username": "assist", "password": "hands-up-1"}))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "a disabled account cannot log in");

        app.call(Method::PATCH, &path, Some(&admin), Some(json!({"disabled": false}))).await;
        let t = app.login("assist", "hands-up-1").await;
        let (status, _) = app.call(Method::PATCH, &path, Some(&admin), Some(json!({"password": "new-secret-2"}))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(app.call(Method::GET, "/api/v1/me", Some(&t), None).await.0, StatusCode::UNAUTHORIZED);
        app.login("assist", "new-secret-2").await;
    }
}

#[tokio::test]
async fn changing_ones_own_password() {
    let app = TestApp::sqlite().await;
    app.user("mei", AccountRole::VillageDoctor, "old-password").await;
    let t = app.login("mei", "old-password").await;
    let (status, body) = app
        .call(Method::PUT, "/api/v1/me/password", Some(&t), Some(json!({"current_password": "nope-nope", "new_password": "new-password"})))
        .await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "forbidden"));
    let (status, body) = app
        .call(Method::PUT, "/api/v1/me/password", Some(&t), Some(json!({"current_password": "old-password", "new_password": "short"})))
        .await;
    assert_eq!((status, body["error"]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("new_password")));
    let (status, _) = app
        .call(
            Method::PUT,
            "/api/v1/me/password",
            Some(&t),
            Some(json!({"current_password": "old-password", "new_password": "new-password"})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(app.call(Method::GET, "/api/v1/me", Some(&t), None).await.0, StatusCode::UNAUTHORIZED);
    app.login("mei", "new-password").await;
}

#[tokio::test]
async fn role_guards() {
    for app in TestApp::each().await {
        let admin = app.admin_token().await;
        app.user("teach", AccountRole::Teacher, "lesson-plan").await;
        let teacher = app.login("teach", "lesson-plan").await;
        let mint = json!({"room": "lesson-1", "identity": "s1", "role": "student"});
        for (method, path, body) in [
            (Method::GET, "/api/v1/admin/users", None),
            (
                Method::POST,
                "/api/v1/admin/users",
                Some(json!({"username": "x1x", "display_name": "x", "role": "admin", "password": "12345678"})),
            ),
            (Method::POST, "/api/v1/tokens/join", Some(mint.clone())),
        ] {
            let (status, b) = app.call(method.clone(), path, Some(&teacher), body.clone()).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "teacher {method} {path}");
            assert_eq!(error_code(&b), "forbidden");
            let (status, b) = app.call(method.clone(), path, None, body.clone()).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "anonymous {method} {path}");
            assert_eq!(error_code(&b), "unauthorized");
            let (status, _) = app.call(method.clone(), path, Some("forged-token"), body).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "forged {method} {path}");
        }
        assert_eq!(app.call(Method::GET, "/api/v1/admin/users", Some(&admin), None).await.0, StatusCode::OK);
        // Still nothing created by the refused requests.
        assert_eq!(app.state.accounts.count_users().await.unwrap(), 2);
    }
}

#[tokio::test]
async fn admins_manage_accounts() {
    for app in TestApp::each().await {
        let admin = app.admin_token().await;
        let (status, created) = app
            .call(
                Method::POST,
                "/api/v1/admin/users",
                Some(&admin),
                Some(json!({"username": "Terminal-07", "display_name": "  红星村小 教学点  ", "role": "device", "password": "device-secret", "locale": "bo"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        assert_eq!(created["username"], "terminal-07");
        assert_eq!(created["display_name"], "红星村小 教学点");
        assert_eq!(created["locale"], "bo");
        let id = created["id"].as_str().unwrap();
        let (status, got) = app.call(Method::GET, &format!("/api/v1/admin/users/{id}"), Some(&admin), None).await;
        assert_eq!((status, &got), (StatusCode::OK, &created));
        let (_, list) = app.call(Method::GET, "/api/v1/admin/users", Some(&admin), None).await;
        assert_eq!(list.as_array().unwrap().len(), 2);
        let (status, changed) = app
            .call(
                Method::PATCH,
                &format!("/api/v1/admin/users/{id}"),
                Some(&admin),
                Some(json!({"role": "assistant", "display_name": "助教"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!((changed["role"].as_str(), changed["display_name"].as_str()), (Some("assistant"), Some("助教")));
        let (status, b) = app.call(Method::GET, "/api/v1/admin/users/usr_missing", Some(&admin), None).await;
        assert_eq!((status, error_code(&b)), (StatusCode::NOT_FOUND, "not_found"));
    }
}

#[tokio::test]
async fn the_last_admin_cannot_be_disabled_or_demoted() {
    let app = TestApp::sqlite().await;
    let admin = app.admin_token().await;
    let (_, me) = app.call(Method::GET, "/api/v1/me", Some(&admin), None).await;
    let path = format!("/api/v1/admin/users/{}", me["id"].as_str().unwrap());
    for change in [json!({"disabled": true}), json!({"role": "teacher"})] {
        let (status, b) = app.call(Method::PATCH, &path, Some(&admin), Some(change)).await;
        assert_eq!((status, error_code(&b)), (StatusCode::CONFLICT, "conflict"));
    }
    assert_eq!(app.call(Method::GET, "/api/v1/me", Some(&admin), None).await.0, StatusCode::OK, "and the session survives");
}

#[tokio::test]
async fn join_tokens_minted_by_the_api_verify_and_expire() {
    for app in TestApp::each().await {
        let admin = app.admin_token().await;
        let (status, body) = app
            .call(
                Method::POST,
                "/api/v1/tokens/join",
                Some(&admin),
                Some(json!({"room": "consult-9", "identity": "dr-zhang", "name": "张医生", "role": "doctor", "can_publish": true, "ttl_seconds": 600})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let token = body["token"].as_str().unwrap();
        let v = app.state.token_key.verify(token, app.now()).unwrap();
        assert_eq!(v.grant.room.as_str(), "consult-9");
        assert_eq!(v.grant.identity.as_str(), "dr-zhang");
        assert_eq!(v.grant.name.as_deref(), Some("张医生"));
        assert_eq!(v.grant.role.as_str(), "doctor");
        assert!(v.grant.can_publish && v.grant.can_subscribe && v.grant.can_publish_data && !v.grant.hidden);
        assert_eq!(body["expires_at"].as_i64().unwrap(), tongxin_common::unix_millis(app.now()) + 600_000);

        app.clock.advance(Duration::from_secs(600));
        assert_eq!(app.state.token_key.verify(token, app.now()), Err(GrantError::Expired));

        let mut tampered = token.to_owned();
        tampered.replace_range(tampered.len() - 3.., "AAA");
        assert!(app.state.token_key.verify(&tampered, app.now() - Duration::from_secs(300)).is_err());
    }
}

#[tokio::test]
async fn error_bodies_and_bad_requests_change_nothing() {
    for app in TestApp::each().await {
        let admin = app.admin_token().await;
        let users = || async { app.state.accounts.count_users().await.unwrap() };
        let before = users().await;
        let create = "/api/v1/admin/users";

        // Malformed JSON → 400.
        let (status, _, body) = app.raw(Method::POST, create, Some(&admin), Some("{\"username\": ".into()), &[]).await;
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "bad_request"));
        // Not JSON at all → 400.
        let (status, _, _) =
            app.raw(Method::POST, create, Some(&admin), Some("username=x".into()), &[("content-type", "text/plain")]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);

        // Validation → 422 naming the field.
        for (body, field) in [
            (json!({"username": "a", "display_name": "x", "role": "teacher", "password": "12345678"}), "username"),
            (json!({"username": "abc", "display_name": "", "role": "teacher", "password": "12345678"}), "display_name"),
            (json!({"username": "abc", "display_name": "x", "role": "emperor", "password": "12345678"}), "role"),
            (json!({"username": "abc", "display_name": "x", "role": "teacher", "password": "short"}), "password"),
            (json!({"display_name": "x", "role": "teacher", "password": "12345678"}), "username"),
            (json!({"username": "abc", "display_name": "x", "role": "teacher", "password": "12345678", "extra": 1}), "extra"),
        ] {
            let (status, b) = app.call(Method::POST, create, Some(&admin), Some(body.clone())).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body} → {b}");
            assert_eq!(error_code(&b), "validation");
            assert_eq!(b["error"]["field"], field, "{body} → {b}");
        }

        // Conflict → 409.
        let ok = json!({"username": "dup", "display_name": "x", "role": "teacher", "password": "12345678"});
        assert_eq!(app.call(Method::POST, create, Some(&admin), Some(ok.clone())).await.0, StatusCode::CREATED);
        let (status, b) = app.call(Method::POST, create, Some(&admin), Some(ok)).await;
        assert_eq!((status, error_code(&b)), (StatusCode::CONFLICT, "conflict"));
        assert_eq!(users().await, before + 1, "only the one good request created an account");

        // Join-token validation names the field.
        for (body, field) in [
            (json!({"room": "bad room", "identity": "a", "role": "guest"}), "room"),
            (json!({"room": "r", "identity": " a", "role": "guest"}), "identity"),
            (json!({"room": "r", "identity": "a", "role": "guest", "ttl_seconds": 90000}), "ttl_seconds"),
            (json!({"room": "r", "identity": "a", "role": "admin"}), "role"),
        ] {
            let (status, b) = app.call(Method::POST, "/api/v1/tokens/join", Some(&admin), Some(body.clone())).await;
            assert_eq!((status, b["error"]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some(field)), "{body} → {b}");
        }

        // Unknown → 404; wrong method → 405; both JSON.
        let (status, b) = app.call(Method::GET, "/api/v1/no-such-thing", Some(&admin), None).await;
        assert_eq!((status, error_code(&b)), (StatusCode::NOT_FOUND, "not_found"));
        let (status, b) = app.call(Method::DELETE, "/api/v1/me", Some(&admin), None).await;
        assert_eq!((status, error_code(&b)), (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"));
    }
}

#[tokio::test]
async fn too_many_failed_logins_are_refused_for_a_while() {
    let app = TestApp::sqlite().await;
    app.user("target", AccountRole::Teacher, "right-password").await;
    for _ in 0..10 {
        app.call(Method::POST, "/api/v1/auth/login", None, Some(json!({"username": "target", "password": "guess"}))).await;
    }
    let (status, b) =
        app.call(Method::POST, "/api/v1/auth/login", None, Some(json!({"username": "target", "password": "right-password"}))).await;
    assert_eq!((status, error_code(&b)), (StatusCode::TOO_MANY_REQUESTS, "too_many_requests"));
    app.clock.advance(Duration::from_secs(15 * 60));
    app.login("target", "right-password").await;
}

#[tokio::test]
async fn locale_is_kept_per_user() {
    for app in TestApp::each().await {
        app.user("ug.teacher", AccountRole::Teacher, "kashgar-2026").await;
        let t = app.login("ug.teacher", "kashgar-2026").await;
        let (status, me) = app.call(Method::PUT, "/api/v1/me/locale", Some(&t), Some(json!({"locale": "ug"}))).await;
        assert_eq!((status, me["locale"].as_str()), (StatusCode::OK, Some("ug")));
        let t2 = app.login("ug.teacher", "kashgar-2026").await;
        assert_eq!(app.call(Method::GET, "/api/v1/me", Some(&t2), None).await.1["locale"], "ug");
        let (status, b) = app.call(Method::PUT, "/api/v1/me/locale", Some(&t), Some(json!({"locale": "fr"}))).await;
        assert_eq!((status, b["error"]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("locale")));
    }
}

#[tokio::test]
async fn ops_endpoints() {
    let app = TestApp::sqlite().await;
    assert_eq!(app.call(Method::GET, "/healthz", None, None).await.0, StatusCode::OK);
    assert_eq!(app.call(Method::GET, "/readyz", None, None).await.0, StatusCode::OK);
    let (status, headers, body) = app.raw(Method::GET, "/metrics", None, None, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let text = String::from_utf8(body).unwrap();
    assert!(text.contains("tongxin_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 1"), "{text}");
    assert!(text.contains("tongxin_database_up 1"));

    app.state.db.close().await;
    assert_eq!(app.call(Method::GET, "/readyz", None, None).await.0, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn openapi_document_lists_every_api_route() {
    let app = TestApp::sqlite().await;
    let (status, doc) = app.call(Method::GET, "/api/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for (path, method) in [
        ("/api/v1/auth/login", "post"),
        ("/api/v1/auth/logout", "post"),
        ("/api/v1/me", "get"),
        ("/api/v1/me/locale", "put"),
        ("/api/v1/me/password", "put"),
        ("/api/v1/admin/users", "get"),
        ("/api/v1/admin/users", "post"),
        ("/api/v1/admin/users/{id}", "patch"),
        ("/api/v1/tokens/join", "post"),
        ("/api/v1/stream-keys", "post"),
        ("/api/v1/stream-keys/{id}", "delete"),
        ("/readyz", "get"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path} missing from the OpenAPI document");
    }
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
}

#[tokio::test]
async fn the_ui_is_served_with_validators_and_gzip() {
    let app = TestApp::sqlite().await;
    let (status, headers, body) = app.raw(Method::GET, "/", None, None, &[("accept-encoding", "gzip")]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-encoding"], "gzip");
    assert!(!body.is_empty());
    assert!(headers["content-security-policy"].to_str().unwrap().contains("default-src 'self'"));
    let etag = headers["etag"].to_str().unwrap().to_owned();
    let (status, _, body) = app.raw(Method::GET, "/", None, None, &[("if-none-match", &etag)]).await;
    assert_eq!((status, body.len()), (StatusCode::NOT_MODIFIED, 0));
    // A client-side route gets the shell; a missing file does not.
    assert_eq!(app.raw(Method::GET, "/admin/users", None, None, &[]).await.0, StatusCode::OK);
    assert_eq!(app.raw(Method::GET, "/nothing.js", None, None, &[]).await.0, StatusCode::NOT_FOUND);
    let (_, _, json) = app.raw(Method::GET, "/i18n/ug.json", None, None, &[]).await;
    assert!(serde_json::from_slice::<serde_json::Value>(&json).unwrap()["app.name"].is_string());
}
