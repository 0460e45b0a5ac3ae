//! ICE over TCP (RFC 6544, passive candidates only): for school and hospital networks that drop
//! UDP. Each accepted connection carries RFC 4571 frames (a 16-bit big-endian length, then one
//! STUN, DTLS, RTP or RTCP packet). A task per connection reads frames into the media task,
//! which feeds them to the same per-peer core as UDP datagrams, and writes the frames the core
//! sends back.
//!
//! A connection that has not sent a frame within [`FIRST_FRAME`] is closed, and at most
//! [`MAX_CONNECTIONS`] are open at once, so idle sockets cannot pile up.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// The most ICE-TCP connections open at once.
pub const MAX_CONNECTIONS: usize = 2048;
/// How long a new connection may stay silent before it is closed.
pub const FIRST_FRAME: Duration = Duration::from_secs(10);
/// Frames queued for one connection's writer; past that the core's packets are dropped, as a
/// full UDP socket buffer would drop them.
pub const WRITE_QUEUE: usize = 512;

/// What a connection tells the media task.
#[derive(Debug)]
pub enum TcpEvent {
    /// A client connected from this address; frames for it go to the sender.
    Opened(SocketAddr, mpsc::Sender<Vec<u8>>),
    /// One frame's payload from this address.
    Frame(SocketAddr, Vec<u8>),
    /// The connection from this address is gone.
    Closed(SocketAddr),
}

/// Puts a 16-bit length before `packet` (RFC 4571). Packets over 65535 bytes cannot be framed.
pub fn frame(packet: &[u8]) -> Option<Vec<u8>> {
    let len = u16::try_from(packet.len()).ok()?;
    let mut out = Vec::with_capacity(packet.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(packet);
    Some(out)
}

/// Accepts connections until the media task stops listening.
pub async fn accept(listener: TcpListener, events: mpsc::Sender<TcpEvent>) {
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "ICE-TCP accept failed");
                // Out of file descriptors and the like: give the system a moment.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if events.is_closed() {
            return;
        }
        if open.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
            tracing::warn!(max = MAX_CONNECTIONS, "too many ICE-TCP connections; refusing one");
            continue;
        }
        let _ = stream.set_nodelay(true);
        open.fetch_add(1, Ordering::Relaxed);
        let (open, events) = (open.clone(), events.clone());
        tokio::spawn(async move {
            serve(stream, remote, &events).await;
            let _ = events.send(TcpEvent::Closed(remote)).await;
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

async fn serve(stream: TcpStream, remote: SocketAddr, events: &mpsc::Sender<TcpEvent>) {
    let (mut read, mut write) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
    if events.send(TcpEvent::Opened(remote, tx)).await.is_err() {
        return;
    }
    let writer = tokio::spawn(async move {
        while let Some(packet) = rx.recv().await {
            let Some(framed) = frame(&packet) else { continue };
            if write.write_all(&framed).await.is_err() {
                return;
            }
        }
    });
    let mut first = true;
    loop {
        let mut len = [0u8; 2];
        let read_len = read.read_exact(&mut len);
        let got = if first { tokio::time::timeout(FIRST_FRAME, read_len).await.unwrap_or(Ok(0)) } else { read_len.await };
        if !matches!(got, Ok(2)) {
            break;
        }
        first = false;
        let mut packet = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if read.read_exact(&mut packet).await.is_err() {
            break;
        }
        if !packet.is_empty() && events.send(TcpEvent::Frame(remote, packet)).await.is_err() {
            break;
        }
    }
    writer.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_a_big_endian_length() {
        assert_eq!(frame(&[7, 8, 9]), Some(vec![0, 3, 7, 8, 9]));
        assert_eq!(frame(&[]), Some(vec![0, 0]));
        assert_eq!(frame(&vec![0u8; 65535]).map(|f| f.len()), Some(65537));
        assert_eq!(frame(&vec![0u8; 65536]), None);
    }

    #[tokio::test]
    async fn a_connection_delivers_frames_in_order_and_writes_framed_replies() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, mut rx) = mpsc::channel(16);
        tokio::spawn(accept(listener, tx));
        let mut client = TcpStream::connect(addr).await.unwrap();
        // Two frames in one write, the second split over two writes.
        client.write_all(&[0, 2, 1, 2, 0, 3, 3]).await.unwrap();
        client.write_all(&[4, 5]).await.unwrap();
        let Some(TcpEvent::Opened(remote, reply)) = rx.recv().await else { panic!("no Opened") };
        assert_eq!(remote, client.local_addr().unwrap());
        let mut frames = Vec::new();
        for _ in 0..2 {
            match rx.recv().await {
                Some(TcpEvent::Frame(from, p)) => {
                    assert_eq!(from, remote);
                    frames.push(p);
                }
                other => panic!("expected a frame, got {other:?}"),
            }
        }
        assert_eq!(frames, [vec![1, 2], vec![3, 4, 5]]);
        reply.send(vec![9, 9, 9]).await.unwrap();
        let mut back = [0u8; 5];
        client.read_exact(&mut back).await.unwrap();
        assert_eq!(back, [0, 3, 9, 9, 9]);
        drop(client);
        assert!(matches!(rx.recv().await, Some(TcpEvent::Closed(a)) if a == remote));
    }
}
