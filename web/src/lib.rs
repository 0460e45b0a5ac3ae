//! The Tongxin server: composes the HTTP API, auth, the browser UI and the CLI into the
//! `tongxin` binary.
#![forbid(unsafe_code)]

pub mod accounts;
pub mod auth;
pub mod classroom;
pub mod cli;
pub mod config;
pub mod error;
pub mod media;
pub mod metrics;
pub mod net;
pub mod openapi;
pub mod ops;
pub mod rooms;
pub mod state;
pub mod stream_keys;
pub mod telemetry;
pub mod tls;
pub mod tokens;
pub mod turn;
pub mod ui;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::routing::get;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::error::ApiError;
use crate::state::AppState;

/// The largest request body an extractor accepts (JSON bodies are small; slide uploads raise it
/// on their route).
pub const MAX_BODY: usize = 1024 * 1024;

/// Content-Security-Policy: the UI loads only its own files, so an injected script has nowhere
/// to come from and nowhere to send data.
pub const CSP: &str = "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'; \
    object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    let api = Router::new()
        .merge(auth::router())
        .merge(accounts::api::router())
        .merge(tokens::router())
        .merge(turn::router())
        .merge(stream_keys::router())
        .merge(rooms::router())
        .merge(classroom::router())
        .fallback(|| async { ApiError::NotFound("no such API endpoint".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed("method not allowed on this endpoint".into()) });
    let whip = match &state.media {
        Some(media) => media::router(&state, media.clone()),
        None => Router::new(),
    };
    Router::new()
        .merge(whip)
        .nest("/api/v1", api)
        .route("/api/openapi.json", get(openapi::document))
        .merge(ops::router())
        .fallback(ui::serve)
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::track))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            // The route template, never the raw URI: paths and queries may carry ids.
            let route = req.extensions().get::<axum::extract::MatchedPath>().map(|p| p.as_str().to_owned());
            tracing::debug_span!("http", method = %req.method(), route = route.as_deref().unwrap_or("-"))
        }))
        .layer(SetResponseHeaderLayer::if_not_present(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .layer(SetResponseHeaderLayer::if_not_present(header::REFERRER_POLICY, HeaderValue::from_static("same-origin")))
        .layer(SetResponseHeaderLayer::if_not_present(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        .layer(SetResponseHeaderLayer::if_not_present(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)))
        .layer(CompressionLayer::new())
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(ApiError::Internal(anyhow::anyhow!("a handler panicked")))
        }))
        .with_state(state)
}

/// How long in-flight HTTPS requests may take to finish once a shutdown signal came.
const DRAIN: Duration = Duration::from_secs(30);

/// Runs the server on `listener` (HTTPS when `http.tls_cert` is set) until SIGINT or SIGTERM,
/// then drains in-flight requests. SIGHUP reloads the TLS certificate.
pub async fn serve(state: AppState, listener: tokio::net::TcpListener) -> anyhow::Result<()> {
    let files = state.config.http.tls();
    let live = files.as_ref().map(tls::TlsFiles::start).transpose()?;
    let purge = tokio::spawn(purge_sessions(state.clone()));
    let hangups = tokio::spawn(tls::reload_on_hangup(files, live.clone()));
    let app = app(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    match live {
        None => axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await.context("HTTP server failed")?,
        Some(live) => {
            let handle = axum_server::Handle::new();
            let stop = handle.clone();
            tokio::spawn(async move {
                shutdown_signal().await;
                stop.graceful_shutdown(Some(DRAIN));
            });
            let server = axum_server::from_tcp_rustls(listener.into_std()?, live).context("cannot serve HTTPS")?;
            server.handle(handle).serve(app).await.context("HTTPS server failed")?;
        }
    }
    hangups.abort();
    purge.abort();
    state.db.close().await;
    tracing::info!("stopped");
    Ok(())
}

async fn purge_sessions(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(600));
    loop {
        tick.tick().await;
        match state.accounts.purge_expired_sessions(state.clock.now()).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(sessions = n, "purged expired sessions"),
            Err(e) => tracing::warn!(error = %e, "could not purge expired sessions"),
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let wait = async {
        match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
            (Ok(mut int), Ok(mut term)) => {
                tokio::select! {
                    _ = int.recv() => "SIGINT",
                    _ = term.recv() => "SIGTERM",
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    };
    let name = wait.await;
    tracing::info!(signal = name, "shutting down; finishing in-flight requests");
}
