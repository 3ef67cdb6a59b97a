//! Serving the routes over HTTP with the limits a public endpoint needs.
//!
//! `axum::serve` sets no timer on its connections, so hyper's header read timeout
//! never fires: a client that sends half a request line holds its connection (and
//! a task) for as long as it likes. Here every connection gets
//! - a **header read timeout**: the request head must arrive within it, else the
//!   connection is closed;
//! - a **body read timeout**: a body that stops arriving ends the request with an
//!   error instead of waiting;
//!
//! and the peer's address as [`axum::extract::ConnectInfo`]. Graceful shutdown:
//! once `shutdown` resolves no connection is accepted, each open one finishes the
//! request in hand, and `serve` returns when all have closed.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;

/// How long a client may take to send what it sends.
#[derive(Debug, Clone, Copy)]
pub struct ReadTimeouts {
    /// The request line and headers.
    pub header: Duration,
    /// The body, once the headers are in.
    pub body: Duration,
}

impl Default for ReadTimeouts {
    /// 10 s each: HubSpot and EventBridge send a whole batch in milliseconds.
    fn default() -> Self {
        ReadTimeouts {
            header: Duration::from_secs(10),
            body: Duration::from_secs(10),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves and the open connections
/// have finished.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    timeouts: ReadTimeouts,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let app = app.layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
        timeouts.body,
    ));
    // Dropped to tell connections to finish; `closed` resolves when all have.
    let (signal_tx, signal_rx) = tokio::sync::watch::channel(());
    let (close_tx, close_rx) = tokio::sync::watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let mut request = request.map(Body::new);
            request.extensions_mut().insert(ConnectInfo(peer));
            let mut app = app.clone();
            tower_service::Service::call(&mut app, request)
        });
        let mut signal = signal_rx.clone();
        let close = close_rx.clone();
        tokio::spawn(async move {
            let mut builder = Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(timeouts.header);
            builder.http2().timer(TokioTimer::new());
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            let mut finishing = false;
            loop {
                tokio::select! {
                    result = conn.as_mut() => {
                        if let Err(e) = result {
                            tracing::debug!(peer = %peer, error = %e, "connection ended");
                        }
                        break;
                    }
                    _ = signal.changed(), if !finishing => {
                        finishing = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
            drop(close);
        });
    }
    drop(signal_rx);
    let _ = signal_tx.send(());
    drop(close_rx);
    close_tx.closed().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn start(timeouts: ReadTimeouts) -> SocketAddr {
        let app = Router::new().route(
            "/echo",
            axum::routing::post(
                |ConnectInfo(peer): ConnectInfo<SocketAddr>, body: axum::body::Bytes| async move {
                    format!("{} bytes from {}", body.len(), peer.ip())
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, app, timeouts, std::future::pending()));
        addr
    }

    /// Sends `raw` and reads until the server closes the connection (a guard of
    /// 30 s fails the test instead of hanging it).
    async fn exchange(addr: SocketAddr, raw: &[u8]) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(raw).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer))
            .await
            .expect("the server closes a stalled connection")
            .unwrap();
        String::from_utf8_lossy(&answer).into_owned()
    }

    #[tokio::test]
    async fn a_stalled_client_loses_its_connection() {
        let addr = start(ReadTimeouts {
            header: Duration::from_millis(300),
            body: Duration::from_millis(300),
        })
        .await;
        // Half a request head, then nothing: closed without an answer.
        let answer = exchange(addr, b"POST /echo HTTP/1.1\r\nHost: x\r\n").await;
        assert!(!answer.contains("bytes from"), "{answer}");
        // A whole head promising 100 bytes of body, and 10 of them: an error answer.
        let answer = exchange(
            addr,
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nConnection: close\r\n\r\n0123456789",
        )
        .await;
        assert!(
            answer.starts_with("HTTP/1.1 4") || answer.starts_with("HTTP/1.1 5"),
            "{answer}"
        );
        // A prompt client is served, with its address.
        let answer = exchange(
            addr,
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
        )
        .await;
        assert!(answer.contains("3 bytes from 127.0.0.1"), "{answer}");
    }
}
