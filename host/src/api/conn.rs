//! The HTTP server's connections: HTTP/1.1 over hyper with the limits a server facing the
//! internet needs ([`HttpConfig`]), which `axum::serve` does not set.
//!
//! - **Header timeout:** a connection must send a request's whole header within
//!   `header_timeout`, counted from when it is accepted or, on a kept-alive connection, from the
//!   first byte of the next request; else it is closed (no answer: there is no request).
//! - **Idle timeout:** a kept-alive connection with no request under way is closed after
//!   `idle_timeout` without a byte.
//! - **Body timeout:** a request's whole body must arrive within `body_timeout` of its header;
//!   else reading it fails, the answer is 408 `request_timeout` and the connection is closed.
//!   Only reading counts: a long answer (an event stream) is not cut.
//! - **Connection cap:** at most `max_connections` are served at once; a connection beyond them
//!   is answered 503 `unavailable` and closed at once, so clients and load balancers see the
//!   refusal instead of a hang.
//!
//! Each connection has a [`Watch`] of its phase (waiting for a header, reading one, answering),
//! moved by the connection's reads ([`WatchedIo`]) and by requests starting and their answers
//! ending ([`Answering`]); a per-connection task sleeps until the phase's deadline and closes the
//! connection when it passes. Counters of open, refused and timed-out connections are in
//! `/metrics`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, Response, header};
use axum::response::IntoResponse;
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::{ApiError, AppState};
use crate::config::HttpConfig;

/// Connections being turned away at once (each for at most [`TURN_AWAY_TIME`]); beyond them,
/// a refused connection is closed without an answer.
const MAX_TURNING_AWAY: usize = 64;

/// How long a refused connection gets to take its 503.
const TURN_AWAY_TIME: Duration = Duration::from_secs(1);

/// Serve `app` on `listener` with `limits` until `stop` is cancelled; then stop accepting, let
/// each connection finish the request it is answering, and return once every connection is
/// closed.
pub(super) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpConfig,
    state: AppState,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let max = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let slots = Arc::new(Semaphore::new(max as usize));
    let turning_away = Arc::new(Semaphore::new(MAX_TURNING_AWAY));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => break,
        };
        let (stream, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                accept_failed(e).await;
                continue;
            }
        };
        match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                let connection = Connection {
                    app: app.clone(),
                    limits,
                    state: state.clone(),
                    stop: stop.clone(),
                    remote,
                };
                tokio::spawn(async move {
                    connection.run(stream).await;
                    drop(slot);
                });
            }
            Err(_) => {
                state.metrics().connection_refused();
                if let Ok(turn) = turning_away.clone().try_acquire_owned() {
                    tokio::spawn(async move {
                        turn_away(stream).await;
                        drop(turn);
                    });
                }
            }
        }
    }
    drop(listener);
    // Every slot back: every connection closed.
    let _all = slots.acquire_many(max).await;
    Ok(())
}

/// An accept that failed: nothing to do for the connection's own errors; otherwise (too many
/// open files) log it and pause, so that the loop does not spin.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accepting a connection failed; pausing for a second");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Answer 503 on a connection beyond the cap and close it, reading what the client sends
/// meanwhile (closing with unread data would reset the connection before the answer is read).
async fn turn_away(mut stream: TcpStream) {
    let body = r#"{"error":{"code":"unavailable","message":"This server has too many connections; try again in a moment."}}"#;
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(TURN_AWAY_TIME, async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
}

/// One accepted connection.
struct Connection {
    app: Router,
    limits: HttpConfig,
    state: AppState,
    stop: CancellationToken,
    remote: SocketAddr,
}

impl Connection {
    async fn run(self, stream: TcpStream) {
        let _open = self.state.metrics().connection_opened();
        let watch = Arc::new(Watch::new());
        let io = TokioIo::new(WatchedIo {
            inner: stream,
            watch: watch.clone(),
        });
        let service = {
            let watch = watch.clone();
            let app = self.app.clone();
            let body_timeout = self.limits.body_timeout;
            let remote = self.remote;
            hyper::service::service_fn(move |request: Request<Incoming>| {
                answer(app.clone(), watch.clone(), body_timeout, remote, request)
            })
        };
        // HTTP/1.1 only, as before (`axum::serve` without its http2 feature); the timeouts are
        // this module's, not hyper's (whose header timeout also counts the idle time).
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.header_read_timeout(None);
        let connection = builder.serve_connection(io, service);
        tokio::pin!(connection);
        let mut stopping = false;
        loop {
            let changed = watch.changed.notified();
            let deadline = watch.deadline(&self.limits);
            let expired = async {
                match deadline {
                    Some((deadline, _)) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                served = connection.as_mut() => {
                    if let Err(e) = served {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    return;
                }
                () = changed => {}
                () = expired => {
                    // Still the same deadline (no read or request since)?
                    if let Some((again, why)) = watch.deadline(&self.limits)
                        && again <= Instant::now()
                    {
                        tracing::debug!(reason = why, "closing a connection");
                        self.state.metrics().connection_timed_out(why);
                        return;
                    }
                }
                () = self.stop.cancelled(), if !stopping => {
                    stopping = true;
                    // Idle connections close now; one answering closes after its answer.
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// Answer one request: its body under the body timeout, the connecting address for the
/// handlers, and the connection's phase kept while the answer is sent.
async fn answer(
    app: Router,
    watch: Arc<Watch>,
    body_timeout: Duration,
    remote: SocketAddr,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let answering = Answering::start(watch);
    let timed_out = Arc::new(AtomicBool::new(false));
    let mut request = request.map(|body| {
        Body::new(TimedBody {
            inner: body,
            deadline: Box::pin(tokio::time::sleep(body_timeout)),
            timed_out: timed_out.clone(),
        })
    });
    // What `into_make_service_with_connect_info` gave: the SSO rate limits and the client
    // activity log use it.
    request.extensions_mut().insert(ConnectInfo(remote));
    let response = app.oneshot(request).await?;
    let mut response = if timed_out.load(Ordering::SeqCst) {
        ApiError::request_timeout().into_response()
    } else {
        response
    };
    if timed_out.load(Ordering::SeqCst) {
        // The rest of the body is still on its way: the connection cannot be reused.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(response.map(|body| {
        Body::new(AnsweringBody {
            inner: body,
            _answering: answering,
        })
    }))
}

/// Where a connection is between requests.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for a request since `since` (the connection's start when `first`, else the end
    /// of the last answer).
    Waiting { since: Instant, first: bool },
    /// A request's header has been arriving since `since`.
    Header { since: Instant },
    /// Answering this many requests.
    Answering(usize),
}

/// A connection's phase and the wake-up of its task when the phase changes.
struct Watch {
    phase: Mutex<Phase>,
    changed: Notify,
}

impl Watch {
    fn new() -> Self {
        Self {
            phase: Mutex::new(Phase::Waiting {
                since: Instant::now(),
                first: true,
            }),
            changed: Notify::new(),
        }
    }

    fn update(&self, change: impl FnOnce(Phase) -> Phase) {
        let mut phase = self.phase.lock().expect("connection phase lock");
        *phase = change(*phase);
        drop(phase);
        self.changed.notify_one();
    }

    /// When the connection is to be closed unless something happens first, and why.
    fn deadline(&self, limits: &HttpConfig) -> Option<(Instant, &'static str)> {
        match *self.phase.lock().expect("connection phase lock") {
            Phase::Waiting { since, first: true } => {
                Some((since + limits.header_timeout, "header_timeout"))
            }
            Phase::Waiting {
                since,
                first: false,
            } => Some((since + limits.idle_timeout, "idle_timeout")),
            Phase::Header { since } => Some((since + limits.header_timeout, "header_timeout")),
            Phase::Answering(_) => None,
        }
    }

    /// Bytes arrived: a header starts when none was under way. (On a new connection the
    /// header's clock already runs since the accept.)
    fn read_some(&self) {
        let mut phase = self.phase.lock().expect("connection phase lock");
        if matches!(*phase, Phase::Waiting { first: false, .. }) {
            *phase = Phase::Header {
                since: Instant::now(),
            };
            drop(phase);
            self.changed.notify_one();
        }
    }
}

/// A request being answered: from its header to the end of its answer's body (or the answer's
/// drop, when the connection ends first).
struct Answering(Arc<Watch>);

impl Answering {
    fn start(watch: Arc<Watch>) -> Self {
        watch.update(|phase| match phase {
            Phase::Answering(n) => Phase::Answering(n + 1),
            _ => Phase::Answering(1),
        });
        Self(watch)
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.update(|phase| match phase {
            Phase::Answering(n) if n > 1 => Phase::Answering(n - 1),
            _ => Phase::Waiting {
                since: Instant::now(),
                first: false,
            },
        });
    }
}

/// The connection's stream, telling its [`Watch`] when bytes arrive.
struct WatchedIo {
    inner: TcpStream,
    watch: Arc<Watch>,
}

impl AsyncRead for WatchedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            self.watch.read_some();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for WatchedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Reading the request body past its deadline.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTimeout;

/// A request body that fails with [`BodyTimeout`] once its deadline passes before its end.
struct TimedBody {
    inner: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timed_out: Arc<AtomicBool>,
}

impl hyper::body::Body for TimedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        ready!(self.deadline.as_mut().poll(cx));
        self.timed_out.store(true, Ordering::SeqCst);
        Poll::Ready(Some(Err(BodyTimeout.into())))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// An answer's body, keeping its request's [`Answering`] until it is sent (or dropped).
struct AnsweringBody {
    inner: Body,
    _answering: Answering,
}

impl hyper::body::Body for AnsweringBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
