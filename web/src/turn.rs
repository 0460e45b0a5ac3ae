//! TURN relays for school and hospital networks that block UDP or allow only outbound TCP 443.
//!
//! Tongxin does not relay itself: it hands out short-lived credentials for a coturn configured
//! with `use-auth-secret` and the same `static-auth-secret` (the "TURN REST API" scheme): the
//! username is `<expiry unix seconds>:<label>`, the password base64(HMAC-SHA1(secret, username)).
//! coturn recomputes the password and refuses it once the expiry has passed, so a credential
//! needs no database and a leaked one dies on its own.
//!
//! Pages get the servers in join responses and from `POST /api/v1/ice-servers` (with a join
//! token); WHIP and WHEP answers carry them as `Link: <turn:…>; rel="ice-server"` headers
//! (RFC 9725 §4.6).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::routing::post;
use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use serde::Serialize;
use utoipa::ToSchema;

use crate::config::TurnConfig;
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// One entry of `RTCConfiguration.iceServers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct IceServer {
    /// `stun:`, `turn:` or `turns:` URLs of one server.
    pub urls: Vec<String>,
    /// The TURN username (`<expiry>:<label>`); absent for STUN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The TURN password; absent for STUN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// ICE servers and when their credentials stop working.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IceServers {
    /// For `new RTCPeerConnection({iceServers})`; empty when no TURN or STUN is configured.
    pub ice_servers: Vec<IceServer>,
    /// When the TURN credentials expire, Unix ms (absent without TURN).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

/// The configured servers, with TURN credentials for `label` valid from `now` for the
/// configured lifetime. `label` ends up in coturn's log: pass an opaque id, never a name.
pub fn ice_servers(config: &TurnConfig, label: &str, now: SystemTime) -> IceServers {
    let (stun, turn): (Vec<String>, Vec<String>) = config.urls.iter().cloned().partition(|u| u.starts_with("stun:"));
    let mut servers = Vec::new();
    if !stun.is_empty() {
        servers.push(IceServer { urls: stun, username: None, credential: None });
    }
    let mut expires_at = None;
    if let (false, Some(secret)) = (turn.is_empty(), &config.secret) {
        let expiry = now + config.credential_ttl;
        let (username, credential) = credential(secret, label, expiry);
        servers.push(IceServer { urls: turn, username: Some(username), credential: Some(credential) });
        expires_at = Some(tongxin_common::unix_millis(expiry));
    }
    IceServers { ice_servers: servers, expires_at }
}

/// The TURN REST username and password for `label`, valid until `expiry`.
pub fn credential(secret: &str, label: &str, expiry: SystemTime) -> (String, String) {
    let secs = expiry.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs();
    // coturn splits the username at the first ':'; a label may not add another one.
    let label: String = label.chars().map(|c| if c == ':' { '_' } else { c }).take(64).collect();
    let username = format!("{secs}:{label}");
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(username.as_bytes());
    let password = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    (username, password)
}

/// The servers as RFC 9725 `Link` header values.
pub fn link_headers(servers: &IceServers) -> Vec<HeaderValue> {
    let mut values = Vec::new();
    for server in &servers.ice_servers {
        for url in &server.urls {
            let mut v = format!("<{url}>; rel=\"ice-server\"");
            if let (Some(user), Some(pass)) = (&server.username, &server.credential) {
                v.push_str(&format!("; username=\"{user}\"; credential=\"{pass}\"; credential-type=\"password\""));
            }
            // Configured URLs and base64 credentials are plain ASCII; anything else is skipped.
            if let Ok(v) = HeaderValue::from_str(&v) {
                values.push(v);
            }
        }
    }
    values
}

/// `POST /api/v1/ice-servers`.
pub fn router() -> axum::Router<AppState> {
    axum::Router::new().route("/ice-servers", post(for_join_token))
}

/// ICE servers for the holder of a valid join token (the room page asks before connecting).
#[utoipa::path(post, path = "/api/v1/ice-servers", tag = "rooms",
    responses((status = 200, body = IceServers), (status = 401, body = ErrorBody, description = "no valid join token")),
    security(("bearer" = [])))]
pub async fn for_join_token(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<IceServers>, ApiError> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError::Unauthorized("send the join token as `Authorization: Bearer <token>`".into()))?;
    let now = state.clock.now();
    let grant = state.token_key.verify(bearer.trim(), now).map_err(|e| ApiError::Unauthorized(e.to_string()))?.grant;
    Ok(Json(ice_servers(&state.config.turn, &label(grant.room.as_str(), grant.identity.as_str()), now)))
}

/// An opaque label for a participant: coturn logs usernames, and identities may hold names.
pub fn label(room: &str, identity: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(format!("{room}\n{identity}").as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(urls: &[&str], secret: Option<&str>) -> TurnConfig {
        TurnConfig {
            urls: urls.iter().map(|u| u.to_string()).collect(),
            secret: secret.map(str::to_owned),
            credential_ttl: Duration::from_secs(3600),
        }
    }

    #[test]
    fn credentials_follow_the_turn_rest_scheme() {
        // Checked against `echo -n "1796090400:abc" | openssl dgst -binary -sha1 -hmac north-wind | base64`.
        let expiry = UNIX_EPOCH + Duration::from_secs(1_796_090_400);
        let (user, pass) = credential("north-wind", "abc", expiry);
        assert_eq!(user, "1796090400:abc");
        assert_eq!(pass, "mntk43znWjgeuNQbPoh/cEO/BHI=");
        assert_eq!(credential("north-wind", "a:b", expiry).0, "1796090400:a_b", "one ':' only");
    }

    #[test]
    fn stun_and_turn_servers_and_their_link_headers() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let c = config(
            &["stun:turn.example.org:3478", "turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:443?transport=tcp"],
            Some("s"),
        );
        let s = ice_servers(&c, "p1", now);
        assert_eq!(s.ice_servers.len(), 2);
        assert_eq!(s.ice_servers[0], IceServer { urls: vec!["stun:turn.example.org:3478".into()], username: None, credential: None });
        assert_eq!(s.ice_servers[1].urls.len(), 2);
        assert_eq!(s.ice_servers[1].username.as_deref(), Some("1800003600:p1"));
        assert_eq!(s.expires_at, Some(1_800_003_600_000));
        let links = link_headers(&s);
        assert_eq!(links.len(), 3);
        assert_eq!(links[0], "<stun:turn.example.org:3478>; rel=\"ice-server\"");
        let turns = links[2].to_str().unwrap();
        assert!(
            turns.starts_with("<turns:turn.example.org:443?transport=tcp>; rel=\"ice-server\"; username=\"1800003600:p1\"; credential=\""),
            "{turns}"
        );
        assert!(turns.ends_with("credential-type=\"password\""), "{turns}");

        let none = ice_servers(&config(&[], None), "p1", now);
        assert!(none.ice_servers.is_empty() && none.expires_at.is_none() && link_headers(&none).is_empty());
    }

    #[test]
    fn labels_are_opaque_and_stable() {
        assert_eq!(label("lesson-1", "student:42"), label("lesson-1", "student:42"));
        assert_ne!(label("lesson-1", "student:42"), label("lesson-1", "student:43"));
        assert_eq!(label("r", "王小明").len(), 16);
    }
}
