//! Mounting the SFU's routes (WHIP, WHEP and the room signalling WebSocket): bearer credentials are
//! join tokens (checked by the one verifier in `tongxin_common`) or stream keys (looked up in the database).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use tongxin_common::{Clock, Db, JoinGrant, TokenKey};
use tongxin_sfu::MediaServer;
use tongxin_sfu::http::{AuthError, Authorizer, WhipState};

use crate::state::AppState;
use crate::stream_keys;

/// Accepts join tokens signed with the server's key, and live stream keys.
pub struct BearerAuthorizer {
    key: Arc<TokenKey>,
    db: Db,
    clock: Clock,
}

impl Authorizer for BearerAuthorizer {
    fn authorize<'a>(&'a self, bearer: &'a str) -> Pin<Box<dyn Future<Output = Result<JoinGrant, AuthError>> + Send + 'a>> {
        Box::pin(async move {
            if bearer.starts_with(stream_keys::PREFIX) {
                return match stream_keys::grant_for(&self.db, bearer, self.clock.now()).await {
                    Ok(Some(grant)) => Ok(grant),
                    Ok(None) => Err(AuthError("unknown or revoked stream key".into())),
                    Err(e) => {
                        tracing::error!(error = %e, "stream key lookup failed");
                        Err(AuthError("cannot check the stream key right now".into()))
                    }
                };
            }
            self.key.verify(bearer, self.clock.now()).map(|v| v.grant).map_err(|e| AuthError(e.to_string()))
        })
    }
}

/// `/whip/{room}`, `/whep/{room}` and the room signalling WebSocket `/api/v1/rtc` over `media`.
/// A WHIP or WHEP session created (`201`) also gets the TURN servers as `Link` headers.
pub fn router<S: Clone + Send + Sync + 'static>(state: &AppState, media: MediaServer) -> Router<S> {
    let auth = BearerAuthorizer { key: state.token_key.clone(), db: state.db.clone(), clock: state.clock.clone() };
    let whip = WhipState::new(media, Arc::new(auth));
    let sessions = tongxin_sfu::http::router(whip.clone()).layer(axum::middleware::from_fn_with_state(state.clone(), ice_server_links));
    sessions.merge(tongxin_sfu::ws::router(whip)).with_state(())
}

/// Adds RFC 9725 `Link: <turn:…>; rel="ice-server"` headers to a newly created WHIP/WHEP session.
async fn ice_server_links(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    if response.status() == StatusCode::CREATED && !state.config.turn.urls.is_empty() {
        // The session's own id makes the label: opaque, and distinct per session.
        let label = response.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("whip").to_owned();
        let servers = crate::turn::ice_servers(&state.config.turn, &crate::turn::label("whip", &label), state.clock.now());
        for value in crate::turn::link_headers(&servers) {
            response.headers_mut().append(header::LINK, value);
        }
    }
    response
}
