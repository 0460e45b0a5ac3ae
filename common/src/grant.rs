//! Join tokens: signed, short-lived grants to take part in one room.
//!
//! The format is a compact JWT (RFC 7519) signed with HMAC-SHA256. Only `HS256` is accepted;
//! the header's `alg` is checked before anything else is trusted. Time is always an argument,
//! so tests can mint and verify at any instant.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// Who issues join tokens (`iss`).
pub const ISSUER: &str = "tongxin";
/// Who accepts them (`aud`): the media server.
pub const AUDIENCE: &str = "tongxin-room";
/// The longest lifetime a join token may have.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// How far a `nbf` may lie in the future (clock skew between nodes).
const CLOCK_SKEW: u64 = 30;
/// The shortest signing secret accepted.
pub const MIN_SECRET_LEN: usize = 32;

/// A role inside a room. Distinct from account roles: a guest patient has no account at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoomRole {
    /// Runs a lesson.
    Teacher,
    /// A remote classroom's terminal.
    Classroom,
    /// A student, live or at home.
    Student,
    /// Watches without being seen (a school head).
    Observer,
    /// Consults patients.
    Doctor,
    /// A patient in a consult.
    Patient,
    /// A village doctor assisting a consult.
    VillageDoctor,
    /// Anyone else invited.
    Guest,
}

impl RoomRole {
    /// Every room role, in a stable order.
    pub const ALL: [RoomRole; 8] = [
        RoomRole::Teacher,
        RoomRole::Classroom,
        RoomRole::Student,
        RoomRole::Observer,
        RoomRole::Doctor,
        RoomRole::Patient,
        RoomRole::VillageDoctor,
        RoomRole::Guest,
    ];

    /// The wire name (`village_doctor`).
    pub fn as_str(self) -> &'static str {
        match self {
            RoomRole::Teacher => "teacher",
            RoomRole::Classroom => "classroom",
            RoomRole::Student => "student",
            RoomRole::Observer => "observer",
            RoomRole::Doctor => "doctor",
            RoomRole::Patient => "patient",
            RoomRole::VillageDoctor => "village_doctor",
            RoomRole::Guest => "guest",
        }
    }
}

impl fmt::Display for RoomRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for RoomRole {
    type Err = GrantError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RoomRole::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| GrantError::Invalid {
            field: "role",
            reason: format!("unknown room role {s:?}; expected one of {}", RoomRole::ALL.map(RoomRole::as_str).join(", ")),
        })
    }
}

/// A room's name: 1–64 characters of `A–Z a–z 0–9 . _ -`, not starting with `.`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct RoomName(String);

impl RoomName {
    /// Parses a room name.
    pub fn parse(s: &str) -> Result<Self, GrantError> {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if s.is_empty() || s.len() > 64 || s.starts_with('.') || !s.chars().all(ok_char) {
            return Err(GrantError::Invalid {
                field: "room",
                reason: "a room name is 1-64 characters of A-Z, a-z, 0-9, '.', '_' or '-', not starting with '.'".into(),
            });
        }
        Ok(RoomName(s.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl<'de> Deserialize<'de> for RoomName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        RoomName::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A participant's identity in a room: 1–128 printable characters, unique per room.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Identity(String);

impl Identity {
    /// Parses an identity.
    pub fn parse(s: &str) -> Result<Self, GrantError> {
        if s.is_empty() || s.chars().count() > 128 || s.chars().any(char::is_control) || s.trim() != s {
            return Err(GrantError::Invalid {
                field: "identity",
                reason: "an identity is 1-128 printable characters without leading or trailing spaces".into(),
            });
        }
        Ok(Identity(s.to_owned()))
    }

    /// The identity as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl<'de> Deserialize<'de> for Identity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Identity::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// What a join token allows: one identity, in one room, with one room role and these rights.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinGrant {
    /// The room.
    pub room: RoomName,
    /// Who joins (unique in the room).
    pub identity: Identity,
    /// The name others see; personal data, so never logged.
    pub name: Option<String>,
    /// The role in the room.
    pub role: RoomRole,
    /// May publish audio and video.
    pub can_publish: bool,
    /// May receive others' tracks.
    pub can_subscribe: bool,
    /// May send chat and data messages.
    pub can_publish_data: bool,
    /// Not shown to other participants (an observer).
    pub hidden: bool,
}

impl JoinGrant {
    /// Checks the fields that the id types do not: the display name's length.
    pub fn validate(&self) -> Result<(), GrantError> {
        if let Some(name) = &self.name
            && (name.trim().is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control))
        {
            return Err(GrantError::Invalid { field: "name", reason: "a display name is 1-64 printable characters".into() });
        }
        Ok(())
    }
}

/// A grant whose signature and lifetime were checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedGrant {
    /// What it allows.
    pub grant: JoinGrant,
    /// When it was minted.
    pub issued_at: SystemTime,
    /// When it stops being accepted.
    pub expires_at: SystemTime,
    /// A random id, unique per token (`jti`).
    pub token_id: String,
}

/// Why a grant could not be minted or a token not be accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum GrantError {
    /// A field of the grant is not valid.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field's name.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The lifetime asked for is zero or longer than [`MAX_TTL`].
    #[error("ttl must be between 1 second and {} hours", MAX_TTL.as_secs() / 3600)]
    BadTtl,
    /// The token is not a well-formed JWT of ours.
    #[error("malformed token")]
    Malformed,
    /// The header names an algorithm other than HS256.
    #[error("unsupported token algorithm")]
    UnsupportedAlgorithm,
    /// The signature does not match (forged, or signed with another key).
    #[error("bad token signature")]
    BadSignature,
    /// The token's lifetime is over.
    #[error("token expired")]
    Expired,
    /// The token is not valid yet.
    #[error("token not valid yet")]
    NotYetValid,
    /// Wrong issuer or audience.
    #[error("token not meant for this server")]
    WrongAudience,
    /// The signing secret is too short.
    #[error("signing secret must be at least {MIN_SECRET_LEN} bytes")]
    WeakSecret,
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    typ: String,
    kid: String,
}

#[derive(Serialize, Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    sub: Identity,
    room: RoomName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    role: RoomRole,
    can_publish: bool,
    can_subscribe: bool,
    can_publish_data: bool,
    hidden: bool,
    iat: u64,
    nbf: u64,
    exp: u64,
    jti: String,
}

/// The HMAC key that signs and verifies join tokens.
#[derive(Clone)]
pub struct TokenKey {
    id: String,
    secret: Vec<u8>,
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenKey").field("id", &self.id).finish_non_exhaustive()
    }
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl TokenKey {
    /// A key from a secret of at least [`MIN_SECRET_LEN`] bytes.
    pub fn from_secret(secret: &[u8]) -> Result<Self, GrantError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(GrantError::WeakSecret);
        }
        let digest = Sha256::digest(secret);
        let id = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        Ok(TokenKey { id, secret: secret.to_vec() })
    }

    /// A fresh random 32-byte secret.
    pub fn generate_secret() -> [u8; 32] {
        rand::random()
    }

    /// A short public id of the key (`kid`), so a rotated key can be told apart.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes keys of any length, so this cannot fail.
        HmacSha256::new_from_slice(&self.secret).expect("HMAC accepts any key length")
    }

    /// Signs `grant` for `ttl` from `now`.
    pub fn mint(&self, grant: &JoinGrant, now: SystemTime, ttl: Duration) -> Result<String, GrantError> {
        grant.validate()?;
        if ttl.is_zero() || ttl > MAX_TTL {
            return Err(GrantError::BadTtl);
        }
        let iat = unix_secs(now);
        let jti: [u8; 12] = rand::random();
        let header = Header { alg: "HS256".into(), typ: "JWT".into(), kid: self.id.clone() };
        let claims = Claims {
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            sub: grant.identity.clone(),
            room: grant.room.clone(),
            name: grant.name.clone(),
            role: grant.role,
            can_publish: grant.can_publish,
            can_subscribe: grant.can_subscribe,
            can_publish_data: grant.can_publish_data,
            hidden: grant.hidden,
            iat,
            nbf: iat,
            exp: iat + ttl.as_secs().max(1),
            jti: B64.encode(jti),
        };
        // Serializing plain structs of strings, numbers and bools cannot fail.
        let h = B64.encode(serde_json::to_vec(&header).expect("header serializes"));
        let c = B64.encode(serde_json::to_vec(&claims).expect("claims serialize"));
        let signing_input = format!("{h}.{c}");
        let mut mac = self.mac();
        mac.update(signing_input.as_bytes());
        let sig = B64.encode(mac.finalize().into_bytes());
        Ok(format!("{signing_input}.{sig}"))
    }

    /// Checks `token`'s algorithm, signature, issuer, audience and lifetime at `now`.
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<VerifiedGrant, GrantError> {
        let mut parts = token.trim().split('.');
        let (Some(h), Some(c), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(GrantError::Malformed);
        };
        let header: Header = B64.decode(h).ok().and_then(|b| serde_json::from_slice(&b).ok()).ok_or(GrantError::Malformed)?;
        if header.alg != "HS256" {
            return Err(GrantError::UnsupportedAlgorithm);
        }
        let sig = B64.decode(s).map_err(|_| GrantError::Malformed)?;
        let mut mac = self.mac();
        mac.update(h.as_bytes());
        mac.update(b".");
        mac.update(c.as_bytes());
        mac.verify_slice(&sig).map_err(|_| GrantError::BadSignature)?;
        let claims: Claims = B64.decode(c).ok().and_then(|b| serde_json::from_slice(&b).ok()).ok_or(GrantError::Malformed)?;
        if claims.iss != ISSUER || claims.aud != AUDIENCE {
            return Err(GrantError::WrongAudience);
        }
        let now = unix_secs(now);
        if now >= claims.exp {
            return Err(GrantError::Expired);
        }
        if claims.nbf > now + CLOCK_SKEW {
            return Err(GrantError::NotYetValid);
        }
        let grant = JoinGrant {
            room: claims.room,
            identity: claims.sub,
            name: claims.name,
            role: claims.role,
            can_publish: claims.can_publish,
            can_subscribe: claims.can_subscribe,
            can_publish_data: claims.can_publish_data,
            hidden: claims.hidden,
        };
        grant.validate()?;
        Ok(VerifiedGrant {
            grant,
            issued_at: UNIX_EPOCH + Duration::from_secs(claims.iat),
            expires_at: UNIX_EPOCH + Duration::from_secs(claims.exp),
            token_id: claims.jti,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> TokenKey {
        TokenKey::from_secret(&[7u8; 32]).unwrap()
    }

    fn grant() -> JoinGrant {
        JoinGrant {
            room: RoomName::parse("lesson-42").unwrap(),
            identity: Identity::parse("student-7").unwrap(),
            name: Some("卓玛".into()),
            role: RoomRole::Student,
            can_publish: false,
            can_subscribe: true,
            can_publish_data: true,
            hidden: false,
        }
    }

    fn t(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn minted_token_verifies_with_the_same_grant() {
        let tok = key().mint(&grant(), t(1_000_000), Duration::from_secs(3600)).unwrap();
        let v = key().verify(&tok, t(1_000_100)).unwrap();
        assert_eq!(v.grant, grant());
        assert_eq!(v.expires_at, t(1_003_600));
        assert_eq!(v.issued_at, t(1_000_000));
    }

    #[test]
    fn expiry_is_exact() {
        let tok = key().mint(&grant(), t(1000), Duration::from_secs(60)).unwrap();
        assert!(key().verify(&tok, t(1059)).is_ok());
        assert_eq!(key().verify(&tok, t(1060)), Err(GrantError::Expired));
    }

    #[test]
    fn a_token_from_the_future_is_refused_beyond_the_skew() {
        let tok = key().mint(&grant(), t(10_000), Duration::from_secs(600)).unwrap();
        assert!(key().verify(&tok, t(10_000 - CLOCK_SKEW)).is_ok());
        assert_eq!(key().verify(&tok, t(10_000 - CLOCK_SKEW - 1)), Err(GrantError::NotYetValid));
    }

    #[test]
    fn tampered_claims_are_refused() {
        let tok = key().mint(&grant(), t(1000), Duration::from_secs(60)).unwrap();
        let parts: Vec<&str> = tok.split('.').collect();
        let mut claims: serde_json::Value = serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
        claims["can_publish"] = true.into();
        let forged = format!("{}.{}.{}", parts[0], B64.encode(claims.to_string()), parts[2]);
        assert_eq!(key().verify(&forged, t(1001)), Err(GrantError::BadSignature));
    }

    #[test]
    fn another_key_is_refused() {
        let tok = key().mint(&grant(), t(1000), Duration::from_secs(60)).unwrap();
        let other = TokenKey::from_secret(&[8u8; 32]).unwrap();
        assert_eq!(other.verify(&tok, t(1001)), Err(GrantError::BadSignature));
    }

    #[test]
    fn alg_none_is_refused() {
        let tok = key().mint(&grant(), t(1000), Duration::from_secs(60)).unwrap();
        let parts: Vec<&str> = tok.split('.').collect();
        let none = B64.encode(r#"{"alg":"none","typ":"JWT","kid":"x"}"#);
        let forged = format!("{none}.{}.", parts[1]);
        assert_eq!(key().verify(&forged, t(1001)), Err(GrantError::UnsupportedAlgorithm));
    }

    #[test]
    fn garbage_is_malformed() {
        for junk in ["", "abc", "a.b", "a.b.c.d", "!!.??.**"] {
            assert_eq!(key().verify(junk, t(1)), Err(GrantError::Malformed), "{junk}");
        }
    }

    #[test]
    fn ttl_bounds() {
        assert_eq!(key().mint(&grant(), t(1), Duration::ZERO), Err(GrantError::BadTtl));
        assert_eq!(key().mint(&grant(), t(1), MAX_TTL + Duration::from_secs(1)), Err(GrantError::BadTtl));
        assert!(key().mint(&grant(), t(1), MAX_TTL).is_ok());
    }

    #[test]
    fn short_secrets_are_refused() {
        assert_eq!(TokenKey::from_secret(&[1u8; 31]).unwrap_err(), GrantError::WeakSecret);
    }

    #[test]
    fn room_names_and_identities_are_parsed() {
        for ok in ["a", "lesson-42", "clinic_7.consult", &"x".repeat(64)] {
            assert!(RoomName::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".hidden", "has space", "房间", &"x".repeat(65), "a/b"] {
            assert!(RoomName::parse(bad).is_err(), "{bad}");
        }
        assert!(Identity::parse("达瓦 次仁").is_ok());
        for bad in ["", " lead", "trail ", "tab\there"] {
            assert!(Identity::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn room_roles_round_trip() {
        for r in RoomRole::ALL {
            assert_eq!(r.as_str().parse::<RoomRole>().unwrap(), r);
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{}\"", r.as_str()));
        }
        assert!("admin".parse::<RoomRole>().is_err());
    }

    #[test]
    fn overlong_display_names_are_refused() {
        let mut g = grant();
        g.name = Some("x".repeat(65));
        assert!(matches!(key().mint(&g, t(1), Duration::from_secs(5)), Err(GrantError::Invalid { field: "name", .. })));
    }
}
