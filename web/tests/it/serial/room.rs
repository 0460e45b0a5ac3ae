//! The room page (`/room/{room}`) in headless Chromium against the real server and media server:
//! two participants see each other's video, chat over the data channel, see a mute, and one
//! resumes its place after its page was closed abruptly; an administrator follows the room on
//! `/admin/rooms`. The steps are in `tests/browser/room.mjs`. The room page as a simulcast
//! publisher is driven by `tests/browser/simulcast.mjs`.

use std::time::{Duration, SystemTime};

use super::run_script;

use tongxin_common::{Clock, Identity, JoinGrant, RoomName, RoomRole};
use tongxin_web::accounts::store::NewUser;
use tongxin_web::accounts::{AccountRole, Locale, Username};
use tongxin_web::auth::password;
use tongxin_web::config::Config;
use tongxin_web::state::AppState;

fn grant(room: &str, identity: &str, name: &str, role: RoomRole) -> JoinGrant {
    JoinGrant {
        room: RoomName::parse(room).unwrap(),
        identity: Identity::parse(identity).unwrap(),
        name: Some(name.into()),
        role,
        can_publish: true,
        can_subscribe: true,
        can_publish_data: true,
        hidden: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_participants_see_each_other_chat_mute_and_resume() {
    // The server as `tongxin serve` builds it: database, token key and media server from the config.
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.storage.data_dir = data_dir.path().to_owned();
    // Loopback only: the media server advertises 127.0.0.1, so the browsers never leave the machine.
    config.media.listen = "127.0.0.1:0".parse().unwrap();
    let state = AppState::open(config, Clock::system()).await.expect("open the server state");
    let media = state.media.clone().expect("AppState::open starts the media server");
    let mint = |g: JoinGrant| state.token_key.mint(&g, SystemTime::now(), Duration::from_secs(600)).unwrap();
    let teacher = mint(grant("demo", "teacher-li", "李老师", RoomRole::Teacher));
    let class = mint(grant("demo", "class-3", "三年级（3）班", RoomRole::Classroom));
    // An administrator watches the room on /admin/rooms meanwhile.
    let admin = NewUser {
        username: Username::parse("root").unwrap(),
        display_name: "管理员".into(),
        role: AccountRole::Admin,
        password_hash: password::hash("root-password-1").unwrap(),
        locale: Locale::ZhCn,
    };
    state.accounts.create_user(admin, SystemTime::now()).await.unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = tongxin_web::app(state.clone()).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let env = [
        ("BASE_URL", url),
        ("ROOM", "demo".into()),
        ("TOKEN_A", teacher),
        ("TOKEN_B", class),
        ("ADMIN_USER", "root".into()),
        ("ADMIN_PASSWORD", "root-password-1".into()),
    ];
    run_script("room.mjs", &env).await;

    let stats = media.stats().await;
    assert_eq!(stats.panics, 0, "the media core panicked");
    server.abort();
}

/// The room page publishes its camera as three simulcast layers, and pauses the ones nobody
/// receives when the media server says so (`tests/browser/simulcast.mjs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_room_page_sends_three_layers_and_pauses_those_nobody_receives() {
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.storage.data_dir = data_dir.path().to_owned();
    config.media.listen = "127.0.0.1:0".parse().unwrap();
    let state = AppState::open(config, Clock::system()).await.expect("open the server state");
    let media = state.media.clone().expect("AppState::open starts the media server");
    let mint = |g: JoinGrant| state.token_key.mint(&g, SystemTime::now(), Duration::from_secs(600)).unwrap();
    // Two viewers that only watch, so the machine's two cores encode one camera.
    let viewer = |identity: &str, name: &str| JoinGrant { can_publish: false, ..grant("layers", identity, name, RoomRole::Observer) };
    let env_tokens = [
        ("TOKEN_PUB", mint(grant("layers", "teacher-li", "李老师", RoomRole::Teacher))),
        ("TOKEN_TOP", mint(viewer("viewer-top", "大屏幕"))),
        ("TOKEN_MID", mint(viewer("viewer-mid", "手机"))),
    ];

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = tongxin_web::app(state.clone()).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let mut env = vec![("BASE_URL", url), ("ROOM", "layers".to_owned())];
    env.extend(env_tokens);
    run_script("simulcast.mjs", &env).await;

    let stats = media.stats().await;
    assert_eq!(stats.panics, 0, "the media core panicked");
    server.abort();
}
