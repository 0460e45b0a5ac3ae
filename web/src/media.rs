//! Mounting the SFU's routes (WHIP, WHEP and the room signalling WebSocket): bearer credentials are
//! join tokens (checked by the one verifier in `tongxin_common`) or stream keys (looked up in the database).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
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
pub fn router<S: Clone + Send + Sync + 'static>(state: &AppState, media: MediaServer) -> Router<S> {
    let auth = BearerAuthorizer { key: state.token_key.clone(), db: state.db.clone(), clock: state.clock.clone() };
    let whip = WhipState::new(media, Arc::new(auth));
    tongxin_sfu::http::router(whip.clone()).merge(tongxin_sfu::ws::router(whip)).with_state(())
}
