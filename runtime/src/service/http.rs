//! Serving the routes over HTTP with the limits a public endpoint needs
//! ([`HttpConfig`]).
//!
//! `axum::serve` sets no timer on its connections, and hyper's own timers leave
//! holes: its header read timeout is HTTP/1's only, the auto builder reads the
//! protocol preface with no timer at all, and tower-http's body timeout restarts
//! with every piece, so a body trickled a byte at a time never ends. Here every
//! connection gets
//! - a **header deadline**: the first request's head must arrive within
//!   `header_timeout` of the connection opening (HTTP/1 and HTTP/2 alike; for
//!   HTTP/1's later requests hyper counts it from the previous answer);
//! - a **body deadline**: once a request's head is in, its whole body must arrive
//!   within `body_timeout`, one deadline that no piece restarts;
//! - an **idle limit**: a connection with no request in hand for `idle_timeout` is
//!   shut down gracefully (HTTP/2: GOAWAY). One that has still not closed
//!   `header_timeout` after a shutdown, with nothing in hand, is dropped: a peer
//!   that never answers the GOAWAY's PING holds nothing;
//! - HTTP/2 keep-alive PINGs (a dead peer is noticed) and a cap on its streams;
//!
//! and the peer's address as [`axum::extract::ConnectInfo`]. At most
//! `max_connections` are open at once: beyond them a new connection is answered a
//! short `503` that says why and closed at once, without a task, so a flood costs a
//! moment of a descriptor each (counted in `pcsync_http_connections_refused`, and
//! logged at most every 10 s). Graceful shutdown: once `shutdown` resolves no
//! connection is accepted, each open one finishes the request in hand, and `serve`
//! returns when all have closed.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::{Bytes, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::config::HttpConfig;
use crate::service::metrics::Metrics;

/// What a connection beyond `max_connections` is told before it is closed.
const REFUSAL_REASON: &str =
    "too many connections are open (http.max_connections); retry in a moment\n";

fn refusal() -> Vec<u8> {
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{REFUSAL_REASON}",
        REFUSAL_REASON.len()
    )
    .into_bytes()
}

/// Serves `app` on `listener` under `limits` until `shutdown` resolves and the open
/// connections have finished.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: &HttpConfig,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let header_timeout = limits.header_timeout.0;
    let body_timeout = limits.body_timeout.0;
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.http2_keep_alive_interval.0)
        .keep_alive_timeout(limits.http2_keep_alive_timeout.0)
        .max_concurrent_streams(limits.http2_max_concurrent_streams);
    let idle_timeout = limits.idle_timeout.0;
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let refusal = refusal();
    let mut refusals = Refusals::default();
    // Dropped to tell connections to finish; `closed` resolves when all have.
    let (signal_tx, signal_rx) = watch::channel(());
    let (close_tx, close_rx) = watch::channel(());
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
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            refuse(&stream, &refusal);
            drop(stream);
            metrics.connection_refused();
            refusals.note(limits.max_connections);
            continue;
        };
        let open = Open::new(permit, Arc::clone(&metrics));
        // Requests in hand: the idle limit runs only while there are none.
        let in_hand = Arc::new(watch::Sender::new(0_usize));
        let app = app.clone();
        let service = {
            let in_hand = Arc::clone(&in_hand);
            hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                let held = InHand::enter(&in_hand);
                let deadline = tokio::time::Instant::now() + body_timeout;
                let mut request =
                    request.map(|body| Body::new(DeadlineBody::new(body, deadline, body_timeout)));
                request.extensions_mut().insert(ConnectInfo(peer));
                let mut app = app.clone();
                let answer = tower_service::Service::call(&mut app, request);
                async move {
                    let answer = answer.await;
                    drop(held);
                    answer
                }
            })
        };
        let mut signal = signal_rx.clone();
        let close = close_rx.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            let mut requests = in_hand.subscribe();
            let mut shutting_down = false;
            let mut served = false;
            loop {
                let idle = *requests.borrow_and_update() == 0;
                let limit = if served && !shutting_down {
                    idle_timeout
                } else {
                    header_timeout
                };
                tokio::select! {
                    result = conn.as_mut() => {
                        if let Err(e) = result {
                            tracing::debug!(peer = %peer, error = %e, "connection ended");
                        }
                        break;
                    }
                    _ = signal.changed(), if !shutting_down => {
                        shutting_down = true;
                        conn.as_mut().graceful_shutdown();
                    }
                    // Never an error: `in_hand` keeps the sender for as long as this runs.
                    _ = requests.changed() => served = true,
                    () = tokio::time::sleep(limit), if idle => {
                        if shutting_down {
                            tracing::debug!(peer = %peer, "connection dropped: its shutdown went unanswered");
                            break;
                        }
                        shutting_down = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
            drop(open);
            drop(close);
        });
    }
    drop(signal_rx);
    let _ = signal_tx.send(());
    drop(close_rx);
    close_tx.closed().await;
    Ok(())
}

/// Answers a connection beyond the cap without a task or a wait: what of its
/// request has arrived is read first (closing a socket with unread data sends a
/// reset, which can destroy the answer before the client reads it), then the 503.
fn refuse(stream: &tokio::net::TcpStream, refusal: &[u8]) {
    let mut arrived = [0_u8; 4096];
    let _ = stream.try_read(&mut arrived);
    let _ = stream.try_write(refusal);
}

/// Logs refused connections at most every 10 s, with how many since the last log.
#[derive(Default)]
struct Refusals {
    since_log: u64,
    logged_at: Option<tokio::time::Instant>,
}

impl Refusals {
    fn note(&mut self, max_connections: usize) {
        self.since_log += 1;
        let now = tokio::time::Instant::now();
        if self
            .logged_at
            .is_none_or(|at| now - at >= Duration::from_secs(10))
        {
            tracing::warn!(
                refused = self.since_log,
                max_connections,
                "connections refused: http.max_connections are open"
            );
            self.since_log = 0;
            self.logged_at = Some(now);
        }
    }
}

/// An open connection's place under the cap, and its count in the gauge.
struct Open {
    _permit: OwnedSemaphorePermit,
    metrics: Arc<Metrics>,
}

impl Open {
    fn new(permit: OwnedSemaphorePermit, metrics: Arc<Metrics>) -> Self {
        metrics.connection_opened();
        Open {
            _permit: permit,
            metrics,
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.metrics.connection_closed();
    }
}

/// One request in hand on a connection, from its head to its answer.
struct InHand(Arc<watch::Sender<usize>>);

impl InHand {
    fn enter(count: &Arc<watch::Sender<usize>>) -> Self {
        count.send_modify(|n| *n += 1);
        InHand(Arc::clone(count))
    }
}

impl Drop for InHand {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

/// Why a request body ended early.
#[derive(Debug, thiserror::Error)]
enum BodyError {
    /// The body's deadline passed before its end arrived.
    #[error("the request body did not arrive whole within {0:?}")]
    Deadline(Duration),
    /// The connection failed while reading it.
    #[error(transparent)]
    Read(#[from] hyper::Error),
}

/// A request body that must arrive whole by a deadline fixed when its head arrived.
struct DeadlineBody {
    body: Incoming,
    deadline: tokio::time::Instant,
    limit: Duration,
    /// Set on the first wait, so a body read at once costs no timer.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl DeadlineBody {
    fn new(body: Incoming, deadline: tokio::time::Instant, limit: Duration) -> Self {
        DeadlineBody {
            body,
            deadline,
            limit,
            timer: None,
        }
    }
}

impl hyper::body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(BodyError::Read)));
        }
        let deadline = this.deadline;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(BodyError::Deadline(this.limit)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcsync_engine::model::DurationSpec;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Limits small enough for a test to watch them act.
    fn limits(header_ms: u64, body_ms: u64, idle_ms: u64, max_connections: usize) -> HttpConfig {
        let ms = |n| DurationSpec(Duration::from_millis(n));
        HttpConfig {
            header_timeout: ms(header_ms),
            body_timeout: ms(body_ms),
            idle_timeout: ms(idle_ms),
            max_connections,
            // Far off: the idle limit, not keep-alive, is what these tests watch.
            http2_keep_alive_interval: ms(60_000),
            ..HttpConfig::default()
        }
    }

    async fn start(limits: HttpConfig) -> (SocketAddr, Arc<Metrics>) {
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
        let metrics = Arc::new(Metrics::default());
        let served = Arc::clone(&metrics);
        tokio::spawn(
            async move { serve(listener, app, &limits, served, std::future::pending()).await },
        );
        (addr, metrics)
    }

    /// Reads until the server closes the connection (a guard of 30 s fails the
    /// test instead of hanging it).
    async fn until_closed(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), async {
            let mut chunk = [0_u8; 4096];
            // A reset after the answer counts as closed too.
            while let Ok(n @ 1..) = stream.read(&mut chunk).await {
                answer.extend_from_slice(&chunk[..n]);
            }
        })
        .await
        .expect("the server closes the connection");
        answer
    }

    /// Sends `raw` and reads until the server closes the connection.
    async fn exchange(addr: SocketAddr, raw: &[u8]) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(raw).await.unwrap();
        String::from_utf8_lossy(&until_closed(&mut stream).await).into_owned()
    }

    #[tokio::test]
    async fn a_stalled_client_loses_its_connection() {
        let (addr, _) = start(limits(300, 300, 300, 16)).await;
        // Half a request head, then nothing: closed without an answer.
        let answer = exchange(addr, b"POST /echo HTTP/1.1\r\nHost: x\r\n").await;
        assert!(!answer.contains("bytes from"), "{answer}");
        // Nothing at all (not even enough to tell HTTP/1 from HTTP/2): closed too.
        assert_eq!(exchange(addr, b"").await, "");
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

    #[tokio::test]
    async fn a_body_trickled_a_byte_at_a_time_is_cut_off_at_its_deadline() {
        let (addr, _) = start(limits(10_000, 300, 10_000, 16)).await;
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut read, mut write) = stream.into_split();
        // Each byte well inside the body timeout, the whole body (5 s) far beyond it.
        let trickle = tokio::spawn(async move {
            write
                .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
                .await?;
            for _ in 0..100 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                write.write_all(b"x").await?;
            }
            std::io::Result::Ok(write)
        });
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), read.read_to_end(&mut answer))
            .await
            .expect("the server closes the connection")
            .ok();
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with("HTTP/1.1 4") || answer.starts_with("HTTP/1.1 5"),
            "{answer}"
        );
        assert!(!answer.contains("bytes from"), "{answer}");
        trickle.abort();
    }

    /// HTTP/2 frames as (type, flags, stream id), from raw bytes.
    fn frames(mut bytes: &[u8]) -> Vec<(u8, u8, u32)> {
        let mut out = Vec::new();
        while bytes.len() >= 9 {
            let len = u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]) as usize;
            let stream = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) & 0x7fff_ffff;
            out.push((bytes[3], bytes[4], stream));
            bytes = &bytes[(9 + len).min(bytes.len())..];
        }
        out
    }

    const HEADERS: u8 = 0x1;
    const GOAWAY: u8 = 0x7;

    #[tokio::test]
    async fn an_idle_http2_connection_is_sent_goaway_and_closed() {
        let (addr, _) = start(limits(300, 300, 300, 16)).await;
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        // Prior knowledge: the preface, empty SETTINGS, then one request (HEADERS,
        // END_STREAM | END_HEADERS, on stream 1) in HPACK's static table:
        // `:method GET`, `:scheme http`, `:path /`.
        let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        hello.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
        hello.extend_from_slice(&[0, 0, 3, HEADERS, 0x5, 0, 0, 0, 1, 0x82, 0x86, 0x84]);
        stream.write_all(&hello).await.unwrap();
        let frames = frames(&until_closed(&mut stream).await);
        let answered = frames
            .iter()
            .position(|&(kind, _, id)| kind == HEADERS && id == 1);
        let went_away = frames.iter().position(|&(kind, _, _)| kind == GOAWAY);
        assert!(
            matches!((answered, went_away), (Some(a), Some(g)) if a < g),
            "the request answered, then GOAWAY: {frames:?}"
        );
    }

    #[tokio::test]
    async fn a_silent_http2_connection_is_closed_after_the_header_timeout() {
        let (addr, _) = start(limits(300, 300, 60_000, 16)).await;
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        hello.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
        stream.write_all(&hello).await.unwrap();
        let frames = frames(&until_closed(&mut stream).await);
        assert!(
            frames.iter().any(|&(kind, _, _)| kind == GOAWAY),
            "{frames:?}"
        );
    }

    #[tokio::test]
    async fn connections_beyond_the_cap_are_answered_503_and_closed() {
        let (addr, metrics) = start(limits(10_000, 10_000, 10_000, 2)).await;
        // Two connections hold the two places (the listener accepts in order).
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream
                .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\n")
                .await
                .unwrap();
            held.push(stream);
        }
        let answer = exchange(addr, b"").await;
        assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
        assert!(answer.ends_with(REFUSAL_REASON), "{answer}");
        let text = metrics.render(None, None);
        assert!(
            text.contains("pcsync_http_connections_refused_total 1\n"),
            "{text}"
        );
        assert!(text.contains("pcsync_http_connections_open 2\n"), "{text}");

        // A place freed is taken again (once the server has seen the close).
        drop(held.pop());
        let mut served = String::new();
        for _ in 0..500 {
            served = exchange(
                addr,
                b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
            )
            .await;
            if !served.starts_with("HTTP/1.1 503 ") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(served.contains("3 bytes from 127.0.0.1"), "{served}");
    }
}
