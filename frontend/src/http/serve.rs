//! The HTTP server loop, with what `axum::serve` leaves out:
//!
//! - TCP_NODELAY on every accepted connection, so the last bytes of a
//!   response (the end of an SSE stream) never wait for the client's delayed
//!   ACK (Nagle's algorithm: a 40 ms stall per kept-alive call otherwise);
//! - a cap on open connections (MCP_HTTP_MAX_CONNECTIONS): one past it is
//!   answered 503 and closed, and counted in `mcp_http_connections_refused_total`;
//! - a header-read timeout, from a request's first byte to its last header
//!   line (slowloris), and an idle timeout for a kept-alive connection with no
//!   request in progress. A request in progress — a long-lived stream
//!   included — never counts as idle; its body has its own timeout
//!   ([`super::body_limit`]), and long-lived streams their own cap
//!   ([`super::streams`]);
//! - the client's address on every request ([`ClientAddr`]).
//!
//! hyper's own header timeout is not used: it starts whenever a connection
//! waits for a request, so it would also close idle keep-alive connections,
//! and the two limits could not be set apart.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::held;
use crate::auth::ClientAddr;
use crate::metrics::{self, ConnectionClosed};

/// How long open connections may take to finish after a stop.
const DRAIN_WITHIN: Duration = Duration::from_secs(10);
/// A failed accept (e.g. out of file descriptors) is retried after this.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);
/// Refused connections being answered at once; past this they are just closed.
const MAX_REFUSALS_IN_FLIGHT: usize = 64;
/// How long a refused connection gets to read its 503.
const REFUSAL_WITHIN: Duration = Duration::from_secs(1);

/// The limits every connection is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub max_connections: u32,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
}

/// Serves `app` on `listener` until `stop` fires, then lets open
/// connections finish (for at most 10 s).
pub async fn serve(listener: TcpListener, app: Router, limits: ConnectionLimits, stop: CancellationToken) {
    let slots = Arc::new(Semaphore::new(limits.max_connections as usize));
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS_IN_FLIGHT));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().header_read_timeout(None);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            () = stop.cancelled() => break,
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            metrics::http_connection_refused();
            if let Ok(permit) = Arc::clone(&refusals).try_acquire_owned() {
                tokio::spawn(refuse(stream, permit));
            }
            continue;
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let connection = Connection {
            peer,
            app: app.clone(),
            limits,
            stop: stop.clone(),
            _slot: slot,
        };
        tokio::spawn(connection.serve(stream, builder.clone()));
    }
    if tokio::time::timeout(DRAIN_WITHIN, slots.acquire_many(limits.max_connections))
        .await
        .is_err()
    {
        tracing::warn!(
            "HTTP connections still open {} s after the stop; closing them",
            DRAIN_WITHIN.as_secs()
        );
    }
}

/// Files the process needs besides its connections (logs, gRPC channels).
const SPARE_FILES: u64 = 64;

/// Warns when the open-file limit is too low for `max_connections`: accepts
/// would fail (EMFILE) before the cap refuses anyone.
pub(super) fn warn_if_files_run_out(max_connections: u32) {
    let soft_limit = std::fs::read_to_string("/proc/self/limits").ok().and_then(|limits| {
        limits
            .lines()
            .find(|line| line.starts_with("Max open files"))
            .and_then(|line| line.split_whitespace().nth(3))
            .and_then(|soft| soft.parse::<u64>().ok())
    });
    if let Some(soft_limit) = soft_limit
        && soft_limit < u64::from(max_connections) + SPARE_FILES
    {
        tracing::warn!(
            soft_limit,
            max_connections,
            "the open-file limit is below MCP_HTTP_MAX_CONNECTIONS plus {SPARE_FILES}: raise it (ulimit -n) \
             or lower MCP_HTTP_MAX_CONNECTIONS"
        );
    }
}

/// One accepted connection and what it needs.
struct Connection {
    peer: SocketAddr,
    app: Router,
    limits: ConnectionLimits,
    stop: CancellationToken,
    /// Its place under MCP_HTTP_MAX_CONNECTIONS.
    _slot: OwnedSemaphorePermit,
}

impl Connection {
    async fn serve(self, stream: TcpStream, builder: auto::Builder<TokioExecutor>) {
        let _open = metrics::http_connection_opened();
        let (activity, phases) = Activity::new();
        let io = TokioIo::new(Watched {
            stream,
            activity: activity.clone(),
        });
        let (app, peer) = (self.app, self.peer);
        let service = service_fn(move |request: hyper::Request<Incoming>| {
            let in_progress = activity.request_started();
            let mut request = request.map(Body::new);
            request.extensions_mut().insert(ClientAddr(peer));
            let app = app.clone();
            async move {
                let response = match app.oneshot(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                Ok::<_, Infallible>(held::until_sent(response, in_progress))
            }
        });
        let connection = builder.serve_connection(io, service);
        tokio::pin!(connection);
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
                }
            }
            why = expired(phases, self.limits) => {
                metrics::http_connection_closed(why);
                tracing::debug!(%peer, reason = why.as_str(), "closed an HTTP connection");
            }
            () = self.stop.cancelled() => {
                connection.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(DRAIN_WITHIN, connection).await;
            }
        }
    }
}

/// Answers a connection past the cap with 503 and closes it. The rest of
/// its request is read (briefly) first, so that closing does not reset the
/// connection before the client has read the answer.
async fn refuse(mut stream: TcpStream, _permit: OwnedSemaphorePermit) {
    let message = "this server has too many open connections (MCP_HTTP_MAX_CONNECTIONS); retry shortly";
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{message}",
        message.len()
    );
    let _ = tokio::time::timeout(REFUSAL_WITHIN, async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, io::Error>(())
    })
    .await;
}

/// Where a connection is: waiting for a request, reading one's head, or
/// serving `n` requests (HTTP/2 serves several at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle(Instant),
    Head(Instant),
    Busy(usize),
}

#[derive(Clone)]
struct Activity(Arc<watch::Sender<Phase>>);

impl Activity {
    fn new() -> (Self, watch::Receiver<Phase>) {
        let (phase, phases) = watch::channel(Phase::Idle(Instant::now()));
        (Self(Arc::new(phase)), phases)
    }

    /// Bytes came in: an idle connection starts reading a request head.
    fn bytes_arrived(&self) {
        self.0.send_if_modified(|phase| match phase {
            Phase::Idle(_) => {
                *phase = Phase::Head(Instant::now());
                true
            }
            _ => false,
        });
    }

    /// A request's head was read; the connection is busy until the returned
    /// mark is dropped (with the response body, once sent).
    fn request_started(&self) -> InProgress {
        self.0.send_modify(|phase| {
            *phase = match *phase {
                Phase::Busy(n) => Phase::Busy(n + 1),
                Phase::Idle(_) | Phase::Head(_) => Phase::Busy(1),
            }
        });
        InProgress(self.clone())
    }
}

/// One request in progress on a connection.
struct InProgress(Activity);

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.0.send_modify(|phase| {
            *phase = match *phase {
                Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
                _ => Phase::Idle(Instant::now()),
            }
        });
    }
}

/// Resolves when the connection has been idle, or reading one request
/// head, for too long.
async fn expired(mut phases: watch::Receiver<Phase>, limits: ConnectionLimits) -> ConnectionClosed {
    loop {
        let limit = match *phases.borrow_and_update() {
            Phase::Idle(since) => Some((since + limits.idle_timeout, ConnectionClosed::IdleTimeout)),
            Phase::Head(since) => Some((since + limits.header_read_timeout, ConnectionClosed::HeaderTimeout)),
            Phase::Busy(_) => None,
        };
        let changed = match limit {
            Some((deadline, why)) => tokio::select! {
                () = tokio::time::sleep_until(deadline) => {
                    if !phases.has_changed().unwrap_or(true) {
                        return why;
                    }
                    Ok(())
                }
                changed = phases.changed() => changed,
            },
            None => phases.changed().await,
        };
        // Every sender is gone only when the connection itself is.
        if changed.is_err() {
            return std::future::pending().await;
        }
    }
}

/// The connection's socket, reporting when bytes come in.
struct Watched {
    stream: TcpStream,
    activity: Activity,
}

impl AsyncRead for Watched {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = Pin::new(&mut this.stream).poll_read(cx, buf);
        if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.bytes_arrived();
        }
        read
    }
}

impl AsyncWrite for Watched {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ConnectionLimits = ConnectionLimits {
        max_connections: 1,
        header_read_timeout: Duration::from_millis(200),
        idle_timeout: Duration::from_millis(400),
    };
    /// Far longer than any limit here: the watchdog has fired by then.
    const SURELY: Duration = Duration::from_secs(10);

    async fn closed_after(phases: watch::Receiver<Phase>) -> (ConnectionClosed, Duration) {
        let began = Instant::now();
        let why = tokio::time::timeout(SURELY, expired(phases, LIMITS))
            .await
            .expect("the watchdog fired");
        (why, began.elapsed())
    }

    #[tokio::test]
    async fn an_idle_connection_expires_after_the_idle_timeout() {
        let (_activity, phases) = Activity::new();
        let (why, after) = closed_after(phases).await;
        assert_eq!(why, ConnectionClosed::IdleTimeout);
        assert!(after >= LIMITS.idle_timeout, "{after:?}");
    }

    #[tokio::test]
    async fn a_request_head_has_the_header_timeout_from_its_first_byte() {
        let (activity, phases) = Activity::new();
        activity.bytes_arrived();
        let (why, after) = closed_after(phases).await;
        assert_eq!(why, ConnectionClosed::HeaderTimeout);
        assert!(
            after >= LIMITS.header_read_timeout && after < LIMITS.idle_timeout,
            "{after:?}"
        );
    }

    #[tokio::test]
    async fn a_request_in_progress_is_never_idle_and_the_idle_clock_restarts_after_it() {
        let (activity, phases) = Activity::new();
        activity.bytes_arrived();
        let first = activity.request_started();
        let second = activity.request_started();
        let watchdog = tokio::spawn(expired(phases, LIMITS));
        // Longer than both limits, with requests in progress throughout.
        tokio::time::sleep(LIMITS.idle_timeout * 2).await;
        drop(first);
        tokio::time::sleep(LIMITS.idle_timeout * 2).await;
        assert!(!watchdog.is_finished(), "closed while a request was in progress");
        let began = Instant::now();
        drop(second);
        let why = tokio::time::timeout(SURELY, watchdog).await.expect("fired").unwrap();
        assert_eq!(why, ConnectionClosed::IdleTimeout);
        assert!(began.elapsed() >= LIMITS.idle_timeout);
    }
}
