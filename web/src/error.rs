//! The one error type of the HTTP API: every failure becomes `{"error":{"code","message"}}`
//! with the right status, and its cause is logged here, once.

use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An API failure.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is not well formed (bad JSON, wrong content type).
    #[error("{0}")]
    BadRequest(String),
    /// No credentials, or expired or forged ones.
    #[error("{0}")]
    Unauthorized(String),
    /// Credentials are fine but the role is not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// Nothing is there.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with existing data (a taken username).
    #[error("{0}")]
    Conflict(String),
    /// A field's value is not acceptable.
    #[error("{field}: {message}")]
    Validation {
        /// The field, as named in the request body.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The path exists but not with this method.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// Too many attempts.
    #[error("{0}")]
    TooManyRequests(String),
    /// A domain rule said no (e.g. a lesson not open yet); `code` names the rule for clients.
    #[error("{message}")]
    Refused {
        /// 403 or 409.
        status: StatusCode,
        /// The rule's stable code, e.g. `not_open_yet`.
        code: &'static str,
        /// Why, for people.
        message: String,
    },
    /// Our fault; the cause is logged, not shown.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    /// A validation error for `field`.
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Validation { field: field.into(), message: message.into() }
    }

    /// The HTTP status this error maps to.
    pub fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Refused { status, .. } => *status,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::Validation { .. } => "validation",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::TooManyRequests(_) => "too_many_requests",
            ApiError::Refused { code, .. } => code,
            ApiError::Internal(_) => "internal",
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::Internal(e.into())
    }
}

/// The body of every error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable code: bad_request, unauthorized, forbidden, not_found, conflict, validation,
    /// method_not_allowed, too_many_requests, internal.
    pub code: String,
    /// A message for people.
    pub message: String,
    /// For `validation`: the field at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let message = match &self {
            ApiError::Internal(cause) => {
                tracing::error!(error = format!("{cause:#}"), "internal error");
                "internal error; the server log has the details".to_owned()
            }
            other => {
                tracing::debug!(code = other.code(), "request refused");
                other.to_string()
            }
        };
        let field = match &self {
            ApiError::Validation { field, .. } => Some(field.clone()),
            _ => None,
        };
        let body = ErrorBody { error: ErrorDetail { code: self.code().into(), message, field } };
        (status, axum::Json(body)).into_response()
    }
}

/// `axum::Json`, but its rejections are [`ApiError`]s: bad JSON → 400, a field of the wrong
/// shape → 422 naming the field.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json")));
        if !is_json {
            return Err(ApiError::BadRequest("expected Content-Type: application/json".into()));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::BadRequest(format!("cannot read the request body: {}", e.body_text())))?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Parses a JSON body, telling syntax errors (400) from fields of the wrong shape (422).
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(v) => v,
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if !inner.is_data() {
                return Err(ApiError::BadRequest(format!("request body is not valid JSON: {inner}")));
            }
            let message = strip_position(&inner.to_string());
            let field = if path != "." && !path.is_empty() { path } else { missing_field(&message).unwrap_or_else(|| "body".into()) };
            return Err(ApiError::validation(field, message));
        }
    };
    de.end().map_err(|e| ApiError::BadRequest(format!("request body is not valid JSON: {e}")))?;
    Ok(value)
}

/// serde_json appends " at line 1 column 42"; a person reading the message does not need it.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// The field named by serde's "missing field `x`" or "unknown field `x`, expected …".
fn missing_field(detail: &str) -> Option<String> {
    let rest = detail.strip_prefix("missing field `").or_else(|| detail.strip_prefix("unknown field `"))?;
    Some(rest.split('`').next()?.to_owned())
}
