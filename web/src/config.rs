//! Configuration: defaults < `tongxin.toml` < `TONGXIN_*` environment variables < CLI flags.
//!
//! Every key has one dotted name (`http.listen`); its environment variable is that name upper-cased
//! with `_` for `.` (`TONGXIN_HTTP_LISTEN`). Errors name the key, so an operator knows what to fix.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use tongxin_common::RoomRole;
use tongxin_common::db::Backend;

/// The file read when `--config` is not given, if it exists.
pub const DEFAULT_FILE: &str = "tongxin.toml";
/// The environment variable naming a config file.
pub const CONFIG_ENV: &str = "TONGXIN_CONFIG";

/// Every key, with a one-line description (`tongxin.example.toml` documents them at length).
pub const KEYS: &[(&str, &str)] = &[
    ("http.listen", "address and port the HTTP server listens on"),
    ("http.secure_cookies", "mark session cookies Secure (always on with http.tls_cert)"),
    ("http.tls_cert", "PEM certificate chain: serve HTTPS (reloaded on SIGHUP)"),
    ("http.tls_key", "PEM private key of http.tls_cert"),
    ("storage.data_dir", "directory for the database file, keys and media"),
    ("storage.database_url", "sqlite:PATH or postgres://...; default sqlite in data_dir"),
    ("auth.token_secret", "base64 secret (>= 32 bytes) signing join tokens; default a key file in data_dir"),
    ("auth.session_ttl", "how long a login session lasts, e.g. 12h"),
    ("auth.join_token_ttl", "default lifetime of a join token, e.g. 1h"),
    ("media.listen", "UDP address of the one media port (WebRTC, WHIP, WHEP)"),
    ("media.public_ip", "address clients reach the media port on (for a server behind NAT)"),
    ("media.tcp_listen", "TCP address for ICE over TCP (RFC 6544), for networks that block UDP; unset: off"),
    ("rooms.max_rooms", "the most rooms the server runs at once"),
    ("rooms.max_participants", "the most participants in one room (WHIP and WHEP sessions count)"),
    ("rooms.reconnect_grace", "how long a participant keeps its place after losing its connection, e.g. 20s"),
    ("classroom.open_before", "how long before a lesson starts its room opens, e.g. 15m"),
    ("classroom.late_after", "how long after the start a first join counts as late, e.g. 5m"),
    ("classroom.early_before", "how long before the end a final leave counts as leaving early, e.g. 5m"),
    ("classroom.overrun", "how long after the scheduled end a lesson stays joinable, e.g. 30m"),
    (
        "transcode.enabled",
        "make low-bitrate renditions of publishers that send one H.264 layer, for subscribers whose links cannot take it",
    ),
    (
        "transcode.max_jobs",
        "the most transcoder jobs at once (0.1-0.3 of a core each for 720p30, by machine); past it subscribers get audio only",
    ),
    (
        "transcode.always_for",
        "room roles whose lone layer gets renditions from the start, comma-separated (default teacher; empty: only on need)",
    ),
    ("turn.urls", "STUN/TURN URLs handed to clients, comma-separated (turn:host:3478?transport=udp, turns:host:443?transport=tcp)"),
    ("turn.secret", "coturn's static-auth-secret, for time-limited TURN credentials"),
    ("turn.credential_ttl", "how long a TURN credential stays valid, e.g. 4h"),
    ("log.format", "text or json"),
    ("log.level", "a tracing filter such as info or tongxin_web=debug,info"),
];

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The HTTP server.
    pub http: HttpConfig,
    /// Where data lives.
    pub storage: StorageConfig,
    /// Sessions and join tokens.
    pub auth: AuthConfig,
    /// The media port.
    pub media: MediaConfig,
    /// Room limits and reconnection.
    pub rooms: RoomsConfig,
    /// Lesson windows and attendance margins.
    pub classroom: ClassroomConfig,
    /// TURN relays handed to clients.
    pub turn: TurnConfig,
    /// The server-side ladder.
    pub transcode: TranscodeSection,
    /// Logging.
    pub log: LogConfig,
}

/// `[media]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// `media.listen`
    pub listen: SocketAddr,
    /// `media.public_ip`
    pub public_ip: Option<std::net::IpAddr>,
    /// `media.tcp_listen`
    pub tcp_listen: Option<SocketAddr>,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig { listen: SocketAddr::from(([127, 0, 0, 1], 7882)), public_ip: None, tcp_listen: None }
    }
}

/// `[rooms]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoomsConfig {
    /// `rooms.max_rooms`
    #[serde(deserialize_with = "count")]
    pub max_rooms: usize,
    /// `rooms.max_participants`
    #[serde(deserialize_with = "count")]
    pub max_participants: usize,
    /// `rooms.reconnect_grace`
    #[serde(deserialize_with = "duration")]
    pub reconnect_grace: Duration,
}

impl Default for RoomsConfig {
    fn default() -> Self {
        let sfu = tongxin_sfu::SfuConfig::default();
        RoomsConfig { max_rooms: sfu.max_rooms, max_participants: sfu.max_participants, reconnect_grace: sfu.reconnect_grace }
    }
}

impl RoomsConfig {
    /// The media core's settings for these limits.
    pub fn sfu_config(&self) -> tongxin_sfu::SfuConfig {
        tongxin_sfu::SfuConfig {
            max_rooms: self.max_rooms,
            max_participants: self.max_participants,
            reconnect_grace: self.reconnect_grace,
            ..tongxin_sfu::SfuConfig::default()
        }
    }
}

/// `[transcode]`: renditions of single-layer publishers (the default ladder: 360p ≈ 350 kbit/s
/// and 180p ≈ 80 kbit/s at 15 fps).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TranscodeSection {
    /// `transcode.enabled`
    #[serde(deserialize_with = "bool_or_string")]
    pub enabled: bool,
    /// `transcode.max_jobs`
    #[serde(deserialize_with = "count")]
    pub max_jobs: usize,
    /// `transcode.always_for`
    #[serde(deserialize_with = "roles")]
    pub always_for: Vec<RoomRole>,
}

impl Default for TranscodeSection {
    fn default() -> Self {
        let core = tongxin_sfu::renditions::TranscodeConfig::default();
        TranscodeSection { enabled: true, max_jobs: core.max_jobs, always_for: core.always_for }
    }
}

impl Config {
    /// The media core's settings.
    pub fn sfu_config(&self) -> tongxin_sfu::SfuConfig {
        let transcode = tongxin_sfu::renditions::TranscodeConfig {
            enabled: self.transcode.enabled,
            max_jobs: self.transcode.max_jobs,
            always_for: self.transcode.always_for.clone(),
            ..Default::default()
        };
        tongxin_sfu::SfuConfig { transcode, ..self.rooms.sfu_config() }
    }
}

/// `[classroom]`: when a lesson's room opens and closes, and the margins attendance allows.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClassroomConfig {
    /// `classroom.open_before`
    #[serde(deserialize_with = "duration_or_zero")]
    pub open_before: Duration,
    /// `classroom.late_after`
    #[serde(deserialize_with = "duration_or_zero")]
    pub late_after: Duration,
    /// `classroom.early_before`
    #[serde(deserialize_with = "duration_or_zero")]
    pub early_before: Duration,
    /// `classroom.overrun`
    #[serde(deserialize_with = "duration_or_zero")]
    pub overrun: Duration,
}

impl Default for ClassroomConfig {
    fn default() -> Self {
        let t = tongxin_classroom::rules::Timing::default();
        ClassroomConfig { open_before: t.open_before, late_after: t.late_after, early_before: t.early_before, overrun: t.overrun }
    }
}

impl ClassroomConfig {
    /// The lesson rules' timing.
    pub fn timing(&self) -> tongxin_classroom::rules::Timing {
        tongxin_classroom::rules::Timing {
            open_before: self.open_before,
            late_after: self.late_after,
            early_before: self.early_before,
            overrun: self.overrun,
        }
    }
}

/// `[turn]`: relays for networks that block UDP (see `crate::turn`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TurnConfig {
    /// `turn.urls`
    #[serde(deserialize_with = "list")]
    pub urls: Vec<String>,
    /// `turn.secret`
    pub secret: Option<String>,
    /// `turn.credential_ttl`
    #[serde(deserialize_with = "duration")]
    pub credential_ttl: Duration,
}

impl Default for TurnConfig {
    fn default() -> Self {
        TurnConfig { urls: Vec::new(), secret: None, credential_ttl: Duration::from_secs(4 * 3600) }
    }
}

impl fmt::Debug for TurnConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TurnConfig")
            .field("urls", &self.urls)
            .field("secret", &self.secret.as_ref().map(|_| "<set>"))
            .field("credential_ttl", &self.credential_ttl)
            .finish()
    }
}

/// `[http]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// `http.listen`
    pub listen: SocketAddr,
    /// `http.secure_cookies`
    #[serde(deserialize_with = "bool_or_string")]
    pub secure_cookies: bool,
    /// `http.tls_cert`
    pub tls_cert: Option<PathBuf>,
    /// `http.tls_key`
    pub tls_key: Option<PathBuf>,
}

impl HttpConfig {
    /// The certificate files when HTTPS is configured.
    pub fn tls(&self) -> Option<crate::tls::TlsFiles> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(crate::tls::TlsFiles { cert: cert.clone(), key: key.clone() }),
            _ => None,
        }
    }

    /// Whether session cookies carry `Secure`: asked for, or served over HTTPS.
    pub fn cookies_secure(&self) -> bool {
        self.secure_cookies || self.tls_cert.is_some()
    }
}

/// `[storage]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `storage.data_dir`
    pub data_dir: PathBuf,
    /// `storage.database_url`
    pub database_url: Option<String>,
}

/// `[auth]`
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `auth.token_secret`
    pub token_secret: Option<String>,
    /// `auth.session_ttl`
    #[serde(deserialize_with = "duration")]
    pub session_ttl: Duration,
    /// `auth.join_token_ttl`
    #[serde(deserialize_with = "duration")]
    pub join_token_ttl: Duration,
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("token_secret", &self.token_secret.as_ref().map(|_| "<set>"))
            .field("session_ttl", &self.session_ttl)
            .field("join_token_ttl", &self.join_token_ttl)
            .finish()
    }
}

/// `[log]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `log.format`
    pub format: LogFormat,
    /// `log.level`
    pub level: String,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig { listen: SocketAddr::from(([127, 0, 0, 1], 8080)), secure_cookies: false, tls_cert: None, tls_key: None }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig { data_dir: PathBuf::from("./data"), database_url: None }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig { token_secret: None, session_ttl: Duration::from_secs(12 * 3600), join_token_ttl: Duration::from_secs(3600) }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { format: LogFormat::Text, level: "info".into() }
    }
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let dur = duration_or_zero(d)?;
    if dur.is_zero() {
        return Err(serde::de::Error::custom("must be longer than zero"));
    }
    Ok(dur)
}

/// A list from TOML, or from an environment variable's comma-separated text.
fn list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum L {
        List(Vec<String>),
        Text(String),
    }
    Ok(match L::deserialize(d)? {
        L::List(v) => v,
        L::Text(s) => s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect(),
    })
}

/// Room roles (`teacher`, `doctor`, …) as a list, or comma-separated text.
fn roles<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<RoomRole>, D::Error> {
    list(d)?
        .into_iter()
        .map(|r| {
            serde_json::from_value(serde_json::Value::String(r.clone())).map_err(|_| {
                serde::de::Error::custom(format!(
                    "{r:?} is not a room role (teacher, classroom, student, observer, doctor, patient, village_doctor, guest)"
                ))
            })
        })
        .collect()
}

/// A duration such as `"15m"`, where `"0s"` is allowed.
fn duration_or_zero<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s).map_err(|e| serde::de::Error::custom(format!("{e} (try e.g. \"12h\" or \"30m\")")))
}

/// A positive count, from TOML or from an environment variable's text.
fn count<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        Num(i64),
        Str(String),
    }
    let n = match N::deserialize(d)? {
        N::Num(n) => n,
        N::Str(s) => s.trim().parse().map_err(|_| serde::de::Error::custom(format!("{s:?} is not a whole number")))?,
    };
    usize::try_from(n).ok().filter(|n| *n > 0).ok_or_else(|| serde::de::Error::custom("must be at least 1"))
}

fn bool_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum B {
        Bool(bool),
        Str(String),
    }
    match B::deserialize(d)? {
        B::Bool(b) => Ok(b),
        B::Str(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(serde::de::Error::custom(format!("expected true or false, got {s:?}"))),
        },
    }
}

/// Why the configuration could not be loaded; always names the file, variable or key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The config file is not valid TOML.
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A `TONGXIN_*` variable names no key.
    #[error("unknown environment variable {0}; known: {known}", known = env_names().join(", "))]
    UnknownEnv(String),
    /// A key has a bad value (or is unknown).
    #[error("config key `{key}`: {message}")]
    Key {
        /// The dotted key.
        key: String,
        /// What is wrong.
        message: String,
    },
}

fn env_name(key: &str) -> String {
    format!("TONGXIN_{}", key.replace('.', "_").to_ascii_uppercase())
}

fn env_names() -> Vec<String> {
    KEYS.iter().map(|(k, _)| env_name(k)).collect()
}

fn set(table: &mut toml::Table, key: &str, value: toml::Value) {
    let (section, name) = key.split_once('.').unwrap_or(("", key));
    let entry = table.entry(section.to_owned()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if !entry.is_table() {
        *entry = toml::Value::Table(toml::Table::new());
    }
    if let toml::Value::Table(t) = entry {
        t.insert(name.to_owned(), value);
    }
}

impl Config {
    /// Loads the configuration.
    ///
    /// `file` is `--config` (an error if missing); without it `$TONGXIN_CONFIG`, then
    /// `./tongxin.toml` if present. `env` is the process environment; `flags` are `(key, value)`
    /// pairs from the command line and win over everything.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: &[(&str, String)],
    ) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = env.into_iter().filter(|(k, _)| k.starts_with("TONGXIN_")).collect();
        let env_file = env.iter().find(|(k, _)| k == CONFIG_ENV).map(|(_, v)| PathBuf::from(v));
        let path = file.map(Path::to_path_buf).or(env_file);
        let mut table = match path {
            Some(p) => read_table(&p)?,
            None if Path::new(DEFAULT_FILE).exists() => read_table(Path::new(DEFAULT_FILE))?,
            None => toml::Table::new(),
        };
        for (name, value) in &env {
            if name == CONFIG_ENV {
                continue;
            }
            let key = KEYS.iter().map(|(k, _)| *k).find(|k| env_name(k) == *name);
            let Some(key) = key else { return Err(ConfigError::UnknownEnv(name.clone())) };
            set(&mut table, key, toml::Value::String(value.clone()));
        }
        for (key, value) in flags {
            set(&mut table, key, toml::Value::String(value.clone()));
        }
        let config: Config = serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            // serde_path_to_error's path already ends at the offending key; "." means the root.
            let key = match inner.split('`').nth(1) {
                Some(field) if path == "." => field.to_owned(),
                _ => path,
            };
            ConfigError::Key { key, message: inner }
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.storage.database_url
            && Backend::of_url(url).is_none()
        {
            return Err(ConfigError::Key {
                key: "storage.database_url".into(),
                message: "expected sqlite:PATH, postgres://... or postgresql://...".into(),
            });
        }
        if let Some(secret) = &self.auth.token_secret {
            use base64::Engine as _;
            let ok = base64::engine::general_purpose::STANDARD
                .decode(secret.trim())
                .is_ok_and(|b| b.len() >= tongxin_common::grant::MIN_SECRET_LEN);
            if !ok {
                return Err(ConfigError::Key {
                    key: "auth.token_secret".into(),
                    message: "expected standard base64 of at least 32 bytes (e.g. `openssl rand -base64 32`)".into(),
                });
            }
        }
        if self.auth.join_token_ttl > tongxin_common::grant::MAX_TTL {
            return Err(ConfigError::Key { key: "auth.join_token_ttl".into(), message: "must be at most 24h".into() });
        }
        if self.media.listen.ip().is_unspecified() && self.media.public_ip.is_none() {
            return Err(ConfigError::Key {
                key: "media.public_ip".into(),
                message: "required when media.listen is a wildcard address: the address clients reach".into(),
            });
        }
        if self.media.tcp_listen.is_some_and(|a| a.ip().is_unspecified()) && self.media.public_ip.is_none() {
            return Err(ConfigError::Key {
                key: "media.public_ip".into(),
                message: "required when media.tcp_listen is a wildcard address: the address clients reach".into(),
            });
        }
        match (&self.http.tls_cert, &self.http.tls_key) {
            (Some(_), None) => return Err(ConfigError::Key { key: "http.tls_key".into(), message: "required with http.tls_cert".into() }),
            (None, Some(_)) => return Err(ConfigError::Key { key: "http.tls_cert".into(), message: "required with http.tls_key".into() }),
            _ => {}
        }
        if let Some(bad) = self.turn.urls.iter().find(|u| !["stun:", "turn:", "turns:"].iter().any(|p| u.starts_with(p))) {
            let message = format!("{bad:?} is not a stun:, turn: or turns: URL");
            return Err(ConfigError::Key { key: "turn.urls".into(), message });
        }
        let relays = self.turn.urls.iter().any(|u| !u.starts_with("stun:"));
        if relays && self.turn.secret.as_deref().is_none_or(|s| s.len() < 16) {
            let message = "required with turn: URLs: coturn's static-auth-secret, at least 16 characters".into();
            return Err(ConfigError::Key { key: "turn.secret".into(), message });
        }
        if self.turn.credential_ttl > Duration::from_secs(24 * 3600) {
            return Err(ConfigError::Key { key: "turn.credential_ttl".into(), message: "must be at most 24h".into() });
        }
        let day = Duration::from_secs(24 * 3600);
        let margins = [
            ("classroom.open_before", self.classroom.open_before, day),
            ("classroom.late_after", self.classroom.late_after, day),
            ("classroom.early_before", self.classroom.early_before, day),
            ("classroom.overrun", self.classroom.overrun, Duration::from_secs(12 * 3600)),
        ];
        for (key, value, most) in margins {
            if value > most {
                let message = format!("must be at most {}", humantime::format_duration(most));
                return Err(ConfigError::Key { key: key.into(), message });
            }
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return Err(ConfigError::Key { key: "log.level".into(), message: e.to_string() });
        }
        Ok(())
    }

    /// The database URL: the configured one, or the SQLite file in the data dir.
    pub fn database_url(&self) -> String {
        match &self.storage.database_url {
            Some(url) => url.clone(),
            None => tongxin_common::Db::sqlite_url(&self.storage.data_dir.join("tongxin.db")),
        }
    }
}

fn read_table(path: &Path) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    text.parse::<toml::Table>().map_err(|e| ConfigError::Syntax { path: path.to_owned(), message: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("tongxin.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn defaults_without_a_file() {
        let c = Config::load(None, env(&[]), &[]).unwrap();
        assert_eq!(c.http.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.storage.data_dir, PathBuf::from("./data"));
        assert_eq!(c.database_url(), "sqlite://./data/tongxin.db");
        assert_eq!(c.log.format, LogFormat::Text);
    }

    #[test]
    fn file_then_env_then_flag() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(dir.path(), "[http]\nlisten = \"127.0.0.1:9001\"\n[storage]\ndata_dir = \"/srv/a\"\n[log]\nformat = \"json\"\n");
        let c = Config::load(Some(&f), env(&[]), &[]).unwrap();
        assert_eq!(c.http.listen.port(), 9001);
        assert_eq!(c.storage.data_dir, PathBuf::from("/srv/a"));
        assert_eq!(c.log.format, LogFormat::Json);

        let e = env(&[("TONGXIN_HTTP_LISTEN", "127.0.0.1:9002"), ("TONGXIN_STORAGE_DATA_DIR", "/srv/b")]);
        let c = Config::load(Some(&f), e.clone(), &[]).unwrap();
        assert_eq!(c.http.listen.port(), 9002);
        assert_eq!(c.storage.data_dir, PathBuf::from("/srv/b"));
        assert_eq!(c.log.format, LogFormat::Json, "untouched keys keep the file's value");

        let c = Config::load(Some(&f), e, &[("http.listen", "127.0.0.1:9003".into())]).unwrap();
        assert_eq!(c.http.listen.port(), 9003);
        assert_eq!(c.storage.data_dir, PathBuf::from("/srv/b"));
    }

    #[test]
    fn config_env_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(dir.path(), "[auth]\nsession_ttl = \"30m\"\n");
        let c = Config::load(None, env(&[("TONGXIN_CONFIG", f.to_str().unwrap())]), &[]).unwrap();
        assert_eq!(c.auth.session_ttl, Duration::from_secs(1800));
    }

    fn key_error(r: Result<Config, ConfigError>) -> (String, String) {
        match r {
            Err(ConfigError::Key { key, message }) => (key, message),
            other => panic!("expected a key error, got {other:?}"),
        }
    }

    #[test]
    fn bad_values_name_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(dir.path(), "[http]\nlisten = \"not an address\"\n");
        assert_eq!(key_error(Config::load(Some(&f), env(&[]), &[])).0, "http.listen");

        let e = env(&[("TONGXIN_AUTH_SESSION_TTL", "soon")]);
        assert_eq!(key_error(Config::load(None, e, &[])).0, "auth.session_ttl");
        for bad in ["0", "-3", "many"] {
            let e = env(&[("TONGXIN_ROOMS_MAX_PARTICIPANTS", bad)]);
            assert_eq!(key_error(Config::load(None, e, &[])).0, "rooms.max_participants", "{bad}");
        }
        let e = env(&[("TONGXIN_ROOMS_MAX_PARTICIPANTS", "12"), ("TONGXIN_ROOMS_RECONNECT_GRACE", "45s")]);
        let rooms = Config::load(None, e, &[]).unwrap().rooms.sfu_config();
        assert_eq!((rooms.max_participants, rooms.reconnect_grace), (12, Duration::from_secs(45)));

        let (k, _) = key_error(Config::load(None, env(&[]), &[("storage.database_url", "mysql://x".into())]));
        assert_eq!(k, "storage.database_url");

        let (k, _) = key_error(Config::load(None, env(&[]), &[("http.secure_cookies", "maybe".into())]));
        assert_eq!(k, "http.secure_cookies");

        let (k, _) = key_error(Config::load(None, env(&[("TONGXIN_AUTH_TOKEN_SECRET", "c2hvcnQ=")]), &[]));
        assert_eq!(k, "auth.token_secret");

        let (k, _) = key_error(Config::load(None, env(&[("TONGXIN_HTTP_TLS_CERT", "/etc/ssl/a.pem")]), &[]));
        assert_eq!(k, "http.tls_key");

        let (k, _) = key_error(Config::load(None, env(&[("TONGXIN_TURN_URLS", "turn:t.example:3478")]), &[]));
        assert_eq!(k, "turn.secret");
        let (k, _) = key_error(Config::load(None, env(&[("TONGXIN_TURN_URLS", "http://t.example")]), &[]));
        assert_eq!(k, "turn.urls");
        let e = env(&[
            ("TONGXIN_TURN_URLS", "stun:t.example:3478, turns:t.example:443?transport=tcp"),
            ("TONGXIN_TURN_SECRET", "sixteen-chars-long"),
        ]);
        assert_eq!(Config::load(None, e, &[]).unwrap().turn.urls.len(), 2);

        let (k, m) = key_error(Config::load(None, env(&[("TONGXIN_TRANSCODE_ALWAYS_FOR", "teacher, principal")]), &[]));
        assert_eq!(k, "transcode.always_for");
        assert!(m.contains("\"principal\" is not a room role"), "{m}");
        let always = |e| Config::load(None, e, &[]).unwrap().sfu_config().transcode.always_for;
        assert_eq!(always(env(&[("TONGXIN_TRANSCODE_ALWAYS_FOR", "teacher, doctor")])), [RoomRole::Teacher, RoomRole::Doctor]);
        assert_eq!(always(env(&[("TONGXIN_TRANSCODE_ALWAYS_FOR", "")])), []);
        assert_eq!(always(env(&[])), [RoomRole::Teacher]);

        let (k, _) = key_error(Config::load(None, env(&[("TONGXIN_CLASSROOM_OVERRUN", "2d")]), &[]));
        assert_eq!(k, "classroom.overrun");
        let e = env(&[("TONGXIN_CLASSROOM_OPEN_BEFORE", "0s"), ("TONGXIN_CLASSROOM_LATE_AFTER", "10m")]);
        let timing = Config::load(None, e, &[]).unwrap().classroom.timing();
        assert_eq!((timing.open_before, timing.late_after), (Duration::ZERO, Duration::from_secs(600)));

        let (k, _) = key_error(Config::load(None, env(&[("TONGXIN_LOG_FORMAT", "xml")]), &[]));
        assert_eq!(k, "log.format");
    }

    #[test]
    fn unknown_keys_and_variables_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(dir.path(), "[http]\nlisen = \"127.0.0.1:1\"\n");
        assert_eq!(key_error(Config::load(Some(&f), env(&[]), &[])).0, "http.lisen");
        let f = write(dir.path(), "[htp]\nlisten = \"127.0.0.1:1\"\n");
        assert_eq!(key_error(Config::load(Some(&f), env(&[]), &[])).0, "htp");
        let r = Config::load(None, env(&[("TONGXIN_HTTP_LISTN", "x")]), &[]);
        assert!(matches!(r, Err(ConfigError::UnknownEnv(v)) if v == "TONGXIN_HTTP_LISTN"));
    }

    #[test]
    fn missing_or_broken_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let r = Config::load(Some(&dir.path().join("nope.toml")), env(&[]), &[]);
        assert!(matches!(r, Err(ConfigError::Read { .. })));
        let f = write(dir.path(), "[http\n");
        assert!(matches!(Config::load(Some(&f), env(&[]), &[]), Err(ConfigError::Syntax { .. })));
    }

    #[test]
    fn booleans_from_env_strings() {
        let c = Config::load(None, env(&[("TONGXIN_HTTP_SECURE_COOKIES", "true")]), &[]).unwrap();
        assert!(c.http.secure_cookies);
    }

    #[test]
    fn every_key_is_documented_in_the_example_file() {
        let example = include_str!("../../tongxin.example.toml");
        let table: toml::Table = example.parse().expect("example parses");
        for (key, _) in KEYS {
            let (section, name) = key.split_once('.').unwrap();
            assert!(example.contains(&format!("{name} =")), "{key} missing from tongxin.example.toml");
            assert!(table.contains_key(section) || example.contains(&format!("[{section}]")), "[{section}] missing");
        }
        // The example, uncommented as shipped, must load.
        let dir = tempfile::tempdir().unwrap();
        let f = write(dir.path(), example);
        Config::load(Some(&f), env(&[]), &[]).expect("tongxin.example.toml loads");
    }
}
