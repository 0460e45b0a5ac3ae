//! Accounts: staff who log in (admins, teachers, assistants, doctors, village doctors,
//! organizers) and device accounts for classroom terminals.

pub mod api;
pub mod store;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;

pub use store::AccountStore;

/// What an account may do in the product. Not the same as a role inside a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum AccountRole {
    /// Manages accounts and the deployment.
    Admin,
    /// Teaches lessons.
    Teacher,
    /// Assists a remote classroom on site.
    Assistant,
    /// A county hospital doctor.
    Doctor,
    /// A village doctor.
    VillageDoctor,
    /// Schedules courses and enrolments.
    Organizer,
    /// A classroom terminal: one screen and camera for a whole room.
    Device,
}

impl AccountRole {
    /// Every account role.
    pub const ALL: [AccountRole; 7] = [
        AccountRole::Admin,
        AccountRole::Teacher,
        AccountRole::Assistant,
        AccountRole::Doctor,
        AccountRole::VillageDoctor,
        AccountRole::Organizer,
        AccountRole::Device,
    ];

    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountRole::Admin => "admin",
            AccountRole::Teacher => "teacher",
            AccountRole::Assistant => "assistant",
            AccountRole::Doctor => "doctor",
            AccountRole::VillageDoctor => "village_doctor",
            AccountRole::Organizer => "organizer",
            AccountRole::Device => "device",
        }
    }
}

impl fmt::Display for AccountRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for AccountRole {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AccountRole::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| format!("unknown account role {s:?}"))
    }
}

/// A login name: 3–64 characters of `a–z 0–9 . _ -`, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(transparent)]
pub struct Username(String);

impl Username {
    /// Parses a username; upper case is folded to lower case.
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        let s = s.trim().to_ascii_lowercase();
        let ok = (3..=64).contains(&s.len())
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
        if !ok {
            return Err(ApiError::validation("username", "3-64 characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit"));
        }
        Ok(Username(s))
    }

    /// The username as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

/// A UI language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum Locale {
    /// Simplified Chinese, the default.
    #[serde(rename = "zh-CN")]
    ZhCn,
    /// English.
    #[serde(rename = "en")]
    En,
    /// Tibetan.
    #[serde(rename = "bo")]
    Bo,
    /// Uyghur (right to left).
    #[serde(rename = "ug")]
    Ug,
}

impl Locale {
    /// Every supported locale.
    pub const ALL: [Locale; 4] = [Locale::ZhCn, Locale::En, Locale::Bo, Locale::Ug];

    /// The BCP 47 tag.
    pub fn as_str(self) -> &'static str {
        match self {
            Locale::ZhCn => "zh-CN",
            Locale::En => "en",
            Locale::Bo => "bo",
            Locale::Ug => "ug",
        }
    }

    /// Parses a BCP 47 tag Tongxin has translations for.
    pub fn parse(s: &str) -> Option<Locale> {
        Locale::ALL.into_iter().find(|l| l.as_str() == s)
    }
}

/// A random account id (`usr_` and 24 hex digits).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct UserId(pub String);

impl UserId {
    /// A fresh id.
    pub fn generate() -> Self {
        let bytes: [u8; 12] = rand::random();
        UserId(format!("usr_{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()))
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

/// An account as the API shows it (never with its password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct User {
    /// The id.
    pub id: UserId,
    /// The login name.
    pub username: Username,
    /// The name shown in the UI.
    pub display_name: String,
    /// The account role.
    pub role: AccountRole,
    /// The UI language.
    pub locale: Locale,
    /// Disabled accounts cannot log in.
    pub disabled: bool,
    /// Creation time, Unix milliseconds.
    pub created_at: i64,
}

/// Checks a display name: 1–64 printable characters.
pub fn parse_display_name(s: &str) -> Result<String, ApiError> {
    let s = s.trim();
    if s.is_empty() || s.chars().count() > 64 || s.chars().any(char::is_control) {
        return Err(ApiError::validation("display_name", "1-64 printable characters"));
    }
    Ok(s.to_owned())
}

/// Checks a new password: 8–256 characters.
pub fn check_password_strength(field: &str, s: &str) -> Result<(), ApiError> {
    let n = s.chars().count();
    if !(8..=256).contains(&n) {
        return Err(ApiError::validation(field, "a password has 8-256 characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert_eq!(Username::parse(" Teacher.Li ").unwrap().as_str(), "teacher.li");
        for bad in ["ab", "-lead", "has space", "名字", &"a".repeat(65)] {
            assert!(Username::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn roles_round_trip() {
        for r in AccountRole::ALL {
            assert_eq!(r.as_str().parse::<AccountRole>().unwrap(), r);
        }
    }

    #[test]
    fn locales_round_trip() {
        for l in Locale::ALL {
            assert_eq!(Locale::parse(l.as_str()), Some(l));
            assert_eq!(serde_json::to_string(&l).unwrap(), format!("\"{}\"", l.as_str()));
        }
        assert_eq!(Locale::parse("fr"), None);
    }
}
