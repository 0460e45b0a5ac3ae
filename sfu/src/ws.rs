//! The room signalling endpoint: `GET /api/v1/rtc`, a WebSocket speaking `PROTOCOL.md`.
//!
//! This task only parses frames, checks the join token and relays; every decision is the core's.

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::sync::mpsc;

use crate::http::WhipState;
use crate::shell::{OUTBOUND_QUEUE, Outbound};
use crate::signal::{ClientMessage, PROTOCOL, ServerMessage};

/// The largest frame a client may send.
const MAX_FRAME: usize = 64 * 1024;
/// How long a new socket may take to send `join`.
const JOIN_WAIT: Duration = Duration::from_secs(30);

/// `/api/v1/rtc`.
pub fn router(state: WhipState) -> Router {
    Router::new().route("/api/v1/rtc", get(upgrade)).with_state(state)
}

async fn upgrade(State(state): State<WhipState>, ws: WebSocketUpgrade) -> Response {
    ws.max_message_size(MAX_FRAME).max_frame_size(MAX_FRAME).on_upgrade(move |socket| session(state, socket))
}

fn frame(message: &ServerMessage) -> Message {
    // Serializing these types cannot fail: string keys, no non-finite floats reach them.
    Message::Text(serde_json::to_string(message).unwrap_or_default().into())
}

/// A client frame, or the `bad_message` error that answers it (naming the frame's `type` when
/// it can be read).
fn parse(text: &str) -> Result<ClientMessage, Box<ServerMessage>> {
    serde_json::from_str(text).map_err(|e| {
        let refused = serde_json::from_str::<serde_json::Value>(text).ok().and_then(|v| v.get("type")?.as_str().map(str::to_owned));
        Box::new(ServerMessage::Error { code: "bad_message".into(), message: format!("not a protocol frame: {e}"), refused })
    })
}

/// An `error` for a first frame of type `refused`.
fn refused_join(code: &str, message: String, refused: &str) -> ServerMessage {
    ServerMessage::Error { code: code.to_owned(), message, refused: Some(refused.to_owned()) }
}

/// Waits for the first text frame, at most [`JOIN_WAIT`] in all; anything else first is refused.
async fn first_frame(socket: &mut WebSocket) -> Option<Result<ClientMessage, Box<ServerMessage>>> {
    let deadline = tokio::time::Instant::now() + JOIN_WAIT;
    loop {
        match tokio::time::timeout_at(deadline, socket.recv()).await {
            Ok(Some(Ok(Message::Text(text)))) => return Some(parse(&text)),
            Ok(Some(Ok(Message::Binary(_)))) => return Some(Err(Box::new(ServerMessage::error("bad_message", "frames are JSON text")))),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            _ => return None,
        }
    }
}

async fn session(state: WhipState, mut socket: WebSocket) {
    let joined = match first_frame(&mut socket).await {
        None => return,
        Some(Err(refusal)) => Err(*refusal),
        Some(Ok(ClientMessage::Join { protocol, .. })) if protocol != PROTOCOL => {
            Err(refused_join("unsupported_protocol", format!("this server speaks protocol {PROTOCOL}"), "join"))
        }
        Some(Ok(ClientMessage::Join { token, resume, auto_subscribe, .. })) => {
            let grant = match token {
                Some(token) => state.authorizer().authorize(&token).await.map_err(|e| e.0),
                None => Err("send a join token".to_owned()),
            };
            match (grant, resume) {
                (Ok(grant), resume) => Ok((Some(grant), resume, auto_subscribe)),
                // The core decides whether the credential is still good.
                (Err(_), Some(resume)) => Ok((None, Some(resume), auto_subscribe)),
                (Err(why), None) => Err(refused_join("unauthorized", why, "join")),
            }
        }
        Some(Ok(other)) => Err(refused_join("not_joined", "the first frame must be join".into(), other.type_name())),
    };
    let (grant, resume, auto_subscribe) = match joined {
        Ok(j) => j,
        Err(refusal) => {
            let _ = socket.send(frame(&refusal)).await;
            let _ = socket.send(Message::Close(None)).await;
            return;
        }
    };
    let media = state.media().clone();
    let conn = media.new_conn();
    let (tx, mut rx) = mpsc::channel(OUTBOUND_QUEUE);
    media.join(conn, grant, resume, auto_subscribe, tx).await;
    let (mut sink, mut stream) = socket.split();
    loop {
        tokio::select! {
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Text(text))) => match parse(&text) {
                    Ok(message) => media.client_message(conn, message).await,
                    Err(refusal) => {
                        if sink.send(frame(&refusal)).await.is_err() {
                            break;
                        }
                    }
                },
                Some(Ok(Message::Binary(_))) => {
                    if sink.send(frame(&ServerMessage::error("bad_message", "frames are JSON text"))).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
            },
            outgoing = rx.recv() => match outgoing {
                Some(Outbound::Message(message)) => {
                    if sink.send(frame(&message)).await.is_err() {
                        break;
                    }
                }
                Some(Outbound::Close) | None => {
                    let _ = sink.send(Message::Close(None)).await;
                    break;
                }
            },
        }
    }
    media.conn_closed(conn).await;
}
