//! Logging in and out, the current user, and role guards.
//!
//! A login creates a session: a random 256-bit token, stored only as its SHA-256. The UI gets
//! it as an HttpOnly, SameSite=Lax cookie; API clients send it as `Authorization: Bearer`.

pub mod guard;
pub mod password;
mod throttle;

use std::time::Duration;

use axum::extract::{FromRequestParts, State};
use axum::http::header::{AUTHORIZATION, COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use axum::{Json, Router};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tongxin_common::{Pii, unix_millis};
use utoipa::ToSchema;

pub use guard::Policy;
pub use throttle::LoginThrottle;

use crate::accounts::store::UserChanges;
use crate::accounts::{Locale, User, Username, check_password_strength};
use crate::error::{ApiError, ApiJson, ErrorBody};
use crate::net::ClientAddr;
use crate::state::AppState;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "tongxin_session";

/// The routes under `/api/v1`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/login", post(login))
        .route("/auth/logout", post(logout))
        .route("/me", axum::routing::get(me))
        .route("/me/locale", put(set_locale))
        .route("/me/password", put(change_password))
}

/// The logged-in user of a request, from its bearer token or session cookie.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    /// The account.
    pub user: User,
    /// SHA-256 of the session token (hex).
    pub session_hash: String,
    /// When the session ends, Unix ms.
    pub expires_at: i64,
}

/// A new random session token (43 characters of base64url).
fn new_session_token() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The stored form of a session token.
pub fn session_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn token_from_headers(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let (scheme, token) = v.split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned());
    }
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.to_owned())
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Some(token) = token_from_headers(&parts.headers) else {
            return Err(ApiError::Unauthorized("log in first (session cookie or Authorization: Bearer)".into()));
        };
        let hash = session_hash(&token);
        match state.accounts.session_user(&hash, state.clock.now()).await.map_err(anyhow::Error::from)? {
            Some((user, expires_at)) => Ok(CurrentUser { user, session_hash: hash, expires_at }),
            None => Err(ApiError::Unauthorized("session expired or revoked; log in again".into())),
        }
    }
}

fn session_cookie(state: &AppState, token: &str, max_age: Duration) -> HeaderValue {
    let secure = if state.config.http.cookies_secure() { "; Secure" } else { "" };
    let v = format!("{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}", max_age.as_secs());
    // Tokens are base64url, so the cookie is plain ASCII.
    HeaderValue::from_str(&v).expect("cookie is ASCII")
}

/// `POST /api/v1/auth/login` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// The username.
    pub username: String,
    /// The password.
    pub password: String,
}

/// A new session.
#[derive(Debug, Serialize, ToSchema)]
pub struct LoginResponse {
    /// The session token, for `Authorization: Bearer` (the UI uses the cookie instead).
    pub token: String,
    /// When the session ends, Unix ms.
    pub expires_at: i64,
    /// Who logged in.
    pub user: User,
}

/// Logs in with a username and password.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in; also sets the session cookie", body = LoginResponse),
        (status = 401, description = "Wrong username or password, or account disabled", body = ErrorBody),
        (status = 429, description = "Too many failed attempts for this username", body = ErrorBody),
    ))]
pub async fn login(State(state): State<AppState>, client: ClientAddr, ApiJson(req): ApiJson<LoginRequest>) -> Result<Response, ApiError> {
    let now = state.clock.now();
    let wrong = || ApiError::Unauthorized("wrong username or password".into());
    let Ok(username) = Username::parse(&req.username) else {
        return Err(wrong());
    };
    if let Some(wait) = state.throttle.blocked_for(username.as_str(), now) {
        state.metrics.login(false);
        return Err(ApiError::TooManyRequests(format!("too many failed logins; try again in {} s", wait.as_secs().max(1))));
    }
    let found = state.accounts.credentials(&username).await.map_err(anyhow::Error::from)?;
    let hash = found.as_ref().map_or_else(|| password::decoy_hash().to_owned(), |(_, h)| h.clone());
    let ok = password::verify_blocking(hash, req.password).await;
    let user = match found {
        Some((user, _)) if ok && !user.disabled => user,
        _ => {
            state.throttle.failed(username.as_str(), now);
            state.metrics.login(false);
            tracing::info!(username = %Pii::new(username.as_str()), client = %client.pii(), "login refused");
            return Err(wrong());
        }
    };
    state.throttle.succeeded(username.as_str());
    let token = new_session_token();
    let ttl = state.config.auth.session_ttl;
    let expires = now + ttl;
    state.accounts.create_session(&user.id, &session_hash(&token), now, expires).await.map_err(anyhow::Error::from)?;
    state.metrics.login(true);
    tracing::info!(user = %user.id, role = %user.role, client = %client.pii(), "logged in");
    let cookie = session_cookie(&state, &token, ttl);
    let body = LoginResponse { token, expires_at: unix_millis(expires), user };
    Ok(([(SET_COOKIE, cookie)], Json(body)).into_response())
}

/// Ends the current session and clears the cookie.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    responses((status = 204, description = "Logged out"), (status = 401, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn logout(State(state): State<AppState>, me: CurrentUser) -> Result<Response, ApiError> {
    state.accounts.delete_session(&me.session_hash).await.map_err(anyhow::Error::from)?;
    tracing::info!(user = %me.user.id, "logged out");
    let clear = session_cookie(&state, "", Duration::ZERO);
    Ok((StatusCode::NO_CONTENT, [(SET_COOKIE, clear)]).into_response())
}

/// The current user.
#[utoipa::path(get, path = "/api/v1/me", tag = "auth",
    responses((status = 200, body = User), (status = 401, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn me(me: CurrentUser) -> Json<User> {
    Json(me.user)
}

/// `PUT /api/v1/me/locale` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LocaleRequest {
    /// zh-CN, en, bo or ug.
    pub locale: Locale,
}

/// Sets the current user's UI language.
#[utoipa::path(put, path = "/api/v1/me/locale", tag = "auth", request_body = LocaleRequest,
    responses((status = 200, body = User), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn set_locale(
    State(state): State<AppState>,
    me: CurrentUser,
    ApiJson(req): ApiJson<LocaleRequest>,
) -> Result<Json<User>, ApiError> {
    let changes = UserChanges { locale: Some(req.locale), ..Default::default() };
    let user = state.accounts.update_user(&me.user.id, changes, state.clock.now()).await.map_err(anyhow::Error::from)?;
    user.map(Json).ok_or_else(|| ApiError::NotFound("account no longer exists".into()))
}

/// `PUT /api/v1/me/password` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    /// The password in use now.
    pub current_password: String,
    /// The new one, 8-256 characters.
    pub new_password: String,
}

/// Changes the current user's password; every session of the account ends, this one included.
#[utoipa::path(put, path = "/api/v1/me/password", tag = "auth", request_body = PasswordChange,
    responses((status = 204, description = "Changed; log in again"), (status = 401, body = ErrorBody),
        (status = 403, description = "Current password wrong", body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn change_password(
    State(state): State<AppState>,
    me: CurrentUser,
    ApiJson(req): ApiJson<PasswordChange>,
) -> Result<Response, ApiError> {
    check_password_strength("new_password", &req.new_password)?;
    let (_, hash) = state
        .accounts
        .credentials(&me.user.username)
        .await
        .map_err(anyhow::Error::from)?
        .ok_or_else(|| ApiError::NotFound("account no longer exists".into()))?;
    if !password::verify_blocking(hash, req.current_password).await {
        return Err(ApiError::Forbidden("current password is wrong".into()));
    }
    let new_hash = password::hash_blocking(req.new_password).await?;
    let changes = UserChanges { password_hash: Some(new_hash), ..Default::default() };
    state.accounts.update_user(&me.user.id, changes, state.clock.now()).await.map_err(anyhow::Error::from)?;
    tracing::info!(user = %me.user.id, "password changed; sessions ended");
    let clear = session_cookie(&state, "", Duration::ZERO);
    Ok((StatusCode::NO_CONTENT, [(SET_COOKIE, clear)]).into_response())
}
