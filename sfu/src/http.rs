//! WHIP (RFC 9725) and WHEP endpoints: an SDP offer in, `201 Created` with the answer and an
//! unguessable session URL out; `DELETE` on that URL ends the session.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use tongxin_common::{Identity, JoinGrant, RoomName};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::core::{PeerId, SfuError, SfuEvent};
use crate::shell::MediaServer;

/// Why a bearer credential was refused.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AuthError(pub String);

/// Turns a bearer credential (a join token, later also a stream key) into a grant.
pub trait Authorizer: Send + Sync + 'static {
    /// The grant the credential carries, or why it is refused.
    fn authorize<'a>(&'a self, bearer: &'a str) -> Pin<Box<dyn Future<Output = Result<JoinGrant, AuthError>> + Send + 'a>>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Whip,
    Whep,
}

#[derive(Debug, Clone)]
struct Entry {
    peer: PeerId,
    kind: Kind,
    room: RoomName,
    identity: Identity,
}

/// What the WHIP/WHEP routes share.
#[derive(Clone)]
pub struct WhipState {
    media: MediaServer,
    auth: Arc<dyn Authorizer>,
    sessions: Arc<Mutex<HashMap<String, Entry>>>,
}

impl WhipState {
    /// State over a running media server. Session URLs of peers the core removes on its own
    /// (replaced, timed out, failed) are forgotten as the removals happen.
    pub fn new(media: MediaServer, auth: Arc<dyn Authorizer>) -> Self {
        let sessions: Arc<Mutex<HashMap<String, Entry>>> = Arc::default();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let mut events = media.events();
            let weak = Arc::downgrade(&sessions);
            runtime.spawn(async move {
                loop {
                    let removed = match events.recv().await {
                        Ok(SfuEvent::Removed { peer, .. }) => Some(peer),
                        Ok(_) => None,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => None,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                    };
                    let Some(sessions) = weak.upgrade() else { break };
                    if let Some(peer) = removed {
                        sessions.lock().unwrap_or_else(|p| p.into_inner()).retain(|_, e| e.peer != peer);
                    }
                }
            });
        }
        WhipState { media, auth, sessions }
    }

    /// The media server.
    pub fn media(&self) -> &MediaServer {
        &self.media
    }

    /// The credential checker.
    pub(crate) fn authorizer(&self) -> &dyn Authorizer {
        self.auth.as_ref()
    }
}

/// `/whip/{room}`, `/whep/{room}` and their session URLs, with CORS so a page on another origin
/// can publish and play.
pub fn router(state: WhipState) -> Router {
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::mirror_request())
        .allow_methods([Method::POST, Method::DELETE, Method::PATCH, Method::OPTIONS])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::IF_MATCH])
        .expose_headers([header::LOCATION, header::LINK, header::ETAG, header::RETRY_AFTER])
        .max_age(Duration::from_secs(3600));
    Router::new()
        .route("/whip/{room}", post(whip))
        .route("/whep/{room}", post(whep))
        .route("/probe/{room}", post(probe))
        .route("/whip/{room}/{session}", any(session))
        .route("/whep/{room}/{session}", any(session))
        .layer(cors)
        .with_state(state)
}

/// A refused WHIP/WHEP request, answered as `{"error":{"code","message"}}` like the REST API.
#[derive(Debug)]
pub struct WhipError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<&'static str>,
}

fn error(status: StatusCode, code: &'static str, message: impl Into<String>) -> WhipError {
    WhipError { status, code, message: message.into(), retry_after: None }
}

impl IntoResponse for WhipError {
    fn into_response(self) -> Response {
        let body = format!("{{\"error\":{{\"code\":\"{}\",\"message\":{}}}}}", self.code, json_string(&self.message));
        let mut res = (self.status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
        if let Some(after) = self.retry_after {
            res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(after));
        }
        if self.status == StatusCode::METHOD_NOT_ALLOWED {
            res.headers_mut().insert(header::ALLOW, HeaderValue::from_static("DELETE"));
        }
        res
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn sfu_error(e: SfuError) -> WhipError {
    match e {
        SfuError::BadSdp(m) => error(StatusCode::BAD_REQUEST, "bad_request", m),
        SfuError::UnusableSdp(m) => error(StatusCode::UNPROCESSABLE_ENTITY, "validation", m),
        SfuError::NotAllowed(m) => error(StatusCode::FORBIDDEN, "forbidden", m),
        SfuError::NoPublisher => {
            WhipError { retry_after: Some("5"), ..error(StatusCode::NOT_FOUND, "not_found", "nobody is publishing in this room yet") }
        }
        SfuError::NoSuchPeer => error(StatusCode::NOT_FOUND, "not_found", "no such session"),
        e @ SfuError::RoomFull(_) => error(StatusCode::CONFLICT, "room_full", e.to_string()),
        e @ SfuError::TooManyRooms(_) => {
            WhipError { retry_after: Some("30"), ..error(StatusCode::SERVICE_UNAVAILABLE, "too_many_rooms", e.to_string()) }
        }
        SfuError::Internal => {
            error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal media server error; the server log has the details")
        }
    }
}

async fn grant_for(state: &WhipState, headers: &HeaderMap, room: &RoomName) -> Result<JoinGrant, WhipError> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_owned());
    let Some(bearer) = bearer else {
        return Err(error(StatusCode::UNAUTHORIZED, "unauthorized", "send the join token as Authorization: Bearer <token>"));
    };
    let grant = state.auth.authorize(&bearer).await.map_err(|e| error(StatusCode::UNAUTHORIZED, "unauthorized", e.0))?;
    if &grant.room != room {
        return Err(error(StatusCode::FORBIDDEN, "forbidden", "this token is for another room"));
    }
    Ok(grant)
}

/// Checks the content type and reads the body as an SDP offer.
fn offer_from(headers: &HeaderMap, body: &Bytes) -> Result<String, WhipError> {
    let is_sdp = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/sdp")));
    if !is_sdp {
        return Err(error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "expected Content-Type: application/sdp"));
    }
    let text = std::str::from_utf8(body).map_err(|_| error(StatusCode::BAD_REQUEST, "bad_request", "the SDP offer is not UTF-8"))?;
    if text.trim().is_empty() {
        return Err(error(StatusCode::BAD_REQUEST, "bad_request", "the SDP offer is empty"));
    }
    Ok(text.to_owned())
}

fn parse_room(room: &str) -> Result<RoomName, WhipError> {
    RoomName::parse(room).map_err(|e| error(StatusCode::NOT_FOUND, "not_found", e.to_string()))
}

fn new_session_id() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn created(state: &WhipState, kind: Kind, room: RoomName, identity: Identity, session: crate::core::Session) -> Response {
    let id = new_session_id();
    let prefix = if kind == Kind::Whip { "whip" } else { "whep" };
    let location = format!("/{prefix}/{room}/{id}");
    state.sessions.lock().unwrap_or_else(|p| p.into_inner()).insert(id, Entry { peer: session.peer, kind, room, identity });
    let mut res = (StatusCode::CREATED, [(header::CONTENT_TYPE, "application/sdp")], session.answer).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res
}

async fn whip(State(state): State<WhipState>, Path(room): Path<String>, headers: HeaderMap, body: Bytes) -> Result<Response, WhipError> {
    let room = parse_room(&room)?;
    let grant = grant_for(&state, &headers, &room).await?;
    if !grant.can_publish {
        return Err(error(StatusCode::FORBIDDEN, "forbidden", "this token does not allow publishing"));
    }
    let offer = offer_from(&headers, &body)?;
    let session = state.media.publish(grant.clone(), offer).await.map_err(sfu_error)?;
    tracing::info!(room = %room, peer = session.peer.0, "WHIP publisher started");
    Ok(created(&state, Kind::Whip, room, grant.identity, session))
}

async fn whep(
    State(state): State<WhipState>,
    Path(room): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, WhipError> {
    let room = parse_room(&room)?;
    let grant = grant_for(&state, &headers, &room).await?;
    if !grant.can_subscribe {
        return Err(error(StatusCode::FORBIDDEN, "forbidden", "this token does not allow subscribing"));
    }
    let target = query
        .get("participant")
        .map(|p| Identity::parse(p))
        .transpose()
        .map_err(|e| error(StatusCode::BAD_REQUEST, "bad_request", e.to_string()))?;
    let offer = offer_from(&headers, &body)?;
    let session = state.media.subscribe(grant.clone(), target, offer).await.map_err(sfu_error)?;
    tracing::info!(room = %room, peer = session.peer.0, "WHEP player started");
    Ok(created(&state, Kind::Whep, room, grant.identity, session))
}

/// A network check before joining (`POST /probe/{room}`, any valid join token for the room): the
/// offer carries a data channel only; the `201` answer has no session URL, the page closes the
/// connection when it has seen which path connected.
async fn probe(State(state): State<WhipState>, Path(room): Path<String>, headers: HeaderMap, body: Bytes) -> Result<Response, WhipError> {
    let room = parse_room(&room)?;
    let grant = grant_for(&state, &headers, &room).await?;
    let offer = offer_from(&headers, &body)?;
    let session = state.media.probe(grant, offer).await.map_err(sfu_error)?;
    tracing::debug!(room = %room, peer = session.peer.0, "network check started");
    Ok((StatusCode::CREATED, [(header::CONTENT_TYPE, "application/sdp")], session.answer).into_response())
}

/// The session URL: `DELETE` ends it; trickle ICE and restarts (`PATCH`) are not supported, so
/// they and every other method get `405` with `Allow: DELETE`.
async fn session(
    State(state): State<WhipState>,
    method: Method,
    Path((room, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, WhipError> {
    if method != Method::DELETE {
        return Err(error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "a session URL only accepts DELETE"));
    }
    let room = parse_room(&room)?;
    let grant = grant_for(&state, &headers, &room).await?;
    let entry = state.sessions.lock().unwrap_or_else(|p| p.into_inner()).get(&id).cloned();
    let Some(entry) = entry.filter(|e| e.room == room) else {
        return Err(error(StatusCode::NOT_FOUND, "not_found", "no such session"));
    };
    if entry.identity != grant.identity {
        return Err(error(StatusCode::FORBIDDEN, "forbidden", "this session belongs to another participant"));
    }
    state.sessions.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
    match state.media.end(entry.peer).await {
        Ok(()) | Err(SfuError::NoSuchPeer) => {
            tracing::info!(room = %room, peer = entry.peer.0, kind = ?entry.kind, "session ended by DELETE");
            Ok(StatusCode::OK.into_response())
        }
        Err(e) => Err(sfu_error(e)),
    }
}
