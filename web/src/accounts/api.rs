//! The admin API for accounts: `/api/v1/admin/users`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use tongxin_common::Pii;
use utoipa::ToSchema;

use super::store::{NewUser, StoreError, UserChanges};
use super::{AccountRole, Locale, User, UserId, Username, check_password_strength, parse_display_name};
use crate::auth::{CurrentUser, Policy, password};
use crate::error::{ApiError, ApiJson, ErrorBody};
use crate::state::AppState;

/// The routes under `/api/v1`.
pub fn router() -> Router<AppState> {
    Router::new().route("/admin/users", get(list_users).post(create_user)).route("/admin/users/{id}", get(get_user).patch(update_user))
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::UsernameTaken => ApiError::Conflict("that username is taken".into()),
            other => ApiError::Internal(other.into()),
        }
    }
}

/// `POST /api/v1/admin/users` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// 3-64 characters of a-z, 0-9, '.', '_' or '-'.
    pub username: String,
    /// The name shown in the UI.
    pub display_name: String,
    /// The account role.
    pub role: AccountRole,
    /// 8-256 characters.
    pub password: String,
    /// The UI language; zh-CN if absent.
    #[serde(default)]
    pub locale: Option<Locale>,
}

/// Lists every account.
#[utoipa::path(get, path = "/api/v1/admin/users", tag = "admin",
    responses((status = 200, body = [User]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn list_users(State(state): State<AppState>, me: CurrentUser) -> Result<Json<Vec<User>>, ApiError> {
    me.require(Policy::ManageAccounts)?;
    Ok(Json(state.accounts.list_users().await?))
}

/// Creates an account.
#[utoipa::path(post, path = "/api/v1/admin/users", tag = "admin", request_body = CreateUser,
    responses((status = 201, body = User), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "Username taken", body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn create_user(
    State(state): State<AppState>,
    me: CurrentUser,
    ApiJson(req): ApiJson<CreateUser>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    me.require(Policy::ManageAccounts)?;
    let username = Username::parse(&req.username)?;
    let display_name = parse_display_name(&req.display_name)?;
    check_password_strength("password", &req.password)?;
    let password_hash = password::hash_blocking(req.password).await?;
    let new = NewUser { username, display_name, role: req.role, password_hash, locale: req.locale.unwrap_or(Locale::ZhCn) };
    let user = state.accounts.create_user(new, state.clock.now()).await?;
    tracing::info!(by = %me.user.id, user = %user.id, role = %user.role, name = %Pii::new(&user.display_name), "account created");
    Ok((StatusCode::CREATED, Json(user)))
}

/// One account.
#[utoipa::path(get, path = "/api/v1/admin/users/{id}", tag = "admin", params(("id" = String, Path, description = "Account id")),
    responses((status = 200, body = User), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn get_user(State(state): State<AppState>, me: CurrentUser, Path(id): Path<String>) -> Result<Json<User>, ApiError> {
    me.require(Policy::ManageAccounts)?;
    state.accounts.user(&UserId(id)).await?.map(Json).ok_or_else(|| ApiError::NotFound("no such account".into()))
}

/// `PATCH /api/v1/admin/users/{id}` body: only the fields present change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    /// A new shown name.
    pub display_name: Option<String>,
    /// A new role (ends the account's sessions).
    pub role: Option<AccountRole>,
    /// Disable (ends the account's sessions) or re-enable.
    pub disabled: Option<bool>,
    /// A new password (ends the account's sessions).
    pub password: Option<String>,
    /// A new UI language.
    pub locale: Option<Locale>,
}

/// Changes an account.
#[utoipa::path(patch, path = "/api/v1/admin/users/{id}", tag = "admin", params(("id" = String, Path, description = "Account id")),
    request_body = UpdateUser,
    responses((status = 200, body = User), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "Would leave no enabled admin", body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("session" = []), ("bearer" = [])))]
pub async fn update_user(
    State(state): State<AppState>,
    me: CurrentUser,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateUser>,
) -> Result<Json<User>, ApiError> {
    me.require(Policy::ManageAccounts)?;
    let id = UserId(id);
    let display_name = req.display_name.as_deref().map(parse_display_name).transpose()?;
    if let Some(p) = &req.password {
        check_password_strength("password", p)?;
    }
    let target = state.accounts.user(&id).await?.ok_or_else(|| ApiError::NotFound("no such account".into()))?;
    let demotes_admin = target.role == AccountRole::Admin
        && !target.disabled
        && (req.disabled == Some(true) || req.role.is_some_and(|r| r != AccountRole::Admin));
    if demotes_admin {
        let admins = state.accounts.list_users().await?;
        let enabled_admins = admins.iter().filter(|u| u.role == AccountRole::Admin && !u.disabled).count();
        if enabled_admins <= 1 {
            return Err(ApiError::Conflict("this is the last enabled admin; create another admin first".into()));
        }
    }
    let password_hash = match req.password {
        Some(p) => Some(password::hash_blocking(p).await?),
        None => None,
    };
    let changes = UserChanges { display_name, role: req.role, disabled: req.disabled, password_hash, locale: req.locale };
    let user =
        state.accounts.update_user(&id, changes, state.clock.now()).await?.ok_or_else(|| ApiError::NotFound("no such account".into()))?;
    tracing::info!(by = %me.user.id, user = %user.id, "account changed");
    Ok(Json(user))
}
