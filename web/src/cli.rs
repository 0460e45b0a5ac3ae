//! The command line: `tongxin serve | migrate | token | admin …`.

use std::io::{BufRead as _, IsTerminal as _};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use tongxin_common::{Clock, Identity, JoinGrant, RoomName, RoomRole};

use crate::accounts::store::{NewUser, UserChanges};
use crate::accounts::{AccountRole, AccountStore, Locale, Username, check_password_strength, parse_display_name};
use crate::auth::password;
use crate::config::{Config, LogFormat};
use crate::state::{self, AppState};

/// Tongxin (同心): live lessons and consultations on weak rural networks.
#[derive(Debug, Parser)]
#[command(name = "tongxin", version, propagate_version = true)]
pub struct Cli {
    /// Config file (default: $TONGXIN_CONFIG, then ./tongxin.toml if present).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory [storage.data_dir].
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<String>,
    /// sqlite:PATH or postgres://… [storage.database_url].
    #[arg(long, global = true, value_name = "URL")]
    database_url: Option<String>,
    /// Log format [log.format].
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    /// Log filter, e.g. info or debug [log.level].
    #[arg(long, global = true, value_name = "FILTER")]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// Address to listen on [http.listen].
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Mint a join token and print it alone on stdout.
    Token(TokenArgs),
    /// Manage accounts.
    #[command(subcommand)]
    Admin(AdminCommand),
}

#[derive(Debug, Args)]
struct TokenArgs {
    /// The room.
    #[arg(long)]
    room: String,
    /// The participant's identity in the room.
    #[arg(long)]
    identity: String,
    /// The name others see.
    #[arg(long)]
    name: Option<String>,
    /// Room role: teacher, classroom, student, observer, doctor, patient, village_doctor, guest.
    #[arg(long, default_value = "guest")]
    role: String,
    /// Allow publishing audio and video.
    #[arg(long)]
    publish: bool,
    /// Allow receiving others' tracks.
    #[arg(long)]
    subscribe: bool,
    /// Allow sending chat and data.
    #[arg(long)]
    publish_data: bool,
    /// Hide the participant from others.
    #[arg(long)]
    hidden: bool,
    /// Lifetime, e.g. 30m or 1h (default auth.join_token_ttl; at most 24h).
    #[arg(long)]
    ttl: Option<String>,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Create an account. Without --password-stdin a random password is generated and printed.
    CreateUser {
        /// Login name.
        #[arg(long)]
        username: String,
        /// Account role.
        #[arg(long, value_enum)]
        role: AccountRole,
        /// Name shown in the UI (default: the username).
        #[arg(long)]
        display_name: Option<String>,
        /// Read the password from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
        /// UI language: zh-CN, en, bo or ug.
        #[arg(long, default_value = "zh-CN")]
        locale: String,
    },
    /// List accounts.
    ListUsers,
    /// Set an account's password (ends its sessions).
    SetPassword {
        /// Login name.
        #[arg(long)]
        username: String,
        /// Read the password from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
    },
}

/// Parses the command line and runs it; the exit code is 0, 1 (failure) or 2 (bad usage or config).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match load_config(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tongxin: {e:#}");
            return ExitCode::from(2);
        }
    };
    crate::telemetry::init(config.log.format, &config.log.level);
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tongxin: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli.command, config)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tongxin: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    let mut flags: Vec<(&str, String)> = Vec::new();
    if let Some(v) = &cli.data_dir {
        flags.push(("storage.data_dir", v.clone()));
    }
    if let Some(v) = &cli.database_url {
        flags.push(("storage.database_url", v.clone()));
    }
    if let Some(v) = cli.log_format {
        flags.push(("log.format", if v == LogFormat::Json { "json" } else { "text" }.into()));
    }
    if let Some(v) = &cli.log_level {
        flags.push(("log.level", v.clone()));
    }
    if let Command::Serve { listen: Some(v) } = &cli.command {
        flags.push(("http.listen", v.clone()));
    }
    Ok(Config::load(cli.config.as_deref(), std::env::vars(), &flags)?)
}

async fn run(command: Command, config: Config) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve { .. } => serve(config).await?,
        Command::Migrate => {
            state::open_database(&config).await?.close().await;
            eprintln!("migrations applied");
        }
        Command::Token(args) => {
            let room = args.room.clone();
            let token = mint(&config, args)?;
            println!("{token}");
            // stdout stays the bare token for scripts; people get the link to open.
            eprintln!("room page: http://{}/room/{room}#token={token}", config.http.listen);
        }
        Command::Admin(cmd) => return admin(&config, cmd).await,
    }
    Ok(ExitCode::SUCCESS)
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let listen = config.http.listen;
    let state = AppState::open(config, Clock::system()).await?;
    if state.accounts.count_users().await? == 0 {
        tracing::warn!("no accounts yet; create the first admin with: tongxin admin create-user --username admin --role admin");
    }
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen} (http.listen)"))?;
    let scheme = if state.config.http.tls().is_some() { "https" } else { "http" };
    tracing::info!(url = %format!("{scheme}://{}", listener.local_addr()?), backend = ?state.db.backend(), "tongxin serving");
    crate::serve(state, listener).await
}

fn mint(config: &Config, args: TokenArgs) -> anyhow::Result<String> {
    let role: RoomRole = args.role.parse().context("--role")?;
    let grant = JoinGrant {
        room: RoomName::parse(&args.room).context("--room")?,
        identity: Identity::parse(&args.identity).context("--identity")?,
        name: args.name,
        role,
        can_publish: args.publish,
        can_subscribe: args.subscribe,
        can_publish_data: args.publish_data,
        hidden: args.hidden,
    };
    let ttl = match &args.ttl {
        Some(t) => humantime::parse_duration(t).with_context(|| format!("--ttl {t:?}: try e.g. 30m or 1h"))?,
        None => config.auth.join_token_ttl,
    };
    if !args.publish && !args.subscribe {
        eprintln!("note: neither --publish nor --subscribe given; this token can only join and send data");
    }
    let key = state::load_token_key(config)?;
    key.mint(&grant, std::time::SystemTime::now(), ttl).context("cannot mint the token")
}

fn read_password(from_stdin: bool) -> anyhow::Result<(String, bool)> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context("cannot read the password from stdin")?;
        let pw = line.trim_end_matches(['\r', '\n']).to_owned();
        return Ok((pw, false));
    }
    let bytes: [u8; 12] = rand::random();
    use base64::Engine as _;
    Ok((base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes), true))
}

async fn admin(config: &Config, cmd: AdminCommand) -> anyhow::Result<ExitCode> {
    let db = state::open_database(config).await?;
    let store = AccountStore::new(db.clone());
    let now = std::time::SystemTime::now();
    let result = match cmd {
        AdminCommand::CreateUser { username, role, display_name, password_stdin, locale } => {
            let username = Username::parse(&username).map_err(|e| anyhow::anyhow!("--username: {e}"))?;
            let display_name = parse_display_name(display_name.as_deref().unwrap_or(username.as_str()))
                .map_err(|e| anyhow::anyhow!("--display-name: {e}"))?;
            let locale = Locale::parse(&locale).with_context(|| format!("--locale {locale:?}: expected zh-CN, en, bo or ug"))?;
            let (pw, generated) = read_password(password_stdin)?;
            check_password_strength("password", &pw).map_err(|e| anyhow::anyhow!("{e}"))?;
            let password_hash = password::hash(&pw)?;
            let new = NewUser { username: username.clone(), display_name, role, password_hash, locale };
            match store.create_user(new, now).await {
                Ok(u) => {
                    eprintln!("created {} ({}) with id {}", u.username, u.role, u.id);
                    if generated {
                        println!("{pw}");
                        eprintln!("the password above is shown once; keep it safe");
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(crate::accounts::store::StoreError::UsernameTaken) => bail!("username {username} is taken"),
                Err(e) => Err(e.into()),
            }
        }
        AdminCommand::ListUsers => {
            let users = store.list_users().await?;
            let stdout = std::io::stdout();
            let tty = stdout.is_terminal();
            if tty {
                println!("{:<28} {:<24} {:<15} {:<6} STATE", "ID", "USERNAME", "ROLE", "LOCALE");
            }
            for u in users {
                println!(
                    "{:<28} {:<24} {:<15} {:<6} {}",
                    u.id,
                    u.username,
                    u.role,
                    u.locale.as_str(),
                    if u.disabled { "disabled" } else { "enabled" }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        AdminCommand::SetPassword { username, password_stdin } => {
            let username = Username::parse(&username).map_err(|e| anyhow::anyhow!("--username: {e}"))?;
            let Some((user, _)) = store.credentials(&username).await? else { bail!("no account named {username}") };
            let (pw, generated) = read_password(password_stdin)?;
            check_password_strength("password", &pw).map_err(|e| anyhow::anyhow!("{e}"))?;
            let changes = UserChanges { password_hash: Some(password::hash(&pw)?), ..Default::default() };
            store.update_user(&user.id, changes, now).await?;
            if generated {
                println!("{pw}");
            }
            eprintln!("password of {username} set; its sessions ended");
            Ok(ExitCode::SUCCESS)
        }
    };
    db.close().await;
    result
}
