//! Mounting the SFU's WHIP/WHEP routes: bearer credentials are join tokens, checked by the one
//! verifier in `tongxin_common`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use tongxin_common::{Clock, JoinGrant, TokenKey};
use tongxin_sfu::MediaServer;
use tongxin_sfu::http::{AuthError, Authorizer, WhipState};

use crate::state::AppState;

/// Accepts join tokens signed with the server's key.
pub struct JoinTokenAuthorizer {
    key: Arc<TokenKey>,
    clock: Clock,
}

impl Authorizer for JoinTokenAuthorizer {
    fn authorize<'a>(&'a self, bearer: &'a str) -> Pin<Box<dyn Future<Output = Result<JoinGrant, AuthError>> + Send + 'a>> {
        Box::pin(async move { self.key.verify(bearer, self.clock.now()).map(|v| v.grant).map_err(|e| AuthError(e.to_string())) })
    }
}

/// `/whip/{room}` and `/whep/{room}` over `media`.
pub fn router<S: Clone + Send + Sync + 'static>(state: &AppState, media: MediaServer) -> Router<S> {
    let auth = JoinTokenAuthorizer { key: state.token_key.clone(), clock: state.clock.clone() };
    tongxin_sfu::http::router(WhipState::new(media, Arc::new(auth))).with_state(())
}
