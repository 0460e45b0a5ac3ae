//! The state every handler shares, and how it is built from the configuration.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use base64::Engine as _;
use tongxin_classroom::store::ClassroomStore;
use tongxin_common::{Clock, Db, TokenKey};

use crate::accounts::AccountStore;
use crate::accounts::store::{MIGRATIONS_TABLE, migrator};
use crate::auth::LoginThrottle;
use crate::config::Config;
use crate::metrics::Metrics;

/// Cheap to clone: every field is a handle.
#[derive(Clone)]
pub struct AppState {
    /// The configuration the server started with.
    pub config: Arc<Config>,
    /// The database.
    pub db: Db,
    /// Accounts and sessions.
    pub accounts: AccountStore,
    /// Schools, sites, courses, students and lessons.
    pub classroom: ClassroomStore,
    /// Signs and verifies join tokens.
    pub token_key: Arc<TokenKey>,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Failed-login counts.
    pub throttle: Arc<LoginThrottle>,
    /// The wall clock (manual in tests).
    pub clock: Clock,
    /// Slide pages, content-addressed files under `<data_dir>/slides`.
    pub slides: tongxin_classroom::slides::SlideStore,
    /// The media server (WHIP/WHEP), when started.
    pub media: Option<tongxin_sfu::MediaServer>,
}

impl AppState {
    /// Opens and migrates the database, loads the token key, and assembles the state.
    pub async fn open(config: Config, clock: Clock) -> anyhow::Result<AppState> {
        let db = open_database(&config).await?;
        let token_key = load_token_key(&config)?;
        let media = tongxin_sfu::MediaServer::start_with_tcp(
            config.media.listen,
            config.media.tcp_listen,
            config.media.public_ip,
            config.sfu_config(),
        )
        .await
        .context("cannot start the media server (media.listen)")?;
        Ok(AppState::assemble(config, db, token_key, clock).with_media(media))
    }

    /// The state over an already migrated database (tests use this with their own databases).
    pub fn assemble(config: Config, db: Db, token_key: TokenKey, clock: Clock) -> AppState {
        AppState {
            accounts: AccountStore::new(db.clone()),
            classroom: ClassroomStore::new(db.clone()),
            db,
            token_key: Arc::new(token_key),
            metrics: Arc::new(Metrics::new()),
            throttle: Arc::new(LoginThrottle::default()),
            clock,
            slides: tongxin_classroom::slides::SlideStore::new(config.storage.data_dir.join("slides")),
            config: Arc::new(config),
            media: None,
        }
    }

    /// The state with a running media server, whose WHIP/WHEP routes `app()` then mounts.
    /// Also starts recording lesson rooms' events for attendance.
    pub fn with_media(mut self, media: tongxin_sfu::MediaServer) -> AppState {
        self.media = Some(media);
        tokio::spawn(crate::classroom::controls::record_room_events(self.clone()));
        tokio::spawn(crate::classroom::schedule::run(self.clone()));
        self
    }
}

/// Creates the data dir if needed, opens the database and applies every migration.
pub async fn open_database(config: &Config) -> anyhow::Result<Db> {
    std::fs::create_dir_all(&config.storage.data_dir)
        .with_context(|| format!("cannot create data dir {}", config.storage.data_dir.display()))?;
    let url = config.database_url();
    let db = Db::connect(&url).await.context("cannot open the database (storage.database_url)")?;
    migrate(&db).await?;
    Ok(db)
}

/// Applies every crate's migrations.
pub async fn migrate(db: &Db) -> anyhow::Result<()> {
    db.migrate(migrator(), MIGRATIONS_TABLE).await.context("database migration failed")?;
    db.migrate(tongxin_classroom::store::migrator(), tongxin_classroom::store::MIGRATIONS_TABLE)
        .await
        .context("classroom database migration failed")?;
    Ok(())
}

/// The join-token key file inside the data dir.
pub const TOKEN_KEY_FILE: &str = "join-token.key";

/// The configured secret, or the key file in the data dir (created with mode 0600 if missing).
pub fn load_token_key(config: &Config) -> anyhow::Result<TokenKey> {
    if let Some(secret) = &config.auth.token_secret {
        // Config::load checked that this decodes to at least 32 bytes.
        let bytes = base64::engine::general_purpose::STANDARD.decode(secret.trim()).context("auth.token_secret")?;
        return TokenKey::from_secret(&bytes).context("auth.token_secret");
    }
    std::fs::create_dir_all(&config.storage.data_dir)
        .with_context(|| format!("cannot create data dir {}", config.storage.data_dir.display()))?;
    key_file(&config.storage.data_dir.join(TOKEN_KEY_FILE))
}

fn key_file(path: &Path) -> anyhow::Result<TokenKey> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(mut f) => {
            let secret = TokenKey::generate_secret();
            f.write_all(base64::engine::general_purpose::STANDARD.encode(secret).as_bytes())
                .and_then(|()| f.sync_all())
                .with_context(|| format!("cannot write {}", path.display()))?;
            tracing::info!(path = %path.display(), "generated a new join-token signing key");
            Ok(TokenKey::from_secret(&secret)?)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .with_context(|| format!("{} is not base64", path.display()))?;
            TokenKey::from_secret(&bytes).with_context(|| format!("{} holds a key that is too short", path.display()))
        }
        Err(e) => Err(e).with_context(|| format!("cannot create {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(TOKEN_KEY_FILE);
        let a = key_file(&p).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        let b = key_file(&p).unwrap();
        assert_eq!(a.id(), b.id(), "the second start reads the same key");
    }
}
