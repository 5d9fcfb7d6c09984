//! Accepting connections with bounds: a cap on open connections, a deadline for a request's
//! headers once its first byte arrived (slow clients), and one for connections that sit idle
//! between requests. At the cap, the connection idle the longest is closed to make room, so a
//! crowd of idle or half-open connections cannot keep a health probe or a real request out; only
//! when every connection is busy is a new one refused.
//!
//! HTTP/1.1 only, with keep-alive, through hyper; every request goes to an axum router. Over
//! TLS, the handshake counts against the cap like any open connection, and must end within the
//! header deadline of the connection's acceptance.

use super::tls::Tls;
use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tower::ServiceExt as _;

/// Connection bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Most connections open at once (further capped by the process's file descriptor limit).
    pub max_connections: usize,
    /// Longest from a request's first byte to its last header.
    pub header_timeout: Duration,
    /// Longest a connection may sit between requests.
    pub idle_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// What the accept loop counts, for `/metrics`.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    /// Connections open now.
    pub open: AtomicU64,
    /// Connections closed to make room at the cap, or for being idle or slow.
    pub closed_idle: AtomicU64,
    /// Connections closed because their headers, or their TLS handshake, did not arrive in
    /// time.
    pub closed_slow: AtomicU64,
    /// Connections refused at the cap (every open connection was busy).
    pub refused: AtomicU64,
    /// TLS handshakes that failed: plain HTTP, no client certificate or one from another CA,
    /// no protocol version or cipher suite in common (not those that timed out: `closed_slow`).
    pub tls_failed: AtomicU64,
}

/// One connection's state, as the accept loop and the sweeper see it.
struct Conn {
    /// Requests being handled.
    busy: AtomicU32,
    /// Bytes of a new request have arrived (while not busy).
    reading: AtomicBool,
    /// Milliseconds (since the registry's start) of the last change between idle, reading and
    /// busy.
    since: AtomicU64,
    close: Notify,
}

struct Registry {
    start: Instant,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    next: AtomicU64,
    stats: Arc<ConnectionStats>,
}

impl Registry {
    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.conns.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Make room for one more connection: close the one idle (or reading its headers) the
    /// longest. `false` when every connection is busy.
    fn evict_one(&self) -> bool {
        let victim = self
            .lock()
            .values()
            .filter(|c| c.busy.load(Ordering::SeqCst) == 0)
            .min_by_key(|c| c.since.load(Ordering::SeqCst))
            .cloned();
        match victim {
            Some(conn) => {
                conn.busy.store(u32::MAX, Ordering::SeqCst);
                conn.close.notify_one();
                self.stats.closed_idle.fetch_add(1, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// Close connections that were idle, or slow with their headers, for too long.
    fn sweep(&self, limits: &ConnectionLimits) {
        let now = self.now();
        let header = u64::try_from(limits.header_timeout.as_millis()).unwrap_or(u64::MAX);
        let idle = u64::try_from(limits.idle_timeout.as_millis()).unwrap_or(u64::MAX);
        for conn in self.lock().values() {
            if conn.busy.load(Ordering::SeqCst) != 0 {
                continue;
            }
            let age = now.saturating_sub(conn.since.load(Ordering::SeqCst));
            let reading = conn.reading.load(Ordering::SeqCst);
            if (reading && age > header) || (!reading && age > idle) {
                conn.busy.store(u32::MAX, Ordering::SeqCst);
                conn.close.notify_one();
                let counter = if reading {
                    &self.stats.closed_slow
                } else {
                    &self.stats.closed_idle
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The socket, noting when the first byte of a request arrives on an idle connection.
struct Tracked {
    stream: TcpStream,
    conn: Arc<Conn>,
    registry: Arc<Registry>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before
            && self.conn.busy.load(Ordering::SeqCst) == 0
            && !self.conn.reading.swap(true, Ordering::SeqCst)
        {
            self.conn.since.store(self.registry.now(), Ordering::SeqCst);
        }
        result
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Raise this process's soft limit on open files to its hard limit, and return the number of
/// connections that leaves room for (a reserve stays for files, pipes and outgoing fetches).
pub fn connection_budget(wanted: usize) -> usize {
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    let usable = usize::try_from(limit.saturating_sub(256)).unwrap_or(usize::MAX);
    wanted.min(usable.max(16))
}

/// Serve `router` on `listener` (over TLS when `tls` is given: then only TLS) until `stop`
/// turns true; then stop accepting, let requests in flight finish, and close idle connections.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    stats: Arc<ConnectionStats>,
    tls: Option<Arc<Tls>>,
    stop: watch::Receiver<bool>,
) {
    let max = connection_budget(limits.max_connections);
    let registry = Arc::new(Registry {
        start: Instant::now(),
        conns: Mutex::new(HashMap::new()),
        next: AtomicU64::new(0),
        stats,
    });
    let sweeper = {
        let registry = Arc::clone(&registry);
        tokio::spawn(async move {
            let period = (limits.header_timeout.min(limits.idle_timeout) / 4)
                .clamp(Duration::from_millis(20), Duration::from_millis(500));
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                registry.sweep(&limits);
            }
        })
    };
    let mut tasks = tokio::task::JoinSet::new();
    let mut watching = stop.clone();
    let stopped = async move {
        let _ = watching.wait_for(|s| *s).await;
    };
    tokio::pin!(stopped);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stopped => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
        };
        let Ok((stream, _peer)) = accepted else {
            // Out of file descriptors, or a connection reset before it was accepted: wait a
            // little rather than spin.
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        let open = registry.lock().len();
        if open >= max && !registry.evict_one() {
            registry.stats.refused.fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let id = registry.next.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            busy: AtomicU32::new(0),
            reading: AtomicBool::new(false),
            since: AtomicU64::new(registry.now()),
            close: Notify::new(),
        });
        registry.lock().insert(id, Arc::clone(&conn));
        registry.stats.open.fetch_add(1, Ordering::Relaxed);
        let tracked = Tracked {
            stream,
            conn: Arc::clone(&conn),
            registry: Arc::clone(&registry),
        };
        let (router, registry, tls, stop) = (
            router.clone(),
            Arc::clone(&registry),
            tls.clone(),
            stop.clone(),
        );
        tasks.spawn(async move {
            match tls {
                None => drive(tracked, router, &conn, &registry, limits, stop).await,
                Some(tls) => {
                    if let Some(stream) =
                        handshake(tracked, &tls, &conn, &registry, limits, &stop).await
                    {
                        drive(stream, router, &conn, &registry, limits, stop).await;
                    }
                }
            }
            registry.lock().remove(&id);
            registry.stats.open.fetch_sub(1, Ordering::Relaxed);
        });
    }
    drop(listener);
    // Requests in flight finish (each connection shuts down gracefully on `stop`).
    while tasks.join_next().await.is_some() {}
    sweeper.abort();
}

/// Answer a client that speaks plain HTTP to a TLS listener (it sent no TLS handshake) with a
/// 400 that says so, and close. Its bytes are read before and after the answer (at most 64 KiB,
/// within the handshake's deadline): a socket closed with unread bytes is reset, and a reset
/// can destroy the answer before the client reads it.
async fn refuse_plain_http(stream: &mut TcpStream) {
    let body = r#"{"code":"request_invalid","message":"this listener speaks TLS: use https://"}"#;
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut sink = [0u8; 4096];
    let _ = stream.read(&mut sink).await;
    if stream.write_all(answer.as_bytes()).await.is_err() || stream.shutdown().await.is_err() {
        return;
    }
    let mut drained = 0;
    while drained < 64 << 10 {
        match stream.read(&mut sink).await {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

/// The TLS handshake of a new connection, within the header deadline from the moment it was
/// accepted (a client that connects and sends nothing does not keep its place until the idle
/// deadline), and cut short when the connection is closed to make room or the listener stops.
/// `None` when it failed or was cut short; a client that sent plain HTTP is answered 400.
async fn handshake(
    tracked: Tracked,
    tls: &Tls,
    conn: &Conn,
    registry: &Registry,
    limits: ConnectionLimits,
    stop: &watch::Receiver<bool>,
) -> Option<tokio_rustls::server::TlsStream<Tracked>> {
    let acceptor = tls.acceptor();
    let shake = async move {
        // A TLS connection opens with a handshake record (content type 22).
        let mut first = [0u8; 1];
        if tracked.stream.peek(&mut first).await.ok()? == 0 {
            return None;
        }
        if first != [22] {
            registry.stats.tls_failed.fetch_add(1, Ordering::Relaxed);
            let mut tracked = tracked;
            refuse_plain_http(&mut tracked.stream).await;
            return None;
        }
        match acceptor.accept(tracked).await {
            Ok(stream) => Some(stream),
            Err(_) => {
                registry.stats.tls_failed.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    };
    let mut stop = stop.clone();
    let stream = tokio::select! {
        done = tokio::time::timeout(limits.header_timeout, shake) => match done {
            Ok(stream) => stream,
            Err(_) => {
                // Counted once, here or by the sweeper (a handshake that began but did not end).
                if conn.busy.swap(u32::MAX, Ordering::SeqCst) != u32::MAX {
                    registry.stats.closed_slow.fetch_add(1, Ordering::Relaxed);
                }
                None
            }
        },
        () = conn.close.notified() => None,
        _ = stop.wait_for(|s| *s) => None,
    }?;
    // Handshaken, the connection is idle until a request's first byte, as a plain one is when
    // it opens.
    if conn.busy.load(Ordering::SeqCst) == u32::MAX {
        return None;
    }
    conn.reading.store(false, Ordering::SeqCst);
    conn.since.store(registry.now(), Ordering::SeqCst);
    Some(stream)
}

/// HTTP/1.1 on one connection until it ends, is closed (idle, slow, or to make room), or the
/// listener stops (then requests in flight finish first, for at most 10 seconds).
async fn drive<S>(
    io: S,
    router: Router,
    conn: &Arc<Conn>,
    registry: &Arc<Registry>,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = {
        let (conn, registry) = (Arc::clone(conn), Arc::clone(registry));
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let _ = conn
                .busy
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| {
                    (b != u32::MAX).then(|| b + 1)
                });
            conn.reading.store(false, Ordering::SeqCst);
            let (conn, registry) = (Arc::clone(&conn), Arc::clone(&registry));
            let response = router.clone().oneshot(request.map(Body::new));
            async move {
                let response = response.await;
                // A connection marked for closing keeps its mark.
                let _ = conn
                    .busy
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| {
                        (b != u32::MAX).then(|| b.saturating_sub(1))
                    });
                conn.since.store(registry.now(), Ordering::SeqCst);
                response
            }
        })
    };
    let http = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        // The sweeper enforces both deadlines; this is hyper's own backstop.
        .header_read_timeout(limits.header_timeout + limits.idle_timeout)
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(http);
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    tokio::select! {
        _ = &mut http => {}
        () = conn.close.notified() => {}
        () = stopped => {
            http.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(10), &mut http).await;
        }
    }
}
